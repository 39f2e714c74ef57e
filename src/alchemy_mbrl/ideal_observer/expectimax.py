"""The expectimax itself: the value of a state, and the best action of the state an agent is in.

One recursive kernel, :func:`value`, serves both: a state inside the search (memoised, in the
frame of its stored belief, with a fail-low threshold) and the queried root (``root=True``: in the
state's own colours, not memoised, returning its best action with the documented tie-break).
"""

from __future__ import annotations

from alchemy_mbrl.ideal_observer.kernels import (
    canon_counts,
    child_bound,
    child_stones,
    count_potions,
    end_of_trial,
    kernel,
    loose_bound,
    memo_find,
    memo_key,
    relabel_counts,
    searched_stone,
    stone_at,
    transition,
)
from alchemy_mbrl.ideal_observer.tables import (
    ACTION_SLOTS,
    C_EXPANDED,
    C_MEMO,
    COLOUR_RADIX,
    EXACT,
    GROW_MEMO,
    SCRATCH_PER_ACTION,
)


@kernel()
def leaf_value(bid, s0, s1, s2, pcode, npot, k, b, t):
    """``(U, N, status)`` of a state with at most one potion left (:func:`value`), exactly.

    Its children have no potion left, so their values are their end of trial: only the outcomes'
    masses are needed (the children's beliefs are not interned, the state is not memoised).
    """
    m = b.bmass[bid]
    macro, npos = end_of_trial(s0, s1, s2, k.value_of_f, k.steps_of_f)
    best_u = m * macro
    best_n = m * npos
    if npot == 0:
        return best_u, best_n, 0
    q = 0
    while k.pow13[q] != pcode:  # the one colour left
        q += 1
    for si in range(3):
        if not searched_stone(si, s0, s1, s2):
            continue
        code = stone_at(si, s0, s1, s2)
        pv = code >> 2
        e = transition(bid, pv, code & 3, q, False, k, b, t)
        if e < 0:
            return 0, 0, -e
        u = 0
        n = m
        for kk in range(t.tn[e]):
            a0, a1, a2 = child_stones(si, t.tcls[e * 7 + kk], pv, k.flip, s0, s1, s2)
            cmac, cpos = end_of_trial(a0, a1, a2, k.value_of_f, k.steps_of_f)
            u += t.tmass[e * 7 + kk] * cmac
            n += t.tmass[e * 7 + kk] * cpos
        if t.tn[e] > 0 and (u > best_u or (u == best_u and n < best_n)):
            best_u = u
            best_n = n
    return best_u, best_n, 0


