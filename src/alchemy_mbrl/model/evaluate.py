"""Validation entropy of a world model and its split into trial-start and chemistry parts (Table 2).

The entropy loss is the mean over held-out transitions of the summed cross-entropy of the reward and
the 39 observation dimensions (nats per step). Transitions whose target obs_{t+1} is a trial's first
observation (t+1 in {20, ..., 180}; new stones and potions are drawn) form the *trial-start part*; the
rest is the *chemistry part* (the uncertainty due to the unknown chemistry; paper: 0.066 for the
original model, 0.11 with the GRU backbone). Both parts are normalised by the TOTAL number of
transitions, so they add up to the entropy.

Under the uniform data policy the items of a new trial are independent of the past: 3 stones uniform
over 8 vertices and 12 potions uniform over 6 colours. Even a model that knows the chemistry cannot
predict them, so the trial-start part is at least
:data:`~alchemy_mbrl.env.constants.TRIAL_START_FLOOR_NATS` = 9 x (3 ln 8 + 12 ln 6) / 200 ~ 1.248 nats per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from alchemy_mbrl.env.constants import EPISODE_STEPS, TRIAL_START_FLOOR_NATS, TRIAL_START_TARGETS
from alchemy_mbrl.model.data import EpisodeArrays, load_split
from alchemy_mbrl.model.train import autocast_dtype, to_device
from alchemy_mbrl.stats import EPISODE_ENTROPY_COLUMNS, entropy_record
from alchemy_mbrl.model.world_model import WorldModel

@torch.no_grad()
def per_episode_losses(model: WorldModel, data: EpisodeArrays, batch_episodes: int = 50,
                       device: torch.device | None = None, amp: bool | str = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode sums of the transition cross-entropy: ``(total [N], trial_start [N])`` in nats (float64).

    Float32 by default: bf16 logits would bias a 0.07-nat chemistry part; ``amp=True`` trades that for speed
    (``amp`` as in :func:`~alchemy_mbrl.model.train.autocast_dtype`: ``"bf16"`` autocasts on CPU too).
    """
    device = device or next(model.parameters()).device
    amp_dtype = autocast_dtype(device, amp)
    model.eval()
    mask = torch.tensor(TRIAL_START_TARGETS, device=device)
    totals, starts = [], []
    for lo in range(0, data.episodes, batch_episodes):
        o, a, r = to_device(data.take(slice(lo, lo + batch_episodes)), device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            rn, on = model.token_losses(o, a, r)
        per_t = (rn + on.sum(-1)).double()  # [b, 200]
        totals.append(per_t.sum(1).cpu().numpy())
        starts.append(per_t[:, mask].sum(1).cpu().numpy())
    return np.concatenate(totals), np.concatenate(starts)


def evaluate_model(model: WorldModel, manifest: str | Path, max_episodes: int | None = None,
                   batch_episodes: int = 50, name: str | None = None, amp: bool | str = False,
                   episodes_out: str | Path | None = None) -> dict[str, Any]:
    """The ``model-eval`` JSON record (see ``docs/formats.md``) on the manifest's validation shards; with
    ``episodes_out``, also each episode's entropy (CSV, :data:`EPISODE_ENTROPY_COLUMNS`), which Table 2 pairs
    between models scored on the same validation episodes."""
    data = load_split(manifest, "validation", max_episodes)
    total, start = per_episode_losses(model, data, batch_episodes, amp=amp)
    if episodes_out is not None:
        from alchemy_mbrl.io import write_csv

        write_csv(episodes_out, EPISODE_ENTROPY_COLUMNS,
                  ({"episode": i, "entropy_nats_per_step": float(t / EPISODE_STEPS),
                    "trial_start_nats_per_step": float(s0 / EPISODE_STEPS)} for i, (t, s0) in enumerate(zip(total, start))))
    return entropy_record(name or model.config.arch, total, start, EPISODE_STEPS, TRIAL_START_FLOOR_NATS)


def evaluate_model_dir(model_dir: str | Path, manifest: str | Path, max_episodes: int | None = None,
                       batch_episodes: int = 50, device: str | None = None, amp: bool | str = False,
                       episodes_out: str | Path | None = None) -> dict[str, Any]:
    """``alchemy-mbrl model-eval``: load a trained model directory and score it (:func:`evaluate_model`)."""
    from alchemy_mbrl.model.checkpoint import load_model

    if not Path(manifest).exists():
        raise FileNotFoundError(f"{manifest}: manifest does not exist")
    if max_episodes is not None and max_episodes < 2:
        raise ValueError("--max-episodes must be >= 2 (the standard error needs two episodes)")
    if batch_episodes < 1:
        raise ValueError(f"--batch-episodes must be >= 1, got {batch_episodes}")
    return evaluate_model(load_model(model_dir, device), manifest, max_episodes, batch_episodes, amp=amp,
                          episodes_out=episodes_out)
