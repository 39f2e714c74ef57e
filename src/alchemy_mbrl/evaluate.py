"""Play real episodes with any policy and write per-episode returns (docs/formats.md).

One play loop for every policy: the tree-search planner over a simulator, and the baselines
(random heuristic, uniform random). Episode ``i`` of an evaluation with global seed ``S`` (the
CSV's ``seed`` column) is fully determined by ``(S, i)``: its chemistry and trial items come from
:func:`episode_setup`, so every policy plays the same episodes for a seed (scores are paired),
and the policy's random choices at real step t derive from the episode's policy key alone
(the planner: ``fold_in(fold_in(key, PLANNER_STREAM), t)``; the baselines: ``fold_in(key, t)``).
Episodes are played B at a time in lockstep and nothing depends on which episodes share a
batch, so ``--chunk i/n`` runs merge into exactly the result of one unchunked run (for
simulators whose outputs do not depend on the batch composition: the oracle and the exact
Bayesian model do not; for the learned model, floating-point results of batched GPU kernels may).

Episodes may instead come from a file (``--episodes-file``; :class:`EpisodeSource`): episode ``i``
is then row ``i`` of the file (its chemistry and trial items, SPEC §11 arrays,
:mod:`alchemy_mbrl.env.episodes`), and only the policy's key still derives from ``(S, i)``, by the
same path, so a file written from seed S (``alchemy-mbrl episodes``) plays exactly as seed S does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from alchemy_mbrl import rng, stats
from alchemy_mbrl.env.alchemy import AlchemyEnv, TrialItems
from alchemy_mbrl.env.baselines import BASELINE_POLICIES
from alchemy_mbrl.env.chemistry import GRAPH_PROBS, NUM_POTION_MAPS, NUM_STONE_MAPS, Chemistry
from alchemy_mbrl.env.codec import encode_reward
from alchemy_mbrl.env.constants import EPISODE_STEPS, NUM_POTIONS, NUM_STONES, NUM_TRIALS, OBS_DIM
from alchemy_mbrl.env.episodes import load_episodes, save_episodes
from alchemy_mbrl.ideal_observer.names import AGENTS, IDEAL_OBSERVER, SEARCH_ORACLE
from alchemy_mbrl.io import atomic_write, write_json
from alchemy_mbrl.planner.params import PlannerParams
from alchemy_mbrl.planner.simulator import RootContext, Simulator
from alchemy_mbrl.planner.tree_search import TreeSearch
from alchemy_mbrl.stats import returns_summary

#: Columns of the per-episode returns CSV (docs/formats.md).
RETURN_COLUMNS = ["episode", "seed", "return", "policy", "simulator", "budget", "seconds"]

#: The policies ``evaluate --policy`` plays.
POLICIES: tuple[str, ...] = ("planner", *BASELINE_POLICIES, *AGENTS)
#: Episodes played in lockstep by default: planner searches are memory-heavy, baselines are not;
#: the ideal observer searches one episode at a time (its per-episode time is then measured).
DEFAULT_BATCH: dict[str, int] = {"planner": 64, **{p: 4096 for p in BASELINE_POLICIES}, IDEAL_OBSERVER: 1,
                                 SEARCH_ORACLE: 64}

#: Stream tag of the planner's randomness inside an episode's policy key.
PLANNER_STREAM = 1

# Salts that separate the independent random streams of one episode.
_CHEM_M, _CHEM_I, _CHEM_G, _ITEM_STONES, _ITEM_POTIONS, _POLICY = range(1, 7)


def episode_setup(seed: int, episodes: np.ndarray) -> tuple[Chemistry, TrialItems, np.ndarray]:
    """Chemistry, trial items and policy key of each episode index, from ``(seed, episode)`` alone.

    Episode i of an evaluation with global seed S is the same whatever batch or chunk it is
    played in: everything random about it derives from ``rng.episode_keys(S, i)``
    (counter-based, vectorised). Returns ``(chemistry, items, policy_keys [E] uint64)``.
    """
    keys = rng.episode_keys(seed, np.asarray(episodes, dtype=np.int64))
    m = rng.integers(rng.fold_in(keys, _CHEM_M), NUM_POTION_MAPS)
    i = rng.integers(rng.fold_in(keys, _CHEM_I), NUM_STONE_MAPS)
    g = rng.categorical(rng.fold_in(keys, _CHEM_G), np.broadcast_to(GRAPH_PROBS, (len(keys), len(GRAPH_PROBS))))
    stones = rng.integers(rng.fold_in(keys, _ITEM_STONES), 8, (NUM_TRIALS, NUM_STONES))
    potions = rng.integers(rng.fold_in(keys, _ITEM_POTIONS), 6, (NUM_TRIALS, NUM_POTIONS))
    return Chemistry.from_indices(m, i, g), TrialItems(stones, potions), _policy_keys(keys)


def _policy_keys(episode_keys: np.ndarray) -> np.ndarray:
    """The policy's keys ``[E]`` of episodes with keys ``rng.episode_keys(seed, i)``."""
    return rng.fold_in(episode_keys, _POLICY)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < 2**64:
        raise ValueError(f"--seed must be an integer in 0..2^64-1, got {seed}")
    return int(seed)


