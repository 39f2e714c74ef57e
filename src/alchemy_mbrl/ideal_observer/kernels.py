"""The search's compiled building blocks: bit tricks, state codes, bounds, belief interning, transitions.

The kernels receive the search's arrays in four structures instead of some 40 positional arrays:
``k`` (:class:`~.tables.Tables`, constant), ``b`` (:class:`~.store.Beliefs`, the interned beliefs),
``t`` (:class:`~.store.Transitions`, outcome tables) and ``s`` (:class:`~.store.Memo`, the memo and
the scratch of the search's actions). Numba passes a tuple's members as separate arguments, so the
compiled code is that of the positional version.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alchemy_mbrl.ideal_observer.tables import (
    C_BELIEFS,
    C_ENTRIES,
    C_POOL,
    COLOUR_RADIX,
    GROW_BELIEFS,
    GROW_ENTRIES,
    GROW_POOL,
    NO_CLASS,
    NUM_RELABELS,
    POTION_CODES,
    STONE_RADIX,
    USED_STONE,
)


def kernel(cache: bool = True):
    """``njit`` for the search's kernels, without Numba's reference counting of their arguments.

    The kernels take some 40 arrays each and call each other millions of times; with reference
    counting, every call increments and decrements every array argument (atomic operations):
    ``perf`` put 26 % of a first trial's time in ``NRT_incref``/``NRT_decref``, and dropping them made
    the search 1.75x faster (same states). Safe because no kernel allocates or keeps an array: the
    arrays belong to the :class:`~.store.TrialSearch` that calls them, alive for the whole call.
    """
    return njit(cache=cache, _nrt=False)


@njit(cache=True, inline="always")
def popcount(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, inline="always")
def mix(x: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit value."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def sort3(a, b, c):
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@njit(cache=True, inline="always")
def stone_at(si, s0, s1, s2):
    """The code of the stone in sorted position ``si``."""
    return s0 if si == 0 else (s1 if si == 1 else s2)


@njit(cache=True, inline="always")
def searched_stone(si, s0, s1, s2):
    """Whether the stone in sorted position ``si`` is acted on: present, and not equal to the one before."""
    code = stone_at(si, s0, s1, s2)
    return not (code == USED_STONE or (si == 1 and code == s0) or (si == 2 and code == s1))


@njit(cache=True, inline="always")
def end_of_trial(s0, s1, s2, value_of_f, steps_of_f):
    """``(reward, N)`` of the end-of-trial macro: cauldron every present stone of positive value.

    ``N`` is what the macro adds to the tie-break count: ``steps_of_f[f]`` per cauldroned stone
    (:data:`~.tables.MACRO_STEPS`: none under DeepMind's rule, one step each under ``actions``).
    """
    macro = 0
    npos = 0
    for si in range(3):
        c = stone_at(si, s0, s1, s2)
        if c != USED_STONE and (c & 3) >= 2:
            macro += value_of_f[c & 3]
            npos += steps_of_f[c & 3]
    return macro, npos


@njit(cache=True, inline="always")
def child_stones(si, cls, pv, flip, s0, s1, s2):
    """Sorted stone codes after the stone in sorted position ``si`` (at perceived vertex ``pv``) has outcome ``cls``."""
    ncode = ((pv ^ flip[cls >> 2]) << 2) | (cls & 3)
    if si == 0:
        return sort3(ncode, s1, s2)
    if si == 1:
        return sort3(s0, ncode, s2)
    return sort3(s0, s1, ncode)


@njit(cache=True, inline="always")
def count_potions(pcode):
    """Potions left in the colour counts ``pcode`` (radix 13)."""
    npot = 0
    rest = pcode
    for q in range(6):
        npot += rest % COLOUR_RADIX
        rest //= COLOUR_RADIX
    return npot


@njit(cache=True, inline="always")
def relabel_counts(pcode, g, gcol, pow13):
    """Colour counts (radix 13) relabelled by g: ``count'[g(q)] = count[q]``."""
    if g == 0:
        return pcode
    out = 0
    rest = pcode
    for q in range(6):
        out += (rest % COLOUR_RADIX) * pow13[gcol[g, q]]
        rest //= COLOUR_RADIX
    return out


@njit(cache=True, inline="always")
def loose_bound(s0, s1, s2, pcode, ub):
    """Upper bound (per unit of mass) on the rest of the trial's reward of a state (:func:`~.tables.upper_bounds`)."""
    p = 0
    pairs = 0
    rest = pcode
    for pair in range(3):
        a = rest % COLOUR_RADIX
        b = (rest // COLOUR_RADIX) % COLOUR_RADIX
        rest //= COLOUR_RADIX * COLOUR_RADIX
        p += a + b
        if a + b > 0:
            pairs += 1
    f0 = 4 if s0 == USED_STONE else s0 & 3
    f1 = 4 if s1 == USED_STONE else s1 & 3
    f2 = 4 if s2 == USED_STONE else s2 & 3
    return ub[f0, f1, f2, p, pairs]


@kernel()
def full_bound(bid, s0, s1, s2, pcode, boff, bnblk, bblk, bbm, plus, ftab):
    """Upper bound on U (mass-weighted rest-of-trial reward) of a state: the full-cube bound.

    ``sum over the (stone map i, potion map m) blocks of the belief of mass x FULL(i, m)``, where
    FULL is the best rest-of-trial reward if the stone and potion maps are (i, m) and the graph is
    the full cube (:func:`~.tables.full_cube_table`). Admissible: under a chemistry (i, m, G), apply any
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
    frame of the stored belief, with its relabelled counts, like the values. (Its few arrays are
    passed one by one: it is called for every child of every action.)
    """
    cc = 0
    rest = pcode
    for q in range(6):
        c = rest % COLOUR_RADIX
        rest //= COLOUR_RADIX
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
def canon_counts(pcode, stab, gcol, pow13):
    """The smallest relabelling of the colour counts by the relabellings that fix the belief."""
    best = pcode
    if stab == 1:
        return best
    for g in range(1, NUM_RELABELS):
        if (stab >> np.int64(g)) & 1:
            c = relabel_counts(pcode, g, gcol, pow13)
            if c < best:
                best = c
    return best


@njit(cache=True, inline="always")
def memo_key(bid, s0, s1, s2, pcode):
    """The memo key of a state whose colour counts are canonical (:func:`canon_counts`)."""
    return (bid * STONE_RADIX**3 + (s0 * STONE_RADIX + s1) * STONE_RADIX + s2) * POTION_CODES + pcode


@njit(cache=True, inline="always")
def memo_find(key, memo):
    """Slot of ``key`` in the memo, or the empty slot where it would go (``memo[slot, 0] == -1``).

    ``memo [capacity, 3]``: per slot (key, U, N), side by side so that a look-up reads one cache line.
    """
    mask = memo.shape[0] - 1
    h = np.int64(mix(np.uint64(key)) & np.uint64(mask))
    while memo[h, 0] != -1 and memo[h, 0] != key:
        h = (h + 1) & mask
    return h


@njit(cache=True, inline="always")
def child_bound(cid, a0, a1, a2, cpc, k, b, memo):
    """``(full-cube bound, bound for pruning)`` of a child state (``cpc``: its counts in its belief's frame).

    The bound for pruning is the smaller of the full-cube bound and the child's memoised value (exact
    or an upper bound), if any.
    """
    cb = full_bound(cid, a0, a1, a2, cpc, b.boff, b.bnblk, b.bblk, b.bbm, k.plus, k.ftab)
    hc = memo_find(memo_key(cid, a0, a1, a2, canon_counts(cpc, b.bstab[cid], k.gcol, k.pow13)), memo)
    if memo[hc, 0] != -1 and memo[hc, 1] < cb:
        return cb, memo[hc, 1]
    return cb, cb


@kernel()
def intern(sidx, sval, n, mass, k, b):
    """Intern the relabelled image of the sparse belief ``(sidx, sval)[:n]`` that has the smallest hash.

    Returns ``(id, g)`` with ``g(belief) = belief id`` (g in ``b.group``), or ``(-status, 0)`` when a
    store is full. Images whose hashes tie with the chosen one are checked exactly: those equal to
    it give the belief's stabiliser (``bstab``, a 48-bit mask), used to relabel colour counts.
    """
    group, lperm, dense, counters = b.group, b.lperm, b.dense, b.counters
    hmin = np.uint64(0xFFFFFFFFFFFFFFFF)
    g0 = 0
    ties = 0
    for gi in range(group.shape[0]):
        g = group[gi]
        h = np.uint64(0)
        for j in range(n):
            h += mix(sval[j] ^ b.salt[lperm[g, sidx[j]]])
        if h < hmin:
            hmin = h
            g0 = g
            ties = 0
        elif h == hmin:
            ties += 1
    for j in range(n):
        dense[lperm[g0, sidx[j]]] = sval[j]
    mask = b.btable.shape[0] - 1
    p = np.int64(hmin & np.uint64(mask))
    found = -1
    while True:
        idx = b.btable[p]
        if idx == -1:
            break
        if b.bhash[idx] == hmin and b.bmass[idx] == mass and b.bnnz[idx] == n:
            same = True
            o = b.boff[idx]
            for j in range(n):
                if dense[b.pidx[o + j]] != b.pval[o + j]:
                    same = False
                    break
            if same:
                found = idx
                break
        p = (p + 1) & mask
    if found < 0:
        nb = counters[C_BELIEFS]
        status = 0
        if nb >= b.bmass.shape[0] or 2 * (nb + 1) > b.btable.shape[0]:
            status = GROW_BELIEFS
        elif counters[C_POOL] + n > b.pidx.shape[0]:
            status = GROW_POOL
        if status != 0:
            for j in range(n):
                dense[lperm[g0, sidx[j]]] = 0
            return -status, 0
        stab = np.int64(1)
        if ties > 0:
            inv0 = k.inverse[g0]
            for gi in range(group.shape[0]):
                g = group[gi]
                if g == g0:
                    continue
                same = True
                for j in range(n):
                    if dense[lperm[g, sidx[j]]] != sval[j]:
                        same = False
                        break
                if same:
                    stab |= np.int64(1) << np.int64(k.compose[g, inv0])
        o = counters[C_POOL]
        for j in range(n):
            b.pidx[o + j] = lperm[g0, sidx[j]]
            b.pval[o + j] = sval[j]
        counters[C_POOL] = o + n
        # the belief's (stone map, potion map) blocks and their masses, for the full-cube bound
        for j in range(n):
            b.bscr[b.wblock[b.pidx[o + j]]] += popcount(sval[j])
        nblk = 0
        for j in range(n):
            blk = b.wblock[b.pidx[o + j]]
            if b.bscr[blk] != 0:
                b.bblk[o + nblk] = blk
                b.bbm[o + nblk] = b.bscr[blk]
                b.bscr[blk] = 0
                nblk += 1
        b.bnblk[nb] = nblk
        b.boff[nb] = o
        b.bnnz[nb] = n
        b.bmass[nb] = mass
        b.bhash[nb] = hmin
        b.bstab[nb] = stab
        b.btable[p] = nb
        counters[C_BELIEFS] = nb + 1
        found = nb
    for j in range(n):
        dense[lperm[g0, sidx[j]]] = 0
    return found, g0


@kernel()
def transition(bid, pv, f, q, need, k, b, t):
    """Entry (in ``t.tn``...) of the outcomes of putting a stone at ``pv`` (feature f) into colour q.

    Computed once per (belief, pv, q): ``tn[e]`` outcomes (0 if the action certainly changes
    nothing), each a class, its mass, and, once some caller ``need``s them, the interned child
    belief and the relabelling g mapping the child onto it (a state with one potion left needs
    only the outcomes' masses: its children have no potion, so their values are their end of
    trial; ``tchild[7 e] == -1`` until the children are interned). Returns ``e``, or ``-status``
    when a store is full.
    """
    counters, pidx, pval, sets = b.counters, b.pidx, b.pval, t.sets
    tn, tcls, tchild, tmass = t.tn, t.tcls, t.tchild, t.tmass
    key = bid * 48 + pv * 6 + q
    e = t.thead[key]
    if e < 0:
        ne = counters[C_ENTRIES]
        if ne >= tn.shape[0]:
            return -GROW_ENTRIES
        o = b.boff[bid]
        nnz = b.bnnz[bid]
        base = (pv * 6 + q) * 16
        informative = False
        j = 0
        for ci in range(7):
            cls = k.cand[f, ci]
            if cls == NO_CLASS:
                continue
            s = 0
            for kk in range(nnz):
                s += popcount(pval[o + kk] & sets[base + cls, pidx[o + kk]])
            if s == 0:
                continue
            if cls != f:  # class (j=0, f) is "no change"
                informative = True
            tcls[ne * 7 + j] = cls
            tmass[ne * 7 + j] = s
            j += 1
        tn[ne] = j if informative else 0
        tchild[ne * 7] = -1
        t.thead[key] = ne
        counters[C_ENTRIES] = ne + 1
        e = ne
    if not need or tn[e] == 0 or tchild[e * 7] >= 0:
        return e
    # intern the children, the first outcome's last: its child flags the entry as complete
    o = b.boff[bid]
    nnz = b.bnnz[bid]
    m = b.bmass[bid]
    base = (pv * 6 + q) * 16
    for kk in range(tn[e] - 1, -1, -1):
        cls = tcls[e * 7 + kk]
        mc = tmass[e * 7 + kk]
        if mc == m:
            tchild[e * 7 + kk] = bid
            t.tg[e * 7 + kk] = 0
            continue
        n2 = 0
        for j in range(nnz):
            w = pval[o + j] & sets[base + cls, pidx[o + j]]
            if w != 0:
                b.sidx[n2] = pidx[o + j]
                b.sval[n2] = w
                n2 += 1
        cb, g = intern(b.sidx, b.sval, n2, mc, k, b)
        if cb < 0:
            return cb
        tchild[e * 7 + kk] = cb
        t.tg[e * 7 + kk] = g
    return e


@kernel()
def rehash(memo, new):
    """Move every entry of the memo ``memo`` into the larger, empty ``new``."""
    for i in range(memo.shape[0]):
        key = memo[i, 0]
        if key == -1:
            continue
        h = memo_find(key, new)
        new[h, 0] = key
        new[h, 1] = memo[i, 1]
        new[h, 2] = memo[i, 2]


@kernel()
def rehash_beliefs(bhash, n, btable):
    """Rebuild the belief hash table ``btable`` from the first ``n`` beliefs' hashes."""
    mask = btable.shape[0] - 1
    for i in range(n):
        p = np.int64(bhash[i] & np.uint64(mask))
        while btable[p] != -1:
            p = (p + 1) & mask
        btable[p] = i
