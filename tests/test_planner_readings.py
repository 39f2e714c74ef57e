"""The readings of Algorithm 1 that the paper leaves open (PlannerParams' READINGS), each against a
brute-force or hand-computed reference on small cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alchemy_mbrl.planner import PlannerParams, TreeSearch
from alchemy_mbrl.planner import tree_numba
from alchemy_mbrl.planner.params import PREVIOUS_READING, READINGS
from alchemy_mbrl.planner.tree_search import Tree, _weight_table
from .test_planner import SAFE, ToySimulator, toy_context

pytestmark = pytest.mark.skipif(not tree_numba.AVAILABLE, reason="numba not installed")

A = 40


def test_every_reading_is_validated_and_the_default_is_the_calibrated_reading() -> None:
    p = PlannerParams()
    assert p.nondefault_readings() == {}
    assert (p.reward_scale, p.tie_break) == (0.2, "random")   # docs/results-planner.md
    previous = PlannerParams(**PREVIOUS_READING)
    assert previous.nondefault_readings() == {"tie_break": "lowest"} and previous.reward_scale == 1 / 15
    shipped = json.loads((Path(__file__).resolve().parents[1] / "config/planner/previous-reading.json").read_text())
    assert PlannerParams.from_dict(shipped) == previous
    for name, allowed in READINGS.items():
        assert getattr(p, name) == allowed[0]
        with pytest.raises(ValueError, match=name):
            PlannerParams(**{name: "no-such-reading"})
        with pytest.raises(ValueError, match=name):
            PlannerParams(**{name: 1})
    assert PlannerParams.from_dict({"tie_break": "untried"}).nondefault_readings() == {"tie_break": "untried"}


def test_expansion_unit_sample_counts_each_of_the_k_model_samples() -> None:
    assert PlannerParams(k=3).iterations(100) == 100
    assert PlannerParams(k=3, expansion_unit="sample").iterations(100) == 33
    assert PlannerParams(k=3, expansion_unit="sample").iterations(2) == 1
    sim = ToySimulator()
    search = TreeSearch(sim, budget=30, params=PlannerParams(k=3, expansion_unit="sample"), horizon=10)
    res = search.run(toy_context(2, 0), np.array([1, 2], dtype=np.uint64))
    assert sim.calls == 10
    assert search.tree.num_expansions == 10
    np.testing.assert_array_equal(res.root_visits.sum(axis=1), [10, 10])


def _first_root_actions(tie: str, n_keys: int = 400) -> np.ndarray:
    """The action of the first expansion (all scores tie at a fresh root) for n_keys searches."""
    search = TreeSearch(ToySimulator(), budget=1, params=PlannerParams(tie_break=tie), horizon=10)
    res = search.run(toy_context(n_keys, 0), np.arange(n_keys, dtype=np.uint64))
    return np.argmax(res.root_visits, axis=1)


def test_tie_break_lowest_highest_random() -> None:
    assert (_first_root_actions("lowest") == 0).all()
    assert (_first_root_actions("highest") == A - 1).all()
    first = _first_root_actions("random", 4000)
    counts = np.bincount(first, minlength=A)
    # uniform over the 40 tied actions: 100 expected each; a chi-square far in the tail would fail
    chi2 = ((counts - 100.0) ** 2 / 100.0).sum()
    assert counts.min() > 50 and chi2 < 90, (counts, chi2)


def test_tie_break_untried_tries_every_action_once_before_the_formula() -> None:
    # SAFE pays +1 half the time: under the formula with raw rewards it is revisited before every
    # action has been tried; with "untried" the first 40 iterations visit each action exactly once.
    params = dict(reward_scale=1.0, temperature=0.0)
    keys = np.arange(8, dtype=np.uint64)
    formula = TreeSearch(ToySimulator(), budget=A, params=PlannerParams(**params), horizon=10).run(
        toy_context(8, 0), keys)
    assert (formula.root_visits == 0).any()
    untried = TreeSearch(ToySimulator(), budget=A, params=PlannerParams(tie_break="untried", **params),
                         horizon=10).run(toy_context(8, 0), keys)
    assert (untried.root_visits == 1).all()
    # in a random order: the first action differs between searches
    assert len(set(_first_root_actions("untried", 8))) > 1


def _brute_force_action(q, n, n_sum, q_min, q_max, minmax, unvisited, count_node, depth, c1, c2) -> int:
    """The selection rule written from its definition, one action at a time (lowest index on ties)."""
    total = n_sum + (1 if count_node and depth > 0 else 0)
    w = (c1 + np.log((c2 + 1.0 + total) / c2)) * np.sqrt(total) / A
    span = q_max - q_min
    ok = np.isfinite(span) and span > 0

    def norm(x: float) -> float:
        return (x - q_min) / span if (minmax and ok) else x

    if unvisited == "zero":
        q0 = norm(0.0)
    elif unvisited == "bottom":
        q0 = 0.0 if minmax else (q_min if np.isfinite(q_min) else 0.0)
    else:
        q0 = norm(float((n * q).sum() / n_sum) if n_sum > 0 else 0.0)
    scores = [(norm(q[a]) if n[a] > 0 else q0) + w / (1.0 + n[a]) for a in range(A)]
    return int(np.argmax(scores))


@pytest.mark.parametrize("minmax", [False, True])
@pytest.mark.parametrize("unvisited", ["zero", "bottom", "parent"])
@pytest.mark.parametrize("count_node", [False, True])
def test_selection_scores_against_brute_force(minmax: bool, unvisited: str, count_node: bool) -> None:
    gen = np.random.default_rng(7)
    c1, c2 = 0.57, 16.15
    budget = 60
    table = _weight_table(budget, c1, c2, A)
    for trial in range(200):
        tree = Tree.allocate(1, budget, 3, A)
        tree.reset(0)
        n = gen.integers(0, 3, size=A) * (gen.random(A) < 0.5)
        q = np.round(gen.normal(0.0, 0.5, size=A), 2) * (n > 0)
        tree.slot[0, 0] = 1
        tree.next_slot[0] = 2
        tree.visits[0, 1] = n
        tree.value[0, 1] = q
        tree.visits_sum[0, 1] = n.sum()
        tree.q_min[0] = q[n > 0].min() if (n > 0).any() else np.inf
        tree.q_max[0] = q[n > 0].max() if (n > 0).any() else -np.inf
        out = tree_numba.select_kernel(
            tree.slot, tree.value, tree.visits, tree.visits_sum, tree.child_chance, tree.chance_children,
            tree.chance_weight, tree.node_t, tree.q_min, tree.q_max, np.array([trial], dtype=np.uint64), table,
            minmax, 200, 4, tree_numba.UNVISITED_CODES[unvisited], 0, count_node)
        expected = _brute_force_action(q, n, n.sum(), tree.q_min[0], tree.q_max[0], minmax, unvisited, count_node,
                                       0, c1, c2)
        assert out[4][0] == 0 and out[5][0] == expected, (trial, out[5][0], expected)


def _two_level_path(t0: int):
    """Root (t0) -a=5-> chance 0 -> node 1 (branch reward r1) -a=7-> new chance 1 (mean reward).

    Returns the backup kernel's inputs for a tree where chance 0's weighted mean (0.5) differs from the
    reward of the branch taken (1.0)."""
    tree = Tree.allocate(1, 4, 2, A)
    tree.reset(t0)
    tree.slot[0, 0], tree.slot[0, 1], tree.next_slot[0] = 1, 2, 3
    tree.node_t[0, 1] = t0 + 1
    tree.chance_reward[0, 0] = 0.5   # branches: node 1 reward 1.0, node 2 reward 0.0, equal weights
    tree.node_reward[0, 1], tree.node_reward[0, 2] = 1.0, 0.0
    tree.chance_reward[0, 1] = 2.0   # the new chance node of the expansion
    nodes = np.array([[0, 1]]); actions = np.array([[5, 7]]); chances = np.array([[0, 1]])
    valid = np.array([[True, True]])
    return tree, nodes, actions, chances, valid


@pytest.mark.parametrize("branch", [False, True])
@pytest.mark.parametrize("by_trial,t0", [(False, 5), (False, 19), (True, 5), (True, 19)])
def test_backup_branch_reward_and_trial_discount(branch: bool, by_trial: bool, t0: int) -> None:
    gamma = 0.9
    tree, nodes, actions, chances, valid = _two_level_path(t0)
    tree_numba.backup_kernel(nodes, actions, chances, valid, tree.chance_reward, tree.slot, tree.value, tree.visits,
                             tree.visits_sum, tree.q_min, tree.q_max, gamma,
                             np.array([1]) if branch else None, tree.node_reward if branch else None,
                             tree.node_t if by_trial else None, 20 if by_trial else 0)
    # level 1 (t0+1 -> t0+2): G = 2.0 (the new chance node's mean, whatever the reading)
    assert tree.value[0, 2, 7] == 2.0
    # level 0 (t0 -> t0+1): r = branch reward 1.0 or chance mean 0.5; gamma applies unless the discount
    # is per trial and the step to t0+1 does not end a trial (t0 = 19: the step to t = 20 ends trial 0)
    r = 1.0 if branch else 0.5
    g = gamma if (not by_trial or (t0 + 1) % 20 == 0) else 1.0
    assert tree.value[0, 1, 5] == pytest.approx(r + g * 2.0)


def test_readings_play_real_steps_with_the_oracle() -> None:
    """Every reading runs a whole search on the real environment's oracle (smoke test of the wiring)."""
    from .test_planner_oracle import context_of, env_at
    from alchemy_mbrl.simulators.oracle import OracleSimulator

    env, _ = env_at(b=2, t=0, seed=1)
    ctx = context_of(env)
    for name, allowed in READINGS.items():
        for value in allowed[1:]:
            res = TreeSearch(OracleSimulator(), budget=30, params=PlannerParams(**{name: value})).run(
                ctx, np.array([3, 4], dtype=np.uint64))
            assert res.probabilities.shape == (2, A) and np.allclose(res.probabilities.sum(axis=1), 1.0)