class EpisodeSource:
    """Where an evaluation's episodes come from: the seed alone, or the rows of an episodes file.

    Episode i's policy key always derives from ``(seed, i)`` as in :func:`episode_setup`. Its
    chemistry and trial items derive from ``(seed, i)`` too, or, with ``episodes_file``, are row i
    of that file (read and checked here, before any work: :func:`alchemy_mbrl.env.episodes.load_episodes`).
    """

    def __init__(self, seed: int = 0, episodes_file: str | Path | None = None) -> None:
        self.seed = _check_seed(seed)
        self.path = None if episodes_file is None else Path(episodes_file)
        self.chemistry: Chemistry | None = None
        self.items: TrialItems | None = None
        if self.path is not None:
            self.chemistry, self.items = load_episodes(self.path)

    @property
    def rows(self) -> int | None:
        """Episodes in the file; ``None`` for a seed (any number of episodes)."""
        return None if self.chemistry is None else len(self.chemistry)

    def count(self, episodes: int | None) -> int:
        """The number of episodes to evaluate: ``episodes`` (checked), or every row of the file when ``None``."""
        if episodes is None:
            if self.rows is None:
                raise ValueError("--episodes is required (or --episodes-file FILE to play all of its episodes)")
            return self.rows
        n = _check_count("--episodes", episodes)
        if self.rows is not None and n > self.rows:
            raise ValueError(f"--episodes {n} is more than the {self.rows} episodes of {self.path}")
        return n

    def setup(self, episodes: np.ndarray) -> tuple[Chemistry, TrialItems, np.ndarray]:
        """Chemistry, trial items and policy keys ``[E]`` of episode indices ``episodes``."""
        idx = np.asarray(episodes, dtype=np.int64)
        if self.chemistry is None or self.items is None:
            return episode_setup(self.seed, idx)
        rows = len(self.chemistry)
        if idx.size and (idx.min() < 0 or idx.max() >= rows):
            raise ValueError(f"episode indices must be in 0..{rows - 1} (the rows of {self.path})")
        items = TrialItems(self.items.stones[idx], self.items.potions[idx])
        return self.chemistry[idx], items, _policy_keys(rng.episode_keys(self.seed, idx))


def write_seed_episodes(out: str | Path, episodes: int, seed: int = 0) -> Path:
    """Write the chemistry and items of episodes ``0..episodes-1`` of ``seed`` as an episodes file.

    ``evaluate --episodes-file out --seed seed`` then plays exactly what ``evaluate --seed seed`` plays.
    """
    n = _check_count("--episodes", episodes)
    chemistry, items, _ = episode_setup(_check_seed(seed), np.arange(n, dtype=np.int64))
    return save_episodes(out, chemistry, items)


