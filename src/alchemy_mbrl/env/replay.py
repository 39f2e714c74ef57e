"""Replay recorded episodes (SPEC §11 trace format) and compare them bit for bit.

Each recorded episode is fully determined by its chemistry, the items of its 10 trials
and its 200 actions; the recorded observations, rewards, discounts and step types are
the reference's outputs. :func:`replay_traces` steps our environment through all of them
at once and reports every episode that differs, with its first divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alchemy_mbrl.env.alchemy import EPISODE_STEPS, AlchemyEnv
from alchemy_mbrl.env.episodes import FORMAT_VERSION, episodes_from_arrays

#: The trace format this replay reads (SPEC §11's ``format_version``).
TRACE_FORMAT_VERSION = FORMAT_VERSION
REQUIRED_KEYS = ("potion_perm", "potion_sign", "stone_sign", "graph_edges", "stones", "potions", "actions", "obs", "rewards", "discount", "step_type")


@dataclass
class Divergence:
    episode: int
    step: int  # t: 0 = reset observation, t >= 1 = output of step t
    quantity: str  # 'observation', 'reward', 'discount' or 'step_type'
    feature: int | None  # observation feature index, or None
    expected: float
    got: float

    def __str__(self) -> str:
        where = f", feature {self.feature}" if self.feature is not None else ""
        return f"episode {self.episode}, step {self.step}, {self.quantity}{where}: expected {self.expected!r}, got {self.got!r}"


@dataclass
class ReplayReport:
    episodes: int
    matched: int
    first_divergence: Divergence | None
    mismatched_episodes: list[int]


def load_traces(path: str | Path) -> dict[str, np.ndarray]:
    """Load a trace file into memory, checking that it has the arrays of SPEC §11."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: trace file does not exist")
    try:
        with np.load(path) as f:
            d = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz trace file: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing} (expected the format of SPEC §11)")
    version = d.get("format_version")
    if version is None or np.shape(version) != () or not np.issubdtype(np.asarray(version).dtype, np.integer) \
            or int(version) != TRACE_FORMAT_VERSION:
        raise ValueError(f"{path}: format_version is {None if version is None else np.asarray(version).tolist()!r}, "
                         f"expected {TRACE_FORMAT_VERSION} (SPEC §11)")
    if not np.issubdtype(d["actions"].dtype, np.integer):
        raise ValueError(f"{path}: 'actions' has dtype {d['actions'].dtype}, expected integers (SPEC §11: int16)")
    n = len(d["actions"])
    if d["obs"].shape != (n, EPISODE_STEPS + 1, 39) or d["actions"].shape != (n, EPISODE_STEPS):
        raise ValueError(f"{path}: obs has shape {d['obs'].shape}, actions {d['actions'].shape}; expected [N,201,39] and [N,200]")
    chem, _ = episodes_from_arrays(d, str(path))  # the chemistry and items: dtypes, shapes, ranges, graph_id
    if len(chem.graph_id) != n:
        raise ValueError(f"{path}: actions hold {n} episodes but the chemistry arrays {len(chem.graph_id)}")
    return d


def replay_traces(traces: dict[str, np.ndarray]) -> ReplayReport:
    """Replay every episode of ``traces`` and compare all outputs exactly."""
    d = traces
    n = len(d["actions"])
    chem, items = episodes_from_arrays(d, "traces")  # the one reader of SPEC §11's episode arrays
    if len(chem.graph_id) != n:
        raise ValueError(f"traces: {len(chem.graph_id)} episodes but actions for {n}")
    env = AlchemyEnv(n)
    ts = env.reset(chem, items)
    obs = np.empty((n, EPISODE_STEPS + 1, 39), dtype=np.float32)
    rewards = np.empty((n, EPISODE_STEPS), dtype=np.float32)
    discount = np.empty((n, EPISODE_STEPS), dtype=np.float32)
    step_type = np.empty((n, EPISODE_STEPS + 1), dtype=np.int8)
    obs[:, 0], step_type[:, 0] = ts.observation, ts.step_type
    for t in range(EPISODE_STEPS):
        ts = env.step(d["actions"][:, t].astype(np.int64))
        obs[:, t + 1], rewards[:, t], discount[:, t], step_type[:, t + 1] = ts.observation, ts.reward, ts.discount, ts.step_type

    # Compare bitwise (float32 views), so that -0.0 vs 0.0 or NaN would also count as differences.
    checks = [
        ("observation", obs.view(np.uint32), np.asarray(d["obs"], dtype=np.float32).view(np.uint32), obs, d["obs"], 1),
        ("reward", rewards.view(np.uint32), np.asarray(d["rewards"], dtype=np.float32).view(np.uint32), rewards, d["rewards"], 1),
        ("discount", discount.view(np.uint32), np.asarray(d["discount"], dtype=np.float32).view(np.uint32), discount, d["discount"], 1),
        ("step_type", step_type, np.asarray(d["step_type"], dtype=np.int8), step_type, d["step_type"], 0),
    ]
    bad_episode = np.zeros(n, dtype=bool)
    first: Divergence | None = None
    first_key: tuple[int, int] | None = None
    for name, got_bits, exp_bits, got, exp, step_offset in checks:
        diff = got_bits != exp_bits
        per_ep = diff.reshape(n, -1).any(axis=1)
        bad_episode |= per_ep
        if per_ep.any():
            idx = np.argwhere(diff)
            # first divergence: smallest episode, then smallest step
            order = np.lexsort((idx[:, 1], idx[:, 0]))
            e, t = int(idx[order[0], 0]), int(idx[order[0], 1])
            feature = int(idx[order[0], 2]) if diff.ndim == 3 else None
            sel = (e, t, feature) if feature is not None else (e, t)
            step = t + (1 - step_offset) if name in ("reward", "discount") else t
            key = (e, step)
            if first_key is None or key < first_key:
                first_key = key
                first = Divergence(e, step, name, feature, float(np.asarray(exp)[sel]), float(got[sel]))
    return ReplayReport(n, int((~bad_episode).sum()), first, np.flatnonzero(bad_episode).tolist())
