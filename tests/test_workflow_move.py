"""A finished run moved to another directory has nothing to do (``snakemake -n``).

Snakemake reruns a job whose ``params`` changed since it ran, so no rule's params may embed the
checkout's absolute path. The check runs the cheapest part of the CI config (two tiny shards and
their manifest) in a copy of the workflow, copies the whole tree elsewhere, and dry-runs there.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .workflow_support import REPO, TEST_CONFIG, env, snakemake_exe

pytestmark = [pytest.mark.skipif(snakemake_exe() is None, reason="snakemake is not installed (pip install -e '.[dev]')"),
              pytest.mark.slow]


def _snakemake(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(snakemake_exe()), "--snakefile", str(tree / "Snakefile"), "--directory", str(tree),
           "--configfile", str(tree / ".test" / "config.yaml"), "--cores", "1", *args,
           "results/test/data/manifest.json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tree, timeout=600)


def test_a_moved_finished_run_has_nothing_to_do(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("Snakefile", "workflow", "config", "src"):
        src = REPO / part
        (shutil.copytree(src, first / part, ignore=ignore) if src.is_dir() else shutil.copy2(src, first / part))
    (first / ".test").mkdir()
    shutil.copy2(TEST_CONFIG, first / ".test" / "config.yaml")
    done = _snakemake(first)
    assert done.returncode == 0, done.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(first, moved, symlinks=True)  # copy2: modification times kept, as `mv` or `rsync -a` do
    shutil.rmtree(first)
    dry = _snakemake(moved, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
