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
from alchemy_mbrl.ideal_observer.tables import USED_STONE
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
assert NUM_STONES == 3
