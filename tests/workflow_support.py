"""Helpers shared by the workflow tests: run Snakemake on this repository's Snakefile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
RULES = REPO / "workflow" / "rules"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
QUICK_CONFIG = REPO / "config" / "config.yaml"
CPU_CONFIG = REPO / "config" / "cpu.yaml"
TEST_CONFIG = REPO / ".test" / "config.yaml"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"

#: Sub-commands the full workflow calls (checked against `alchemy-mbrl --help`).
WORKFLOW_COMMANDS = (
    "generate", "data", "train", "model-eval", "bayes-entropy", "hpo", "evaluate",
    "merge-returns", "baseline", "report",
)


def workflow_rules_text() -> str:
    """The text of every rule file and the Snakefile."""
    return "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk"))) + (
        REPO / "Snakefile"
    ).read_text()


def workflow_rules() -> set[str]:
    """The name of every rule of the workflow: ``rule NAME`` and ``use rule ... as NAME``."""
    text = workflow_rules_text()
    return set(re.findall(r"^rule (\w+):", text, re.M)) | set(re.findall(r"^use rule \w+ as (\w+)", text, re.M))


def snakemake_exe() -> str | None:
    """The `snakemake` executable next to this Python, or on PATH."""
    here = Path(sys.executable).with_name("snakemake")
    return str(here) if here.exists() else shutil.which("snakemake")


def env() -> dict[str, str]:
    """Environment for Snakemake and its jobs: this checkout's src/ first on PYTHONPATH."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), e.get("PYTHONPATH", "")]))
    return e


def snakemake(
    args: list[str], workdir: Path, config: Path = TEST_CONFIG, timeout: float | None = 1800
) -> subprocess.CompletedProcess[str]:
    """Run ``snakemake --snakefile REPO/Snakefile --directory workdir --configfile config *args``."""
    exe = snakemake_exe()
    assert exe is not None, "snakemake not installed"
    cmd = [exe, "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--configfile", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=workdir)


def missing_commands() -> list[str]:
    """Workflow sub-commands that this checkout's CLI does not offer yet."""
    out = subprocess.run(
        [sys.executable, "-m", "alchemy_mbrl.cli", "--help"], capture_output=True, text=True, env=env()
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    return [c for c in WORKFLOW_COMMANDS if c not in listed]
