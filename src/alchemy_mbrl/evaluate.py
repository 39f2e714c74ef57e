"""Play real episodes with the tree-search planner and write per-episode returns (docs/formats.md).

Episode ``i`` of an evaluation with global seed ``S`` (the CSV's ``seed`` column) is fully
determined by ``(S, i)``: its chemistry and trial items come from
:func:`alchemy_mbrl.env.baselines.episode_setup`, the same episodes the baselines play for
that seed (so planner and baseline scores are paired), and the planner's random choices at
real step t use ``rng.fold_in(rng.fold_in(policy_key_i, PLANNER_STREAM), t)``. Episodes are played B
at a time in lockstep (one batched search per real step), and nothing depends on which
episodes share a batch, so ``--chunk i/n`` runs can be merged into exactly the result of one
unchunked run (for simulators whose outputs do not depend on the batch composition: the
oracle does not; for the learned model, floating-point results of batched GPU kernels may).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alchemy_mbrl import rng
from alchemy_mbrl.data.codec import encode_reward
from alchemy_mbrl.env.alchemy import EPISODE_STEPS, OBS_DIM, AlchemyEnv
from alchemy_mbrl.env.baselines import episode_setup
from alchemy_mbrl.planner.params import PlannerParams
from alchemy_mbrl.planner.tree_search import TreeSearch
from alchemy_mbrl.simulators.base import RootContext, Simulator

#: Columns of the per-episode returns CSV (docs/formats.md).
RETURN_COLUMNS = ["episode", "seed", "return", "policy", "simulator", "budget", "seconds"]

#: Stream tag of the planner's randomness inside an episode key.
PLANNER_STREAM = 1


def parse_chunk(spec: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n): chunk i of n. Raises ``ValueError`` with a clear message."""
    parts = str(spec).split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"bad chunk {spec!r}: expected i/n with integers 0 <= i < n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"bad chunk {spec!r}: expected i/n with 0 <= i < n (chunks are numbered from 0)")
    return i, n


