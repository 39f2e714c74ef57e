"""Numba kernels for the tree code of :mod:`alchemy_mbrl.planner.tree_search` (select, merge + expand
bookkeeping, backup), one compiled loop over the B searches instead of ~30 NumPy calls per tree level.

They compute exactly what the NumPy reference functions compute (same float64 operations in the same
order; the selection weight, which needs ``log`` and ``sqrt``, is tabulated by NumPy itself), so search
decisions are bit-identical (``tests/test_planner_numba.py`` compares whole searches). The random
choices use :mod:`alchemy_mbrl.rng`'s SplitMix64 mixing, re-implemented here on uint64 scalars.

``AVAILABLE`` is False when Numba cannot be imported, or when ``ALCHEMY_NUMBA=0``; the planner then
uses the NumPy reference code.
"""

from __future__ import annotations

import os

import numpy as np

try:  # pragma: no branch
    if os.environ.get("ALCHEMY_NUMBA", "1") == "0":
        raise ImportError("disabled by ALCHEMY_NUMBA=0")
    import numba
    from numba import njit

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        def wrap(f):
            return f

        return wrap if not (len(args) == 1 and callable(args[0])) else args[0]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _fold_in(key, data):
    d = np.uint64(data)
    return _mix(key ^ _mix(d * _GOLDEN + _GOLDEN))


@njit(cache=True, inline="always")
def _uniform(key):
    return np.float64(_mix(key + _ONE * _GOLDEN) >> _S11) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def iteration_keys(keys, i, tag_a, tag_b):
    """``(fold_in(fold_in(keys, i), tag_a), fold_in(fold_in(keys, i), tag_b))`` in one pass (uint64 [B])."""
    a = np.empty_like(keys)
    b = np.empty_like(keys)
    for j in range(keys.shape[0]):
        it = _fold_in(keys[j], i)
        a[j] = _fold_in(it, tag_a)
        b[j] = _fold_in(it, tag_b)
    return a, b


@njit(cache=True)
def _numpy_sum(a):
    """``a.sum()`` in NumPy's summation order (pairwise: 8 partial sums per block of up to 128)."""
    n = a.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n > 128:  # not needed by the planner (K <= 128); plain order beyond
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r = a[:8].copy()
    m = n - n % 8
    for i in range(8, m, 8):
        for j in range(8):
            r[j] += a[i + j]
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(m, n):
        res += a[i]
    return res


#: codes of :data:`alchemy_mbrl.planner.params.READINGS` passed to :func:`select_kernel`
UNVISITED_CODES = {"zero": 0, "bottom": 1, "parent": 2}
TIE_CODES = {"lowest": 0, "highest": 1, "random": 2, "untried": 3}
#: salt of the selection's tie-breaking stream (the branch sample at depth d uses ``fold_in(key, d)`` itself)
TIE_SALT = 0x7469


