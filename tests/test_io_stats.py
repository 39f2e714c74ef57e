"""The one atomic writer (nothing left behind on any failure) and the one statistics module."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alchemy_mbrl import io, stats
from alchemy_mbrl.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


def test_atomic_write_renames_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "a.txt"
    io.write_text(out, "one")
    assert out.read_text() == "one"
    with pytest.raises(RuntimeError), io.atomic_write(out) as tmp:
        tmp.write_text("half")
        assert tmp in io.live_temporary_files()
        raise RuntimeError("mid-write")
    assert out.read_text() == "one"  # the old file is untouched
    assert leftovers(out.parent) == [] and not io.live_temporary_files()


def test_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == 0o644


def test_keyboard_interrupt_mid_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), io.atomic_write(tmp_path / "x.csv") as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.write_json(tmp_path / "d", {"a": 1})
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_cli_out_directory_gives_a_clear_error_and_no_temporary_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    code = main(["evaluate", "--policy", "uniform", "--episodes", "3", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and "is a directory" in capsys.readouterr().err
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "out") == []


def test_json_is_strict_and_nan_becomes_null(tmp_path: Path) -> None:
    io.write_json(tmp_path / "s.json", {"mean": 1.5, "sem": math.nan, "xs": [math.inf, 2.0]})
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mean": 1.5, "sem": None, "xs": [None, 2.0]}


def test_write_csv(tmp_path: Path) -> None:
    io.write_csv(tmp_path / "t.csv", ["a", "b"], [{"a": 1, "b": "x", "ignored": 0}, {"a": 2, "b": "y"}])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", "1,x", "2,y"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_long_write_leaves_nothing(tmp_path: Path, sig: int) -> None:
    """A process killed (SIGTERM, as Snakemake/SLURM do) or interrupted (SIGINT) mid-write cleans up."""
    out = tmp_path / "big.bin"
    code = (
        "import sys, time\n"
        "from alchemy_mbrl.io import atomic_write\n"
        f"with atomic_write({str(out)!r}) as tmp:\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'x' * 1000)\n"
        "        f.flush()\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    assert len(leftovers(tmp_path)) == 1  # the temporary file exists while writing
    proc.send_signal(sig)
    rc = proc.wait(timeout=30)
    assert rc != 0
    if sig == signal.SIGTERM:
        assert rc == -signal.SIGTERM  # the signal still ends the process as it would have
    assert list(tmp_path.iterdir()) == []


def test_mean_sem_convention() -> None:
    s = stats.mean_sem([1.0, 2.0, 3.0, 4.0])
    assert s.mean == 2.5 and s.n == 4
    assert s.sem == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    one = stats.mean_sem([7.0])
    assert one.mean == 7.0 and one.n == 1 and math.isnan(one.sem) and math.isnan(one.std)
    assert math.isnan(stats.mean_sem([]).mean)


def test_one_formatter() -> None:
    assert stats.format_mean_sem(146.5512, 0.3412, 20000) == "146.6 ± 0.3 (n=20,000)"
    assert stats.format_mean_sem(146.5512, 0.3412, 20000, digits=2) == "146.55 ± 0.34 (n=20,000)"
    assert stats.format_mean_sem(175.0, 2.5, 8) == "175.0 ± 2.5 (n=8)"
    assert stats.format_mean_sem(7.0, math.nan, 1) == "7.0 (n=1, no s.e.)"
    assert stats.format_mean_sem(None) == "—"
    assert stats.format_summary(stats.returns_summary([1.0, 3.0])) == "2.0 ± 1.0 (n=2)"


def test_summary_round_trip_reads_null_sem_as_nan(tmp_path: Path) -> None:
    io.write_json(tmp_path / "s.json", stats.returns_summary([5.0]))
    s = stats.read_summary(tmp_path / "s.json")
    assert s["mean"] == 5.0 and s["n"] == 1 and math.isnan(s["sem"])
    (tmp_path / "bad.json").write_text('{"mean": 1}')
    with pytest.raises(ValueError, match="lacks 'sem'"):
        stats.read_summary(tmp_path / "bad.json")


def test_entropy_record_parts_add_up() -> None:
    total = np.array([300.0, 260.0, 280.0])
    start = np.array([250.0, 240.0, 245.0])
    r = stats.entropy_record("m", total, start, 200, 1.25)
    assert r["entropy_nats_per_step"] == pytest.approx(total.mean() / 200)
    assert r["entropy_nats_per_step"] == pytest.approx(r["trial_start_nats_per_step"] + r["chemistry_nats_per_step"])
    assert r["entropy_sem"] == pytest.approx(np.std(total / 200, ddof=1) / math.sqrt(3))
    assert r["n_episodes"] == 3 and r["n_transitions"] == 600 and r["trial_start_floor_nats_per_step"] == 1.25
    assert "± " in stats.format_entropy(r)


def test_environment_constants_are_defined_once() -> None:
    """``grep`` finds each environment constant defined in env/constants.py only."""
    pattern = r"^(EPISODE_STEPS|NUM_ACTIONS|OBS_DIM|NUM_STONES|NUM_POTIONS|NUM_TRIALS|STEPS_PER_TRIAL|TRIAL_START\w*)\s*[:=]"
    r = subprocess.run(["grep", "-rEn", "--include=*.py", pattern, str(SRC)], capture_output=True, text=True)
    files = {line.split(":", 1)[0] for line in r.stdout.splitlines()}
    assert files == {str(SRC / "alchemy_mbrl" / "env" / "constants.py")}, r.stdout


def test_every_file_write_goes_through_io() -> None:
    r = subprocess.run(["grep", "-rln", "--include=*.py", r"os\.replace\|\.replace(path)", str(SRC)],
                       capture_output=True, text=True)
    assert r.stdout.split() == [str(SRC / "alchemy_mbrl" / "io.py")]


def test_commands_live_in_cli() -> None:
    pkg = SRC / "alchemy_mbrl"
    assert not list(pkg.rglob("commands.py")) and not list(pkg.glob("*_commands.py"))
    r = subprocess.run(["grep", "-rln", "--include=*.py", "add_parser(", str(pkg)], capture_output=True, text=True)
    assert all("/cli/" in f for f in r.stdout.split()), r.stdout


def test_paired_difference_uses_the_spread_of_the_differences() -> None:
    from alchemy_mbrl.stats import mean_sem, paired_difference

    gen = np.random.default_rng(0)
    episode = gen.normal(200.0, 50.0, size=400)          # shared difficulty of each episode
    a = episode + gen.normal(5.0, 2.0, size=400)
    b = episode + gen.normal(0.0, 2.0, size=400)
    d = paired_difference(a, b)
    assert d.n == 400 and abs(d.mean - 5.0) < 0.5
    assert d.sem == pytest.approx(np.std(a - b, ddof=1) / 20.0)
    unpaired = np.hypot(mean_sem(a).sem, mean_sem(b).sem)
    assert d.sem < unpaired / 10                         # pairing removes the shared episode spread
    with pytest.raises(ValueError, match="equal length"):
        paired_difference(a, b[:-1])
