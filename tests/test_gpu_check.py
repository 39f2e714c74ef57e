"""``alchemy-mbrl gpu-check --device cpu`` at small sizes: every line of the GPU check runs in CI
(CPU bf16 autocast runs the model code of CUDA autocast); on a GPU the same command uses the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alchemy_mbrl.cli import main

from .model_helpers import TINY

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = ["--device", "cpu", "--steps", "6", "--batch-size", "4", "--train-episodes", "16", "--val-episodes", "8",
         "--planner-batch", "4", "--planner-budget", "4", "--planner-steps", "2"]


def test_gpu_check_on_cpu_passes_and_prints_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    work = tmp_path / "work"
    assert main(["gpu-check", *SMALL, "--config", str(cfg), "--work-dir", str(work), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert all(line.startswith("|") for line in lines), out  # one Markdown table, nothing else
    for label in ("training tokens/s", "training ms/step", "learned-planner expansions/s", "peak GPU memory",
                  "bf16-vs-fp32 entropy difference"):
        assert label in out
    assert "FAIL" not in out and lines[-1] == "| **all checks** | **PASS** |"
    res = json.loads((tmp_path / "r.json").read_text())
    assert res == json.loads((work / "gpu_check.json").read_text())
    names = [c["check"] for c in res["checks"]]
    assert len(names) == 7 and all(c["passed"] for c in res["checks"])
    m = res["measures"]
    assert m["device"] == "cpu" and m["peak_memory_train_gib"] is None
    assert m["train_tokens_per_s"]["mean"] > 0 and m["train_ms_per_step"] > 0 and m["planner_expansions_per_s"] > 0
    assert 0 < m["entropy_diff"] <= 0.05  # bf16 changes the numbers a little, not the entropy
    assert (work / "model" / "model.pt").exists() and (work / "model_eval.json").exists()
    assert "killed (signal 9)" in res["checks"][0]["detail"] or "stopped" in res["checks"][0]["detail"]
    assert main(["gpu-check", *SMALL, "--work-dir", str(work)]) == 2  # an earlier check's directory is refused


def test_gpu_check_exit_status_on_a_failed_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from alchemy_mbrl import gpu_check

    failed = {"measures": {"device": "cpu"}, "passed": False,
              "checks": [{"check": "model-eval --amp agrees with float32", "passed": False, "detail": "x"}]}
    monkeypatch.setattr(gpu_check, "run_gpu_check", lambda opts: failed)
    assert main(["gpu-check", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "| check: model-eval --amp agrees with float32 | FAIL: x |" in out and "**FAIL**" in out


def test_gpu_check_refuses_bad_sizes(tmp_path: Path) -> None:
    assert main(["gpu-check", *SMALL, "--steps", "1", "--work-dir", str(tmp_path)]) == 2


def test_gpu_check_on_cpu_at_gpu_sizes_refuses_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without size options a CPU check would train for hours: one line saying which sizes to pass, no work."""
    import time

    t = time.perf_counter()
    assert main(["gpu-check", "--device", "cpu", "--work-dir", str(tmp_path / "w")]) == 2
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps 6 --batch-size 4" in err[0] and "h;" in err[0], err
    assert not (tmp_path / "w").exists()
