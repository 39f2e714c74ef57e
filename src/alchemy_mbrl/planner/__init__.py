"""Batched tree search with chance nodes (Algorithm 1 of Pinon et al., 2022) over any simulator."""

from alchemy_mbrl.planner.params import PlannerParams
from alchemy_mbrl.planner.simulator import RootContext, Simulator
from alchemy_mbrl.planner.tree_search import (
    Path,
    SearchResult,
    Tree,
    TreeSearch,
    action_probabilities,
    backup,
    expand,
    merge_samples,
    select,
    selection_scores,
)

__all__ = [
    "Path", "PlannerParams", "RootContext", "SearchResult", "Simulator", "Tree", "TreeSearch", "action_probabilities", "backup",
    "expand", "merge_samples", "select", "selection_scores",
]
