"""The search's constants and lookup tables (built once, on first use: :func:`lookup_tables`).

The constants are compile-time globals of the kernels; the tables are arrays the kernels receive
in one :class:`Tables` structure. Nothing here is computed when the module is imported.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np
from numba import njit

#: Stone code of a used (cauldroned) stone slot; a present stone is ``4 * pv + f`` (0..31).
USED_STONE = 32
STONE_RADIX = 33
COLOUR_RADIX = 13  # a colour's count is 0..12
POTION_CODES = COLOUR_RADIX**6
#: Value (reward when cauldroned) of a stone with reward-feature code f (SPEC §3).
VALUE_OF_FEATURE = np.array([-3, -1, 1, 15], dtype=np.int64)
NO_CLASS = 16
#: ``alpha`` of an exact query of :func:`~alchemy_mbrl.ideal_observer.expectimax.value` (below every U).
EXACT = -(1 << 62)
#: Statuses of a kernel whose store is full (the caller grows that store and calls again).
GROW_BELIEFS, GROW_MEMO, GROW_POOL, GROW_ENTRIES = 1, 2, 3, 4
#: Indices of the search's counters.
C_BELIEFS, C_MEMO, C_EXPANDED, C_POOL, C_ENTRIES = 0, 1, 2, 3, 4
NUM_RELABELS = 48
ACTION_SLOTS = 18  # potion actions of a state: 3 stones x 6 colours
#: Scratch words per action of a state (bound, action and entry, up to 7 outcome bounds).
SCRATCH_PER_ACTION = 9
#: Root action codes (``stone_code * 6 + colour``, stone codes 0..31): the size of a root's order.
ACTION_CODES = 32 * 6
#: Tie-break rules among actions of equal expected reward U (docs/ideal-observer.md, "Ties"):
#: ``deepmind`` (dm_alchemy's ideal observer): the smallest expected number of potion uses N (the
#: end-of-trial macro adds none), then the first in the agent's insertion order (the macro, then the
#: stones in the order they appeared in the trial, then the colours in their first slot's order);
#: ``actions`` (this package's rule before 2026-12-06): the smallest expected number of remaining
#: actions N (each cauldroned stone counts one), then the macro, then the smallest action code.
TIE_RULES = ("deepmind", "actions")
DEFAULT_TIE_RULE = "deepmind"
#: Steps the end-of-trial macro adds to N per present stone of reward feature f, under each rule.
MACRO_STEPS = {"deepmind": np.zeros(4, dtype=np.int64), "actions": np.array([0, 0, 1, 1], dtype=np.int64)}


def check_tie_rule(tie_rule: str) -> str:
    """``tie_rule`` if it is one of :data:`TIE_RULES`, else a ``ValueError`` naming them."""
    if tie_rule not in TIE_RULES:
        raise ValueError(f"unknown tie rule {tie_rule!r}; choose one of {', '.join(TIE_RULES)}")
    return tie_rule


class Tables(NamedTuple):
    """The constant lookup tables the kernels read (one argument instead of eleven)."""

    cand: np.ndarray  # [4, 7] candidate outcome classes per reward feature (bayes.posterior)
    flip: np.ndarray  # [4] perceived-axis flip of an outcome class's axis j
    pow13: np.ndarray  # [6] radix-13 weight of each colour's count
    value_of_f: np.ndarray  # [4] value of a stone per reward feature
    steps_of_f: np.ndarray  # [4] what cauldroning a stone of feature f adds to N (MACRO_STEPS of the tie rule)
    gcol: np.ndarray  # [48, 6] colour relabellings
    compose: np.ndarray  # [48, 48]
    inverse: np.ndarray  # [48]
    ub: np.ndarray  # [5, 5, 5, 13, 4] loose upper bound (_upper_bounds)
    plus: np.ndarray  # [48, 3] colour that moves towards +1 along each latent axis
    ftab: np.ndarray  # [9, 9, 9, 4, 4, 4] full-cube bound (_full_cube_table)


def relabellings() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 48 relabellings g of the colours that keep the pairs, and their action on potion maps.

    Returns ``colour [48, 6]`` (``g(q)``; g = 0 is the identity), ``potion_map [48, 48]`` (the map
    ``m'`` under which colour ``g(q)`` acts as colour q did under m), ``compose [48, 48]``
    (index of ``g o h``) and ``inverse [48]``. Relabelling the colours of a chemistry and of the
    potions present leaves the prior and the dynamics unchanged, so a state's values are those of
    its relabelled state.
    """
    from alchemy_mbrl.bayes.posterior import latent_potion_of_colour
    from alchemy_mbrl.env.chemistry import NUM_POTION_MAPS

    colour = []
    for perm in itertools.permutations(range(3)):
        for swap in range(8):
            colour.append([2 * perm[q >> 1] + ((q & 1) ^ ((swap >> (q >> 1)) & 1)) for q in range(6)])
    colour = np.array(colour, dtype=np.int64)
    assert (colour[0] == np.arange(6)).all()
    index = {tuple(c): k for k, c in enumerate(colour.tolist())}
    r_of_q = latent_potion_of_colour()
    map_index = {tuple(r): m for m, r in enumerate(r_of_q.tolist())}
    potion_map = np.empty((NUM_RELABELS, NUM_POTION_MAPS), dtype=np.int64)
    for g in range(NUM_RELABELS):
        for m in range(NUM_POTION_MAPS):
            r = np.empty(6, dtype=np.int64)
            r[colour[g]] = r_of_q[m]
            potion_map[g, m] = map_index[tuple(r.tolist())]
    compose = np.array([[index[tuple(colour[g][colour[h]].tolist())] for h in range(48)] for g in range(48)], dtype=np.int64)
    inverse = np.array([int(np.flatnonzero(compose[g] == 0)[0]) for g in range(48)], dtype=np.int64)
    return colour, potion_map, compose, inverse


