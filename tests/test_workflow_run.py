"""Running the workflow: the whole CI configuration end to end, and resumption after an interrupt."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow_support import (
    PAPER_CONFIG,
    SNAKEFILE,
    TEST_CONFIG,
    env,
    missing_commands,
    snakemake,
    snakemake_exe,
)

pytestmark = pytest.mark.skipif(snakemake_exe() is None, reason="snakemake is not installed (pip install -e '.[dev]')")


@pytest.mark.slow
def test_end_to_end_ci_config(tmp_path: Path) -> None:
    """`.test/config.yaml` through every rule: tables and plots exist and parse; a rerun does nothing."""
    missing = missing_commands()
    if missing:
        pytest.skip(f"alchemy-mbrl lacks sub-commands the workflow needs: {', '.join(missing)}")
    r = snakemake(["--cores", "2"], tmp_path)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    results = tmp_path / "results" / cfg["name"]  # each config writes to results/<name>/
    assert "Tables:" in r.stdout + r.stderr and "snakemake --report" in r.stdout + r.stderr  # onsuccess message

    t1 = pd.read_csv(results / "tables" / "table1.csv")
    learned = t1[t1["simulator"] == "learned"]
    assert sorted(learned["budget"]) == sorted(cfg["evaluate"]["budgets"])
    assert (learned["n"] == cfg["evaluate"]["episodes"]).all()
    assert set(t1[t1["kind"] == "planner"]["simulator"]) == {"learned", *cfg["evaluate"]["reference_simulators"]}
    measured = t1[t1["kind"] != "quoted"]
    assert measured["mean"].between(-1000, 1000).all() and (measured["sem"] >= 0).all()
    assert set(t1["agent"]) >= {"Random heuristic", "Uniform random policy", "V-MPO", "Ideal Observer"}
    optimal = t1[t1["kind"] == "optimal"].set_index("agent")["n"]  # measured beside the published numbers
    for agent, row in (("ideal_observer", "Ideal observer (measured here)"),
                       ("search_oracle", "Search oracle (true chemistry, measured)")):
        n = cfg["optimal_agents"][agent]["episodes"]
        assert optimal.get(row, 0) == n  # an agent with 0 episodes is not played and has no measured row

    t2 = pd.read_csv(results / "tables" / "table2.csv")
    controls = list(cfg["train"].get("controls") or {})
    assert list(t2["model"]) == [*cfg["train"]["architectures"], *controls, "bayes"]
    assert (t2["entropy"] > 0).all()
    # issue 27: every model paired with the original on the same validation episodes; the original's seeds
    rows = t2.set_index("model")
    n_val = cfg["train"]["eval_max_episodes"]
    assert (rows.drop(index=["original", "bayes"])["vs_original_n"] == n_val).all()
    assert rows.loc["original", "seeds_n"] == len(cfg["train"]["seeds"]["original"])
    assert (results / "models" / "original-seed-12" / "model.pt").is_file()
    assert (results / "models" / f"gru_backbone-{controls[0]}" / "model.pt").is_file()
    # the planner rows play the baselines' seed: each is paired with the random heuristic on all its episodes
    assert cfg["evaluate"]["seed"] == cfg["baselines"]["seed"]
    planner = t1[t1["kind"] == "planner"]
    assert (planner["vs_random_heuristic_n"] == planner["n"]).all() and planner["vs_ideal_observer_n"].isna().all()
    assert "Paired: vs random heuristic" in (results / "tables" / "table1.md").read_text()
    for table in ("table1", "table2"):
        md = (results / "tables" / f"{table}.md").read_text()
        assert "±" in md and f"[{cfg['name']} scale: {cfg['description']}" in md
        assert r"\begin{tabular}" in (results / "tables" / f"{table}.tex").read_text()
        assert "<table>" in (results / "tables" / f"{table}.html").read_text()

    for plot in ("score_vs_expansions", "training_curves", "hpo_convergence"):
        assert (results / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
        assert (results / "plots" / f"{plot}.pdf").read_bytes()[:5] == b"%PDF-"

    best = json.loads((results / "hpo" / "best.json").read_text())
    assert set(best) == {"temperature", "c1", "c2", "k", "gamma"}
    history = pd.read_csv(results / "hpo" / "history.csv")
    assert len(history) == cfg["hpo"]["rounds"] * cfg["hpo"]["points_per_round"]

    again = snakemake(["--cores", "2", "-n"], tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # another training seed for a finished run trains only that model: nothing upstream of Table 2 is redone
    more = yaml.safe_load(TEST_CONFIG.read_text())
    more["train"]["seeds"]["gru_backbone"] = [more["seed"], 99]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(more))
    plan = snakemake(["--quiet", "rules", "-n"], tmp_path, config=tmp_path / "more.yaml")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", plan.stdout, re.M)} - {"total", "count"}
    assert planned == {"train_config_variant", "train_variant", "model_eval_variant", "run_info", "table1", "table2",
                       "plot_score", "plot_training", "plot_hpo", "all"}, plan.stdout
    # the target all_long adds only the learned rows of evaluate.long_budgets, Table 1 and its plot again
    long = snakemake(["--quiet", "rules", "-n", "all_long"], tmp_path)
    assert long.returncode == 0, long.stdout + long.stderr
    for rule, jobs in (("evaluate_learned_chunk", cfg["evaluate"]["chunks"]), ("merge_evaluation", 1),
                       ("table1_long", 1), ("plot_score_long", 1), ("all_long", 1)):
        assert re.search(rf"^{rule}\s+{jobs}\s*$", long.stdout, re.M), long.stdout
    assert not re.search(r"^(train|train_variant|model_eval|table1|table2)\s+\d", long.stdout, re.M), long.stdout

    report = snakemake(["--report", str(tmp_path / "report.html")], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    check_report_in_browser(tmp_path / "report.html", results, cfg)

    # A paper-scale dry run in the same directory plans only results/paper/ and touches nothing here.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}
    paper = snakemake(["-n"], tmp_path, config=PAPER_CONFIG)
    assert paper.returncode == 0, paper.stdout[-3000:] + paper.stderr[-3000:]
    assert "results/paper/" in paper.stdout and f"results/{cfg['name']}/" not in paper.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()} == before


def check_report_in_browser(report: Path, results: Path, cfg: dict) -> None:
    """Open the Snakemake report in headless Chromium and find Table 1's rows and the scale banner in
    the rendered page (the report is a JavaScript application: the text exists only once rendered)."""
    assert "Random heuristic" in (results / "tables" / "table1.html").read_text()
    browser = chromium()
    if browser is None:
        warnings.warn("chromium is not installed: the report was not checked in a browser (apt-get install chromium)")
        return
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    dom = out.stdout
    assert dom, out.stderr[-2000:]
    assert cfg["name"] in dom and cfg["description"] in dom, "the scale banner is not on the report's front page"
    for row in ("Random heuristic", "Uniform random policy", "Bayes-optimal predictor", "Pipeline check"):
        assert row in dom, f"'{row}' is not in the rendered report (Tables 1-2 are on its front page)"
    for label in ("Table 1: score vs expansions", "Table 2: world-model entropy", "Score vs expansions"):
        assert label in dom, f"report item label '{label}' not rendered"


def chromium() -> str | None:
    """A headless-capable Chromium, if installed (Debian: apt-get install chromium)."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _shard_config(tmp_path: Path) -> Path:
    """The CI config with enough shards (each a few seconds of work) to interrupt the data stage."""
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["data"].update(shards=6, episodes_per_shard=4000)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_interrupt_and_resume(tmp_path: Path) -> None:
    """SIGINT in the middle of the data stage; a rerun finishes without redoing finished shards."""
    if "generate" in missing_commands():
        pytest.skip("alchemy-mbrl lacks the `generate` sub-command")
    config = _shard_config(tmp_path)
    data = tmp_path / "results" / yaml.safe_load(config.read_text())["name"] / "data"
    cmd = [snakemake_exe(), "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path), "--configfile", str(config),
           "--cores", "1", "results/test/data/manifest.json"]
    # Its own process group, so that the interrupt reaches Snakemake and its running job, as Ctrl-C in a
    # terminal does; with SIGINT's default disposition restored, because a test run launched in the
    # background of a non-interactive shell (as CI may be) inherits SIGINT ignored.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    # interrupt as soon as Snakemake has registered the first finished job
    while proc.poll() is None and not any(re.search(r"\d+ of \d+ steps", line) for line in list(lines)):
        time.sleep(0.05)
    assert proc.poll() is None, "the data stage finished before it could be interrupted: make the shards bigger"
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=300)
    reader.join(timeout=60)
    out = "".join(lines)
    assert proc.returncode != 0, out
    assert not (data / "manifest.json").exists()
    # the shards Snakemake saw finish: jobid -> output from the job headers, then "Finished jobid: N"
    outputs = dict(re.findall(r"output: results/test/data/(shard-\d+\.h5)\n(?:.*\n)*?\s+jobid: (\d+)", out))
    outputs = {jobid: name for name, jobid in outputs.items()}
    done = [outputs[j] for j in re.findall(r"Finished jobid: (\d+) \(Rule: generate_shard\)", out)]
    assert 1 <= len(done) < 6, out
    finished = {name: (data / name).stat().st_mtime_ns for name in done}

    rerun = snakemake(["--cores", "1", "--rerun-incomplete", "results/test/data/manifest.json"], tmp_path, config=config)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (data / "manifest.json").exists()
    assert len(list(data.glob("shard-*.h5"))) == 6
    for name, mtime in finished.items():
        assert (data / name).stat().st_mtime_ns == mtime, f"{name} was regenerated"
    nothing = snakemake(["-n", "--cores", "1", "results/test/data/manifest.json"], tmp_path, config=config)
    assert "Nothing to be done" in nothing.stdout + nothing.stderr
    assert not list(tmp_path.glob("results/test/data/*.tmp*")), "a temporary shard was left behind"