@njit(cache=True)
def select_kernel(slot, value, visits, visits_sum, child_chance, chance_children, chance_weight, node_t,
                  q_min, q_max, keys, weight_table, minmax, horizon, max_depth, unvisited=0, tie=0,
                  count_node=False):
    """Per-search selection; see :func:`alchemy_mbrl.planner.tree_search.select` (same outputs).

    ``unvisited`` (0 zero, 1 bottom, 2 parent), ``tie`` (0 lowest, 1 highest, 2 random, 3 untried) and
    ``count_node`` (the exploration term counts the node's own visit below the root) are the codes of
    the readings ``unvisited_q``, ``tie_break`` and ``exploration_count`` (:data:`UNVISITED_CODES`,
    :data:`TIE_CODES`); the defaults are Algorithm 1 as the NumPy reference code reads it.

    Returns ``nodes, actions, chances, valid`` ``[B, D]`` and ``leaf_node, leaf_action, leaf_depth,
    terminal [B]`` with D = deepest level + 1 over the batch (rows that stopped earlier repeat their
    last node and action with ``chances = -1``, ``valid = False``, as the NumPy code does).
    """
    bsz = slot.shape[0]
    num_actions = value.shape[2]
    k = chance_weight.shape[2]
    nodes = np.zeros((bsz, max_depth), np.int64)
    actions = np.zeros((bsz, max_depth), np.int64)
    chances = np.full((bsz, max_depth), -1, np.int64)
    valid = np.zeros((bsz, max_depth), np.bool_)
    leaf_node = np.zeros(bsz, np.int64)
    leaf_action = np.zeros(bsz, np.int64)
    leaf_depth = np.zeros(bsz, np.int64)
    terminal = np.zeros(bsz, np.bool_)
    cdf = np.empty(k, np.float64)
    scores = np.empty(num_actions, np.float64)
    deepest = 0
    for b in range(bsz):
        node = 0
        depth = 0
        lo = q_min[b]
        span = q_max[b] - q_min[b]
        ok = np.isfinite(span) and span > 0
        while True:
            s = slot[b, node]
            n_total = visits_sum[b, s]
            if count_node and depth > 0:
                n_total += 1
            w = weight_table[n_total]
            # the score of an action never tried here
            if unvisited == 0:
                q0 = 0.0
                if minmax and ok:
                    q0 = (0.0 - lo) / span
            elif unvisited == 1:
                if minmax:
                    q0 = 0.0
                else:
                    q0 = lo if np.isfinite(lo) else 0.0
            else:
                q0 = 0.0
                if visits_sum[b, s] > 0:
                    for a in range(num_actions):
                        scores[a] = visits[b, s, a] * value[b, s, a]
                    q0 = _numpy_sum(scores) / visits_sum[b, s]  # NumPy's summation order: bit-identical
                if minmax and ok:
                    q0 = (q0 - lo) / span
            best = -np.inf
            a_best = 0
            untried = 0
            for a in range(num_actions):
                n = visits[b, s, a]
                if n > 0:
                    q = value[b, s, a]
                    if minmax and ok:
                        q = (q - lo) / span
                else:
                    q = q0
                    untried += 1
                sc = q + w / (1.0 + n)
                scores[a] = sc
                if sc > best or a == 0:
                    best = sc
                    a_best = a
            if tie == 1:
                for a in range(num_actions - 1, -1, -1):
                    if scores[a] == best:
                        a_best = a
                        break
            elif tie == 2 or (tie == 3 and untried > 0):
                m = 0
                for a in range(num_actions):
                    if (tie == 2 and scores[a] == best) or (tie == 3 and visits[b, s, a] == 0):
                        m += 1
                pick = int(_uniform(_fold_in(_fold_in(keys[b], depth), TIE_SALT)) * m)
                if pick > m - 1:
                    pick = m - 1
                for a in range(num_actions):
                    if (tie == 2 and scores[a] == best) or (tie == 3 and visits[b, s, a] == 0):
                        if pick == 0:
                            a_best = a
                            break
                        pick -= 1
            is_terminal = node_t[b, node] >= horizon
            chance = child_chance[b, s, a_best]
            nodes[b, depth] = node
            actions[b, depth] = a_best
            valid[b, depth] = not is_terminal
            if is_terminal or chance < 0:
                leaf_node[b] = node
                leaf_action[b] = a_best
                leaf_depth[b] = depth
                terminal[b] = is_terminal
                break
            chances[b, depth] = chance
            key = _fold_in(keys[b], depth)
            total = 0.0
            for j in range(k):
                total += chance_weight[b, chance, j]
                cdf[j] = total
            u = _uniform(key) * cdf[k - 1]
            branch = 0
            for j in range(k):
                if cdf[j] <= u:
                    branch += 1
            if branch > k - 1:
                branch = k - 1
            node = chance_children[b, chance, branch]
            depth += 1
        if depth > deepest:
            deepest = depth
    d_out = deepest + 1
    for b in range(bsz):
        last = leaf_depth[b]
        for d in range(last + 1, d_out):
            nodes[b, d] = nodes[b, last]
            actions[b, d] = actions[b, last]
    return (nodes[:, :d_out], actions[:, :d_out], chances[:, :d_out], valid[:, :d_out],
            leaf_node, leaf_action, leaf_depth, terminal)


