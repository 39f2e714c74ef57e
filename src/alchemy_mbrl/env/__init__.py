"""Symbolic Alchemy, vectorised over a batch of episodes (SPEC.md), and its baseline policies."""

from alchemy_mbrl.env.alchemy import (
    EPISODE_STEPS,
    FIRST,
    LAST,
    MID,
    NUM_ACTIONS,
    NUM_TRIALS,
    OBS_DIM,
    STEPS_PER_TRIAL,
    AlchemyEnv,
    ObservationTables,
    State,
    TimeStep,
    TrialItems,
    apply_actions,
    begin_trial,
    observe,
    sample_items,
)
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, Chemistry, all_chemistries, chemistry_prior, sample_chemistries

__all__ = [
    "AlchemyEnv", "Chemistry", "EPISODE_STEPS", "FIRST", "LAST", "MID", "NUM_ACTIONS", "NUM_CHEMISTRIES",
    "NUM_TRIALS", "OBS_DIM", "STEPS_PER_TRIAL", "ObservationTables", "State", "TimeStep", "TrialItems",
    "all_chemistries", "apply_actions", "begin_trial", "chemistry_prior", "observe", "sample_chemistries",
    "sample_items",
]
