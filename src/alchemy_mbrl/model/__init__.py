"""The Transformer world model (Pinon et al. 2022, Section 2.3), its ablations, training and evaluation.

Public API (torch is imported on first use of a torch-backed name)::

    from alchemy_mbrl.model import load_model, WorldModel, KVCache, GRUState, Samples, episode_inputs
    model = load_model("results/models/original")          # eval mode
    feats, kv = model.encode(obs, prev_reward, actions)      # features [B, n, D], K/V of the n tokens
    samples = model.sample_next(feats[:, -1], uniforms)      # K outcomes per row, by inverse CDF
"""

from __future__ import annotations

from typing import Any

from alchemy_mbrl.model.config import ARCHITECTURES, ModelConfig, TrainConfig, resolve_config

_LAZY = {
    "WorldModel": "alchemy_mbrl.model.world_model",
    "KVCache": "alchemy_mbrl.model.world_model",
    "GRUState": "alchemy_mbrl.model.world_model",
    "Samples": "alchemy_mbrl.model.world_model",
    "START_REWARD_CODE": "alchemy_mbrl.model.world_model",
    "episode_inputs": "alchemy_mbrl.model.world_model",
    "build_model": "alchemy_mbrl.model.world_model",
    "train": "alchemy_mbrl.model.train",
    "load_model": "alchemy_mbrl.model.checkpoint",
    "evaluate_model": "alchemy_mbrl.model.evaluate",
    "TRIAL_START_FLOOR_NATS": "alchemy_mbrl.env.constants",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alchemy_mbrl.model' has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "ModelConfig", "TrainConfig", "resolve_config", *_LAZY]
