"""Symbolic Alchemy, level ``perceptual_mapping_randomized_with_random_bottleneck``, vectorised.

A batch of B episodes is held in NumPy arrays and stepped with indexing only: no Python
loop over episodes. Semantics follow ``shared/alchemy/SPEC.md`` exactly (§5 actions,
§6 observation, §7 trial and episode structure, including the unseen final state of
trials 0-8); ``alchemy-mbrl env replay`` checks them against DeepMind's reference traces.

The module has two layers:

* a functional core (:class:`State`, :func:`apply_actions`, :func:`begin_trial`,
  :func:`observe`) that works on any batch of states, each with its own step counter.
  The planner's oracle simulator and the exact Bayesian model build on it;
* :class:`AlchemyEnv`, the environment proper, whose episodes advance in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alchemy_mbrl.env import codec
from alchemy_mbrl.env.chemistry import (
    MAX_VERTEX,
    MOVE_TABLE,
    VERTEX_COORDS,
    VERTEX_VALUE,
    Chemistry,
    sample_chemistries,
)

from alchemy_mbrl.env.constants import (  # noqa: E402  (re-exported: the environment's public constants)
    EPISODE_STEPS,
    NUM_ACTIONS,
    NUM_POTIONS,
    NUM_STONES,
    NUM_TRIALS,
    OBS_DIM,
    STEPS_PER_TRIAL,
)

FIRST, MID, LAST = 0, 1, 2


def action_target(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode actions (SPEC §5) into (stone slot, is_cauldron, potion slot); no-ops give stone -1."""
    a = np.asarray(actions, dtype=np.int64)
    stone = np.where(a > 0, (a - 1) // 13, -1)
    j = (a - 1) % 13
    return stone, (a > 0) & (j == 0), np.where((a > 0) & (j > 0), j - 1, -1)


def validate_actions(actions: np.ndarray, batch_size: int) -> np.ndarray:
    """Return actions as int64 ``[B]`` or raise ``ValueError`` naming what is wrong."""
    a = np.asarray(actions)
    if a.shape != (batch_size,):
        raise ValueError(f"actions must have shape ({batch_size},), got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"actions must be integers in 0..{NUM_ACTIONS - 1}, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= NUM_ACTIONS):
        bad = a[(a < 0) | (a >= NUM_ACTIONS)][0]
        raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1}, got {bad}")
    return a


@dataclass
class TrialItems:
    """Per-trial items of a batch of episodes (SPEC §4).

    Attributes:
        stones: ``[B, 10, 3]`` int8, latent vertex index of stone slot s at the start of trial k.
        potions: ``[B, 10, 12]`` int8, latent potion index r in potion slot p of trial k.
    """

    stones: np.ndarray
    potions: np.ndarray

    def __post_init__(self) -> None:
        self.stones = np.asarray(self.stones, dtype=np.int8)
        self.potions = np.asarray(self.potions, dtype=np.int8)
        if self.stones.ndim != 3 or self.stones.shape[1:] != (NUM_TRIALS, NUM_STONES):
            raise ValueError(f"TrialItems.stones must have shape [B, 10, 3], got {self.stones.shape}")
        if self.potions.shape != (len(self.stones), NUM_TRIALS, NUM_POTIONS):
            raise ValueError(f"TrialItems.potions must have shape [{len(self.stones)}, 10, 12], got {self.potions.shape}")
        if self.stones.size and (self.stones.min() < 0 or self.stones.max() > 7):
            raise ValueError("TrialItems.stones must hold vertex indices 0..7")
        if self.potions.size and (self.potions.min() < 0 or self.potions.max() > 5):
            raise ValueError("TrialItems.potions must hold latent potion indices 0..5")

    @classmethod
    def from_coordinates(cls, stone_coords: np.ndarray, potions: np.ndarray) -> "TrialItems":
        """Build from latent stone coordinates ``[B, 10, 3, 3]`` of +-1 (the traces' format)."""
        bits = (np.asarray(stone_coords, dtype=np.int64) + 1) // 2
        return cls(bits[..., 0] + 2 * bits[..., 1] + 4 * bits[..., 2], potions)


