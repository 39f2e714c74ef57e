"""Baseline policies: the random heuristic of Wang et al. (2021) and the uniform-random policy.

Both act on a batch of episodes of :class:`~alchemy_mbrl.env.alchemy.AlchemyEnv` and are
vectorised (no Python loop over episodes). The random heuristic follows SPEC §8
(``RandomActionBot`` with ``threshold_for_leaving = 2``, 40-action variant): it sees the
true latent state (stone values and which slots are present) but not the chemistry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from alchemy_mbrl import rng
from alchemy_mbrl.env.alchemy import NUM_ACTIONS, NUM_TRIALS, AlchemyEnv, State, TrialItems
from alchemy_mbrl.env.chemistry import (
    GRAPH_PROBS,
    MAX_VERTEX,
    NUM_POTION_MAPS,
    NUM_STONE_MAPS,
    VERTEX_VALUE,
    Chemistry,
)

POLICIES = ("random-heuristic", "uniform")


def _nth_true(mask: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Column index of the n-th (0-based) True of each row of ``mask``."""
    return (np.cumsum(mask, axis=1) <= n[:, None]).sum(axis=1)


def random_heuristic_actions(state: State, u: np.ndarray) -> np.ndarray:
    """One action per episode of the random-heuristic bot (SPEC §8), given the true states.

    ``u`` is ``[B, 2]`` uniforms in [0, 1) (the bot's two random choices). While some present
    stone is below the maximum value and some potion is present, apply a uniformly chosen
    such potion to a uniformly chosen such stone (mapped to the lowest present slot holding
    an identical item). Otherwise cauldron the lowest-index present stone of positive
    value, one per step, then no-op until the trial ends. (Once the potion phase ends it
    cannot restart within a trial, so this per-step rule equals the bot's end-of-trial
    macro-action.)
    """
    b = len(state)
    stones = state.stones.astype(np.int64)
    stone_present = ~state.stone_used
    potion_present = ~state.potion_used
    improvable = stone_present & (stones != MAX_VERTEX)
    n_e = improvable.sum(axis=1)
    n_p = potion_present.sum(axis=1)
    experiment = (n_e > 0) & (n_p > 0)

    rows = np.arange(b)
    pick_stone = np.minimum(_nth_true(improvable, (u[:, 0] * n_e).astype(np.int64)), 2)
    pick_potion = np.minimum(_nth_true(potion_present, (u[:, 1] * n_p).astype(np.int64)), 11)
    # Lowest-index present slot holding the same item as the chosen one.
    same_stone = stone_present & (stones == stones[rows, pick_stone][:, None])
    same_potion = potion_present & (state.potions == state.potions[rows, pick_potion][:, None])
    potion_action = 2 + 13 * np.argmax(same_stone, axis=1) + np.argmax(same_potion, axis=1)

    positive = stone_present & (VERTEX_VALUE[stones] > 0)
    cauldron_action = 1 + 13 * np.argmax(positive, axis=1)
    return np.where(experiment, potion_action, np.where(positive.any(axis=1), cauldron_action, 0))


def uniform_actions(state: State, u: np.ndarray) -> np.ndarray:
    """Uniform-random actions over 0..39 (from the first column of ``u``)."""
    return np.minimum((u[:, 0] * NUM_ACTIONS).astype(np.int64), NUM_ACTIONS - 1)


@dataclass
class BaselineResult:
    returns: np.ndarray  # [E] float64 episode returns
    episodes: np.ndarray  # [E] the index of each episode (its seed together with the global seed)
    seconds: np.ndarray  # [E] wall time per episode (batch time / batch size)


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
    stones = rng.integers(rng.fold_in(keys, _ITEM_STONES), 8, (NUM_TRIALS, 3))
    potions = rng.integers(rng.fold_in(keys, _ITEM_POTIONS), 6, (NUM_TRIALS, 12))
    return Chemistry.from_indices(m, i, g), TrialItems(stones, potions), rng.fold_in(keys, _POLICY)


def run_baseline(
    policy: str, episodes: int, seed: int, batch_size: int = 4096, progress: bool = True, first_episode: int = 0
) -> BaselineResult:
    """Play ``episodes`` episodes of a baseline policy; return per-episode returns.

    Episodes are numbered ``first_episode ..``; each one depends only on ``(seed, episode)``
    (its chemistry, items and the policy's random choices), not on the batch size.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if batch_size < 1:
        raise ValueError(f"--batch must be >= 1, got {batch_size}")
    act = random_heuristic_actions if policy == "random-heuristic" else uniform_actions
    returns = np.zeros(episodes)
    seconds = np.zeros(episodes)
    ids = np.arange(first_episode, first_episode + episodes)
    bar = tqdm(total=episodes, unit="episode", desc=policy, disable=not progress)
    for lo in range(0, episodes, batch_size):
        hi = min(episodes, lo + batch_size)
        t0 = time.perf_counter()
        chem, items, policy_keys = episode_setup(seed, ids[lo:hi])
        env = AlchemyEnv(hi - lo)
        ts = env.reset(chem, items)
        total = np.zeros(hi - lo)
        while not ts.last():
            u = rng.uniform(rng.fold_in(policy_keys, env.t), (2,))
            ts = env.step(act(env.state, u))
            total += ts.reward
        returns[lo:hi] = total
        seconds[lo:hi] = (time.perf_counter() - t0) / (hi - lo)
        bar.update(hi - lo)
    bar.close()
    return BaselineResult(returns, ids, seconds)


def mean_sem(x: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error of the mean (sample s.d. / sqrt(n)), and n."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    sem = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(x.mean()), sem, n


def format_mean_sem(x: np.ndarray, unit: str = "") -> str:
    """``'146.30 ± 0.35 (n = 20000)'`` with an optional unit after the numbers."""
    m, s, n = mean_sem(x)
    u = f" {unit}" if unit else ""
    return f"{m:.2f} ± {s:.2f}{u} (n = {n})"