@pytest.mark.slow
def test_corrupt_shard_fails_its_rule_with_a_log_that_says_why(tmp_path: Path) -> None:
    """A shard damaged after the data stage: the rule that reads it fails, and its log names file and problem."""
    target = "results/test/data/manifest.json"
    first = snakemake(["--cores", "2", target], tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    shard = sorted((tmp_path / "results" / "test" / "data").glob("shard-*.h5"))[0]
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 3])  # truncated, e.g. by a full disk or an interrupted copy
    second = snakemake(["--cores", "2", target], tmp_path)
    assert second.returncode != 0
    log = (tmp_path / "logs" / "test" / "manifest.log").read_text()
    assert shard.name in log and "truncated or corrupt" in log, log
    assert not (tmp_path / target).exists()  # Snakemake removed the failed job's output


def test_missing_model_fails_with_a_message_naming_it(tmp_path: Path) -> None:
    """What a rule's log shows when its model directory holds no trained model."""
    out = subprocess.run(
        ["python", "-m", "alchemy_mbrl.cli", "evaluate", "--simulator", "learned", "--model", str(tmp_path / "none"),
         "--budget", "2", "--episodes", "1", "--out", str(tmp_path / "r.csv"), "--no-progress"],
        capture_output=True, text=True, env=env(), check=False,
    )
    assert out.returncode == 2
    assert f"{tmp_path / 'none' / 'model.pt'}: no trained model" in out.stderr


