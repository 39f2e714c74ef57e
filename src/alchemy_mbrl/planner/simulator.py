"""The one interface between the tree search and the models it plans with.

The planner (Algorithm 1) runs B searches in lockstep. Every search has a tree whose
nodes are numbered ``0 .. max_nodes-1`` (node 0 is the root decision node). A simulator
holds, for every decision node of every search, whatever it needs to continue from it
(the learned model: a path of key/value-cached tokens; the exact Bayesian model: a
posterior over chemistries and the item state; the oracle: the true environment state).

Per real step the planner calls :meth:`Simulator.set_roots` once, then for every
expansion :meth:`Simulator.expand` once for the whole batch: the simulator samples K
outcomes of ``action`` from each ``parent`` decision node and stores the K resulting
decision-node states under the ids ``children`` chosen by the planner. Duplicates are
merged by the planner (it compares the returned codes), not by the simulator.

Implementations: ``oracle`` (true chemistry), ``learned`` (the world model),
``bayes`` (exact posterior over the 41,856 chemistries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from alchemy_mbrl.env.alchemy import State
from alchemy_mbrl.env.chemistry import Chemistry


@dataclass
class RootContext:
    """What is known at the real step where B searches start (episodes are in lockstep).

    Attributes:
        t: steps already taken in the real episodes (0..199); the root is the state after t steps.
        obs_codes: ``[B, t+1, 39]`` uint8, the real observation codes so far.
        actions: ``[B, t]`` int64, the real actions so far.
        reward_codes: ``[B, t]`` uint8, the real reward codes so far (codec order).
        chemistry: the true chemistries (for the oracle only; ``None`` for models that must infer it).
        state: the true environment states (for the oracle only).
    """

    t: int
    obs_codes: np.ndarray
    actions: np.ndarray
    reward_codes: np.ndarray
    chemistry: Chemistry | None = None
    state: State | None = None

    @property
    def batch_size(self) -> int:
        return int(self.obs_codes.shape[0])


@runtime_checkable
class Simulator(Protocol):
    """A batched generative model of symbolic Alchemy for planning."""

    name: str

    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        """Make node 0 of each of the B searches the real current state; drop all other nodes.

        ``max_nodes`` bounds the node ids that :meth:`expand` may receive as children.
        Called once per real step; implementations may reuse work from the previous call
        (e.g. the learned model appends only the new real tokens to its cache).
        """
        ...

    def expand(
        self,
        parents: np.ndarray,
        actions: np.ndarray,
        children: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample K outcomes of ``actions`` from decision nodes ``parents``.

        Args:
            parents: ``[B]`` decision-node ids (one per search).
            actions: ``[B]`` actions in 0..39.
            children: ``[B, K]`` ids under which to store the K sampled next states.
            keys: ``[B]`` uint64 per-search random keys (:mod:`alchemy_mbrl.rng`); every random
                choice of search b must be a function of ``keys[b]`` alone (e.g. ``rng.uniform(keys, (K, ...))``),
                so that a search samples the same outcomes whatever else is in its batch.
            mask: ``[B]`` bool, searches that really expand (others: outputs are ignored).

        Returns:
            ``(obs_codes [B, K, 39] uint8, rewards [B, K] float32)``: the sampled next
            observations (codec codes) and rewards (in reward units: -3, -1, 0, 1, 15).
        """
        ...
