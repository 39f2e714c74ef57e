"""The Bayes-optimal entropy floor of Table 2 on validation data (``alchemy-mbrl bayes-entropy``).

The exact Bayesian model knows the prior over chemistries and the dynamics, so no world model
trained on the same data can have a lower expected cross-entropy. :func:`bayes_entropy` reports
that floor with the same split as ``model-eval``: transitions into a trial's first observation
(t+1 in {20, ..., 180}) vs the rest (the "chemistry part"), both normalised by the total number
of transitions (the record of :func:`alchemy_mbrl.stats.entropy_record`; ``docs/formats.md``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from alchemy_mbrl.bayes.filter import episode_factorised_nats, episode_log_probs
from alchemy_mbrl.data.shards import open_shard, read_manifest
from alchemy_mbrl.env import codec
from alchemy_mbrl.env.constants import TRIAL_START_TARGETS
from alchemy_mbrl.stats import entropy_record


def bayes_entropy(
    manifest: str | Path,
    max_episodes: int | None = None,
    batch_episodes: int = 1000,
    progress: bool = True,
    per_dimension: bool = False,
) -> dict[str, Any]:
    """Score the manifest's validation episodes; return the ``bayes-entropy`` JSON record.

    With ``per_dimension``, the record also holds ``per_dimension_nats_per_step``: 40 numbers
    (reward, then observation dimensions 0..38) from the factorisation p(r) prod_i p(o_i | r, o_<i),
    which sum to ``entropy_nats_per_step``.
    """
    if max_episodes is not None and max_episodes < 1:
        raise ValueError(f"--max-episodes must be >= 1, got {max_episodes}")
    if batch_episodes < 1:
        raise ValueError(f"--batch-episodes must be >= 1, got {batch_episodes}")
    entries = [e for e in read_manifest(manifest) if e.split == "validation"]
    paths = [e.path for e in entries]
    if not paths:
        raise ValueError(f"{manifest}: the manifest lists no 'validation' shard")
    totals: list[np.ndarray] = []
    dims: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    n_done = 0
    limit = max_episodes
    available = sum(e.episodes for e in entries)
    with tqdm(total=available if limit is None else min(limit, available), unit="episode", desc="bayes-entropy", disable=not progress) as bar:
        for path in paths:
            if limit is not None and n_done >= limit:
                break
            with open_shard(path) as shard:
                for lo in range(0, shard.episodes, batch_episodes):
                    if limit is not None and n_done >= limit:
                        break
                    hi = min(shard.episodes, lo + batch_episodes)
                    if limit is not None:
                        hi = min(hi, lo + limit - n_done)
                    d = shard.read(lo, hi, keys=("obs_codes", "actions", "rewards"))
                    logp = episode_log_probs(d["obs_codes"], d["actions"].astype(np.int64), codec.encode_reward(d["rewards"]))
                    bad = ~np.isfinite(logp)
                    if bad.any():
                        e, t = np.argwhere(bad)[0]
                        raise ValueError(
                            f"{path}: episode {lo + e}, step {t + 1} is impossible under every chemistry "
                            "(not symbolic Alchemy data of this level?)"
                        )
                    if per_dimension:
                        dims.append(
                            episode_factorised_nats(d["obs_codes"], d["actions"].astype(np.int64), codec.encode_reward(d["rewards"]))
                        )
                    nats = -logp
                    totals.append(nats.sum(1))
                    starts.append(nats[:, TRIAL_START_TARGETS].sum(1))
                    n_done += hi - lo
                    bar.update(hi - lo)
    steps = TRIAL_START_TARGETS.size
    res = entropy_record("bayes", np.concatenate(totals), np.concatenate(starts), steps)
    n_ep = res["n_episodes"]
    if per_dimension:
        per_dim = np.concatenate(dims).sum(0) / (n_ep * steps)
        if not math.isclose(per_dim.sum(), res["entropy_nats_per_step"], rel_tol=1e-9, abs_tol=1e-9):
            raise RuntimeError(f"factorised entropies sum to {per_dim.sum()}, the joint is {res['entropy_nats_per_step']}")
        res["per_dimension_nats_per_step"] = [float(x) for x in per_dim]
    return res