def test_exploration_count_node_adds_the_nodes_own_visit_below_the_root() -> None:
    """Below the root, N = sum N(a) + 1: a case where that flips the choice (w(1)/2 < Q < w(2)/2)."""
    tree = Tree.allocate(1, 10, 1, A)
    tree.reset(0)
    tree.slot[0, 0], tree.slot[0, 1], tree.next_slot[0] = 1, 2, 3
    tree.visits[0, 1, 5], tree.value[0, 1, 5], tree.visits_sum[0, 1] = 2, 1.0, 2   # the root goes down action 5
    tree.child_chance[0, 1, 5] = 0
    tree.chance_children[0, 0, 0], tree.chance_weight[0, 0, 0], tree.node_t[0, 1] = 1, 1, 1
    tree.visits[0, 2, 0], tree.value[0, 2, 0], tree.visits_sum[0, 2] = 1, 0.01, 1  # node 1: action 0 tried once
    table = _weight_table(10, 0.57, 16.15, A)
    assert table[1] / 2 < 0.01 < table[2] / 2
    chosen = []
    for count_node in (False, True):
        out = tree_numba.select_kernel(
            tree.slot, tree.value, tree.visits, tree.visits_sum, tree.child_chance, tree.chance_children,
            tree.chance_weight, tree.node_t, tree.q_min, tree.q_max, np.array([1], dtype=np.uint64), table, False,
            200, 5, 0, 0, count_node)
        assert list(out[0][0]) == [0, 1] and out[1][0][0] == 5
        chosen.append(int(out[1][0][1]))
    assert chosen == [0, 1]   # Q(0) + w/2 beats an untried w at N = 1, not at N = 2


def test_param_settings_on_the_command_line_equal_a_params_file(tmp_path, capsys) -> None:
    import json

    import pandas as pd

    from alchemy_mbrl.cli import main

    common = ["evaluate", "--policy", "planner", "--simulator", "oracle", "--budget", "6", "--episodes", "2",
              "--seed", "3", "--no-progress"]
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"tie_break": "random", "expansion_unit": "sample"}))
    assert main([*common, "--params", str(pfile), "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*common, "--param", "tie_break=random", "--param", "expansion_unit=sample",
                 "--out", str(tmp_path / "b.csv")]) == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert list(a["return"]) == list(b["return"])
    assert main([*common, "--param", "tie_break=sideways", "--out", str(tmp_path / "c.csv")]) == 2
    assert "tie_break" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()
