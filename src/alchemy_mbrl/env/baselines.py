"""Baseline policies: the random heuristic of Wang et al. (2021) and the uniform-random policy.

Both act on a batch of episodes of :class:`~alchemy_mbrl.env.alchemy.AlchemyEnv` and are
vectorised (no Python loop over episodes). The random heuristic follows SPEC §8
(``RandomActionBot`` with ``threshold_for_leaving = 2``, 40-action variant): it sees the
true latent state (stone values and which slots are present) but not the chemistry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alchemy_mbrl.env.alchemy import NUM_ACTIONS, State
from alchemy_mbrl.env.chemistry import MAX_VERTEX, VERTEX_VALUE


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


#: The baselines by name: ``actions(state, u [B, 2]) -> [B]`` (played by :mod:`alchemy_mbrl.evaluate`).
BASELINE_POLICIES: dict[str, Callable[[State, np.ndarray], np.ndarray]] = {
    "random-heuristic": random_heuristic_actions,
    "uniform": uniform_actions,
}
