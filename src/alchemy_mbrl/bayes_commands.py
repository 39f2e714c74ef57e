"""``alchemy-mbrl bayes-entropy``: the Bayes-optimal entropy floor of Table 2 on validation data.

The exact Bayesian model knows the prior over chemistries and the dynamics, so no world model
trained on the same data can have a lower expected cross-entropy. This command reports that
floor, with the same split as ``model-eval``: transitions into a trial's first observation
(t+1 in {20, ..., 180}) vs the rest (the "chemistry part"), both normalised by the total
number of transitions (format: ``docs/formats.md``, "Model evaluation").
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from alchemy_mbrl.bayes import episode_factorised_nats, episode_log_probs
from alchemy_mbrl.data import codec
from alchemy_mbrl.data.shards import TRIAL_START, open_shard, read_manifest

#: ``[200]`` bool, transition t (predicting obs_{t+1}) lands on a new trial's first observation.
TRIAL_START_TARGETS: np.ndarray = TRIAL_START[1:].copy()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bayes-entropy",
        help="Bayes-optimal entropy loss (nats/step) on the validation shards (Table 2's floor)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset manifest (JSON) whose validation shards are scored")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--max-episodes", type=int, default=None, help="score only the first N validation episodes")
    p.add_argument("--batch-episodes", type=int, default=1000, help="episodes filtered together (memory ~ 10 kB each)")
    p.add_argument(
        "--per-dimension",
        action="store_true",
        help="also report the factorised split (reward, then the 39 observation dimensions); about 10x slower",
    )
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.set_defaults(func=run_bayes_entropy)


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
    total = np.concatenate(totals)
    start = np.concatenate(starts)
    n_ep = len(total)
    steps = TRIAL_START_TARGETS.size
    per_step = total / steps
    res: dict[str, Any] = {
        "model": "bayes",
        "entropy_nats_per_step": float(per_step.mean()),
        "entropy_sem": float(per_step.std(ddof=1) / math.sqrt(n_ep)) if n_ep > 1 else float("nan"),
        "trial_start_nats_per_step": float(start.sum() / (n_ep * steps)),
        "chemistry_nats_per_step": float((total - start).sum() / (n_ep * steps)),
        "n_transitions": int(n_ep * steps),
        "n_episodes": int(n_ep),
    }
    if per_dimension:
        per_dim = np.concatenate(dims).sum(0) / (n_ep * steps)
        if not math.isclose(per_dim.sum(), res["entropy_nats_per_step"], rel_tol=1e-9, abs_tol=1e-9):
            raise RuntimeError(f"factorised entropies sum to {per_dim.sum()}, the joint is {res['entropy_nats_per_step']}")
        res["per_dimension_nats_per_step"] = [float(x) for x in per_dim]
    return res


def format_result(res: dict[str, Any]) -> str:
    """One-line summary printed by the command."""
    return (
        f"entropy: {res['entropy_nats_per_step']:.4f} ± {res['entropy_sem']:.4f} nats/step ({res['n_episodes']} episodes)"
        f" | trial-start part {res['trial_start_nats_per_step']:.4f}"
        f" | chemistry part {res['chemistry_nats_per_step']:.4f}"
    )


def run_bayes_entropy(args: argparse.Namespace) -> int:
    res = bayes_entropy(
        args.data, args.max_episodes, args.batch_episodes, progress=not args.no_progress, per_dimension=args.per_dimension
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out)
    print(format_result(res))
    return 0
