"""The SLURM profile against a real single-node SLURM on localhost (scripts/local-slurm.sh).

Skipped, saying why, where SLURM is not installed (`.ci/run` installs `slurm-wlm munge`) or
the test does not run as root (slurmd must start jobs as the submitting user).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.workflow_support import (
    REPO,
    SLURM_PROFILE,
    TEST_CONFIG,
    missing_commands,
    snakemake,
    snakemake_exe,
    workflow_rules,
)

SCRIPT = REPO / "scripts" / "local-slurm.sh"
SLURM_DIR = Path(os.environ.get("LOCAL_SLURM_DIR", "/tmp/alchemy-local-slurm"))
SLURM_CONF = SLURM_DIR / "slurm.conf"
PARTITION = os.environ.get("LOCAL_SLURM_PARTITION", "debug")

_missing = [b for b in ("sbatch", "squeue", "sinfo", "slurmctld", "slurmd", "munged") if shutil.which(b) is None
            and not Path("/usr/sbin", b).exists()]
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing), reason=f"SLURM not installed (missing {', '.join(_missing)}); "
                       "install with `apt-get install slurm-wlm munge` (see .ci/run)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a local SLURM (slurmd) must be started as root"),
    pytest.mark.skipif(snakemake_exe() is None, reason="snakemake is not installed"),
]


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def local_slurm() -> Iterator[dict[str, str]]:
    """A running local SLURM; started (and stopped afterwards) unless one was already up."""
    already = _script("status").returncode == 0
    if not already:
        r = _script("start")
        assert r.returncode == 0, f"local SLURM did not start:\n{r.stdout}\n{r.stderr}"
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %a %t"], capture_output=True, text=True,
                           env={**os.environ, "SLURM_CONF": str(SLURM_CONF)})
    assert "up" in sinfo.stdout, sinfo.stdout + sinfo.stderr
    yield {"SLURM_CONF": str(SLURM_CONF), "SLURM_PARTITION": PARTITION, "SLURM_GPU_PARTITION": PARTITION}
    if not already:
        _script("stop")


def test_local_slurm_script_writes_a_usable_config(local_slurm: dict[str, str]) -> None:
    conf = SLURM_CONF.read_text()
    assert "AccountingStorageType=accounting_storage/none" in conf
    assert re.search(rf"PartitionName={PARTITION} .*State=UP", conf)
    status = _script("status")
    assert status.returncode == 0 and PARTITION in status.stdout


def _test_profile(tmp_path: Path) -> Path:
    """workflow/profiles/slurm adapted to a 1-node test cluster without GPUs: no `gpu`, 1 CPU and 1 GB per job.

    Everything else (executor, retries with memory growing on attempt, status command, no
    account, log directory, latency wait) is the real profile's.
    """
    prof = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    prof["jobs"] = 4
    prof["slurm-init-seconds-before-status-checks"] = 1
    prof["default-resources"].update(mem_mb="1000 * attempt", cpus_per_task=1)
    prof.pop("set-threads", None)  # every job on 1 thread (the test node's CPUs)
    for rule in workflow_rules():  # every rule, so that none keeps its paper-scale memory (the node has less)
        res = prof["set-resources"].setdefault(rule, {})
        for key in ("gpu", "gpu_model", "gres"):
            res.pop(key, None)
        res.update(mem_mb="1000 * attempt", cpus_per_task=1)
    d = tmp_path / "profile"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(prof))
    return d


#: The jobs sent through sbatch: every kind of job the profile places (the data stage, the GPU rules train,
#: train_variant, model_eval, model_eval_variant on the test node's CPUs, a CPU evaluation and its merge, a
#: report), 20 jobs. The planner rows and the HPO are the same `evaluate` command and `use rule` resources
#: (tests/test_workflow_static.py checks that every rule asking for a GPU is sent to one); the whole workflow
#: runs locally in tests/test_workflow_run.py. The whole CI config through SLURM took 8 min on 2 loaded cores.
SLURM_TARGETS = ["results/test/tables/table2.csv", "results/test/baselines/uniform/summary.json"]


def test_workflow_through_slurm(local_slurm: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI configuration's training stage and a baseline through sbatch: SLURM job ids in the log, outputs
    exist, a rerun does nothing."""
    for k, v in local_slurm.items():
        monkeypatch.setenv(k, v)
    profile = _test_profile(tmp_path / "cfg")
    missing = missing_commands()
    if missing:
        # the data stage and a baseline until every sub-command has landed
        if {"generate", "data", "baseline"} & set(missing):
            pytest.skip(f"alchemy-mbrl lacks {', '.join(missing)}")
        targets = ["results/test/data/manifest.json", "results/test/baselines/uniform/returns.csv"]
    else:
        targets = SLURM_TARGETS
    work = tmp_path / "run"
    work.mkdir()
    r = snakemake(["--profile", str(profile), *targets], work, config=TEST_CONFIG, timeout=1800)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    jobs = re.search(r"total\s+(\d+)", log)
    assert jobs, log[-3000:]
    local = len(re.findall(r"^localrule ", log, re.M))
    # every non-local job went through sbatch (more submissions only if SLURM retried one)
    assert len(submitted) >= int(jobs.group(1)) - local > 0
    assert len(set(submitted)) == len(submitted)
    for rule in ("train", "train_variant", "model_eval_variant", "generate_shard"):
        assert re.search(rf"^rule {rule}:", log, re.M), f"{rule} did not run through SLURM"
    for t in targets:
        assert (work / t).stat().st_size > 0

    again = snakemake(["--profile", str(profile), "-n", *targets], work, config=TEST_CONFIG, timeout=600)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert "SLURM jobid" not in again.stdout + again.stderr
