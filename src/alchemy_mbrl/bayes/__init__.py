"""The exact Bayesian model of symbolic Alchemy: a posterior over all 41,856 chemistries.

* :mod:`~alchemy_mbrl.bayes.posterior` — why the posterior is a set, its weighted-bit layout,
  and the precomputed consistency sets (:func:`constraint_tables`);
* :mod:`~alchemy_mbrl.bayes.predictive` — the exact predictive distribution of the next
  (reward, observation) codes (:class:`Predictive`);
* :mod:`~alchemy_mbrl.bayes.filter` — filtering a history (:class:`BayesFilter`) and the exact
  log-likelihood of episodes;
* :mod:`~alchemy_mbrl.bayes.entropy` — Table 2's Bayes-optimal floor on validation shards.

The names below are the package's public API (``from alchemy_mbrl import bayes; bayes.BayesFilter``).
"""

from alchemy_mbrl.bayes.filter import (
    BayesFilter,
    episode_factorised_nats,
    episode_log_probs,
    filter_history,
    observed_constraint,
)
from alchemy_mbrl.bayes.posterior import (
    BIT_CHEM,
    CHEM_FIRST_BIT,
    NO_CONSTRAINT,
    NUM_BITS,
    NUM_WORDS,
    PAD_WORD,
    STONE_MAP_OF_WORD,
    ConstraintTables,
    constraint_tables,
    constraint_words,
    pack_chemistry_sets,
    popcount_words,
    posterior_probabilities,
    stone_map_masses,
    unpack_chemistry_sets,
)
from alchemy_mbrl.bayes.predictive import Predictive, StepAnalysis, analyse_step, initial_posterior, predictive
from alchemy_mbrl.env.constants import TRIAL_ITEMS_NATS

__all__ = [
    "BIT_CHEM", "BayesFilter", "CHEM_FIRST_BIT", "ConstraintTables", "NO_CONSTRAINT", "NUM_BITS", "NUM_WORDS",
    "PAD_WORD", "Predictive", "STONE_MAP_OF_WORD", "StepAnalysis", "TRIAL_ITEMS_NATS", "analyse_step",
    "constraint_tables", "constraint_words", "episode_factorised_nats", "episode_log_probs", "filter_history",
    "initial_posterior", "observed_constraint", "pack_chemistry_sets", "popcount_words", "posterior_probabilities",
    "predictive", "stone_map_masses", "unpack_chemistry_sets",
]