class Policy(Protocol):
    """What the play loop needs of a policy (B episodes in lockstep).

    ``name``, ``simulator`` and ``budget`` fill the CSV's columns (``simulator`` is ``""`` and
    ``budget`` ``None`` for policies without a model or a search).
    """

    name: str
    simulator: str
    budget: int | None

    def act(self, context: RootContext, keys: np.ndarray) -> np.ndarray:
        """Actions ``[B]`` (int64, 0..39) at real step ``context.t``.

        ``context`` holds the real history and the true chemistry and state (a policy uses what
        it is allowed to know); ``keys [B]`` are the episodes' policy keys, the same at every
        step (fold in ``context.t`` for per-step randomness). Called for t = 0..199 in order;
        t = 0 starts a new batch.
        """
        ...


class PlannerPolicy:
    """Algorithm 1 over ``simulator`` with ``budget`` expansions per real step."""

    name = "planner"

    def __init__(self, simulator: Simulator, budget: int, params: PlannerParams | None = None) -> None:
        self.search = TreeSearch(simulator, int(budget), params or PlannerParams())
        self.simulator = simulator.name
        self.budget: int | None = int(budget)

    def check_batch(self, batch_size: int) -> None:
        """Refuse (``ValueError``) a batch whose search trees would not fit in memory, before any work."""
        self.search.check_memory(batch_size)

    def act(self, context: RootContext, keys: np.ndarray) -> np.ndarray:
        ctx = dataclasses.replace(context, state=None if context.state is None else context.state.copy())
        return self.search.run(ctx, rng.fold_in(rng.fold_in(keys, PLANNER_STREAM), context.t)).actions


class BaselinePolicy:
    """A model-free baseline of :mod:`alchemy_mbrl.env.baselines` (two uniforms per step)."""

    simulator = ""
    budget: int | None = None

    def __init__(self, name: str) -> None:
        if name not in BASELINE_POLICIES:
            raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINE_POLICIES)}")
        self.name = name
        self._actions = BASELINE_POLICIES[name]

    def act(self, context: RootContext, keys: np.ndarray) -> np.ndarray:
        assert context.state is not None
        return self._actions(context.state, rng.uniform(rng.fold_in(keys, context.t), (2,)))


