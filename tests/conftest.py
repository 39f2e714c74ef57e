"""Shared fixtures: the golden traces (when present) and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("ALCHEMY_GOLDEN_DIR", REPO.parent / "shared" / "alchemy" / "golden"))
TRACES = Path(os.environ.get("ALCHEMY_TRACES", GOLDEN_DIR / "traces.npz"))
CHEMISTRY_FREQUENCIES = GOLDEN_DIR / "chemistry_frequencies.json"


@pytest.fixture(scope="session")
def golden_traces_path() -> Path:
    if not TRACES.exists():
        pytest.skip(f"reference traces not found at {TRACES} (set ALCHEMY_TRACES)")
    return TRACES


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of 3 shards x 64 uniform-random episodes (last shard = validation)."""
    from alchemy_mbrl.data.shards import write_manifest, write_shard

    d = tmp_path_factory.mktemp("data")
    shards = [write_shard(d / f"shard-{i}.h5", shard=i, num_shards=3, episodes=64, seed=123, progress=False) for i in range(3)]
    write_manifest(d / "manifest.json", shards, validation=1)
    return d / "manifest.json"


@pytest.fixture
def torch_one_thread() -> object:
    """One intra-op torch thread: the suite runs on small shared machines, where more oversubscribe."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