@pytest.mark.slow
def test_hard_kill_unlock_rerun_incomplete_keeps_the_training_log(tmp_path: Path) -> None:
    """kill -9 of Snakemake mid-training (its training job lives on, orphaned) -> `--unlock` ->
    `--rerun-incomplete`: the re-run's `train` fails at once naming the orphan; once the orphan is
    stopped, the next re-run resumes from the checkpoint and ends with the whole log and a finite
    validation loss, although Snakemake deleted `train_log.csv` (issue 11)."""
    import torch

    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["train"].update(architectures=["original"], steps=300)
    cfg["train"]["options"].update(checkpoint_every=25, log_every=25, val_every=100)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    name = cfg["name"]  # outputs of a config live in results/<name>/, logs in logs/<name>/
    target = f"results/{name}/models/original/model.pt"
    model_dir = tmp_path / "results" / name / "models" / "original"
    cmd = [snakemake_exe(), "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path), "--configfile", str(config),
           "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and not (model_dir / "checkpoint.pt").exists():
        time.sleep(0.2)
    assert proc.poll() is None, "the workflow finished or failed before training could be interrupted"
    lock = (model_dir / ".train.lock").read_text().split()
    trainer = int(lock[0])
    os.kill(proc.pid, signal.SIGKILL)  # Snakemake only: its training job runs on, as after a hard kill
    proc.wait()
    try:
        assert snakemake(["--unlock", target], tmp_path, config=config).returncode == 0
        blocked = snakemake(["--cores", "1", "--rerun-incomplete", target], tmp_path, config=config)
        if not (model_dir / "model.pt").exists():  # (unless the orphan finished first)
            assert blocked.returncode != 0
            log = (tmp_path / "logs" / name / "train" / "original.log").read_text()
            assert f"model directory results/{name}/models/original is in use by another process (PID {trainer} " in log, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(trainer, signal.SIGKILL)  # the orphaned trainer this test started through Snakemake
    rerun = snakemake(["--cores", "1", "--rerun-incomplete", target], tmp_path, config=config)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    steps = pd.read_csv(model_dir / "train_log.csv")["step"].tolist()
    assert steps == list(range(25, 301, 25)), steps  # every logged step once, no gap
    assert math.isfinite(torch.load(model_dir / "model.pt", weights_only=False)["val_loss"])