def make_policy(
    policy: str,
    *,
    simulator: str | None = None,
    budget: int | None = None,
    params: PlannerParams | str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str | None = None,
    settings: list[str] | None = None,
) -> Policy:
    """Build a policy by name, checking that the options given belong to it (``ValueError`` otherwise).

    ``settings`` are ``KEY=VALUE`` planner parameters applied over ``params`` (``--param``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy != "planner":
        given = [flag for flag, v in (("--simulator", simulator), ("--budget", budget), ("--params", params),
                                      ("--model", model_dir), ("--param", settings or None)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --policy planner only, not {policy}")
        if policy in AGENTS:  # imported here: its tables and kernels are built on first use only
            from alchemy_mbrl.ideal_observer.agents import make_agent

            return make_agent(policy)
        return BaselinePolicy(policy)
    if simulator is None:
        raise ValueError("--policy planner needs --simulator (oracle, bayes or learned)")
    if budget is None or isinstance(budget, bool) or int(budget) != budget or budget < 1:
        raise ValueError(f"--budget must be an integer >= 1 (expansions per real step), got {budget}")
    if isinstance(params, (str, Path)):
        params = PlannerParams.from_json(params)
    if settings:
        params = (params or PlannerParams()).with_settings(settings)
    from alchemy_mbrl.simulators import make_simulator

    sim = make_simulator(simulator, model_dir=None if model_dir is None else str(model_dir), device=device)
    return PlannerPolicy(sim, int(budget), params)


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


@dataclasses.dataclass
class EpisodeBatchResult:
    """Returns ``[n]`` (float64) and actions ``[n, 200]`` of a batch of played episodes."""

    returns: np.ndarray
    actions: np.ndarray
    seconds: float


def play_episodes(policy: Policy, seed: int | EpisodeSource, episodes: np.ndarray, progress: Any | None = None,
                  steps: int = EPISODE_STEPS) -> EpisodeBatchResult:
    """Play episodes ``episodes`` (one lockstep batch) with ``policy`` acting at every real step.

    ``seed`` is the global seed, or an :class:`EpisodeSource` (e.g. episodes from a file).
    ``progress`` is an optional tqdm bar, advanced once per real step. ``steps`` < 200 stops the
    episodes early (``gpu-check`` times a few planner steps); returns then cover those steps only.
    """
    start = time.perf_counter()
    source = seed if isinstance(seed, EpisodeSource) else EpisodeSource(seed)
    chemistry, items, policy_keys = source.setup(episodes)
    bsz = len(policy_keys)
    env = AlchemyEnv(bsz, seed=0)
    ts = env.reset(chemistry, items)
    obs = np.zeros((bsz, EPISODE_STEPS + 1, OBS_DIM), dtype=np.uint8)
    actions = np.zeros((bsz, EPISODE_STEPS), dtype=np.int64)
    rcodes = np.zeros((bsz, EPISODE_STEPS), dtype=np.uint8)
    returns = np.zeros(bsz, dtype=np.float64)
    obs[:, 0] = ts.observation_codes
    for t in range(steps):
        context = RootContext(
            t=t,
            obs_codes=obs[:, : t + 1],
            actions=actions[:, :t],
            reward_codes=rcodes[:, :t],
            chemistry=chemistry,
            state=env.state,
        )
        actions[:, t] = policy.act(context, policy_keys)
        ts = env.step(actions[:, t])
        obs[:, t + 1] = ts.observation_codes
        rcodes[:, t] = encode_reward(ts.reward)
        returns += ts.reward
        if progress is not None:
            progress.update(1)
    return EpisodeBatchResult(returns, actions, time.perf_counter() - start)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def evaluate_policy(
    policy: Policy,
    episodes: int | None,
    seed: int | EpisodeSource = 0,
    chunk: tuple[int, int] = (0, 1),
    batch_size: int | None = None,
    progress: bool = True,
    episodes_file: str | Path | None = None,
) -> pd.DataFrame:
    """Per-episode returns (columns :data:`RETURN_COLUMNS`) of ``policy`` on chunk ``chunk``.

    Episodes come from ``seed`` alone, or are the rows of ``episodes_file`` (``episodes=None``: all
    of them); ``seed`` may also be an :class:`EpisodeSource` already built (then no ``episodes_file``).
    """
    if isinstance(seed, EpisodeSource):
        if episodes_file is not None:
            raise ValueError("give episodes_file or an EpisodeSource, not both")
        source = seed
    else:
        source = EpisodeSource(seed, episodes_file)
    episodes = source.count(episodes)
    batch_size = _check_count("--batch", DEFAULT_BATCH.get(policy.name, 64) if batch_size is None else batch_size)
    seed = source.seed
    indices = chunk_episodes(episodes, chunk)
    batches = [indices[j : j + batch_size] for j in range(0, len(indices), batch_size)]
    check = getattr(policy, "check_batch", None)
    if check is not None and batches:
        check(max(len(b) for b in batches))
    rows: list[dict[str, Any]] = []
    bar = None
    if progress and len(indices):
        from tqdm import tqdm

        desc = policy.name if policy.budget is None else f"{policy.simulator} budget={policy.budget}"
        bar = tqdm(total=len(batches) * EPISODE_STEPS, unit="step", desc=desc)
    try:
        for batch in batches:
            res = play_episodes(policy, source, batch, bar)
            for e, ret in zip(batch, res.returns):
                rows.append(
                    {
                        "episode": int(e),
                        "seed": int(seed),
                        "return": float(ret),
                        "policy": policy.name,
                        "simulator": policy.simulator,
                        "budget": policy.budget,
                        "seconds": res.seconds / len(batch),
                    }
                )
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows, columns=RETURN_COLUMNS)
    df["budget"] = df["budget"].astype("Int64")
    return df


def write_returns(df: pd.DataFrame, out: str | Path) -> None:
    """Write a returns table as CSV (``seed`` as an unsigned 64-bit integer), atomically.

    Floats are written by pandas' default, the shortest text that reads back as the same float
    (exact, and a merged file keeps its inputs' text: ``9.29`` stays ``9.29``, not ``9.2899999999999991``).
    """
    with atomic_write(out) as tmp:
        df.to_csv(tmp, index=False)


def read_returns(path: str | Path) -> pd.DataFrame:
    """Read a returns CSV written by :func:`write_returns`, checking its columns."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such returns file")
    from alchemy_mbrl.io import check_input

    check_input(p, "returns file", max_bytes=1 << 30)
    try:
        df = pd.read_csv(p, dtype={"seed": "uint64", "simulator": "string", "policy": "string"},
                         keep_default_na=False)
    except (ValueError, OverflowError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not a returns CSV ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in RETURN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: not a returns file, missing column(s) {missing}")
    stats.check_returns(df, p)  # numbers that cannot be true: non-finite returns, non-integer episodes
    df["episode"] = pd.to_numeric(df["episode"]).astype("int64")
    df["return"] = pd.to_numeric(df["return"]).astype("float64")
    return df


def merge_returns(paths: list[str | Path], out: str | Path, summary: str | Path | None = None) -> dict[str, Any]:
    """Concatenate chunk CSVs (sorted by episode), check episodes ``0..n-1`` appear once, summarise.

    Returns the summary dict (:func:`alchemy_mbrl.stats.returns_summary` plus ``policy``,
    ``simulator`` and ``budget``; also written to ``summary`` as JSON when given).
    """
    if not paths:
        raise ValueError("merge-returns needs at least one returns CSV")
    frames = [read_returns(p) for p in paths]
    # Chunks of one evaluation share its seed, policy, simulator and budget: refuse anything else,
    # naming the files (a merged file of two evaluations would be summarised as one).
    for col in ("seed", "policy", "simulator", "budget"):
        first: dict[str, str] = {}
        for p, f in zip(paths, frames):
            for v in f[col].astype(str).unique().tolist():
                first.setdefault(v, str(p))
        if len(first) > 1:
            shown = "; ".join(f"{v or '(empty)'} in {p}" for v, p in list(first.items())[:4])
            raise ValueError(f"cannot merge returns of different {col}s: {shown}")
    if all(f.empty for f in frames):
        raise ValueError(f"{', '.join(map(str, paths))}: no episode in any input (header only): nothing to summarise")
    df = pd.concat(frames, ignore_index=True).sort_values("episode", kind="stable").reset_index(drop=True)
    dup = df["episode"][df["episode"].duplicated()].unique()
    if len(dup):
        where = [str(p) for p, f in zip(paths, frames) if f["episode"].isin(dup[:1]).any()]
        raise ValueError(f"episode(s) {dup[:10].tolist()} appear in more than one row ({' and '.join(where) or 'one file'} "
                         f"hold episode {int(dup[0])}): overlapping chunks?")
    ep = df["episode"].to_numpy()
    expected = np.arange(len(ep))
    if not np.array_equal(ep, expected):
        missing = np.setdiff1d(np.arange(ep.max() + 1 if len(ep) else 0), ep)
        raise ValueError(f"{', '.join(map(str, paths))}: episodes must be 0..n-1 with none missing; missing "
                         f"{missing[:10].tolist()}{' ...' if len(missing) > 10 else ''}")
    meta: dict[str, Any] = {}
    for col in ("policy", "simulator", "budget"):
        values = df[col].astype(str).unique().tolist()
        if len(values) > 1:
            raise ValueError(f"cannot merge returns of different {col}s: {values}")
        v = values[0] if values else ""
        meta[col] = int(v) if col == "budget" and v not in ("", "nan", "<NA>") else v
    write_returns(df, out)
    result = {**returns_summary(df["return"].to_numpy()), **meta}
    if summary is not None:
        write_json(summary, result)
    return result
