"""The ``evaluate`` and ``merge-returns`` commands: chunking, bit-identical merges, failure paths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import alchemy_mbrl.cli as cli
from alchemy_mbrl.evaluate import chunk_episodes, merge_returns, parse_chunk


@pytest.fixture()
def run_cli(monkeypatch):
    """``alchemy-mbrl`` with only this module's commands (others may not be importable here)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["alchemy_mbrl.cli.evaluate"])
    return cli.main


def test_planner_commands_are_registered() -> None:
    assert "alchemy_mbrl.cli.evaluate" in cli.COMMAND_MODULES


def test_chunks_are_disjoint_and_cover_all_episodes() -> None:
    for episodes in (1, 7, 10, 33):
        for n in (1, 2, 3, 5, 8):
            parts = [chunk_episodes(episodes, (i, n)) for i in range(n)]
            np.testing.assert_array_equal(np.concatenate(parts), np.arange(episodes))
    assert parse_chunk("2/5") == (2, 5)
    for bad in ("3/2", "2/2", "-1/3", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ValueError, match="bad chunk"):
            parse_chunk(bad)


def test_chunked_evaluation_merges_bit_identically(run_cli, tmp_path, capsys) -> None:
    common = ["evaluate", "--policy", "planner", "--simulator", "oracle", "--budget", "3", "--episodes", "5",
              "--seed", "13", "--no-progress"]
    assert run_cli([*common, "--batch", "5", "--out", str(tmp_path / "all.csv")]) == 0
    assert run_cli([*common, "--chunk", "1/2", "--batch", "2", "--out", str(tmp_path / "c1.csv")]) == 0
    assert run_cli([*common, "--chunk", "0/2", "--batch", "1", "--out", str(tmp_path / "c0.csv")]) == 0
    assert run_cli(["merge-returns", str(tmp_path / "c1.csv"), str(tmp_path / "c0.csv"),
                    "--out", str(tmp_path / "merged.csv"), "--summary", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "(n=5)" in out
    whole = pd.read_csv(tmp_path / "all.csv", dtype={"seed": "uint64"})
    merged = pd.read_csv(tmp_path / "merged.csv", dtype={"seed": "uint64"})
    cols = ["episode", "seed", "return", "policy", "simulator", "budget"]
    pd.testing.assert_frame_equal(whole[cols], merged[cols])
    assert list(whole.columns) == ["episode", "seed", "return", "policy", "simulator", "budget", "seconds"]
    assert (whole["seconds"] > 0).all()
    s = json.loads((tmp_path / "s.json").read_text())
    r = whole["return"].to_numpy()
    assert s["n"] == 5 and s["mean"] == pytest.approx(r.mean())
    assert s["sem"] == pytest.approx(r.std(ddof=1) / np.sqrt(5))
    assert (s["policy"], s["simulator"], s["budget"]) == ("planner", "oracle", 3)


def test_merge_rejects_duplicates_and_gaps(tmp_path) -> None:
    row = {"policy": "planner", "simulator": "oracle", "budget": 3, "seconds": 0.1, "seed": 1}
    a = pd.DataFrame([{**row, "episode": 0, "return": 1.0}, {**row, "episode": 1, "return": 2.0}])
    b = pd.DataFrame([{**row, "episode": 1, "return": 2.0}])
    c = pd.DataFrame([{**row, "episode": 3, "return": 2.0}])
    for name, df in (("a", a), ("b", b), ("c", c)):
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    with pytest.raises(ValueError, match="more than one row"):
        merge_returns([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "m.csv")
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        merge_returns([tmp_path / "a.csv", tmp_path / "c.csv"], tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError):
        merge_returns([tmp_path / "nope.csv"], tmp_path / "m.csv")


def test_merge_keeps_the_inputs_float_text_and_values(tmp_path) -> None:
    row = {"policy": "ideal-observer", "simulator": "", "budget": "", "seed": 3}
    seconds = [9.29, 34.115927133999776, 0.1 + 0.2]
    a = pd.DataFrame([{**row, "episode": 0, "return": 253, "seconds": seconds[0]}])
    b = pd.DataFrame([{**row, "episode": i, "return": 300, "seconds": seconds[i]} for i in (1, 2)])
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    merge_returns([tmp_path / "b.csv", tmp_path / "a.csv"], tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text().splitlines()
    assert text[1].endswith(",9.29") and text[2].endswith(",34.115927133999776")
    assert pd.read_csv(tmp_path / "m.csv")["seconds"].tolist() == seconds  # exact


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--simulator", "oracle", "--chunk", "3/2"], "bad chunk"),
        (["--simulator", "oracle", "--budget", "0"], "--budget must be an integer >= 1"),
        (["--simulator", "learned"], "needs --model"),
        (["--simulator", "oracle", "--params", "/nonexistent/hp.json"], "hp.json"),
    ],
)
def test_evaluate_failure_paths(run_cli, tmp_path, capsys, extra, message) -> None:
    args = ["evaluate", "--policy", "planner", "--budget", "2", "--episodes", "2", "--no-progress",
            "--out", str(tmp_path / "r.csv"), *extra]
    assert run_cli(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()
