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
(an exact hash table over their bits, restricted to the words the trial's root belief uses,
stored sparsely as their non-zero words); the whole search runs in Numba. Every later step of a
trial is a memo hit of the first search. Three further exact reductions:

* **colour relabellings.** The prior and the dynamics are invariant under the 48 relabellings g
  of the colours that keep the pairs (permute the 3 pairs, swap within pairs); g acts on the
  chemistries by their potion map only (a permutation of the 3-word potion-map blocks inside each
  stone map), so a state (B, stones, counts) has the values of (g B, stones, g counts). A child
  belief is interned as the image of smallest hash over the relabellings that keep the root's
  words (with the relabelling that maps onto it), and colour counts are relabelled to the
  smallest under the belief's exact stabiliser: symmetric states share one memo entry. The memo
  keeps values only; the best action of a queried state is chosen by comparing its actions in its
  own colours (:func:`.expectimax.value` at the root), so ties are broken exactly as above;
* **transitions** (outcome classes, masses, interned children) are computed once per (belief,
  stone vertex, colour), not once per state;
* **pruning.** An action is skipped when even the sum of its outcomes' upper bounds (a potion
  moves one stone along one latent axis, so a stone rises by at most the number of colour pairs
  left and the stones by at most the number of potions left; :func:`.tables.upper_bounds`) is strictly
  below the best value found: it can be neither the best nor tied, so values and actions are
  unchanged. Actions that survive it get the tighter full-cube bound (:func:`.kernels.full_bound`: per
  (stone map, potion map) block of the belief, its mass times the best reward if the graph were
  the full cube), are searched best bound first (a state's value, max U then min N, does not
  depend on the order), and an action's search stops as soon as its exact outcome values so far
  plus its remaining outcomes' bounds fall strictly below the best value found;
* **fail-low thresholds.** An outcome's state is searched with a threshold ``alpha``: the value
  below which its action falls strictly below the best found, given the other outcomes' exact
  values and bounds. A state whose value is below its threshold may stop early and return an upper
  bound (flagged ``N = -1``) instead of its value; the action is then pruned, which is exact for the
  same reason as above. Upper bounds are memoised as such and answer a later query only when they
  are below its threshold (else the state is searched again); an outcome already memoised is
  bounded by the smaller of its memoised value and its full-cube bound (the actions are still
  ordered by the full-cube bounds). The root's best action
  (:func:`.expectimax.value` at the root) prunes its actions the same way against the best U found, so ties are still
  compared on exact values.

Layout
------
* :mod:`.names`: the agents' names (light: importing the package builds and compiles nothing);
* :mod:`.tables`: constants and lookup tables (relabellings, bounds), built on first use;
* :mod:`.kernels`: compiled building blocks (state codes, bounds, belief interning, transitions);
* :mod:`.expectimax`: the recursive search, one kernel for inner states and the queried root;
* :mod:`.store`: :class:`TrialSearch`, the arrays of one trial's search and their growth;
* :mod:`.agents`: the ideal observer and the search oracle as policies.
"""

from __future__ import annotations

import importlib
from typing import Any

from alchemy_mbrl.ideal_observer.names import AGENTS, IDEAL_OBSERVER, SEARCH_ORACLE

#: Public names loaded on first access (module ``__getattr__``), so that importing the package or
#: its agents' names compiles nothing.
_LAZY = {
    "TrialSearch": "store",
    "USED_STONE": "tables",
    "VALUE_OF_FEATURE": "tables",
    "ACTION_CODES": "tables",
    "TIE_RULES": "tables",
    "DEFAULT_TIE_RULE": "tables",
    "InsertionOrder": "agents",
    "potion_stone_slot": "agents",
    "_C_EXPANDED": ("tables", "C_EXPANDED"),
    "IdealObserverPolicy": "agents",
    "SearchOraclePolicy": "agents",
    "action_of_code": "agents",
    "chemistry_trial_value": "agents",
    "make_agent": "agents",
    "observed_items": "agents",
    "trial_start_state": "agents",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (where, name) if isinstance(where, str) else where
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


__all__ = [
    "ACTION_CODES", "AGENTS", "DEFAULT_TIE_RULE", "IDEAL_OBSERVER", "IdealObserverPolicy", "InsertionOrder",
    "SEARCH_ORACLE", "SearchOraclePolicy", "TIE_RULES", "TrialSearch", "USED_STONE", "VALUE_OF_FEATURE",
    "action_of_code", "chemistry_trial_value", "make_agent", "observed_items", "potion_stone_slot",
    "trial_start_state",
]
