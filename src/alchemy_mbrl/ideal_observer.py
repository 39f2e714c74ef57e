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
(an exact hash table over their bits, restricted to the words the trial's root belief uses);
the whole search runs in Numba. Every later step of a trial is a memo hit of the first search.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alchemy_mbrl.bayes.filter import BayesFilter
from alchemy_mbrl.bayes.posterior import CANDIDATE_CLASSES, FLIP_OF_J, NUM_POTION_CIDS, constraint_tables, pack_chemistry_sets
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, Chemistry
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
_GROW_BELIEFS, _GROW_MEMO = 1, 2


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


@njit(cache=True)
def _intern(words, mass, bwords, bmass, bhash, btable, counters):
    """Id of the belief ``words`` in the store (added if new); -1 if the store is full."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for w in range(words.shape[0]):
        h = _mix(h ^ words[w])
    mask = btable.shape[0] - 1
    p = np.int64(h & np.uint64(mask))
    while True:
        idx = btable[p]
        if idx == -1:
            break
        if bhash[idx] == h and bmass[idx] == mass:
            same = True
            for w in range(words.shape[0]):
                if bwords[idx, w] != words[w]:
                    same = False
                    break
            if same:
                return idx
        p = (p + 1) & mask
    n = counters[0]
    if n >= bwords.shape[0] or 2 * (n + 1) > btable.shape[0]:
        return -1
    bwords[n, :] = words
    bmass[n] = mass
    bhash[n] = h
    btable[p] = n
    counters[0] = n + 1
    return n


@njit(cache=True, inline="always")
def _sort3(a, b, c):
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@njit(cache=True)
def _value(bid, s0, s1, s2, pcode, bwords, bmass, bhash, btable, sets, cand, flip, pow13, value_of_f,
           mkeys, mu, mn, mbest, counters):
    """``(U, N, status)`` of a state: mass-weighted expected trial reward and remaining actions.

    Stones ``s0 <= s1 <= s2`` are stone codes, ``pcode`` the colour counts in radix 13, ``bid`` the
    belief's id. ``status`` is non-zero when a store is full (the caller grows it and calls again;
    finished states stay memoised). The best action of the state is left in the memo.
    """
    key = ((bid * _STONE_RADIX**3 + (s0 * _STONE_RADIX + s1) * _STONE_RADIX + s2) * _POTION_CODES + pcode)
    mask = mkeys.shape[0] - 1
    h = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while True:
        k = mkeys[h]
        if k == key:
            return mu[h], mn[h], 0
        if k == -1:
            break
        h = (h + 1) & mask
    counters[2] += 1
    m = bmass[bid]
    nwords = bwords.shape[1]
    nz = np.empty(nwords, dtype=np.int64)
    nnz = 0
    for w in range(nwords):
        if bwords[bid, w] != 0:
            nz[nnz] = w
            nnz += 1
    st = np.array([s0, s1, s2], dtype=np.int64)
    counts = np.empty(6, dtype=np.int64)
    rest = pcode
    for q in range(6):
        counts[q] = rest % _COLOUR_RADIX
        rest //= _COLOUR_RADIX
    # end of trial: cauldron every present stone of positive value
    macro = 0
    npos = 0
    for si in range(3):
        if st[si] != USED_STONE and (st[si] & 3) >= 2:
            macro += value_of_f[st[si] & 3]
            npos += 1
    best_u = m * macro
    best_n = m * npos
    best = -1
    masses = np.zeros(7, dtype=np.int64)
    tmp = np.empty(nwords, dtype=np.uint64)
    for si in range(3):
        code = st[si]
        if code == USED_STONE or (si > 0 and code == st[si - 1]):
            continue
        pv = code >> 2
        f = code & 3
        for q in range(6):
            if counts[q] == 0:
                continue
            base = (pv * 6 + q) * 16
            informative = False
            for ci in range(7):
                cls = cand[f, ci]
                masses[ci] = 0
                if cls == _NO_CLASS:
                    continue
                s = 0
                for kk in range(nnz):
                    w = nz[kk]
                    s += _popcount(bwords[bid, w] & sets[base + cls, w])
                masses[ci] = s
                if s > 0 and cls != f:  # class (j=0, f) is "no change"
                    informative = True
            if not informative:
                continue
            u_sum = 0
            n_sum = m  # this action is one step, whatever happens
            for ci in range(7):
                mc = masses[ci]
                if mc == 0:
                    continue
                cls = cand[f, ci]
                ncode = ((pv ^ flip[cls >> 2]) << 2) | (cls & 3)
                if mc == m:
                    cb = bid
                else:
                    for w in range(nwords):
                        tmp[w] = 0
                    for kk in range(nnz):
                        w = nz[kk]
                        tmp[w] = bwords[bid, w] & sets[base + cls, w]
                    cb = _intern(tmp, mc, bwords, bmass, bhash, btable, counters)
                    if cb < 0:
                        return 0, 0, _GROW_BELIEFS
                if si == 0:
                    a0, a1, a2 = _sort3(ncode, st[1], st[2])
                elif si == 1:
                    a0, a1, a2 = _sort3(st[0], ncode, st[2])
                else:
                    a0, a1, a2 = _sort3(st[0], st[1], ncode)
                u, n, status = _value(cb, a0, a1, a2, pcode - pow13[q], bwords, bmass, bhash, btable, sets, cand,
                                      flip, pow13, value_of_f, mkeys, mu, mn, mbest, counters)
                if status != 0:
                    return 0, 0, status
                u_sum += u
                n_sum += n
            if u_sum > best_u or (u_sum == best_u and n_sum < best_n):
                best_u = u_sum
                best_n = n_sum
                best = code * 6 + q
    if 2 * (counters[1] + 1) > mkeys.shape[0]:
        return 0, 0, _GROW_MEMO
    h = np.int64(_mix(np.uint64(key)) & np.uint64(mask))  # the table may have changed below us
    while mkeys[h] != -1:
        h = (h + 1) & mask
    mkeys[h] = key
    mu[h] = best_u
    mn[h] = best_n
    mbest[h] = best
    counters[1] += 1
    return best_u, best_n, 0


@njit(cache=True)
def _memo_best(key, mkeys, mbest):
    mask = mkeys.shape[0] - 1
    h = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while mkeys[h] != key:
        if mkeys[h] == -1:
            return -2
        h = (h + 1) & mask
    return mbest[h]


@njit(cache=True)
def _rehash(mkeys, mu, mn, mbest, nkeys, nu, nn, nbest):
    mask = nkeys.shape[0] - 1
    for i in range(mkeys.shape[0]):
        key = mkeys[i]
        if key == -1:
            continue
        h = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
        while nkeys[h] != -1:
            h = (h + 1) & mask
        nkeys[h] = key
        nu[h] = mu[i]
        nn[h] = mn[i]
        nbest[h] = mbest[i]


@njit(cache=True)
def _rehash_beliefs(bhash, n, btable):
    mask = btable.shape[0] - 1
    for i in range(n):
        p = np.int64(bhash[i] & np.uint64(mask))
        while btable[p] != -1:
            p = (p + 1) & mask
        btable[p] = i


class TrialSearch:
    """The memoised expectimax of one trial, rooted at the posterior ``root_words [1152]`` at its start.

    Beliefs inside the trial are subsets of the root's, so they are stored on the root's non-zero
    words only. :meth:`best` answers any state of the trial; the memo is shared by all of them.
    """

    def __init__(self, root_words: np.ndarray, beliefs: int = 1024, memo: int = 1 << 14) -> None:
        root_words = np.asarray(root_words, dtype=np.uint64)
        self.cols = np.flatnonzero(root_words)
        if len(self.cols) == 0:
            raise ValueError("the posterior is empty: the history is impossible under every chemistry")
        self.sets = np.ascontiguousarray(constraint_tables().words_full[:NUM_POTION_CIDS][:, self.cols])
        w = len(self.cols)
        self.bwords = np.zeros((beliefs, w), dtype=np.uint64)
        self.bmass = np.zeros(beliefs, dtype=np.int64)
        self.bhash = np.zeros(beliefs, dtype=np.uint64)
        self.btable = np.full(2 * beliefs, -1, dtype=np.int64)
        self.mkeys = np.full(memo, -1, dtype=np.int64)
        self.mu = np.zeros(memo, dtype=np.int64)
        self.mn = np.zeros(memo, dtype=np.int64)
        self.mbest = np.zeros(memo, dtype=np.int64)
        self.counters = np.zeros(3, dtype=np.int64)  # beliefs, memo entries, states expanded
        self.root = self.belief_id(root_words)

    # --- stores -------------------------------------------------------------------------
    def _grow_beliefs(self) -> None:
        n = int(self.counters[0])
        cap = 2 * len(self.bmass)
        self.bwords = np.concatenate([self.bwords, np.zeros_like(self.bwords)])
        self.bmass = np.concatenate([self.bmass, np.zeros_like(self.bmass)])
        self.bhash = np.concatenate([self.bhash, np.zeros_like(self.bhash)])
        self.btable = np.full(2 * cap, -1, dtype=np.int64)
        _rehash_beliefs(self.bhash, n, self.btable)

    def _grow_memo(self) -> None:
        cap = 2 * len(self.mkeys)
        new = (np.full(cap, -1, dtype=np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64))
        _rehash(self.mkeys, self.mu, self.mn, self.mbest, *new)
        self.mkeys, self.mu, self.mn, self.mbest = new

    def belief_id(self, words: np.ndarray) -> int:
        """Id of a belief given as full posterior words ``[1152]`` (a subset of the root's)."""
        words = np.asarray(words, dtype=np.uint64)
        if np.any(np.delete(words, self.cols)):
            raise ValueError("belief is not a subset of the trial's root posterior")
        sub = np.ascontiguousarray(words[self.cols])
        mass = int(np.bitwise_count(sub).sum())
        if mass == 0:
            raise ValueError("the posterior is empty: the history is impossible under every chemistry")
        while True:
            bid = _intern(sub, mass, self.bwords, self.bmass, self.bhash, self.btable, self.counters)
            if bid >= 0:
                return int(bid)
            self._grow_beliefs()

    @property
    def beliefs(self) -> int:
        return int(self.counters[0])

    @property
    def states(self) -> int:
        """States expanded so far (memo entries)."""
        return int(self.counters[1])

    @property
    def nbytes(self) -> int:
        arrays = (self.bwords, self.bmass, self.bhash, self.btable, self.mkeys, self.mu, self.mn, self.mbest, self.sets)
        return int(sum(a.nbytes for a in arrays))

    # --- search ---------------------------------------------------------------------------
    def value(self, bid: int, stones: np.ndarray, counts: np.ndarray) -> tuple[int, int, int]:
        """``(U, N, mass)`` of a state: ``U / mass`` is the expected reward of the rest of the trial.

        ``stones [3]``: stone codes (``4 * pv + f``, or :data:`USED_STONE`), any order; ``counts [6]``:
        present potions per colour.
        """
        s0, s1, s2 = sorted(int(s) for s in stones)
        pcode = int(np.dot(np.asarray(counts, dtype=np.int64), _POW13))
        while True:
            u, n, status = _value(bid, s0, s1, s2, pcode, self.bwords, self.bmass, self.bhash, self.btable, self.sets,
                                  CANDIDATE_CLASSES, FLIP_OF_J, _POW13, VALUE_OF_FEATURE, self.mkeys, self.mu, self.mn,
                                  self.mbest, self.counters)
            if status == 0:
                return int(u), int(n), int(self.bmass[bid])
            if status == _GROW_BELIEFS:
                self._grow_beliefs()
            else:
                self._grow_memo()

    def best(self, bid: int, stones: np.ndarray, counts: np.ndarray) -> int:
        """The best action's code: -1 for the end-of-trial macro, else ``stone_code * 6 + colour``."""
        self.value(bid, stones, counts)
        s0, s1, s2 = sorted(int(s) for s in stones)
        pcode = int(np.dot(np.asarray(counts, dtype=np.int64), _POW13))
        key = ((bid * _STONE_RADIX**3 + (s0 * _STONE_RADIX + s1) * _STONE_RADIX + s2) * _POTION_CODES + pcode)
        return int(_memo_best(key, self.mkeys, self.mbest))


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
