"""The two agents: the ideal observer and the search oracle, playing through :class:`~.store.TrialSearch`.

They are policies of :func:`alchemy_mbrl.evaluate.make_policy` (``act(context, keys)``); this module
also turns observations into search states and search actions into environment actions.
"""

from __future__ import annotations

import numpy as np

from alchemy_mbrl.bayes.filter import BayesFilter
from alchemy_mbrl.bayes.posterior import pack_chemistry_sets
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, Chemistry
from alchemy_mbrl.env.constants import NUM_STONES, STEPS_PER_TRIAL
from alchemy_mbrl.ideal_observer.names import AGENTS, IDEAL_OBSERVER, SEARCH_ORACLE
from alchemy_mbrl.ideal_observer.store import TrialSearch
from alchemy_mbrl.ideal_observer.tables import ACTION_CODES, DEFAULT_TIE_RULE, USED_STONE, check_tie_rule
from alchemy_mbrl.planner.simulator import RootContext


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


class InsertionOrder:
    """DeepMind's order of preference among a trial's tied actions (its ``insertion order``).

    dm_alchemy's ideal observer lists the end-of-trial macro first, then, for each stone of its
    belief's stone counter, each colour of its potion counter: Python dicts, iterated in insertion
    order, and ``max`` keeps the first of equal objectives. The stone counter starts as the trial's
    stones in slot order (one key per distinct stone); a potion that changes a stone removes the old
    stone's key when none is left and appends the new stone's unless present; cauldroning does not
    update it. The potion counter starts as the colours in their first slot's order and only loses
    colours. :meth:`ranks` turns that into the root's ``order`` of :meth:`TrialSearch.best`.
    """

    def __init__(self, stones: np.ndarray, colours: np.ndarray) -> None:
        self.stones: dict[int, int] = {}
        for c in stones:
            if c != USED_STONE:
                self.stones[int(c)] = self.stones.get(int(c), 0) + 1
        self.colours = list(dict.fromkeys(int(q) for q in colours if q >= 0))

    def potion_used(self, before: int, after: int) -> None:
        """A potion turned a stone of code ``before`` into ``after``."""
        if before == after or before == USED_STONE or after == USED_STONE:
            return
        self.stones[before] -= 1
        if self.stones[before] == 0:
            del self.stones[before]
        self.stones[after] = self.stones.get(after, 0) + 1

    def ranks(self) -> np.ndarray:
        """``[192]`` rank of each action code ``stone_code * 6 + colour`` (absent actions last)."""
        order = np.full(ACTION_CODES, ACTION_CODES, dtype=np.int64)
        for i, c in enumerate(self.stones):
            for j, q in enumerate(self.colours):
                order[c * 6 + q] = i * 6 + j
        return order


def potion_stone_slot(action: int) -> int:
    """The stone slot of a potion action (``2 + 13 s + p``), or -1 for a no-op or a cauldron action."""
    if action < 2 or (action - 1) % 13 == 0:
        return -1
    return (action - 1) // 13


class _TrialAgent:
    """Shared play logic: one :class:`TrialSearch` per episode and trial, rebuilt at each trial start.

    ``tie_rule`` (:data:`~.tables.TIE_RULES`): ``deepmind`` breaks ties as dm_alchemy's ideal
    observer (fewest expected potion uses, then :class:`InsertionOrder`); ``actions`` as this
    package did before (fewest expected remaining actions, then the smallest action code).
    """

    simulator = ""
    budget: int | None = None
    name = ""

    def __init__(self, tie_rule: str = DEFAULT_TIE_RULE) -> None:
        self.tie_rule = check_tie_rule(tie_rule)
        self.searches: list[TrialSearch | None] = []
        self.orders: list[InsertionOrder] = []
        #: Per trial searched: (beliefs, states, bytes) of its store, for benchmarks.
        self.trial_stats: list[tuple[int, int, int]] = []

    def _root_words(self, context: RootContext, b: int) -> np.ndarray:
        raise NotImplementedError

    def act(self, context: RootContext, keys: np.ndarray) -> np.ndarray:
        """Actions ``[B]`` at step ``context.t`` (deterministic: ``keys`` are not used)."""
        t = context.t
        bsz = context.batch_size
        self._observe(context)
        items = [observed_items(o) for o in context.obs_codes[:, t]]  # (stones, colours, counts) per episode
        deepmind = self.tie_rule == "deepmind"
        if t % STEPS_PER_TRIAL == 0:
            for s in self.searches:
                if s is not None:
                    self.trial_stats.append((s.beliefs, s.states, s.nbytes))
            self.searches = [None] * bsz
            self.orders = [InsertionOrder(stones, colours) for stones, colours, _ in items] if deepmind else []
        elif deepmind:
            for b in range(bsz):
                slot = potion_stone_slot(int(context.actions[b, t - 1]))
                if slot >= 0:
                    before = observed_items(context.obs_codes[b, t - 1])[0][slot]
                    self.orders[b].potion_used(int(before), int(items[b][0][slot]))
        out = np.zeros(bsz, dtype=np.int64)
        for b in range(bsz):
            words = self._root_words(context, b)
            if self.searches[b] is None:
                self.searches[b] = TrialSearch(words, tie_rule=self.tie_rule)
            search = self.searches[b]
            assert search is not None
            stones, colours, counts = items[b]
            order = self.orders[b].ranks() if deepmind else None
            code = search.best(search.belief_id(words), stones, counts, order)
            out[b] = action_of_code(code, stones, colours)
        return out

    def _observe(self, context: RootContext) -> None:
        """Update what the agent knows with the last real step."""


class IdealObserverPolicy(_TrialAgent):
    """The ideal observer: exact posterior, expectimax over the current trial (see the module)."""

    name = IDEAL_OBSERVER

    def __init__(self, tie_rule: str = DEFAULT_TIE_RULE) -> None:
        super().__init__(tie_rule)
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

    def __init__(self, tie_rule: str = DEFAULT_TIE_RULE) -> None:
        super().__init__(tie_rule)
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


def make_agent(name: str, tie_rule: str = DEFAULT_TIE_RULE) -> IdealObserverPolicy | SearchOraclePolicy:
    """The agent called ``name`` (:data:`AGENTS`) with the tie rule ``tie_rule`` (:data:`~.tables.TIE_RULES`)."""
    if name == IDEAL_OBSERVER:
        return IdealObserverPolicy(tie_rule)
    if name == SEARCH_ORACLE:
        return SearchOraclePolicy(tie_rule)
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
assert NUM_STONES == 3
