"""Shared helpers for the world-model tests: tiny configs and a small on-disk dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import load_shard, write_manifest, write_shard
from alchemy_mbrl.model.config import resolve_config
from alchemy_mbrl.model.world_model import WorldModel

TINY = dict(d_model=32, d_ff=32, mlp_hidden=32, obs_context=32, n_layers=2, gru_backbone_hidden=32, gru_backbone_layers=2)
ARCHS = ("original", "gru_backbone", "no_gru_head", "no_final_linear")


def tiny_model(arch: str = "original", seed: int = 0, **kw: object) -> WorldModel:
    cfg, _ = resolve_config(arch, {**TINY, **kw})
    torch.manual_seed(seed)
    return WorldModel(cfg).eval()


def make_dataset(root: Path, train_episodes: int = 64, val_episodes: int = 48, seed: int = 3) -> Path:
    a = write_shard(root / "shard-000.h5", shard=0, num_shards=2, episodes=train_episodes, seed=seed, progress=False)
    b = write_shard(root / "shard-001.h5", shard=1, num_shards=2, episodes=val_episodes, seed=seed, progress=False)
    manifest = root / "manifest.json"
    write_manifest(manifest, [a, b], validation=1)
    return manifest


def episodes_tensors(shard: Path, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_shard(shard, keys=("obs_codes", "actions", "rewards"))
    return (torch.from_numpy(d["obs_codes"][:n]), torch.from_numpy(d["actions"][:n]),
            torch.from_numpy(codec.encode_reward(d["rewards"][:n])))


def random_codes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.random((*shape, codec.OBS_DIM)) * codec.NUM_CATEGORIES).astype(np.uint8)