def upper_bounds() -> np.ndarray:
    """``[5, 5, 5, 13, 4]``: an upper bound on the rest of a trial's reward under every chemistry.

    Indexed by the reward-feature codes of the 3 stone slots (4: used), the number of potions left
    and the number of colour pairs among them. A potion moves one stone along one latent axis, so
    a stone's feature rises by at most the number of pairs left (one per latent axis) and the
    stones' rises add up to at most the number of potions; a stone is cauldroned only if positive.
    """
    out = np.zeros((5, 5, 5, 13, 4), dtype=np.int64)
    gain = [0, 0, 1, 15, 15, 15, 15]  # max(0, value) of feature f (capped at 3)
    for fs in np.ndindex(5, 5, 5):
        for p in range(13):
            for pairs in range(4):
                best = 0
                caps = [0 if f == 4 else min(3 - f, pairs) for f in fs]
                for k in np.ndindex(*(c + 1 for c in caps)):
                    if sum(k) <= p:
                        best = max(best, sum(0 if f == 4 else gain[f + kk] for f, kk in zip(fs, k)))
                out[fs][p, pairs] = best
    return out


def plus_colours() -> np.ndarray:
    """``[48, 3]``: the colour that moves a stone towards +1 along latent axis d under potion map m."""
    from alchemy_mbrl.bayes.posterior import latent_potion_of_colour
    from alchemy_mbrl.env.chemistry import NUM_POTION_MAPS

    r_of_q = latent_potion_of_colour()
    out = np.empty((NUM_POTION_MAPS, 3), dtype=np.int64)
    for m in range(NUM_POTION_MAPS):
        for d in range(3):
            out[m, d] = int(np.flatnonzero(r_of_q[m] == 2 * d + 1)[0])
    return out


@njit(cache=True)
def full_cube_table() -> np.ndarray:
    """``[9, 9, 9, 4, 4, 4]``: the best rest-of-trial reward on the full cube (:func:`~.kernels.full_bound`).

    Indexed by the 3 stones' missing-axis masks (bit d set: the stone's latent coordinate on axis
    d is -1; 8: used stone) and ``min(u_d, 3)``, the number of potions left that move a stone to +1
    along axis d. Each stone gets a subset of its missing axes, at most ``u_d`` stones axis d, and
    is worth 15 with all 3 coordinates +1, 1 with 2, else 0 (not cauldroned).
    """
    out = np.zeros((9, 9, 9, 4, 4, 4), dtype=np.int64)
    val = np.array([0, 0, 1, 15], dtype=np.int64)
    for a in range(9):
        for b in range(9):
            for c in range(9):
                masks = (a, b, c)
                for x in range(8):
                    if (a == 8 and x != 0) or (a != 8 and (x & ~a) != 0):
                        continue
                    for y in range(8):
                        if (b == 8 and y != 0) or (b != 8 and (y & ~b) != 0):
                            continue
                        for z in range(8):
                            if (c == 8 and z != 0) or (c != 8 and (z & ~c) != 0):
                                continue
                            d0 = (x & 1) + (y & 1) + (z & 1)
                            d1 = ((x >> 1) & 1) + ((y >> 1) & 1) + ((z >> 1) & 1)
                            d2 = ((x >> 2) & 1) + ((y >> 2) & 1) + ((z >> 2) & 1)
                            r = 0
                            for si in range(3):
                                mk = masks[si]
                                gain = x if si == 0 else (y if si == 1 else z)
                                if mk != 8:
                                    pos = 0
                                    for d in range(3):
                                        if ((mk >> d) & 1) == 0 or ((gain >> d) & 1) == 1:
                                            pos += 1
                                    r += val[pos]
                            for u0 in range(d0, 4):
                                for u1 in range(d1, 4):
                                    for u2 in range(d2, 4):
                                        if r > out[a, b, c, u0, u1, u2]:
                                            out[a, b, c, u0, u1, u2] = r
    return out


@functools.cache
def lookup_tables(tie_rule: str = DEFAULT_TIE_RULE) -> Tables:
    """The kernels' tables for a tie rule (:data:`TIE_RULES`), built on the first call."""
    if check_tie_rule(tie_rule) != DEFAULT_TIE_RULE:  # the same arrays but one
        return lookup_tables()._replace(steps_of_f=MACRO_STEPS[tie_rule])
    from alchemy_mbrl.bayes.posterior import CANDIDATE_CLASSES, FLIP_OF_J

    colour, _, compose, inverse = relabellings()
    pow13 = np.array([COLOUR_RADIX**q for q in range(6)], dtype=np.int64)
    return Tables(CANDIDATE_CLASSES, FLIP_OF_J, pow13, VALUE_OF_FEATURE, MACRO_STEPS[tie_rule], colour, compose, inverse,
                  upper_bounds(), plus_colours(), full_cube_table())


@functools.cache
def relabel_potion_map() -> np.ndarray:
    """``[48, 48]``: :func:`relabellings`' action on potion maps."""
    return relabellings()[1]


def splitmix(x: int) -> int:
    """splitmix64 of the integer x (Python side of the kernels' salts)."""
    m = (1 << 64) - 1
    x = (x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)