@kernel(cache=False)  # recursive: Numba's on-disk cache of it crashes when loaded
def value(bid, g0, s0, s1, s2, pcode, alpha, root, k, b, t, s):
    """``(U, N, best action, status)`` of a state: mass-weighted expected trial reward and remaining actions.

    Stones ``s0 <= s1 <= s2`` are stone codes, ``pcode`` the colour counts in radix 13 in the frame
    of the stored belief ``bid``, and ``g0`` the relabelling from the state's own colours to that
    frame (colour ``q_own`` is ``gcol[g0, q_own]`` there). ``status`` is non-zero when a store is
    full (the caller grows it and calls again; finished states stay memoised).

    Inside the search (``root`` false, ``g0 = 0``): states with at most one potion left are exact at
    once (:func:`leaf_value`); others have their colour counts relabelled to the smallest under the
    belief's stabiliser (same values), so relabelled states share one memo entry. ``alpha``
    (fail-low threshold): the caller only needs the exact value when ``U >= alpha``. When
    ``U < alpha`` the search may stop early and return ``(V, -1, ...)`` with ``U <= V < alpha`` (an
    upper bound, flagged by ``N = -1``); ``alpha = EXACT`` always gives the exact value. The memo
    keeps both kinds (an upper bound answers a later query only if it is below its alpha).

    At the root (``root`` true, ``alpha = EXACT``): the state is neither memoised nor counted, no
    action is pruned before the search, and the actions are compared in the state's own colours,
    so the best action (-1: the end-of-trial macro, else ``stone_code * 6 + q_own``) follows the
    documented tie-break: among equal (U, N) the macro, then the action first in ``s.order`` (the
    rank of each action code; ``N`` counts what the tie rule of ``k.steps_of_f`` counts).

    An action is searched only as far as it can still reach the best U found (ties included): its
    outcomes are asked for their exact value only when the rest's bounds leave them a chance, and
    the actions are searched best full-cube bound first (a state's value, max U then min N, does not
    depend on the order; a tied action is never pruned).
    """
    npot = count_potions(pcode)  # children have fewer, so this state's scratch starts at npot
    memo, cbuf = s.memo, s.cbuf
    h = 0
    key = 0
    if not root:
        if npot <= 1:  # its children have no potion: exact at once, not memoised
            u, n, status = leaf_value(bid, s0, s1, s2, pcode, npot, k, b, t)
            return u, n, 0, status
        pcode = canon_counts(pcode, b.bstab[bid], k.gcol, k.pow13)
        key = memo_key(bid, s0, s1, s2, pcode)
        h = memo_find(key, memo)
        known = memo[h, 0] == key  # memoised: exact, or an upper bound (then searched again unless below alpha)
        if known:
            if memo[h, 2] >= 0:
                return memo[h, 1], memo[h, 2], 0, 0
            if memo[h, 1] < alpha:
                return memo[h, 1], -1, 0, 0
        if not known and 2 * (b.counters[C_MEMO] + 1) > memo.shape[0]:
            return 0, 0, 0, GROW_MEMO  # grown before the search, not after it (its ancestors' entries still fit)
        b.counters[C_EXPANDED] += 1
    m = b.bmass[bid]
    # end of trial: cauldron every present stone of positive value
    macro, npos = end_of_trial(s0, s1, s2, k.value_of_f, k.steps_of_f)
    best_u = m * macro
    best_n = m * npos
    best = -1
    # an action is pruned when an upper bound of its U is strictly below the threshold
    # max(best U found, alpha): it can be neither the best nor tied, nor lift the state to alpha.
    # pruned_ub keeps the largest such bound: with best_u, an upper bound of the state's U.
    thr = best_u if best_u > alpha else alpha
    pruned_ub = EXACT
    # low: the best "one action, then the end of the trial" U, a lower bound of the state's U; an
    # action whose bound is strictly below it can be neither the best nor tied (pruned too)
    low = best_u
    # the actions not pruned by their bound (the sum of their outcomes' upper bounds), with it;
    # they are then searched best bound first
    base = npot * ACTION_SLOTS * SCRATCH_PER_ACTION
    na = 0
    for si in range(3):
        if not searched_stone(si, s0, s1, s2):
            continue
        code = stone_at(si, s0, s1, s2)
        pv = code >> 2
        for q_own in range(6):
            q = k.gcol[g0, q_own]
            if (pcode // k.pow13[q]) % COLOUR_RADIX == 0:
                continue
            e = transition(bid, pv, code & 3, q, True, k, b, t)
            if e < 0:
                return 0, 0, 0, -e
            nout = t.tn[e]
            if nout == 0:
                continue
            rest = pcode - k.pow13[q]
            # the loose bound first (it is cheap); with it, a lower bound of the state's U: this
            # action, then the end of the trial
            bound = 0
            lower = 0
            for kk in range(nout):
                a0, a1, a2 = child_stones(si, t.tcls[e * 7 + kk], pv, k.flip, s0, s1, s2)
                bound += t.tmass[e * 7 + kk] * loose_bound(a0, a1, a2, rest, k.ub)
                lower += t.tmass[e * 7 + kk] * end_of_trial(a0, a1, a2, k.value_of_f, k.steps_of_f)[0]
            if lower > low:
                low = lower
                thr = max(thr, low)
            if not root and bound < thr:
                pruned_ub = max(pruned_ub, bound)
                continue
            # the full-cube bounds order the actions; each outcome's bound for pruning is the
            # smaller of its full-cube bound and its memoised value (exact or an upper bound), if any
            # (ordering by the memoised values instead expands more states: measured)
            slot = base + na * SCRATCH_PER_ACTION
            order = 0
            bound = 0
            for kk in range(nout):
                a0, a1, a2 = child_stones(si, t.tcls[e * 7 + kk], pv, k.flip, s0, s1, s2)
                cpc = relabel_counts(rest, t.tg[e * 7 + kk], k.gcol, k.pow13)
                full, cb = child_bound(t.tchild[e * 7 + kk], a0, a1, a2, cpc, k, b, memo)
                order += full
                cbuf[slot + 2 + kk] = cb
                bound += cb
            if not root and bound < thr:
                pruned_ub = max(pruned_ub, bound)
                continue
            cbuf[slot] = order
            cbuf[slot + 1] = (si * 6 + q_own) * (1 << 32) + e
            na += 1
    for _ in range(na):
        thr = max(best_u, alpha, low)
        # the remaining action of largest bound (the first such in action order)
        ba = -1
        bb = -1
        for a in range(na):
            x = cbuf[base + a * SCRATCH_PER_ACTION]
            if x > bb:
                bb = x
                ba = a
        if ba < 0:
            break
        if bb < thr:  # every remaining action is pruned
            pruned_ub = max(pruned_ub, bb)
            break
        slot = base + ba * SCRATCH_PER_ACTION
        cbuf[slot] = -1
        e = cbuf[slot + 1] & ((1 << 32) - 1)
        nout = t.tn[e]
        bound = 0
        for kk in range(nout):
            bound += cbuf[slot + 2 + kk]
        if bound < thr:
            pruned_ub = max(pruned_ub, bound)
            continue
        sq = cbuf[slot + 1] >> 32
        si = sq // 6
        q_own = sq - 6 * si
        q = k.gcol[g0, q_own]
        code = stone_at(si, s0, s1, s2)
        pv = code >> 2
        rest = pcode - k.pow13[q]
        u_sum = 0
        n_sum = m  # this action is one step, whatever happens
        pruned = False
        for kk in range(nout):
            a0, a1, a2 = child_stones(si, t.tcls[e * 7 + kk], pv, k.flip, s0, s1, s2)
            cb = cbuf[slot + 2 + kk]
            # the action falls strictly below thr if this outcome's U is below thr - (the rest's bounds)
            u, n, _, status = value(t.tchild[e * 7 + kk], 0, a0, a1, a2,
                                    relabel_counts(rest, t.tg[e * 7 + kk], k.gcol, k.pow13), thr - (bound - cb),
                                    False, k, b, t, s)
            if status != 0:
                return 0, 0, 0, status
            u_sum += u
            n_sum += n
            bound += u - cb
            if n < 0 or bound < thr:  # (a child below its threshold puts the bound below thr)
                pruned = True
                pruned_ub = max(pruned_ub, bound)
                break
        if pruned:
            continue
        action = code * 6 + q_own
        if (u_sum > best_u or (u_sum == best_u and n_sum < best_n)
                or (u_sum == best_u and n_sum == best_n and best >= 0 and s.order[action] < s.order[best])):
            best_u = u_sum
            best_n = n_sum
            best = action
    if root:
        return best_u, best_n, best, 0
    if best_u < alpha:  # below the caller's threshold: an upper bound (every pruned bound is below alpha)
        best_u = max(best_u, pruned_ub)
        best_n = -1
    h = memo_find(key, memo)  # the table may have changed below us
    if memo[h, 0] == -1:
        memo[h, 0] = key
        b.counters[C_MEMO] += 1
    memo[h, 1] = best_u
    memo[h, 2] = best_n
    return best_u, best_n, best, 0