def chunk_episodes(episodes: int, chunk: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Episode indices of chunk ``(i, n)`` of ``0..episodes-1``: contiguous, disjoint, covering all."""
    i, n = chunk
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    return np.arange(i * episodes // n, (i + 1) * episodes // n, dtype=np.int64)


@dataclass
class EpisodeBatchResult:
    """Returns ``[n]`` (float64) and actions ``[n, 200]`` of a batch of played episodes."""

    returns: np.ndarray
    actions: np.ndarray
    seconds: float


def play_planner_episodes(
    search: TreeSearch, seed: int, episodes: np.ndarray, progress: object | None = None
) -> EpisodeBatchResult:
    """Play episodes ``episodes`` (one lockstep batch) with ``search`` planning every real step.

    ``progress`` is an optional tqdm bar, advanced once per real step.
    """
    start = time.perf_counter()
    chemistry, items, policy_keys = episode_setup(seed, episodes)
    planner_keys = rng.fold_in(policy_keys, PLANNER_STREAM)
    bsz = len(policy_keys)
    env = AlchemyEnv(bsz, seed=0)
    ts = env.reset(chemistry, items)
    obs = np.zeros((bsz, EPISODE_STEPS + 1, OBS_DIM), dtype=np.uint8)
    actions = np.zeros((bsz, EPISODE_STEPS), dtype=np.int64)
    rcodes = np.zeros((bsz, EPISODE_STEPS), dtype=np.uint8)
    returns = np.zeros(bsz, dtype=np.float64)
    obs[:, 0] = ts.observation_codes
    for t in range(EPISODE_STEPS):
        context = RootContext(
            t=t,
            obs_codes=obs[:, : t + 1],
            actions=actions[:, :t],
            reward_codes=rcodes[:, :t],
            chemistry=chemistry,
            state=env.state.copy(),
        )
        result = search.run(context, rng.fold_in(planner_keys, t))
        actions[:, t] = result.actions
        ts = env.step(result.actions)
        obs[:, t + 1] = ts.observation_codes
        rcodes[:, t] = encode_reward(ts.reward)
        returns += ts.reward
        if progress is not None:
            progress.update(1)  # type: ignore[attr-defined]
    return EpisodeBatchResult(returns, actions, time.perf_counter() - start)


def evaluate_planner(
    simulator: Simulator,
    budget: int,
    episodes: int,
    seed: int = 0,
    chunk: tuple[int, int] = (0, 1),
    params: PlannerParams | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-episode returns (columns :data:`RETURN_COLUMNS`) of the planner on chunk ``chunk``."""
    if int(budget) != budget or budget < 1:
        raise ValueError(f"--budget must be an integer >= 1 (expansions per real step), got {budget}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"--batch must be an integer >= 1, got {batch_size}")
    if int(episodes) != episodes or episodes < 1:
        raise ValueError(f"--episodes must be an integer >= 1, got {episodes}")
    indices = chunk_episodes(int(episodes), chunk)
    search = TreeSearch(simulator, int(budget), params or PlannerParams())
    batches = [indices[j : j + batch_size] for j in range(0, len(indices), batch_size)]
    rows: list[dict] = []
    bar = None
    if progress and len(indices):
        from tqdm import tqdm

        bar = tqdm(total=len(batches) * EPISODE_STEPS, unit="step", desc=f"{simulator.name} budget={budget}")
    try:
        for batch in batches:
            res = play_planner_episodes(search, seed, batch, bar)
            for e, ret in zip(batch, res.returns):
                rows.append(
                    {
                        "episode": int(e),
                        "seed": int(seed),
                        "return": float(ret),
                        "policy": "planner",
                        "simulator": simulator.name,
                        "budget": int(budget),
                        "seconds": res.seconds / len(batch),
                    }
                )
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows, columns=RETURN_COLUMNS)


def write_returns(df: pd.DataFrame, out: str | Path) -> None:
    """Write a returns table as CSV (``seed`` as an unsigned 64-bit integer, exact floats)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    df.to_csv(tmp, index=False, float_format="%.17g")
    os.replace(tmp, path)  # never a partial file under the final name, even if interrupted


def read_returns(path: str | Path) -> pd.DataFrame:
    """Read a returns CSV written by :func:`write_returns`, checking its columns."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such returns file")
    df = pd.read_csv(p, dtype={"seed": "uint64", "simulator": "string", "policy": "string"}, keep_default_na=False)
    missing = [c for c in RETURN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: not a returns file, missing column(s) {missing}")
    return df


def summarise(returns: np.ndarray) -> dict:
    """``mean``, ``sem`` (standard error of the mean), ``n``, ``std`` (ddof=1) of per-episode returns."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(r.mean()), "sem": std / math.sqrt(n) if n > 1 else 0.0, "n": int(n), "std": std,
            "unit": "return per episode"}


def merge_returns(paths: list[str | Path], out: str | Path, summary: str | Path | None = None) -> dict:
    """Concatenate chunk CSVs (sorted by episode), check episodes ``0..n-1`` appear once, summarise.

    Returns the summary dict (also written to ``summary`` as JSON when given).
    """
    if not paths:
        raise ValueError("merge-returns needs at least one returns CSV")
    frames = [read_returns(p) for p in paths]
    df = pd.concat(frames, ignore_index=True).sort_values("episode", kind="stable").reset_index(drop=True)
    dup = df["episode"][df["episode"].duplicated()].unique()
    if len(dup):
        raise ValueError(f"episode(s) {dup[:10].tolist()} appear in more than one row: overlapping chunks?")
    ep = df["episode"].to_numpy()
    expected = np.arange(len(ep))
    if not np.array_equal(ep, expected):
        missing = np.setdiff1d(np.arange(ep.max() + 1 if len(ep) else 0), ep)
        raise ValueError(f"episodes must be 0..n-1 with none missing; missing {missing[:10].tolist()}"
                         f"{' ...' if len(missing) > 10 else ''}")
    meta: dict = {}
    for col in ("policy", "simulator", "budget"):
        values = df[col].astype(str).unique().tolist()
        if len(values) > 1:
            raise ValueError(f"cannot merge returns of different {col}s: {values}")
        v = values[0] if values else ""
        meta[col] = int(v) if col == "budget" and v not in ("", "nan") else v
    write_returns(df, out)
    result = {**summarise(df["return"].to_numpy()), **meta}
    if summary is not None:
        sp = Path(summary)
        sp.parent.mkdir(parents=True, exist_ok=True)
        tmp = sp.with_name(f"{sp.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, sp)
    return result


def format_summary(s: dict) -> str:
    """``mean ± standard error (n)``."""
    return f"{s['mean']:.1f} ± {s['sem']:.1f} (n={s['n']})"
