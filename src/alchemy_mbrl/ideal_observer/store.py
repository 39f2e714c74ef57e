"""The search store of one trial: interned beliefs, outcome tables and the memo, grown on demand.

:class:`TrialSearch` owns every array the kernels read and write, bundled in three structures
(:class:`Beliefs`, :class:`Transitions`, :class:`Memo`) beside the constant :class:`~.tables.Tables`.
A kernel that finds a store full returns a status; :meth:`TrialSearch._grow` doubles that store
and the call is repeated (finished states stay memoised).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from alchemy_mbrl.bayes.posterior import NUM_POTION_CIDS, NUM_WORDS, WORDS_PER_BLOCK, WORDS_PER_STONE_MAP, constraint_tables
from alchemy_mbrl.env.constants import NUM_POTIONS
from alchemy_mbrl.ideal_observer.expectimax import value
from alchemy_mbrl.ideal_observer.kernels import intern, rehash, rehash_beliefs
from alchemy_mbrl.ideal_observer.tables import (
    ACTION_CODES,
    ACTION_SLOTS,
    C_BELIEFS,
    C_MEMO,
    DEFAULT_TIE_RULE,
    EXACT,
    GROW_BELIEFS,
    GROW_ENTRIES,
    GROW_POOL,
    NUM_RELABELS,
    SCRATCH_PER_ACTION,
    lookup_tables,
    relabel_potion_map,
    splitmix,
)


class Beliefs(NamedTuple):
    """The interned beliefs of a trial (sparse words in a pool, hashed) and the relabellings that act on them."""

    group: np.ndarray  # relabellings that map the root's words onto themselves
    lperm: np.ndarray  # [48, w] each as a permutation of the root's local words
    salt: np.ndarray  # [w] per-word hash salts
    dense: np.ndarray  # [w] scratch: one belief's words, dense
    sidx: np.ndarray  # [w] scratch: a child belief's sparse words (index)
    sval: np.ndarray  # [w] scratch: (value)
    boff: np.ndarray  # per belief: offset in the pool
    bnnz: np.ndarray  # per belief: non-zero words
    bmass: np.ndarray  # per belief: popcount
    bhash: np.ndarray  # per belief: hash
    bstab: np.ndarray  # per belief: stabiliser (48-bit mask)
    btable: np.ndarray  # open-addressing table of belief ids by hash
    pidx: np.ndarray  # pool: local word index
    pval: np.ndarray  # pool: word
    wblock: np.ndarray  # [w] (stone map, potion map) block of each local word
    bscr: np.ndarray  # scratch: mass per block
    bnblk: np.ndarray  # per belief: blocks
    bblk: np.ndarray  # pool (same offsets): block
    bbm: np.ndarray  # pool (same offsets): block mass
    counters: np.ndarray  # [5] beliefs, memo entries, states expanded, pool words, entries


class Transitions(NamedTuple):
    """Outcome tables per (belief, stone vertex, colour)."""

    sets: np.ndarray  # constraint sets restricted to the root's words
    thead: np.ndarray  # [48 * beliefs] entry of (belief, pv, q), or -1
    tn: np.ndarray  # per entry: outcomes (0: certainly no change)
    tcls: np.ndarray  # [7 * entries] outcome class
    tchild: np.ndarray  # [7 * entries] interned child belief (-1 until needed)
    tg: np.ndarray  # [7 * entries] relabelling onto the child
    tmass: np.ndarray  # [7 * entries] outcome mass


class Memo(NamedTuple):
    """The memo ``[capacity, 3]`` of (key, U, N), the scratch of the actions of the states being searched,
    and the root's order of preference among tied actions (``order[code]``: rank of action ``code``)."""

    memo: np.ndarray
    cbuf: np.ndarray
    order: np.ndarray


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

    def __init__(self, root_words: np.ndarray, beliefs: int = 1024, memo: int = 1 << 14,
                 tie_rule: str = DEFAULT_TIE_RULE) -> None:
        root_words = np.asarray(root_words, dtype=np.uint64)
        self.tables = lookup_tables(tie_rule)
        cols = np.flatnonzero(root_words)
        self.cols = cols
        if len(cols) == 0:
            raise ValueError("the posterior is empty: the history is impossible under every chemistry")
        w = len(cols)
        # relabellings that map the root's words onto themselves, as permutations of the local words
        local = np.full(NUM_WORDS, -1, dtype=np.int64)
        local[cols] = np.arange(w)
        i, rest = np.divmod(cols, WORDS_PER_STONE_MAP)
        m, k = np.divmod(rest, WORDS_PER_BLOCK)
        potion_map = relabel_potion_map()
        lperm = np.zeros((NUM_RELABELS, w), dtype=np.int64)
        group = []
        for g in range(NUM_RELABELS):
            image = local[i * WORDS_PER_STONE_MAP + potion_map[g, m] * WORDS_PER_BLOCK + k]
            if (image >= 0).all():
                lperm[g] = image
                group.append(g)
        pool = max(4 * w, 1024)
        self.b = Beliefs(
            group=np.array(group, dtype=np.int64), lperm=lperm,
            salt=np.array([splitmix(c) for c in range(w)], dtype=np.uint64),
            dense=np.zeros(w, dtype=np.uint64), sidx=np.zeros(w, dtype=np.int64), sval=np.zeros(w, dtype=np.uint64),
            boff=np.zeros(beliefs, dtype=np.int64), bnnz=np.zeros(beliefs, dtype=np.int64),
            bmass=np.zeros(beliefs, dtype=np.int64), bhash=np.zeros(beliefs, dtype=np.uint64),
            bstab=np.zeros(beliefs, dtype=np.int64), btable=np.full(2 * beliefs, -1, dtype=np.int64),
            pidx=np.zeros(pool, dtype=np.int32), pval=np.zeros(pool, dtype=np.uint64),
            wblock=np.ascontiguousarray(cols // WORDS_PER_BLOCK), bscr=np.zeros(NUM_WORDS // WORDS_PER_BLOCK, dtype=np.int64),
            bnblk=np.zeros(beliefs, dtype=np.int64), bblk=np.zeros(pool, dtype=np.int32), bbm=np.zeros(pool, dtype=np.int64),
            counters=np.zeros(5, dtype=np.int64),
        )
        entries = 4 * beliefs
        self.t = Transitions(
            sets=np.ascontiguousarray(constraint_tables().words_full[:NUM_POTION_CIDS][:, cols]),
            thead=np.full(48 * beliefs, -1, dtype=np.int32), tn=np.zeros(entries, dtype=np.int8),
            tcls=np.zeros(7 * entries, dtype=np.int8), tchild=np.zeros(7 * entries, dtype=np.int32),
            tg=np.zeros(7 * entries, dtype=np.int8), tmass=np.zeros(7 * entries, dtype=np.int32),
        )
        table = np.zeros((memo, 3), dtype=np.int64)
        table[:, 0] = -1
        self.s = Memo(table, np.zeros(SCRATCH_PER_ACTION * ACTION_SLOTS * (NUM_POTIONS + 1), dtype=np.int64),
                      np.arange(ACTION_CODES, dtype=np.int64))
        self._handles: list[tuple[int, int]] = []
        self.root = self.belief_id(root_words)

    # --- stores -------------------------------------------------------------------------
    @property
    def counters(self) -> np.ndarray:
        """``[5]``: beliefs, memo entries, states expanded, pool words, transition entries."""
        return self.b.counters

    def _grow(self, status: int) -> None:
        b, t = self.b, self.t
        if status == GROW_BELIEFS:
            cap = 2 * len(b.bmass)
            btable = np.full(2 * cap, -1, dtype=np.int64)
            rehash_beliefs(b.bhash, int(b.counters[C_BELIEFS]), btable)
            self.b = b._replace(boff=_grown(b.boff, cap), bnnz=_grown(b.bnnz, cap), bmass=_grown(b.bmass, cap),
                                bhash=_grown(b.bhash, cap), bstab=_grown(b.bstab, cap), bnblk=_grown(b.bnblk, cap),
                                btable=btable)
            self.t = t._replace(thead=_grown(t.thead, 48 * cap, -1))
        elif status == GROW_POOL:
            cap = 2 * len(b.pidx)
            self.b = b._replace(pidx=_grown(b.pidx, cap), pval=_grown(b.pval, cap), bblk=_grown(b.bblk, cap),
                                bbm=_grown(b.bbm, cap))
        elif status == GROW_ENTRIES:
            cap = 2 * len(t.tn)
            self.t = t._replace(tn=_grown(t.tn, cap), tcls=_grown(t.tcls, 7 * cap), tchild=_grown(t.tchild, 7 * cap),
                                tg=_grown(t.tg, 7 * cap), tmass=_grown(t.tmass, 7 * cap))
        else:
            new = np.zeros((2 * len(self.s.memo), 3), dtype=np.int64)
            new[:, 0] = -1
            rehash(self.s.memo, new)
            self.s = self.s._replace(memo=new)

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
            bid, g = intern(sidx, sval, len(nz), mass, self.tables, self.b)
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
        return int(self.b.counters[C_BELIEFS])

    @property
    def states(self) -> int:
        """States expanded so far (memo entries)."""
        return int(self.b.counters[C_MEMO])

    @property
    def nbytes(self) -> int:
        b, t = self.b, self.t
        arrays = (b.boff, b.bnnz, b.bmass, b.bhash, b.bstab, b.btable, b.pidx, b.pval, t.thead,
                  b.bnblk, b.bblk, b.bbm, t.tn, t.tcls, t.tchild, t.tg, t.tmass, self.s.memo, t.sets, b.lperm)
        return int(sum(a.nbytes for a in arrays))

    # --- search ---------------------------------------------------------------------------
    def _search(self, bid: int, stones: np.ndarray, counts: np.ndarray, root: bool) -> tuple[int, int, int]:
        b, g = self._handles[bid]
        s0, s1, s2 = sorted(int(s) for s in stones)
        counts = np.asarray(counts, dtype=np.int64)
        gcol, pow13 = self.tables.gcol, self.tables.pow13
        pcode = int(sum(int(counts[q]) * int(pow13[gcol[g, q]]) for q in range(6)))
        while True:
            u, n, action, status = value(b, g if root else 0, s0, s1, s2, pcode, EXACT, root, self.tables, self.b,
                                         self.t, self.s)
            if status == 0:
                return int(u), int(n), int(action)
            self._grow(int(status))

    def value(self, bid: int, stones: np.ndarray, counts: np.ndarray) -> tuple[int, int, int]:
        """``(U, N, mass)`` of a state: ``U / mass`` is the expected reward of the rest of the trial.

        ``stones [3]``: stone codes (``4 * pv + f``, or :data:`~.tables.USED_STONE`), any order;
        ``counts [6]``: present potions per colour.
        """
        u, n, _ = self._search(bid, stones, counts, root=False)
        return u, n, int(self.b.bmass[self._handles[bid][0]])

    def best(self, bid: int, stones: np.ndarray, counts: np.ndarray, order: np.ndarray | None = None) -> int:
        """The best action's code: -1 for the end-of-trial macro, else ``stone_code * 6 + colour``.

        Among actions of equal (U, N) the macro comes first, then the action of smallest
        ``order[code]`` (``order [192]``, default: the code itself; ``InsertionOrder.ranks`` of
        :mod:`.agents` gives DeepMind's).
        """
        self.s.order[:] = np.arange(ACTION_CODES) if order is None else order
        return self._search(bid, stones, counts, root=True)[2]
