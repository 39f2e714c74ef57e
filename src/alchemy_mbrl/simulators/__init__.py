"""Simulators the planner can search with: oracle (true chemistry), learned (world model), bayes (exact posterior)."""

from alchemy_mbrl.simulators.base import RootContext, Simulator

__all__ = ["RootContext", "Simulator"]
