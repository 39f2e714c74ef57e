"""The Bayes-optimal ideal observer and the search oracle (Table 1's reference rows), exact.

Both agents are DeepMind's (dm_alchemy's ``ideal_observer``), computed on our exact posterior
(:mod:`alchemy_mbrl.bayes`):

* the **ideal observer** knows the prior over the 41,856 chemistries and the dynamics, not the
  chemistry. At every step it takes the action that maximises the *expected total reward of the
  current trial*, by an exhaustive expectimax over the trial's remaining actions given its exact
  posterior. It gives information no value beyond the current trial; the posterior carries over
  between trials;
* the **search oracle** runs the same search with the true chemistry (a deterministic search).

The search (one per trial, memoised)
------------------------------------
A state is (the stones: for each slot, used, or present at perceived vertex ``pv`` with reward
feature ``f``; the multiset of present potion colours; the belief). The actions searched are:

* **potion** ``(stone, colour)``: put a present stone into a present potion of that colour. Its
  outcome is one of at most 7 classes ``(j, f')`` (which perceived axis flipped, new feature; SPEC
  §9.3), with probability the posterior mass of the chemistries that predict it, and the belief
  becomes the posterior restricted to them (:func:`alchemy_mbrl.bayes.constraint_tables`). Actions
  whose outcome is certainly "no change" are not searched (they only waste a potion);
* **end of trial** (the macro-action of SPEC §8 step 3): cauldron every present stone of positive
  value (+1 or +15) in slot order, then no-ops. Its value is known exactly: a present stone's
  value is its observed reward feature (SPEC §3).

Cauldroning a stone earlier than the end never changes the trial's reward (its value is fixed once
no potion touches it), so the macro covers cauldron actions. The value of a state is
``max(end of trial, max over potion actions of E[value of the outcome])``.

Exactness: values are kept as integers. A belief's mass is a popcount in units of 1/73,728 of the
prior (:mod:`alchemy_mbrl.bayes.posterior`), and the search returns ``U = sum_c w_c R_c``, the
mass-weighted total reward over the chemistries ``c`` of the belief (and ``N``, the same for the
number of remaining actions). Expectations of the children then add without division, and ties
are detected exactly.

**Ties** (deterministic, documented): the largest expected reward; among equal, the smallest
expected number of remaining actions (DeepMind's rule); among equal, the end-of-trial macro;
among equal, the smallest (perceived stone code ``4 * pv + f``, colour ``q``). The action then
uses the lowest present stone slot with that code and the lowest present potion slot of that
colour (identical items are interchangeable: SPEC §8 uses the same rule).

Speed: identical stones and identical potions are merged (stones sorted, potions counted per
colour), so the memo is keyed by ``(belief, sorted stones, colour counts)``; beliefs are interned
(an exact hash table over their bits, restricted to the words the trial's root belief uses,
stored sparsely as their non-zero words); the whole search runs in Numba. Every later step of a
trial is a memo hit of the first search. Three further exact reductions:

* **colour relabellings.** The prior and the dynamics are invariant under the 48 relabellings g
  of the colours that keep the pairs (permute the 3 pairs, swap within pairs); g acts on the
  chemistries by their potion map only (a permutation of the 3-word potion-map blocks inside each
  stone map), so a state (B, stones, counts) has the values of (g B, stones, g counts). A child
  belief is interned as the image of smallest hash over the relabellings that keep the root's
  words (with the relabelling that maps onto it), and colour counts are relabelled to the
  smallest under the belief's exact stabiliser: symmetric states share one memo entry. The memo
  keeps values only; the best action of a queried state is chosen by comparing its actions in its
  own colours (:func:`_best`), so ties are broken exactly as above;
* **transitions** (outcome classes, masses, interned children) are computed once per (belief,
  stone vertex, colour), not once per state;
* **pruning.** An action is skipped when even the sum of its outcomes' upper bounds (a potion
  moves one stone along one latent axis, so a stone rises by at most the number of colour pairs
  left and the stones by at most the number of potions left; :func:`_upper_bounds`) is strictly
  below the best value found: it can be neither the best nor tied, so values and actions are
  unchanged. Actions that survive it get the tighter full-cube bound (:func:`_full_bound`: per
  (stone map, potion map) block of the belief, its mass times the best reward if the graph were
  the full cube), are searched best bound first (a state's value, max U then min N, does not
  depend on the order), and an action's search stops as soon as its exact outcome values so far
  plus its remaining outcomes' bounds fall strictly below the best value found;
* **fail-low thresholds.** An outcome's state is searched with a threshold ``alpha``: the value
  below which its action falls strictly below the best found, given the other outcomes' exact
  values and bounds. A state whose value is below its threshold may stop early and return an upper
  bound (flagged ``N = -1``) instead of its value; the action is then pruned, which is exact for the
  same reason as above. Upper bounds are memoised as such and answer a later query only when they
  are below its threshold (else the state is searched again); an outcome already memoised is
  bounded by the smaller of its memoised value and its full-cube bound (the actions are still
  ordered by the full-cube bounds). The root's best action
  (:func:`_best`) prunes its actions the same way against the best U found, so ties are still
  compared on exact values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alchemy_mbrl.bayes.filter import BayesFilter
from alchemy_mbrl.bayes.posterior import (
    CANDIDATE_CLASSES,
    FLIP_OF_J,
    NUM_POTION_CIDS,
    NUM_WORDS,
    WORDS_PER_BLOCK,
    WORDS_PER_STONE_MAP,
    constraint_tables,
    latent_potion_of_colour,
    pack_chemistry_sets,
)
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, NUM_POTION_MAPS, Chemistry
from alchemy_mbrl.env.constants import NUM_POTIONS, NUM_STONES, STEPS_PER_TRIAL
from alchemy_mbrl.planner.simulator import RootContext

#: Names of the two agents (``evaluate --policy``).
IDEAL_OBSERVER = "ideal-observer"
SEARCH_ORACLE = "search-oracle"
AGENTS: tuple[str, ...] = (IDEAL_OBSERVER, SEARCH_ORACLE)

#: Stone code of a used (cauldroned) stone slot; a present stone is ``4 * pv + f`` (0..31).
USED_STONE = 32
_STONE_RADIX = 33
_COLOUR_RADIX = 13  # a colour's count is 0..12
_POW13 = np.array([_COLOUR_RADIX**q for q in range(6)], dtype=np.int64)
_POTION_CODES = _COLOUR_RADIX**6
#: Value (reward when cauldroned) of a stone with reward-feature code f (SPEC §3).
VALUE_OF_FEATURE = np.array([-3, -1, 1, 15], dtype=np.int64)
_NO_CLASS = 16
#: ``alpha`` of an exact query of :func:`_value` (below every U).
_EXACT = -(1 << 62)
_GROW_BELIEFS, _GROW_MEMO, _GROW_POOL, _GROW_ENTRIES = 1, 2, 3, 4
_C_BELIEFS, _C_MEMO, _C_EXPANDED, _C_POOL, _C_ENTRIES = 0, 1, 2, 3, 4
_NUM_RELABELS = 48
_ACTION_SLOTS = 18  # potion actions of a state: 3 stones x 6 colours
_PAIRS = 6  # (stone pv, colour) pairs of a transition table row: pv * 6 + q, 48 in all


def _kernel(cache: bool = True):
    """``njit`` for the search's kernels, without Numba's reference counting of their arguments.

    The kernels take some 40 arrays each and call each other millions of times; with reference
    counting, every call increments and decrements every array argument (atomic operations):
    ``perf`` put 26 % of a first trial's time in ``NRT_incref``/``NRT_decref``, and dropping them made
    the search 1.75x faster (same states). Safe because no kernel allocates or keeps an array: the
    arrays belong to the :class:`TrialSearch` that calls them, alive for the whole call.
    """
    return njit(cache=cache, _nrt=False)


# --- the colour relabellings (the symmetry group of the prior) ---------------------------------


def _relabellings() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 48 relabellings g of the colours that keep the pairs, and their action on potion maps.

    Returns ``colour [48, 6]`` (``g(q)``; g = 0 is the identity), ``potion_map [48, 48]`` (the map
    ``m'`` under which colour ``g(q)`` acts as colour q did under m), ``compose [48, 48]``
    (index of ``g o h``) and ``inverse [48]``. Relabelling the colours of a chemistry and of the
    potions present leaves the prior and the dynamics unchanged, so a state's values are those of
    its relabelled state.
    """
    import itertools

    colour = []
    for perm in itertools.permutations(range(3)):
        for swap in range(8):
            colour.append([2 * perm[q >> 1] + ((q & 1) ^ ((swap >> (q >> 1)) & 1)) for q in range(6)])
    colour = np.array(colour, dtype=np.int64)
    assert (colour[0] == np.arange(6)).all()
    index = {tuple(c): k for k, c in enumerate(colour.tolist())}
    r_of_q = latent_potion_of_colour()
    map_index = {tuple(r): m for m, r in enumerate(r_of_q.tolist())}
    potion_map = np.empty((_NUM_RELABELS, NUM_POTION_MAPS), dtype=np.int64)
    for g in range(_NUM_RELABELS):
        for m in range(NUM_POTION_MAPS):
            r = np.empty(6, dtype=np.int64)
            r[colour[g]] = r_of_q[m]
            potion_map[g, m] = map_index[tuple(r.tolist())]
    compose = np.array([[index[tuple(colour[g][colour[h]].tolist())] for h in range(48)] for g in range(48)], dtype=np.int64)
    inverse = np.array([int(np.flatnonzero(compose[g] == 0)[0]) for g in range(48)], dtype=np.int64)
    return colour, potion_map, compose, inverse


