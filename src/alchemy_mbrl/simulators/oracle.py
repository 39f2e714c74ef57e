"""The oracle simulator: the environment itself, with each episode's true chemistry.

It knows what no agent can (the chemistry), so a planner using it measures what the
tree search achieves with a perfect model of the dynamics; the only uncertainty left is
the items of future trials, which it samples like the environment does (SPEC §4:
3 stones uniform over 8 vertices, 12 potions uniform over 6 latent potions) from the
per-search keys. Dynamics and observations come from the environment's functional core
(:func:`~alchemy_mbrl.env.alchemy.apply_actions`, :func:`begin_trial`, :func:`observe`).

The state of every decision node of every search is kept in arrays ``[B, max_nodes, ...]``.
"""

from __future__ import annotations

import numpy as np

from alchemy_mbrl import rng
from alchemy_mbrl.env.alchemy import (
    EPISODE_STEPS,
    NUM_POTIONS,
    NUM_STONES,
    STEPS_PER_TRIAL,
    ObservationTables,
    State,
    apply_actions,
    begin_trial,
    observe,
)
from alchemy_mbrl.planner.simulator import RootContext


class OracleSimulator:
    """True-chemistry simulator over B searches (implements :class:`~alchemy_mbrl.planner.simulator.Simulator`)."""

    name = "oracle"

    def __init__(self) -> None:
        self._nodes: State | None = None  # fields shaped [B, max_nodes, ...]
        self._graph_id: np.ndarray | None = None  # [B]
        self._tables: ObservationTables | None = None
        self._rep_cache: dict[int, tuple[np.ndarray, ObservationTables]] = {}

    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        if context.chemistry is None or context.state is None:
            raise ValueError("the oracle simulator needs the true chemistry and state in the RootContext")
        bsz = context.batch_size
        if len(context.chemistry) != bsz or len(context.state) != bsz:
            raise ValueError(f"RootContext holds {bsz} searches but {len(context.chemistry)} chemistries / {len(context.state)} states")
        nodes = self._nodes
        if nodes is None or nodes.t.shape != (bsz, max_nodes):
            nodes = State(
                t=np.zeros((bsz, max_nodes), dtype=np.int16),
                stones=np.zeros((bsz, max_nodes, NUM_STONES), dtype=np.int8),
                stone_used=np.zeros((bsz, max_nodes, NUM_STONES), dtype=bool),
                potions=np.zeros((bsz, max_nodes, NUM_POTIONS), dtype=np.int8),
                potion_used=np.zeros((bsz, max_nodes, NUM_POTIONS), dtype=bool),
            )
            self._nodes = nodes
        root = context.state
        nodes.t[:, 0] = root.t
        nodes.stones[:, 0] = root.stones
        nodes.stone_used[:, 0] = root.stone_used
        nodes.potions[:, 0] = root.potions
        nodes.potion_used[:, 0] = root.potion_used
        self._graph_id = context.chemistry.graph_id.astype(np.int64)
        self._tables = ObservationTables.of(context.chemistry)
        self._rep_cache = {}

    def _repeated(self, k: int) -> tuple[np.ndarray, ObservationTables]:
        """Graph ids and observation tables repeated K times (row b*K + j is search b)."""
        if k not in self._rep_cache:
            assert self._graph_id is not None and self._tables is not None
            rows = np.repeat(np.arange(len(self._graph_id)), k)
            self._rep_cache[k] = (self._graph_id[rows], self._tables.take(rows))
        return self._rep_cache[k]

    def expand(
        self,
        parents: np.ndarray,
        actions: np.ndarray,
        children: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        nodes = self._nodes
        if nodes is None:
            raise RuntimeError("set_roots must be called before expand")
        bsz, k = children.shape
        bi = np.arange(bsz)
        parents = np.asarray(parents, dtype=np.int64)
        rows = np.repeat(bi, k)
        par = np.repeat(parents, k)
        state = State(
            nodes.t[rows, par],
            nodes.stones[rows, par],
            nodes.stone_used[rows, par],
            nodes.potions[rows, par],
            nodes.potion_used[rows, par],
        )
        graph_id, tables = self._repeated(k)
        rewards = apply_actions(state, graph_id, np.repeat(np.asarray(actions, dtype=np.int64), k))
        # trial boundary: the next trial's items, sampled from search b's key (sample j: its own stream)
        t = state.t.astype(np.int64)
        boundary = (t % STEPS_PER_TRIAL == 0) & (t < EPISODE_STEPS)
        if boundary.any():
            sample_keys = rng.fold_in(np.asarray(keys, dtype=np.uint64)[:, None], np.arange(k)).reshape(-1)[boundary]
            # one stream of 15 draws uniform in 0..47 (a multiple of 8 and of 6): stones, then potions
            both = rng.integers(sample_keys, 48, (NUM_STONES + NUM_POTIONS,))
            stones = both[:, :NUM_STONES] % 8
            potions = both[:, NUM_STONES:] % 6
            begin_trial(state, np.flatnonzero(boundary), stones.astype(np.int8), potions.astype(np.int8))
        obs = observe(state, tables)
        ch = np.asarray(children, dtype=np.int64).reshape(-1)
        nodes.t[rows, ch] = state.t
        nodes.stones[rows, ch] = state.stones
        nodes.stone_used[rows, ch] = state.stone_used
        nodes.potions[rows, ch] = state.potions
        nodes.potion_used[rows, ch] = state.potion_used
        return obs.reshape(bsz, k, -1), rewards.reshape(bsz, k).astype(np.float32)
