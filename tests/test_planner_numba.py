"""The compiled tree code (Numba kernels) makes exactly the decisions of the NumPy reference code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alchemy_mbrl import rng
from alchemy_mbrl.planner import PlannerParams, TreeSearch, merge_samples
from alchemy_mbrl.planner import tree_numba
from alchemy_mbrl.planner.params import READINGS
from alchemy_mbrl.simulators.oracle import OracleSimulator
from .test_planner import ToySimulator, toy_context
from .test_planner_oracle import context_of, env_at

pytestmark = pytest.mark.skipif(not tree_numba.AVAILABLE, reason="numba not installed")


def _both(make_sim, ctx, keys, budget: int, params: PlannerParams):
    out = []
    for compiled in (False, True):
        search = TreeSearch(make_sim(), budget, params)
        search.compiled = compiled
        res = search.run(ctx, keys)
        out.append((res, search.tree))
    return out


def _assert_same(a, b) -> None:
    (ra, ta), (rb, tb) = a, b
    np.testing.assert_array_equal(ra.actions, rb.actions)
    np.testing.assert_array_equal(ra.probabilities, rb.probabilities)
    np.testing.assert_array_equal(ra.root_visits, rb.root_visits)
    np.testing.assert_array_equal(ra.root_values, rb.root_values)  # bit-identical, not approximately
    for f in dataclasses.fields(ta):
        np.testing.assert_array_equal(getattr(ta, f.name), getattr(tb, f.name), err_msg=f.name)


@pytest.mark.parametrize("t", [0, 18, 195])
@pytest.mark.parametrize("norm", ["none", "minmax"])
def test_compiled_oracle_search_equals_numpy(t: int, norm: str) -> None:
    b = 6
    env, _ = env_at(b, t, seed=t + 1)
    keys = rng.episode_keys(3, np.arange(b))
    params = PlannerParams(q_normalisation=norm)
    _assert_same(*_both(OracleSimulator, context_of(env), keys, 80, params))


@pytest.mark.parametrize("k", [1, 3, 9])
def test_compiled_toy_search_equals_numpy(k: int) -> None:
    keys = rng.episode_keys(5, np.arange(4))
    params = PlannerParams(k=k, reward_scale=1.0)
    _assert_same(*_both(ToySimulator, toy_context(4, t=150), keys, 60, params))


READING_CASES = [{name: value} for name, allowed in READINGS.items() for value in allowed[1:]] + [
    {"q_normalisation": "minmax", "unvisited_q": value} for value in READINGS["unvisited_q"]] + [
    {"unvisited_q": "parent", "tie_break": "random", "exploration_count": "node", "discount": "trial",
     "backup_reward": "branch", "reward_scale": 1.0}]


@pytest.mark.parametrize("reading", READING_CASES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_compiled_search_equals_numpy_for_every_reading(reading: dict) -> None:
    """The NumPy reference implements every reading too, and the kernels make exactly its decisions."""
    b, t = 5, 15   # t = 15: the searches cross the trial boundary at t = 20 (the trial discount matters)
    env, _ = env_at(b, t, seed=4)
    keys = rng.episode_keys(7, np.arange(b))
    _assert_same(*_both(OracleSimulator, context_of(env), keys, 60, PlannerParams(**reading)))


def test_merge_kernel_equals_merge_samples() -> None:
    g = np.random.default_rng(0)
    obs = g.integers(0, 2, (50, 9, 39)).astype(np.uint8)
    obs[:, 4] = obs[:, 1]
    obs[:, 7] = obs[:, 1]
    rewards = g.choice([0.0, 1.0], (50, 9))
    np.testing.assert_array_equal(tree_numba.merge_kernel(obs, rewards), merge_samples(obs, rewards))


def test_iteration_keys_equal_rng_fold_in() -> None:
    keys = rng.episode_keys(2, np.arange(7))
    a, b = tree_numba.iteration_keys(keys, 13, 1, 0)
    it = rng.fold_in(keys, 13)
    np.testing.assert_array_equal(a, rng.fold_in(it, 1))
    np.testing.assert_array_equal(b, rng.fold_in(it, 0))