_RELABEL_COLOUR, _RELABEL_POTION_MAP, _RELABEL_COMPOSE, _RELABEL_INVERSE = _relabellings()


def _upper_bounds() -> np.ndarray:
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


_UPPER_BOUND = _upper_bounds()


def _plus_colours() -> np.ndarray:
    """``[48, 3]``: the colour that moves a stone towards +1 along latent axis d under potion map m."""
    r_of_q = latent_potion_of_colour()
    out = np.empty((NUM_POTION_MAPS, 3), dtype=np.int64)
    for m in range(NUM_POTION_MAPS):
        for d in range(3):
            out[m, d] = int(np.flatnonzero(r_of_q[m] == 2 * d + 1)[0])
    return out


@njit(cache=True)
def _full_cube_table() -> np.ndarray:
    """``[9, 9, 9, 4, 4, 4]``: the best rest-of-trial reward on the full cube (:func:`_full_bound`).

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


_PLUS_COLOUR = _plus_colours()
_FULL_CUBE = _full_cube_table()
#: Global block (``i * 48 + m``) of each of the 1,152 posterior words.
_BLOCK_OF_WORD = np.arange(NUM_WORDS, dtype=np.int64) // WORDS_PER_BLOCK


@njit(cache=True, inline="always")
def _popcount(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit value."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _sort3(a, b, c):
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@njit(cache=True, inline="always")
def _end_of_trial(s0, s1, s2, value_of_f):
    """``(reward, actions)`` of the end-of-trial macro: cauldron every present stone of positive value."""
    macro = 0
    npos = 0
    for si in range(3):
        c = s0 if si == 0 else (s1 if si == 1 else s2)
        if c != USED_STONE and (c & 3) >= 2:
            macro += value_of_f[c & 3]
            npos += 1
    return macro, npos


@njit(cache=True, inline="always")
def _child_stones(si, cls, pv, flip, s0, s1, s2):
    """Sorted stone codes after the stone in sorted position ``si`` (at perceived vertex ``pv``) has outcome ``cls``."""
    ncode = ((pv ^ flip[cls >> 2]) << 2) | (cls & 3)
    if si == 0:
        return _sort3(ncode, s1, s2)
    if si == 1:
        return _sort3(s0, ncode, s2)
    return _sort3(s0, s1, ncode)


@njit(cache=True, inline="always")
def _relabel_counts(pcode, g, gcol, pow13):
    """Colour counts (radix 13) relabelled by g: ``count'[g(q)] = count[q]``."""
    if g == 0:
        return pcode
    out = 0
    rest = pcode
    for q in range(6):
        out += (rest % _COLOUR_RADIX) * pow13[gcol[g, q]]
        rest //= _COLOUR_RADIX
    return out