@njit(cache=True)
def merge_kernel(obs, rewards):
    """:func:`alchemy_mbrl.planner.tree_search.merge_samples` for ``obs [B, K, 39]``, ``rewards [B, K]``."""
    bsz, k, dim = obs.shape
    out = np.zeros((bsz, k), np.int32)
    for b in range(bsz):
        for i in range(k):
            first = i
            for j in range(i):
                if rewards[b, j] != rewards[b, i]:
                    continue
                same = True
                for c in range(dim):
                    if obs[b, j, c] != obs[b, i, c]:
                        same = False
                        break
                if same:
                    first = j
                    break
            out[b, first] += 1
    return out


@njit(cache=True)
def expand_kernel(obs, rewards, grow, children, leaf_node, leaf_action, leaf_depth, path_chances, i,
                  reward_scale, chance_children, chance_weight, chance_reward, node_t, slot, next_slot,
                  child_chance, node_reward):
    """The bookkeeping of :func:`alchemy_mbrl.planner.tree_search.expand` after the simulator call."""
    weight = merge_kernel(obs, rewards)
    bsz, k = weight.shape
    terms = np.empty(k, np.float64)
    for b in range(bsz):
        wsum = 0
        for j in range(k):
            if not grow[b]:
                weight[b, j] = 0
            chance_children[b, i, j] = children[b, j]
            chance_weight[b, i, j] = weight[b, j]
            terms[j] = weight[b, j] * (np.float64(rewards[b, j]) * reward_scale)
            wsum += weight[b, j]
        chance_reward[b, i] = _numpy_sum(terms) / max(wsum, 1)
        leaf = leaf_node[b]
        t_child = node_t[b, leaf] + 1
        for j in range(k):
            node_t[b, children[b, j]] = t_child
            node_reward[b, children[b, j]] = np.float64(rewards[b, j]) * reward_scale
        if grow[b]:
            if slot[b, leaf] == 0:
                slot[b, leaf] = next_slot[b]
                next_slot[b] += 1
            child_chance[b, slot[b, leaf], leaf_action[b]] = i
            path_chances[b, leaf_depth[b]] = i


@njit(cache=True)
def backup_kernel(nodes, actions, chances, valid, chance_reward, slot, value, visits, visits_sum,
                  q_min, q_max, gamma, leaf_depth=None, node_reward=None, node_t=None, steps_per_trial=0):
    """:func:`alchemy_mbrl.planner.tree_search.backup`, one search at a time.

    With ``node_reward [B, M]`` and ``leaf_depth [B]`` (reading ``backup_reward = "branch"``), the levels
    above the new chance node back up the reward of the branch the selection took instead of its
    chance node's weighted mean. With ``node_t [B, M]`` and ``steps_per_trial > 0`` (reading
    ``discount = "trial"``), gamma applies only where a step ends a trial.
    """
    bsz, depth = nodes.shape
    for b in range(bsz):
        g = 0.0
        for d in range(depth - 1, -1, -1):
            if not valid[b, d]:
                continue
            c = chances[b, d]
            if node_reward is not None and d < leaf_depth[b]:
                r = node_reward[b, nodes[b, d + 1]]
            else:
                r = chance_reward[b, c if c > 0 else 0]
            if node_t is not None and (node_t[b, nodes[b, d]] + 1) % steps_per_trial != 0:
                g = r + g
            else:
                g = r + gamma * g
            s = slot[b, nodes[b, d]]
            a = actions[b, d]
            n = visits[b, s, a]
            q_new = (value[b, s, a] * n + g) / (n + 1)
            value[b, s, a] = q_new
            if q_new < q_min[b]:
                q_min[b] = q_new
            if q_new > q_max[b]:
                q_max[b] = q_new
            visits[b, s, a] = n + 1
            visits_sum[b, s] += 1