def sample_items(rng: np.random.Generator, n: int, num_trials: int = NUM_TRIALS) -> tuple[np.ndarray, np.ndarray]:
    """Draw i.i.d. uniform stones ``[n, num_trials, 3]`` and potions ``[n, num_trials, 12]`` (SPEC §4)."""
    stones = rng.integers(0, 8, size=(n, num_trials, NUM_STONES), dtype=np.int8)
    potions = rng.integers(0, 6, size=(n, num_trials, NUM_POTIONS), dtype=np.int8)
    return stones, potions


@dataclass
class State:
    """The within-episode state of a batch of episodes (the chemistry is kept apart).

    Attributes:
        t: ``[B]`` int16, steps taken so far in the episode (0..200).
        stones: ``[B, 3]`` int8, latent vertex of each stone slot (meaningless once used).
        stone_used: ``[B, 3]`` bool.
        potions: ``[B, 12]`` int8, latent potion index of each potion slot.
        potion_used: ``[B, 12]`` bool.
    """

    t: np.ndarray
    stones: np.ndarray
    stone_used: np.ndarray
    potions: np.ndarray
    potion_used: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def copy(self) -> "State":
        return State(self.t.copy(), self.stones.copy(), self.stone_used.copy(), self.potions.copy(), self.potion_used.copy())

    def take(self, idx: np.ndarray) -> "State":
        """A new state holding rows ``idx`` (copies)."""
        return State(self.t[idx], self.stones[idx], self.stone_used[idx], self.potions[idx], self.potion_used[idx])

    def put(self, idx: np.ndarray, other: "State") -> None:
        """Write ``other``'s rows into rows ``idx`` of this state."""
        self.t[idx] = other.t
        self.stones[idx] = other.stones
        self.stone_used[idx] = other.stone_used
        self.potions[idx] = other.potions
        self.potion_used[idx] = other.potion_used

    @classmethod
    def empty(cls, batch_size: int) -> "State":
        return cls(
            t=np.zeros(batch_size, dtype=np.int16),
            stones=np.zeros((batch_size, NUM_STONES), dtype=np.int8),
            stone_used=np.zeros((batch_size, NUM_STONES), dtype=bool),
            potions=np.zeros((batch_size, NUM_POTIONS), dtype=np.int8),
            potion_used=np.zeros((batch_size, NUM_POTIONS), dtype=bool),
        )

    @property
    def trial(self) -> np.ndarray:
        """``[B]`` index of the current trial (0..9)."""
        return np.minimum(self.t // STEPS_PER_TRIAL, NUM_TRIALS - 1)

    @property
    def latent_coords(self) -> np.ndarray:
        """``[B, 3, 3]`` latent coordinates of each stone (0 for used slots)."""
        c = VERTEX_COORDS[self.stones.astype(np.int64)]
        return np.where(self.stone_used[..., None], 0, c).astype(np.int8)


def begin_trial(state: State, rows: np.ndarray, stones: np.ndarray, potions: np.ndarray) -> None:
    """Start a new trial in episodes ``rows`` with items ``stones [n,3]``, ``potions [n,12]`` (in place)."""
    state.stones[rows] = stones
    state.potions[rows] = potions
    state.stone_used[rows] = False
    state.potion_used[rows] = False


def apply_actions(state: State, graph_id: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Apply one action per episode to the current trial (SPEC §5), in place; return int rewards.

    Increments ``state.t`` but does not start the next trial: callers do that at boundaries.
    ``actions`` must already be validated (int64 in 0..39).
    """
    b = len(actions)
    rows = np.arange(b)
    stone, cauldron, potion = action_target(actions)
    act = stone >= 0
    s = np.maximum(stone, 0)
    p = np.maximum(potion, 0)
    stone_flat = rows * NUM_STONES + s
    potion_flat = rows * NUM_POTIONS + p
    su = state.stone_used.reshape(-1)
    pu = state.potion_used.reshape(-1)
    st = state.stones.reshape(-1)
    present = act & ~su[stone_flat]
    v = st[stone_flat].astype(np.int64)
    do_cauldron = present & cauldron
    do_potion = present & (potion >= 0) & ~pu[potion_flat]
    rewards = np.where(do_cauldron, VERTEX_VALUE[v], 0)
    su[stone_flat] = su[stone_flat] | do_cauldron
    r = state.potions.reshape(-1)[potion_flat].astype(np.int64)
    moved = MOVE_TABLE[graph_id.astype(np.int64), r, v]
    st[stone_flat] = np.where(do_potion, moved, st[stone_flat])
    pu[potion_flat] = pu[potion_flat] | do_potion
    state.t += 1
    return rewards


# Stone feature codes: STONE_CODE_TABLE[stone_map, vertex or 8 (=used)] -> 5 codes.
def _stone_code_table() -> np.ndarray:
    table = np.empty((8, 9, 5), dtype=np.uint8)
    for i in range(8):
        tau = 2 * ((i >> np.arange(3)) & 1) - 1
        for v in range(8):
            perceived = VERTEX_COORDS[v] * tau
            table[i, v, :3] = (perceived + 1) // 2
            table[i, v, 3] = int((VERTEX_COORDS[v] > 0).sum())  # reward feature code = number of +1 coords
            table[i, v, 4] = 0
        table[i, 8] = [codec.USED_COORD_CODE] * 3 + [codec.USED_REWARD_FEATURE_CODE, 1]
    return table


STONE_CODE_TABLE: np.ndarray = _stone_code_table()
_STONE_CODE_FLAT = STONE_CODE_TABLE.reshape(8 * 9, 5)


@dataclass
class ObservationTables:
    """Per-episode lookup tables that turn a state into observation codes."""

    stone_map: np.ndarray  # [B] int64, stone-map index
    colour_lut: np.ndarray  # [B, 7] uint8: colour code of latent potion r, and 6 (used) at index 6

    @classmethod
    def of(cls, chemistry: Chemistry) -> "ObservationTables":
        lut = np.empty((len(chemistry), 7), dtype=np.uint8)
        lut[:, :6] = chemistry.colour_of_latent
        lut[:, 6] = codec.USED_COLOUR_CODE
        return cls(chemistry.stone_map_index.astype(np.int64), lut)

    def take(self, idx: np.ndarray) -> "ObservationTables":
        return ObservationTables(self.stone_map[idx], self.colour_lut[idx])


def observe(state: State, tables: ObservationTables, out: np.ndarray | None = None) -> np.ndarray:
    """Observation codes ``[B, 39]`` uint8 of a batch of states (SPEC §6, codes of :mod:`codec`)."""
    b = len(state)
    if out is None:
        out = np.empty((b, OBS_DIM), dtype=np.uint8)
    vert = np.where(state.stone_used, 8, state.stones).astype(np.int64)
    stone_codes = _STONE_CODE_FLAT[tables.stone_map[:, None] * 9 + vert]  # [B, 3, 5]
    out[:, :15] = stone_codes.reshape(b, 15)
    pot = np.where(state.potion_used, 6, state.potions).astype(np.int64)
    out[:, 15::2] = np.take_along_axis(tables.colour_lut, pot, axis=1)
    out[:, 16::2] = state.potion_used
    return out


@dataclass
class TimeStep:
    """What the environment returns for a batch: codes, and float32 values on demand."""

    step_type: np.ndarray  # [B] int8: 0 FIRST, 1 MID, 2 LAST
    reward: np.ndarray  # [B] float32 (0 on FIRST)
    discount: np.ndarray  # [B] float32: 1.0 on MID, 0.0 on LAST (and on FIRST, where undefined)
    observation_codes: np.ndarray  # [B, 39] uint8
    _observation: np.ndarray | None = field(default=None, repr=False)

    @property
    def observation(self) -> np.ndarray:
        """``[B, 39]`` float32 observation (exact reference values)."""
        if self._observation is None:
            self._observation = codec.decode_observation(self.observation_codes)
        return self._observation

    def first(self) -> bool:
        return bool(self.step_type[0] == FIRST)

    def last(self) -> bool:
        return bool(self.step_type[0] == LAST)


class AlchemyEnv:
    """A batch of B symbolic-Alchemy episodes advancing in lockstep.

    Example::

        env = AlchemyEnv(batch_size=1024, seed=0)
        ts = env.reset()
        while not ts.last():
            ts = env.step(np.random.randint(0, 40, size=1024))

    ``reset`` may be given the chemistries and the per-trial items to replay recorded
    episodes; otherwise both are drawn from the level's distributions with this
    environment's generator. Calling ``step`` after LAST starts new episodes
    (the action is ignored and a FIRST step is returned), as the reference does.
    """

    def __init__(self, batch_size: int, seed: int | np.random.Generator | None = None) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.state = State.empty(self.batch_size)
        self.chemistry: Chemistry | None = None
        self.items: TrialItems | None = None
        self._tables: ObservationTables | None = None
        self._graph_id = np.zeros(self.batch_size, dtype=np.int64)
        self._needs_reset = True

    @property
    def t(self) -> int:
        """Steps taken in the current episodes (0..200)."""
        return int(self.state.t[0])

    def reset(self, chemistry: Chemistry | None = None, items: TrialItems | None = None) -> TimeStep:
        """Start B new episodes, with given or freshly sampled chemistries and trial items."""
        b = self.batch_size
        if chemistry is None:
            chemistry = sample_chemistries(self.rng, b)
        elif len(chemistry) != b:
            raise ValueError(f"chemistry has {len(chemistry)} episodes, the environment holds {b}")
        if items is None:
            items = TrialItems(*sample_items(self.rng, b))
        elif len(items.stones) != b:
            raise ValueError(f"items have {len(items.stones)} episodes, the environment holds {b}")
        self.chemistry, self.items = chemistry, items
        self._tables = ObservationTables.of(chemistry)
        self._graph_id = chemistry.graph_id.astype(np.int64)
        self.state = State.empty(b)
        begin_trial(self.state, slice(None), items.stones[:, 0], items.potions[:, 0])  # type: ignore[arg-type]
        self._needs_reset = False
        zeros = np.zeros(b, dtype=np.float32)
        return TimeStep(np.full(b, FIRST, dtype=np.int8), zeros, zeros.copy(), observe(self.state, self._tables))

    def step(self, actions: np.ndarray) -> TimeStep:
        """Apply one action per episode (ints in 0..39) and return the next time step."""
        a = validate_actions(actions, self.batch_size)
        if self._needs_reset:
            return self.reset()
        rewards = apply_actions(self.state, self._graph_id, a)
        t = self.t
        if t == EPISODE_STEPS:
            step_type, discount = LAST, 0.0
            self._needs_reset = True
        else:
            step_type, discount = MID, 1.0
            if t % STEPS_PER_TRIAL == 0:
                k = t // STEPS_PER_TRIAL
                assert self.items is not None
                begin_trial(self.state, slice(None), self.items.stones[:, k], self.items.potions[:, k])  # type: ignore[arg-type]
        assert self._tables is not None
        b = self.batch_size
        return TimeStep(
            np.full(b, step_type, dtype=np.int8),
            rewards.astype(np.float32),
            np.full(b, discount, dtype=np.float32),
            observe(self.state, self._tables),
        )


def stone_values(state: State) -> np.ndarray:
    """``[B, 3]`` value of each stone (SPEC §3); used slots read 0."""
    return np.where(state.stone_used, 0, VERTEX_VALUE[state.stones.astype(np.int64)])


__all__ = [
    "AlchemyEnv",
    "Chemistry",
    "EPISODE_STEPS",
    "FIRST",
    "LAST",
    "MAX_VERTEX",
    "MID",
    "NUM_ACTIONS",
    "ObservationTables",
    "State",
    "TimeStep",
    "TrialItems",
    "apply_actions",
    "begin_trial",
    "observe",
    "sample_items",
]