@njit(cache=True, inline="always")
def _bound(s0, s1, s2, pcode, ub):
    """Upper bound (per unit of mass) on the rest of the trial's reward of a state (:func:`_upper_bounds`)."""
    p = 0
    pairs = 0
    rest = pcode
    for pair in range(3):
        a = rest % _COLOUR_RADIX
        b = (rest // _COLOUR_RADIX) % _COLOUR_RADIX
        rest //= _COLOUR_RADIX * _COLOUR_RADIX
        p += a + b
        if a + b > 0:
            pairs += 1
    f0 = 4 if s0 == USED_STONE else s0 & 3
    f1 = 4 if s1 == USED_STONE else s1 & 3
    f2 = 4 if s2 == USED_STONE else s2 & 3
    return ub[f0, f1, f2, p, pairs]


@_kernel()
def _full_bound(bid, s0, s1, s2, pcode, boff, bnblk, bblk, bbm, plus, ftab):
    """Upper bound on U (mass-weighted rest-of-trial reward) of a state: the full-cube bound.

    ``sum over the (stone map i, potion map m) blocks of the belief of mass x FULL(i, m)``, where
    FULL is the best rest-of-trial reward if the stone and potion maps are (i, m) and the graph is
    the full cube (:func:`_full_cube_table`). Admissible: under a chemistry (i, m, G), apply any
    action sequence on the full cube instead, skipping the potions that changed nothing under G.
    Every move under G is along an edge of G, which the cube also has, and a potion that changes
    nothing on the cube changes nothing under G; so the stones follow the same vertices and end in
    the same configuration, reached on the cube with a subset of the same potions. On the cube a
    stone's latent coordinate on axis d ends at +1 only if it started there or a potion moving
    towards +1 along d (colour ``plus[m, d]``) was put into it, each potion into one stone, so the
    stones' final values are at most those of the best allocation of those potions (the table):
    FULL(i, m) >= the optimum under (i, m, G) >= the reward of any policy under it. Summing with
    the weights gives U <= the bound. A stone's missing axes are ``~v & 7 = pv ^ i`` with
    ``v = pv ^ 7 ^ i`` (the posterior agrees with every present stone's feature). Computed in the
    frame of the stored belief, with its relabelled counts, like the values.
    """
    cc = 0
    rest = pcode
    for q in range(6):
        c = rest % _COLOUR_RADIX
        rest //= _COLOUR_RADIX
        cc |= (c if c < 3 else 3) << (2 * q)
    p0 = -1 if s0 == USED_STONE else s0 >> 2
    p1 = -1 if s1 == USED_STONE else s1 >> 2
    p2 = -1 if s2 == USED_STONE else s2 >> 2
    o = boff[bid]
    total = 0
    for k in range(bnblk[bid]):
        b = bblk[o + k]
        i = b // 48
        m = b - 48 * i
        k0 = 8 if p0 < 0 else p0 ^ i
        k1 = 8 if p1 < 0 else p1 ^ i
        k2 = 8 if p2 < 0 else p2 ^ i
        total += bbm[o + k] * ftab[k0, k1, k2, (cc >> (2 * plus[m, 0])) & 3, (cc >> (2 * plus[m, 1])) & 3,
                                   (cc >> (2 * plus[m, 2])) & 3]
    return total


@njit(cache=True, inline="always")
def _canon_counts(pcode, stab, gcol, pow13):
    """The smallest relabelling of the colour counts by the relabellings that fix the belief."""
    best = pcode
    if stab == 1:
        return best
    for g in range(1, _NUM_RELABELS):
        if (stab >> np.int64(g)) & 1:
            c = _relabel_counts(pcode, g, gcol, pow13)
            if c < best:
                best = c
    return best


@njit(cache=True, inline="always")
def _memo_key(bid, s0, s1, s2, pcode):
    """The memo key of a state whose colour counts are canonical (:func:`_canon_counts`)."""
    return (bid * _STONE_RADIX**3 + (s0 * _STONE_RADIX + s1) * _STONE_RADIX + s2) * _POTION_CODES + pcode


@njit(cache=True, inline="always")
def _memo_find(key, memo):
    """Slot of ``key`` in the memo, or the empty slot where it would go (``memo[slot, 0] == -1``).

    ``memo [capacity, 3]``: per slot (key, U, N), side by side so that a look-up reads one cache line.
    """
    mask = memo.shape[0] - 1
    h = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while memo[h, 0] != -1 and memo[h, 0] != key:
        h = (h + 1) & mask
    return h


@_kernel()
def _intern(sidx, sval, n, mass, group, lperm, salt, compose, inverse, dense,
            boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, counters, wblock, bscr, bnblk, bblk, bbm):
    """Intern the relabelled image of the sparse belief ``(sidx, sval)[:n]`` that has the smallest hash.

    Returns ``(id, g)`` with ``g(belief) = belief id`` (g in ``group``), or ``(-status, 0)`` when a
    store is full. Images whose hashes tie with the chosen one are checked exactly: those equal to
    it give the belief's stabiliser (``bstab``, a 48-bit mask), used to relabel colour counts.
    """
    hmin = np.uint64(0xFFFFFFFFFFFFFFFF)
    g0 = 0
    ties = 0
    for gi in range(group.shape[0]):
        g = group[gi]
        h = np.uint64(0)
        for k in range(n):
            h += _mix(sval[k] ^ salt[lperm[g, sidx[k]]])
        if h < hmin:
            hmin = h
            g0 = g
            ties = 0
        elif h == hmin:
            ties += 1
    for k in range(n):
        dense[lperm[g0, sidx[k]]] = sval[k]
    mask = btable.shape[0] - 1
    p = np.int64(hmin & np.uint64(mask))
    found = -1
    while True:
        idx = btable[p]
        if idx == -1:
            break
        if bhash[idx] == hmin and bmass[idx] == mass and bnnz[idx] == n:
            same = True
            o = boff[idx]
            for k in range(n):
                if dense[pidx[o + k]] != pval[o + k]:
                    same = False
                    break
            if same:
                found = idx
                break
        p = (p + 1) & mask
    if found < 0:
        nb = counters[_C_BELIEFS]
        status = 0
        if nb >= bmass.shape[0] or 2 * (nb + 1) > btable.shape[0]:
            status = _GROW_BELIEFS
        elif counters[_C_POOL] + n > pidx.shape[0]:
            status = _GROW_POOL
        if status != 0:
            for k in range(n):
                dense[lperm[g0, sidx[k]]] = 0
            return -status, 0
        stab = np.int64(1)
        if ties > 0:
            inv0 = inverse[g0]
            for gi in range(group.shape[0]):
                g = group[gi]
                if g == g0:
                    continue
                same = True
                for k in range(n):
                    if dense[lperm[g, sidx[k]]] != sval[k]:
                        same = False
                        break
                if same:
                    stab |= np.int64(1) << np.int64(compose[g, inv0])
        o = counters[_C_POOL]
        for k in range(n):
            pidx[o + k] = lperm[g0, sidx[k]]
            pval[o + k] = sval[k]
        counters[_C_POOL] = o + n
        # the belief's (stone map, potion map) blocks and their masses, for the full-cube bound
        for k in range(n):
            bscr[wblock[pidx[o + k]]] += _popcount(sval[k])
        nblk = 0
        for k in range(n):
            b = wblock[pidx[o + k]]
            if bscr[b] != 0:
                bblk[o + nblk] = b
                bbm[o + nblk] = bscr[b]
                bscr[b] = 0
                nblk += 1
        bnblk[nb] = nblk
        boff[nb] = o
        bnnz[nb] = n
        bmass[nb] = mass
        bhash[nb] = hmin
        bstab[nb] = stab
        btable[p] = nb
        counters[_C_BELIEFS] = nb + 1
        found = nb
    for k in range(n):
        dense[lperm[g0, sidx[k]]] = 0
    return found, g0


@_kernel()
def _transition(bid, pv, f, q, need, sets, cand, group, lperm, salt, compose, inverse, dense, sidx, sval,
                boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg, tmass, counters,
                wblock, bscr, bnblk, bblk, bbm):
    """Entry (in ``tn``...) of the outcomes of putting a stone at ``pv`` (feature f) into colour q.

    Computed once per (belief, pv, q): ``tn[e]`` outcomes (0 if the action certainly changes
    nothing), each a class, its mass, and, once some caller ``need``s them, the interned child
    belief and the relabelling g mapping the child onto it (a state with one potion left needs
    only the outcomes' masses: its children have no potion, so their values are their end of
    trial; ``tchild[7 e] == -1`` until the children are interned). Returns ``e``, or ``-status``
    when a store is full.
    """
    key = bid * 48 + pv * 6 + q
    e = thead[key]
    if e < 0:
        ne = counters[_C_ENTRIES]
        if ne >= tn.shape[0]:
            return -_GROW_ENTRIES
        o = boff[bid]
        nnz = bnnz[bid]
        base = (pv * 6 + q) * 16
        informative = False
        k = 0
        for ci in range(7):
            cls = cand[f, ci]
            if cls == _NO_CLASS:
                continue
            s = 0
            for kk in range(nnz):
                s += _popcount(pval[o + kk] & sets[base + cls, pidx[o + kk]])
            if s == 0:
                continue
            if cls != f:  # class (j=0, f) is "no change"
                informative = True
            tcls[ne * 7 + k] = cls
            tmass[ne * 7 + k] = s
            k += 1
        tn[ne] = k if informative else 0
        tchild[ne * 7] = -1
        thead[key] = ne
        counters[_C_ENTRIES] = ne + 1
        e = ne
    if not need or tn[e] == 0 or tchild[e * 7] >= 0:
        return e
    # intern the children, the first outcome's last: its child flags the entry as complete
    o = boff[bid]
    nnz = bnnz[bid]
    m = bmass[bid]
    base = (pv * 6 + q) * 16
    for kk in range(tn[e] - 1, -1, -1):
        cls = tcls[e * 7 + kk]
        mc = tmass[e * 7 + kk]
        if mc == m:
            tchild[e * 7 + kk] = bid
            tg[e * 7 + kk] = 0
            continue
        n2 = 0
        for j in range(nnz):
            w = pval[o + j] & sets[base + cls, pidx[o + j]]
            if w != 0:
                sidx[n2] = pidx[o + j]
                sval[n2] = w
                n2 += 1
        cb, g = _intern(sidx, sval, n2, mc, group, lperm, salt, compose, inverse, dense,
                        boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, counters, wblock, bscr, bnblk, bblk, bbm)
        if cb < 0:
            return cb
        o = boff[bid]  # unchanged (the pool only grows at its end), re-read for clarity
        tchild[e * 7 + kk] = cb
        tg[e * 7 + kk] = g
    return e


@_kernel()
def _leaf_value(bid, s0, s1, s2, pcode, npot, sets, cand, flip, pow13, value_of_f, gcol, group, lperm, salt, compose,
                inverse, dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild,
                tg, tmass, counters, wblock, bscr, bnblk, bblk, bbm):
    """``(U, N, status)`` of a state with at most one potion left (:func:`_value`), exactly.

    Its children have no potion left, so their values are their end of trial: only the outcomes'
    masses are needed (the children's beliefs are not interned, the state is not memoised).
    """
    m = bmass[bid]
    macro, npos = _end_of_trial(s0, s1, s2, value_of_f)
    best_u = m * macro
    best_n = m * npos
    if npot == 0:
        return best_u, best_n, 0
    q = 0
    while pow13[q] != pcode:  # the one colour left
        q += 1
    for si in range(3):
        code = s0 if si == 0 else (s1 if si == 1 else s2)
        if code == USED_STONE or (si == 1 and code == s0) or (si == 2 and code == s1):
            continue
        pv = code >> 2
        e = _transition(bid, pv, code & 3, q, False, sets, cand, group, lperm, salt, compose, inverse, dense, sidx,
                        sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg, tmass,
                        counters, wblock, bscr, bnblk, bblk, bbm)
        if e < 0:
            return 0, 0, -e
        u = 0
        n = m
        for kk in range(tn[e]):
            a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
            cmac, cpos = _end_of_trial(a0, a1, a2, value_of_f)
            u += tmass[e * 7 + kk] * cmac
            n += tmass[e * 7 + kk] * cpos
        if tn[e] > 0 and (u > best_u or (u == best_u and n < best_n)):
            best_u = u
            best_n = n
    return best_u, best_n, 0


@_kernel(cache=False)  # recursive: Numba's on-disk cache of it crashes when loaded
def _value(bid, s0, s1, s2, pcode, alpha, sets, cand, flip, pow13, value_of_f, gcol, group, lperm, salt, compose,
           inverse, dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg,
           tmass, ub, memo, counters, wblock, bscr, bnblk, bblk, bbm, plus, ftab, cbuf):
    """``(U, N, status)`` of a state: mass-weighted expected trial reward and remaining actions.

    Stones ``s0 <= s1 <= s2`` are stone codes, ``pcode`` the colour counts in radix 13, ``bid`` the
    belief's id. ``status`` is non-zero when a store is full (the caller grows it and calls again;
    finished states stay memoised). The colour counts are first relabelled to the smallest under
    the belief's stabiliser (same values), so relabelled states share one memo entry.

    ``alpha`` (fail-low threshold): the caller only needs the exact value when ``U >= alpha``.
    When ``U < alpha`` the search may stop early and return ``(V, -1, 0)`` with ``U <= V < alpha``
    (an upper bound, flagged by ``N = -1``); ``alpha = _EXACT`` always gives the exact value. The
    memo keeps both kinds (an upper bound answers a later query only if it is below its alpha).
    """
    npot = 0  # potions left: children have fewer, so cbuf[npot * ...:] is this state's scratch
    rest = pcode
    for q in range(6):
        npot += rest % _COLOUR_RADIX
        rest //= _COLOUR_RADIX
    if npot <= 1:  # its children have no potion: exact at once, not memoised
        return _leaf_value(bid, s0, s1, s2, pcode, npot, sets, cand, flip, pow13, value_of_f, gcol, group, lperm,
                           salt, compose, inverse, dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx,
                           pval, thead, tn, tcls, tchild, tg, tmass, counters, wblock, bscr, bnblk, bblk, bbm)
    pcode = _canon_counts(pcode, bstab[bid], gcol, pow13)
    key = _memo_key(bid, s0, s1, s2, pcode)
    h = _memo_find(key, memo)
    known = memo[h, 0] == key  # memoised: exact, or an upper bound (then searched again unless below alpha)
    if known:
        if memo[h, 2] >= 0:
            return memo[h, 1], memo[h, 2], 0
        if memo[h, 1] < alpha:
            return memo[h, 1], -1, 0
    if not known and 2 * (counters[_C_MEMO] + 1) > memo.shape[0]:
        return 0, 0, _GROW_MEMO  # grown before the search, not after it (its ancestors' entries still fit)
    counters[_C_EXPANDED] += 1
    m = bmass[bid]
    # end of trial: cauldron every present stone of positive value
    macro, npos = _end_of_trial(s0, s1, s2, value_of_f)
    best_u = m * macro
    best_n = m * npos
    # an action is pruned when an upper bound of its U is strictly below the threshold
    # max(best U found, alpha): it can be neither the best nor tied, nor lift the state to alpha.
    # pruned_ub keeps the largest such bound: with best_u, an upper bound of the state's U.
    thr = best_u if best_u > alpha else alpha
    pruned_ub = _EXACT
    # low: the best "one action, then the end of the trial" U, a lower bound of the state's U; an
    # action whose bound is strictly below it can be neither the best nor tied (pruned too)
    low = best_u
    # the actions not pruned by their bound (the sum of their outcomes' upper bounds), with it;
    # they are then searched best bound first (the value, max U then min N, does not depend on
    # the order: a pruned action has U strictly below the best, so it is neither best nor tied)
    base = npot * _ACTION_SLOTS * 9  # children have fewer potions: this state's scratch
    na = 0
    for si in range(3):
        code = s0 if si == 0 else (s1 if si == 1 else s2)
        if code == USED_STONE or (si == 1 and code == s0) or (si == 2 and code == s1):
            continue
        pv = code >> 2
        f = code & 3
        for q in range(6):
            if (pcode // pow13[q]) % _COLOUR_RADIX == 0:
                continue
            e = _transition(bid, pv, f, q, True, sets, cand, group, lperm, salt, compose, inverse, dense, sidx, sval,
                            boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg, tmass,
                            counters, wblock, bscr, bnblk, bblk, bbm)
            if e < 0:
                return 0, 0, -e
            nout = tn[e]
            if nout == 0:
                continue
            rest = pcode - pow13[q]
            # the loose bound first (it is cheap), then the full-cube bound of each child, in its frame;
            # with it, a lower bound of the state's U: this action, then the end of the trial
            bound = 0
            lower = 0
            for kk in range(nout):
                a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
                bound += tmass[e * 7 + kk] * _bound(a0, a1, a2, rest, ub)
                lower += tmass[e * 7 + kk] * _end_of_trial(a0, a1, a2, value_of_f)[0]
            if lower > low:
                low = lower
                thr = max(thr, low)
            if bound < thr:
                pruned_ub = max(pruned_ub, bound)
                continue
            # the full-cube bounds order the actions; each outcome's bound for pruning is the
            # smaller of its full-cube bound and its memoised value (exact or an upper bound), if any
            # (ordering by the memoised values instead expands more states: measured)
            slot = base + na * 9
            order = 0
            bound = 0
            for kk in range(nout):
                a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
                cid = tchild[e * 7 + kk]
                cpc = _relabel_counts(rest, tg[e * 7 + kk], gcol, pow13)
                cb = _full_bound(cid, a0, a1, a2, cpc, boff, bnblk, bblk, bbm, plus, ftab)
                order += cb
                hc = _memo_find(_memo_key(cid, a0, a1, a2, _canon_counts(cpc, bstab[cid], gcol, pow13)), memo)
                if memo[hc, 0] != -1 and memo[hc, 1] < cb:
                    cb = memo[hc, 1]
                cbuf[slot + 2 + kk] = cb
                bound += cb
            if bound < thr:
                pruned_ub = max(pruned_ub, bound)
                continue
            cbuf[slot] = order
            cbuf[slot + 1] = (si * 6 + q) * (1 << 32) + e
            na += 1
    for _ in range(na):
        thr = max(best_u, alpha, low)
        # the remaining action of largest bound
        ba = -1
        bb = -1
        for a in range(na):
            b = cbuf[base + a * 9]
            if b > bb:
                bb = b
                ba = a
        if ba < 0:
            break
        if bb < thr:  # every remaining action is pruned
            pruned_ub = max(pruned_ub, bb)
            break
        slot = base + ba * 9
        cbuf[slot] = -1
        e = cbuf[slot + 1] & ((1 << 32) - 1)
        nout = tn[e]
        bound = 0
        for kk in range(nout):
            bound += cbuf[slot + 2 + kk]
        if bound < thr:
            pruned_ub = max(pruned_ub, bound)
            continue
        sq = cbuf[slot + 1] >> 32
        si = sq // 6
        q = sq - 6 * si
        code = s0 if si == 0 else (s1 if si == 1 else s2)
        pv = code >> 2
        rest = pcode - pow13[q]
        u_sum = 0
        n_sum = m  # this action is one step, whatever happens
        pruned = False
        for kk in range(nout):
            a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
            cb = cbuf[slot + 2 + kk]
            # the action falls strictly below thr if this outcome's U is below thr - (the rest's bounds)
            u, n, status = _value(tchild[e * 7 + kk], a0, a1, a2, _relabel_counts(rest, tg[e * 7 + kk], gcol, pow13),
                                  thr - (bound - cb),
                                  sets, cand, flip, pow13, value_of_f, gcol, group, lperm, salt, compose, inverse,
                                  dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn,
                                  tcls, tchild, tg, tmass, ub, memo, counters,
                                  wblock, bscr, bnblk, bblk, bbm, plus, ftab, cbuf)
            if status != 0:
                return 0, 0, status
            u_sum += u
            n_sum += n
            bound += u - cb
            if n < 0 or bound < thr:  # (a child below its threshold puts the bound below thr)
                pruned = True
                pruned_ub = max(pruned_ub, bound)
                break
        if pruned:
            continue
        if u_sum > best_u or (u_sum == best_u and n_sum < best_n):
            best_u = u_sum
            best_n = n_sum
    if best_u < alpha:  # below the caller's threshold: an upper bound (every pruned bound is below alpha)
        best_u = max(best_u, pruned_ub)
        best_n = -1
    h = _memo_find(key, memo)  # the table may have changed below us
    if memo[h, 0] == -1:
        memo[h, 0] = key
        counters[_C_MEMO] += 1
    memo[h, 1] = best_u
    memo[h, 2] = best_n
    return best_u, best_n, 0


@_kernel(cache=False)  # calls the recursive _value
def _best(bid, g0, s0, s1, s2, counts, sets, cand, flip, pow13, value_of_f, gcol, group, lperm, salt, compose, inverse,
          dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg, tmass, ub,
          memo, counters, wblock, bscr, bnblk, bblk, bbm, plus, ftab, cbuf):
    """``(best action code, status)`` of the state whose belief is ``g0^-1(bid)`` and colour counts ``counts``.

    The actions are compared in the state's own colours, so ties are broken exactly as documented.
    An action is searched only as far as it can still reach the best U found (ties included): its
    outcomes are asked for their exact value only when the rest's bounds leave them a chance. The
    actions are searched best full-cube bound first (a high best U early prunes more); an outcome's
    bound for pruning is the smaller of its full-cube bound and its memoised value, as in
    :func:`_value`. Ties do not depend on that order: a tied action is never pruned, and among equal
    (U, N) the smallest action code wins.
    """
    pcode = 0
    for q in range(6):
        pcode += counts[q] * pow13[gcol[g0, q]]
    m = bmass[bid]
    macro, npos = _end_of_trial(s0, s1, s2, value_of_f)
    best_u = m * macro
    best_n = m * npos
    best = -1
    npot = 0
    for q in range(6):
        npot += counts[q]
    base = npot * _ACTION_SLOTS * 9  # this state's scratch (children have fewer potions)
    na = 0
    low = best_u  # the best "one action, then the end of the trial" U: a lower bound, as in _value
    for si in range(3):
        code = s0 if si == 0 else (s1 if si == 1 else s2)
        if code == USED_STONE or (si == 1 and code == s0) or (si == 2 and code == s1):
            continue
        pv = code >> 2
        f = code & 3
        for q_own in range(6):
            if counts[q_own] == 0:
                continue
            q = gcol[g0, q_own]
            e = _transition(bid, pv, f, q, True, sets, cand, group, lperm, salt, compose, inverse, dense, sidx, sval,
                            boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn, tcls, tchild, tg, tmass,
                            counters, wblock, bscr, bnblk, bblk, bbm)
            if e < 0:
                return 0, -e
            nout = tn[e]
            if nout == 0:
                continue
            rest = pcode - pow13[q]
            slot = base + na * 9
            order = 0
            lower = 0
            for kk in range(nout):
                a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
                lower += tmass[e * 7 + kk] * _end_of_trial(a0, a1, a2, value_of_f)[0]
                cid = tchild[e * 7 + kk]
                cpc = _relabel_counts(rest, tg[e * 7 + kk], gcol, pow13)
                cb = _full_bound(cid, a0, a1, a2, cpc, boff, bnblk, bblk, bbm, plus, ftab)
                order += cb
                hc = _memo_find(_memo_key(cid, a0, a1, a2, _canon_counts(cpc, bstab[cid], gcol, pow13)), memo)
                if memo[hc, 0] != -1 and memo[hc, 1] < cb:
                    cb = memo[hc, 1]
                cbuf[slot + 2 + kk] = cb
            cbuf[slot] = order
            cbuf[slot + 1] = (si * 6 + q_own) * (1 << 32) + e
            na += 1
            low = max(low, lower)
    for _ in range(na):
        thr = max(best_u, low)
        # the remaining action of largest full-cube bound (the first such in action order)
        ba = -1
        bb = -1
        for a in range(na):
            b = cbuf[base + a * 9]
            if b > bb:
                bb = b
                ba = a
        if ba < 0 or bb < thr:  # every remaining action is strictly below the best
            break
        slot = base + ba * 9
        cbuf[slot] = -1
        e = cbuf[slot + 1] & ((1 << 32) - 1)
        nout = tn[e]
        bound = 0
        for kk in range(nout):
            bound += cbuf[slot + 2 + kk]
        if bound < thr:
            continue
        sq = cbuf[slot + 1] >> 32
        si = sq // 6
        q_own = sq - 6 * si
        q = gcol[g0, q_own]
        code = s0 if si == 0 else (s1 if si == 1 else s2)
        pv = code >> 2
        rest = pcode - pow13[q]
        u_sum = 0
        n_sum = m
        pruned = False
        for kk in range(nout):
            a0, a1, a2 = _child_stones(si, tcls[e * 7 + kk], pv, flip, s0, s1, s2)
            cb = cbuf[slot + 2 + kk]
            u, n, status = _value(tchild[e * 7 + kk], a0, a1, a2, _relabel_counts(rest, tg[e * 7 + kk], gcol, pow13),
                                  thr - (bound - cb), sets, cand, flip, pow13, value_of_f, gcol, group, lperm,
                                  salt, compose, inverse,
                                  dense, sidx, sval, boff, bnnz, bmass, bhash, bstab, btable, pidx, pval, thead, tn,
                                  tcls, tchild, tg, tmass, ub, memo, counters,
                                  wblock, bscr, bnblk, bblk, bbm, plus, ftab, cbuf)
            if status != 0:
                return 0, status
            u_sum += u
            n_sum += n
            bound += u - cb
            if n < 0 or bound < thr:  # strictly below the best: neither best nor tied
                pruned = True
                break
        if pruned:
            continue
        action = code * 6 + q_own
        if (u_sum > best_u or (u_sum == best_u and n_sum < best_n)
                or (u_sum == best_u and n_sum == best_n and best >= 0 and action < best)):
            best_u = u_sum
            best_n = n_sum
            best = action
    return best, 0


@_kernel()
def _rehash(memo, new):
    for i in range(memo.shape[0]):
        key = memo[i, 0]
        if key == -1:
            continue
        h = _memo_find(key, new)
        new[h, 0] = key
        new[h, 1] = memo[i, 1]
        new[h, 2] = memo[i, 2]


@_kernel()
def _rehash_beliefs(bhash, n, btable):
    mask = btable.shape[0] - 1
    for i in range(n):
        p = np.int64(bhash[i] & np.uint64(mask))
        while btable[p] != -1:
            p = (p + 1) & mask
        btable[p] = i


def _grown(a: np.ndarray, size: int, fill=0) -> np.ndarray:
    out = np.full(size, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class TrialSearch:
    """The memoised expectimax of one trial, rooted at the posterior ``root_words [1152]`` at its start.

    Beliefs inside the trial are subsets of the root's, so they are stored on the root's non-zero
    words only, sparsely (their non-zero words), one per class of colour relabellings (the
    relabellings that map the root's words onto themselves). :meth:`best` answers any state of the
    trial; the memo is shared by all of them. Belief ids given out by :meth:`belief_id` are handles
    of (stored belief, relabelling onto it).
    """

    def __init__(self, root_words: np.ndarray, beliefs: int = 1024, memo: int = 1 << 14) -> None:
        root_words = np.asarray(root_words, dtype=np.uint64)
        self.cols = np.flatnonzero(root_words)
        if len(self.cols) == 0:
            raise ValueError("the posterior is empty: the history is impossible under every chemistry")
        self.sets = np.ascontiguousarray(constraint_tables().words_full[:NUM_POTION_CIDS][:, self.cols])
        w = len(self.cols)
        # relabellings that map the root's words onto themselves, as permutations of the local words
        local = np.full(NUM_WORDS, -1, dtype=np.int64)
        local[self.cols] = np.arange(w)
        i, rest = np.divmod(self.cols, WORDS_PER_STONE_MAP)
        m, k = np.divmod(rest, WORDS_PER_BLOCK)
        lperm = np.zeros((_NUM_RELABELS, w), dtype=np.int64)
        group = []
        for g in range(_NUM_RELABELS):
            image = local[i * WORDS_PER_STONE_MAP + _RELABEL_POTION_MAP[g, m] * WORDS_PER_BLOCK + k]
            if (image >= 0).all():
                lperm[g] = image
                group.append(g)
        self.group = np.array(group, dtype=np.int64)
        self.lperm = lperm
        self.salt = np.array([int(_mix_py(c)) for c in range(w)], dtype=np.uint64)
        self.dense = np.zeros(w, dtype=np.uint64)
        self.sidx = np.zeros(w, dtype=np.int64)
        self.sval = np.zeros(w, dtype=np.uint64)
        self.boff = np.zeros(beliefs, dtype=np.int64)
        self.bnnz = np.zeros(beliefs, dtype=np.int64)
        self.bmass = np.zeros(beliefs, dtype=np.int64)
        self.bhash = np.zeros(beliefs, dtype=np.uint64)
        self.bstab = np.zeros(beliefs, dtype=np.int64)
        self.btable = np.full(2 * beliefs, -1, dtype=np.int64)
        self.pidx = np.zeros(max(4 * w, 1024), dtype=np.int32)
        self.pval = np.zeros(len(self.pidx), dtype=np.uint64)
        self.thead = np.full(48 * beliefs, -1, dtype=np.int32)
        entries = 4 * beliefs
        self.tn = np.zeros(entries, dtype=np.int8)
        self.tcls = np.zeros(7 * entries, dtype=np.int8)
        self.tchild = np.zeros(7 * entries, dtype=np.int32)
        self.tg = np.zeros(7 * entries, dtype=np.int8)
        self.tmass = np.zeros(7 * entries, dtype=np.int32)
        self.memo = np.zeros((memo, 3), dtype=np.int64)
        self.memo[:, 0] = -1
        self.wblock = np.ascontiguousarray(_BLOCK_OF_WORD[self.cols])
        self.bscr = np.zeros(NUM_WORDS // WORDS_PER_BLOCK, dtype=np.int64)
        self.bnblk = np.zeros(beliefs, dtype=np.int64)
        self.bblk = np.zeros(len(self.pidx), dtype=np.int32)
        self.bbm = np.zeros(len(self.pidx), dtype=np.int64)
        self.cbuf = np.zeros(9 * _ACTION_SLOTS * (NUM_POTIONS + 1), dtype=np.int64)
        self.counters = np.zeros(5, dtype=np.int64)  # beliefs, memo entries, states expanded, pool words, entries
        self._handles: list[tuple[int, int]] = []
        self.root = self.belief_id(root_words)

    # --- stores -------------------------------------------------------------------------
    def _grow(self, status: int) -> None:
        if status == _GROW_BELIEFS:
            cap = 2 * len(self.bmass)
            self.boff, self.bnnz, self.bmass, self.bhash, self.bstab, self.bnblk = (
                _grown(a, cap) for a in (self.boff, self.bnnz, self.bmass, self.bhash, self.bstab, self.bnblk))
            self.thead = _grown(self.thead, 48 * cap, -1)
            self.btable = np.full(2 * cap, -1, dtype=np.int64)
            _rehash_beliefs(self.bhash, int(self.counters[_C_BELIEFS]), self.btable)
        elif status == _GROW_POOL:
            cap = 2 * len(self.pidx)
            self.pidx, self.pval = _grown(self.pidx, cap), _grown(self.pval, cap)
            self.bblk, self.bbm = _grown(self.bblk, cap), _grown(self.bbm, cap)
        elif status == _GROW_ENTRIES:
            cap = 2 * len(self.tn)
            self.tn = _grown(self.tn, cap)
            self.tcls, self.tchild, self.tg, self.tmass = (_grown(a, 7 * cap) for a in (self.tcls, self.tchild, self.tg, self.tmass))
        else:
            cap = 2 * len(self.memo)
            new = np.zeros((cap, 3), dtype=np.int64)
            new[:, 0] = -1
            _rehash(self.memo, new)
            self.memo = new

    def _args(self) -> tuple:
        return (self.sets, CANDIDATE_CLASSES, FLIP_OF_J, _POW13, VALUE_OF_FEATURE, _RELABEL_COLOUR, self.group, self.lperm,
                self.salt, _RELABEL_COMPOSE, _RELABEL_INVERSE, self.dense, self.sidx, self.sval, self.boff, self.bnnz,
                self.bmass, self.bhash, self.bstab, self.btable, self.pidx, self.pval, self.thead, self.tn, self.tcls,
                self.tchild, self.tg, self.tmass, _UPPER_BOUND, self.memo, self.counters,
                self.wblock, self.bscr, self.bnblk, self.bblk, self.bbm, _PLUS_COLOUR, _FULL_CUBE, self.cbuf)

    def belief_id(self, words: np.ndarray) -> int:
        """Id of a belief given as full posterior words ``[1152]`` (a subset of the root's)."""
        words = np.asarray(words, dtype=np.uint64)
        if np.any(np.delete(words, self.cols)):
            raise ValueError("belief is not a subset of the trial's root posterior")
        sub = np.ascontiguousarray(words[self.cols])
        mass = int(np.bitwise_count(sub).sum())
        if mass == 0:
            raise ValueError("the posterior is empty: the history is impossible under every chemistry")
        nz = np.flatnonzero(sub)
        sidx, sval = nz.astype(np.int64), sub[nz]
        while True:
            bid, g = _intern(sidx, sval, len(nz), mass, self.group, self.lperm, self.salt, _RELABEL_COMPOSE,
                             _RELABEL_INVERSE, self.dense, self.boff, self.bnnz, self.bmass, self.bhash, self.bstab,
                             self.btable, self.pidx, self.pval, self.counters, self.wblock, self.bscr, self.bnblk,
                             self.bblk, self.bbm)
            if bid >= 0:
                break
            self._grow(-int(bid))
        handle = (int(bid), int(g))
        try:
            return self._handles.index(handle)
        except ValueError:
            self._handles.append(handle)
            return len(self._handles) - 1

    @property
    def beliefs(self) -> int:
        return int(self.counters[_C_BELIEFS])

    @property
    def states(self) -> int:
        """States expanded so far (memo entries)."""
        return int(self.counters[_C_MEMO])

    @property
    def nbytes(self) -> int:
        arrays = (self.boff, self.bnnz, self.bmass, self.bhash, self.bstab, self.btable, self.pidx, self.pval, self.thead,
                  self.bnblk, self.bblk, self.bbm,
                  self.tn, self.tcls, self.tchild, self.tg, self.tmass, self.memo, self.sets, self.lperm)
        return int(sum(a.nbytes for a in arrays))

    # --- search ---------------------------------------------------------------------------
    def value(self, bid: int, stones: np.ndarray, counts: np.ndarray) -> tuple[int, int, int]:
        """``(U, N, mass)`` of a state: ``U / mass`` is the expected reward of the rest of the trial.

        ``stones [3]``: stone codes (``4 * pv + f``, or :data:`USED_STONE`), any order; ``counts [6]``:
        present potions per colour.
        """
        b, g = self._handles[bid]
        s0, s1, s2 = sorted(int(s) for s in stones)
        counts = np.asarray(counts, dtype=np.int64)
        pcode = int(sum(int(counts[q]) * int(_POW13[_RELABEL_COLOUR[g, q]]) for q in range(6)))
        while True:
            u, n, status = _value(b, s0, s1, s2, pcode, _EXACT, *self._args())
            if status == 0:
                return int(u), int(n), int(self.bmass[b])
            self._grow(int(status))

    def best(self, bid: int, stones: np.ndarray, counts: np.ndarray) -> int:
        """The best action's code: -1 for the end-of-trial macro, else ``stone_code * 6 + colour``."""
        b, g = self._handles[bid]
        s0, s1, s2 = sorted(int(s) for s in stones)
        counts = np.asarray(counts, dtype=np.int64)
        while True:
            code, status = _best(b, g, s0, s1, s2, counts, *self._args())
            if status == 0:
                return int(code)
            self._grow(int(status))


def _mix_py(x: int) -> int:
    m = (1 << 64) - 1
    x = (x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


# --- observed states -> search states -> actions ------------------------------------------------


def observed_items(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From observation codes ``[39]``: stone codes ``[3]``, potion colours ``[12]`` (-1 if used), counts ``[6]``."""
    o = np.asarray(obs, dtype=np.int64)
    stones = np.full(NUM_STONES, USED_STONE, dtype=np.int64)
    for s in range(NUM_STONES):
        if o[5 * s + 4] == 0:
            pv = o[5 * s] + 2 * o[5 * s + 1] + 4 * o[5 * s + 2]
            stones[s] = 4 * pv + o[5 * s + 3]
    colours = np.where(o[16::2] == 0, o[15::2], -1)
    counts = np.bincount(colours[colours >= 0], minlength=6)
    return stones, colours, counts


def action_of_code(code: int, stones: np.ndarray, colours: np.ndarray) -> int:
    """The environment action (0..39) of a search action code in the observed state."""
    if code == -1:  # end of trial: the lowest present stone of positive value, else a no-op
        for s in range(NUM_STONES):
            if stones[s] != USED_STONE and (stones[s] & 3) >= 2:
                return 1 + 13 * s
        return 0
    stone_code, q = divmod(int(code), 6)
    s = int(np.flatnonzero(stones == stone_code)[0])
    p = int(np.flatnonzero(colours == q)[0])
    return 2 + 13 * s + p


class _TrialAgent:
    """Shared play logic: one :class:`TrialSearch` per episode and trial, rebuilt at each trial start."""

    simulator = ""
    budget: int | None = None
    name = ""

    def __init__(self) -> None:
        self.searches: list[TrialSearch | None] = []
        #: Per trial searched: (beliefs, states, bytes) of its store, for benchmarks.
        self.trial_stats: list[tuple[int, int, int]] = []

    def _root_words(self, context: RootContext, b: int) -> np.ndarray:
        raise NotImplementedError

    def act(self, context: RootContext, keys: np.ndarray) -> np.ndarray:
        """Actions ``[B]`` at step ``context.t`` (deterministic: ``keys`` are not used)."""
        t = context.t
        bsz = context.batch_size
        self._observe(context)
        if t % STEPS_PER_TRIAL == 0:
            for s in self.searches:
                if s is not None:
                    self.trial_stats.append((s.beliefs, s.states, s.nbytes))
            self.searches = [None] * bsz
        out = np.zeros(bsz, dtype=np.int64)
        obs = context.obs_codes[:, t]
        for b in range(bsz):
            words = self._root_words(context, b)
            if self.searches[b] is None:
                self.searches[b] = TrialSearch(words)
            search = self.searches[b]
            assert search is not None
            stones, colours, counts = observed_items(obs[b])
            code = search.best(search.belief_id(words), stones, counts)
            out[b] = action_of_code(code, stones, colours)
        return out

    def _observe(self, context: RootContext) -> None:
        """Update what the agent knows with the last real step."""


class IdealObserverPolicy(_TrialAgent):
    """The ideal observer: exact posterior, expectimax over the current trial (see the module)."""

    name = IDEAL_OBSERVER

    def __init__(self) -> None:
        super().__init__()
        self.filter: BayesFilter | None = None

    def _observe(self, context: RootContext) -> None:
        t = context.t
        if t == 0:
            self.filter = BayesFilter(context.obs_codes[:, 0])
            return
        assert self.filter is not None and self.filter.t == t - 1, "the ideal observer must see every step in order"
        self.filter.update(context.actions[:, t - 1], context.reward_codes[:, t - 1], context.obs_codes[:, t])

    def _root_words(self, context: RootContext, b: int) -> np.ndarray:
        assert self.filter is not None
        return self.filter.post[b]


class SearchOraclePolicy(_TrialAgent):
    """The search oracle: the same search with the true chemistry (its belief is one chemistry)."""

    name = SEARCH_ORACLE

    def __init__(self) -> None:
        super().__init__()
        self._words: np.ndarray | None = None

    def _observe(self, context: RootContext) -> None:
        if context.t == 0:
            if context.chemistry is None:
                raise ValueError("the search oracle needs the true chemistry")
            member = np.zeros((context.batch_size, NUM_CHEMISTRIES), dtype=bool)
            member[np.arange(context.batch_size), context.chemistry.index] = True
            self._words = pack_chemistry_sets(member)

    def _root_words(self, context: RootContext, b: int) -> np.ndarray:
        assert self._words is not None
        return self._words[b]


def make_agent(name: str) -> IdealObserverPolicy | SearchOraclePolicy:
    """The agent called ``name`` (:data:`AGENTS`)."""
    if name == IDEAL_OBSERVER:
        return IdealObserverPolicy()
    if name == SEARCH_ORACLE:
        return SearchOraclePolicy()
    raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")


def chemistry_trial_value(chemistry: Chemistry, stones: np.ndarray, potions: np.ndarray) -> float:
    """The search oracle's value of a trial at its start: the best total reward for the true chemistry.

    ``stones [3]`` latent vertices, ``potions [12]`` latent potion indices (SPEC §4) of one trial.
    """
    member = np.zeros(NUM_CHEMISTRIES, dtype=bool)
    member[int(chemistry.index[0])] = True
    search = TrialSearch(pack_chemistry_sets(member))
    codes, counts = trial_start_state(chemistry, stones, potions)
    u, _, mass = search.value(search.root, codes, counts)
    return u / mass


def trial_start_state(chemistry: Chemistry, stones: np.ndarray, potions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stone codes ``[3]`` and colour counts ``[6]`` of a trial's items as the agent perceives them."""
    i = int(chemistry.stone_map_index[0])
    v = np.asarray(stones, dtype=np.int64)
    pv = v ^ 7 ^ i
    f = np.array([bin(int(x)).count("1") for x in v], dtype=np.int64)
    colours = chemistry.colour_of_latent[0][np.asarray(potions, dtype=np.int64)].astype(np.int64)
    return 4 * pv + f, np.bincount(colours, minlength=6)[:6]


__all__ = [
    "AGENTS", "IDEAL_OBSERVER", "IdealObserverPolicy", "SEARCH_ORACLE", "SearchOraclePolicy", "TrialSearch",
    "USED_STONE", "VALUE_OF_FEATURE", "action_of_code", "chemistry_trial_value", "make_agent", "observed_items",
    "trial_start_state",
]
assert NUM_POTIONS == 12 and NUM_STONES == 3
