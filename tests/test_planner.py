"""Tests of the batched tree search (Algorithm 1): selection, backup, merging, temperature, horizon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alchemy_mbrl import rng
from alchemy_mbrl.planner import (
    Path,
    PlannerParams,
    Tree,
    TreeSearch,
    action_probabilities,
    backup,
    merge_samples,
    selection_scores,
)
from alchemy_mbrl.planner.params import PREVIOUS_READING
from alchemy_mbrl.planner.simulator import RootContext, Simulator


# ----------------------------------------------------------------------------------------
# A tiny hand-made MDP behind the Simulator protocol.
# State of a decision node: an integer "mode" (0 normal, 1 unlocked) and the step count t.
#  * action UNLOCK (3) in mode 0: reward 0, next mode 1;
#  * action JACKPOT (1) in mode 1: reward +15, next mode 0;
#  * action SAFE (7): reward +1 with probability 0.5, else 0 (stochastic), mode unchanged;
#  * every other action: reward 0, mode unchanged.
# With two steps left the optimal first action is UNLOCK (0 + 15 > 0.5 + 0.5), which a
# one-step greedy policy would not take. With one step left it is SAFE (expected 0.5 > 0).
# ----------------------------------------------------------------------------------------
UNLOCK, JACKPOT, SAFE = 3, 1, 7


class ToySimulator:
    name = "toy"

    def __init__(self) -> None:
        self.mode: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.calls = 0
        self.max_parent_t = -1

    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        b = context.batch_size
        self.mode = np.zeros((b, max_nodes), dtype=np.int64)
        self.t = np.zeros((b, max_nodes), dtype=np.int64)
        self.t[:, 0] = context.t

    def expand(self, parents, actions, children, keys, mask=None):
        assert self.mode is not None and self.t is not None
        self.calls += 1
        b, k = children.shape
        bi = np.arange(b)[:, None]
        if mask is None:
            mask = np.ones(b, dtype=bool)
        if mask.any():
            self.max_parent_t = max(self.max_parent_t, int(self.t[np.arange(b), parents][mask].max()))
        mode = np.repeat(self.mode[np.arange(b), parents][:, None], k, axis=1)
        a = np.repeat(np.asarray(actions)[:, None], k, axis=1)
        coin = rng.uniform(keys, (k,)) < 0.5
        reward = np.zeros((b, k), dtype=np.float32)
        reward[(a == JACKPOT) & (mode == 1)] = 15
        reward[(a == SAFE) & coin] = 1
        new_mode = np.where((a == UNLOCK) & (mode == 0), 1, np.where((a == JACKPOT) & (mode == 1), 0, mode))
        self.mode[bi, children] = new_mode
        self.t[bi, children] = self.t[np.arange(b), parents][:, None] + 1
        obs = np.zeros((b, k, 39), dtype=np.uint8)
        obs[..., 0] = new_mode
        obs[..., 1] = reward > 0
        return obs, reward


def toy_context(b: int, t: int) -> RootContext:
    return RootContext(
        t=t,
        obs_codes=np.zeros((b, t + 1, 39), dtype=np.uint8),
        actions=np.zeros((b, t), dtype=np.int64),
        reward_codes=np.zeros((b, t), dtype=np.uint8),
    )


def test_toy_simulator_satisfies_protocol() -> None:
    assert isinstance(ToySimulator(), Simulator)


# ------------------------------------------------------------------ selection formula
def test_selection_scores_match_algorithm_1_on_hand_set_statistics() -> None:
    c1, c2 = 0.57, 16.15
    q = np.array([[0.5, 1.0, 0.0, 2.0]])
    n = np.array([[3, 1, 0, 6]])
    total = 10
    got = selection_scores(q, n, np.array([total]), c1, c2)
    for a in range(4):
        expected = q[0, a] + (1 / 4) * math.sqrt(total) / (1 + n[0, a]) * (c1 + math.log((c2 + 1 + total) / c2))
        assert got[0, a] == pytest.approx(expected, rel=1e-12)
    # the unvisited action's bonus beats a 2.0 advantage? here: a=3 has Q=2 and 6 visits
    assert int(np.argmax(got[0])) == 3


def test_fresh_node_ties_go_to_lowest_action_index() -> None:
    s = selection_scores(np.zeros((1, 40)), np.zeros((1, 40)), np.zeros(1), 0.57, 16.15)
    assert np.all(s == 0)
    assert int(np.argmax(s[0])) == 0
    # after trying a=0 once with value 0, an untried action wins, again the lowest index
    n = np.zeros((1, 40))
    n[0, 0] = 1
    s = selection_scores(np.zeros((1, 40)), n, np.ones(1), 0.57, 16.15)
    assert int(np.argmax(s[0])) == 1


# ------------------------------------------------------------------ backup
def test_backup_values_on_a_hand_built_tree() -> None:
    gamma = 0.5
    tree = Tree.allocate(batch_size=1, budget=3, k=2, num_actions=3)
    tree.reset(0)
    # root (slot 1) --a=1--> chance 0 (reward 1.0) -> children 1, 2; root already has N=1, Q=4 for a=1
    tree.slot[0, 0] = 1
    tree.visits[0, 1, 1] = 1
    tree.value[0, 1, 1] = 4.0
    tree.visits_sum[0, 1] = 1
    tree.child_chance[0, 1, 1] = 0
    tree.chance_children[0, 0] = [1, 2]
    tree.chance_weight[0, 0] = [2, 0]
    tree.chance_reward[0, 0] = 1.0
    # node 1 (slot 2) --a=2--> chance 1 (reward 2.0): the freshly expanded leaf
    tree.slot[0, 1] = 2
    tree.child_chance[0, 2, 2] = 1
    tree.chance_reward[0, 1] = 2.0
    tree.next_slot[0] = 3
    path = Path(
        nodes=np.array([[0, 1]]), actions=np.array([[1, 2]]), chances=np.array([[0, 1]]),
        valid=np.array([[True, True]]), leaf_node=np.array([1]), leaf_action=np.array([2]),
        leaf_depth=np.array([1]), terminal=np.array([False]),
    )
    backup(tree, path, gamma)
    assert tree.value[0, 2, 2] == pytest.approx(2.0)  # G = r_leaf = 2
    assert tree.visits[0, 2, 2] == 1
    g_root = 1.0 + gamma * 2.0
    assert tree.value[0, 1, 1] == pytest.approx((4.0 * 1 + g_root) / 2)
    assert tree.visits[0, 1, 1] == 2 and tree.visits_sum[0, 1] == 2
    # a terminal leaf adds zero below its parent chance node
    path_t = Path(
        nodes=np.array([[0, 1]]), actions=np.array([[1, 0]]), chances=np.array([[0, -1]]),
        valid=np.array([[True, False]]), leaf_node=np.array([1]), leaf_action=np.array([0]),
        leaf_depth=np.array([1]), terminal=np.array([True]),
    )
    before = tree.value[0, 1, 1]
    backup(tree, path_t, gamma)
    assert tree.value[0, 1, 1] == pytest.approx((before * 2 + 1.0) / 3)
    assert tree.visits[0, 2].sum() == 1  # node 1 untouched


# ------------------------------------------------------------------ merging
def test_merge_samples_counts_duplicates_on_first_occurrence() -> None:
    obs = np.zeros((2, 4, 39), dtype=np.uint8)
    obs[0, :, 0] = [5, 6, 5, 5]
    obs[1, :, 0] = [1, 2, 3, 1]
    rew = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32)
    w = merge_samples(obs, rew)
    np.testing.assert_array_equal(w, [[2, 1, 0, 1], [2, 1, 1, 0]])


def test_merged_sample_weights_are_unbiased_monte_carlo() -> None:
    """Sampling a branch by merged weight reproduces the outcome distribution (and the mean reward)."""
    probs = np.array([0.5, 0.3, 0.2])
    rewards_of = np.array([0.0, 1.0, 15.0])
    b, k = 40_000, 3
    keys = rng.episode_keys(123, np.arange(b))
    u = rng.uniform(keys, (k,))
    outcome = (u[..., None] >= np.cumsum(probs)).sum(-1)  # [B, K] in 0..2
    obs = np.zeros((b, k, 39), dtype=np.uint8)
    obs[..., 0] = outcome
    rew = rewards_of[outcome].astype(np.float32)
    w = merge_samples(obs, rew)
    assert np.all(w.sum(1) == k)
    branch = rng.categorical(rng.fold_in(keys, 7), w)
    picked = outcome[np.arange(b), branch]
    freq = np.bincount(picked, minlength=3) / b
    se = np.sqrt(probs * (1 - probs) / b)
    assert np.all(np.abs(freq - probs) < 5 * se), (freq, probs)
    chance_reward = (w * rew).sum(1) / w.sum(1)
    expected = float((probs * rewards_of).sum())
    assert abs(chance_reward.mean() - expected) < 5 * chance_reward.std() / math.sqrt(b)


# ------------------------------------------------------------------ temperature
def test_action_probabilities_temperature_limits() -> None:
    n = np.array([[0, 10, 30, 30, 5]])
    p0 = action_probabilities(n, 0.0)
    np.testing.assert_array_equal(p0, [[0, 0, 1, 0, 0]])  # argmax, ties to lowest index
    p1 = action_probabilities(n, 1.0)
    np.testing.assert_allclose(p1, n / n.sum())
    small = action_probabilities(np.array([[0, 10, 30, 29, 5]]), 1e-3)
    np.testing.assert_allclose(small, [[0, 0, 1, 0, 0]], atol=1e-12)
    big = action_probabilities(n, 1e6)
    np.testing.assert_allclose(big, [[0, 0.25, 0.25, 0.25, 0.25]], atol=1e-4)
    p = action_probabilities(n, 0.55)
    expected = n ** (1 / 0.55) / (n ** (1 / 0.55)).sum()
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_params_from_json(tmp_path) -> None:
    f = tmp_path / "hp.json"
    f.write_text('{"temperature": 0.3, "c1": 1.0, "c2": 10.0, "k": 4, "gamma": 0.9}')
    p = PlannerParams.from_json(f)
    assert (p.temperature, p.c1, p.c2, p.k, p.gamma) == (0.3, 1.0, 10.0, 4, 0.9)
    assert PlannerParams() == PlannerParams(temperature=0.55, c1=0.57, c2=16.15, k=3, gamma=0.99)
    f.write_text('{"temperatur": 0.3}')
    with pytest.raises(ValueError, match="unknown planner parameter"):
        PlannerParams.from_json(f)
    with pytest.raises(ValueError, match="k must be"):
        PlannerParams(k=0)


# ------------------------------------------------------------------ whole searches on the toy MDP
def test_search_finds_delayed_reward_with_two_steps_left() -> None:
    """Two steps before the end: UNLOCK (0) then JACKPOT (+15) beats SAFE twice (+1 expected).

    Table 4's C1 explores too little to revisit UNLOCK once SAFE looks good (ties go to the
    lowest index, so the first visit below UNLOCK tries the no-op), hence a larger C1 here.
    """
    sim = ToySimulator()
    # the previous reading (Q in units of +15, lowest-index ties), for which this C1 was chosen
    search = TreeSearch(sim, budget=400, params=PlannerParams(**PREVIOUS_READING, temperature=0.0, c1=30.0),
                        horizon=10)
    res = search.run(toy_context(4, t=8), rng.episode_keys(0, np.arange(4)))
    np.testing.assert_array_equal(res.actions, UNLOCK)
    assert np.all(res.root_values[:, UNLOCK] > res.root_values[:, SAFE])


def test_search_prefers_stochastic_immediate_reward_with_one_step_left() -> None:
    sim = ToySimulator()
    # raw rewards (reward_scale = 1): a 0.5 expected reward must beat the exploration term in 200 expansions
    search = TreeSearch(sim, budget=200, params=PlannerParams(temperature=0.0, reward_scale=1.0, tie_break="lowest"),
                        horizon=10)
    res = search.run(toy_context(8, t=9), rng.episode_keys(1, np.arange(8)))
    # A chance node keeps its K samples: if none of SAFE's 3 samples paid (probability 1/8),
    # its estimate stays 0 and every action ties (then the lowest index, the no-op, wins).
    paid = res.root_values[:, SAFE] > 0
    assert paid.sum() >= 5
    np.testing.assert_array_equal(res.actions, np.where(paid, SAFE, 0))


def test_no_planning_beyond_the_end_of_the_episode() -> None:
    sim = ToySimulator()
    search = TreeSearch(sim, budget=300, params=PlannerParams(), horizon=200)
    res = search.run(toy_context(3, t=198), rng.episode_keys(2, np.arange(3)))
    assert sim.max_parent_t == 199  # expansions only from t = 198 and 199
    assert search.tree is not None
    used = search.tree.chance_weight.sum(-1) > 0  # chance nodes actually created
    assert used.sum(1).max() < 300  # some iterations stopped at a terminal node (t = 200) and expanded nothing
    assert np.all(search.tree.node_t[:, 1:][search.tree.chance_weight.reshape(3, -1) > 0] <= 200)
    # every iteration is backed up, terminal ones included
    np.testing.assert_array_equal(res.root_visits.sum(1), 300)
    with pytest.raises(ValueError, match="episode ends"):
        search.run(toy_context(1, t=200), rng.episode_keys(2, np.arange(1)))


def test_search_is_deterministic_given_keys_and_depends_on_them() -> None:
    keys = rng.episode_keys(5, np.arange(3))
    a = TreeSearch(ToySimulator(), budget=120).run(toy_context(3, t=150), keys)
    b = TreeSearch(ToySimulator(), budget=120).run(toy_context(3, t=150), keys)
    np.testing.assert_array_equal(a.root_visits, b.root_visits)
    np.testing.assert_array_equal(a.root_values, b.root_values)
    np.testing.assert_array_equal(a.actions, b.actions)
    c = TreeSearch(ToySimulator(), budget=120).run(toy_context(3, t=150), rng.episode_keys(6, np.arange(3)))
    assert not np.array_equal(a.root_values, c.root_values)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="budget"):
        TreeSearch(ToySimulator(), budget=0)


def test_reward_scale_multiplies_the_trees_rewards_and_values() -> None:
    ctx = toy_context(4, t=9)
    keys = rng.episode_keys(3, np.arange(4))
    raw = TreeSearch(ToySimulator(), budget=1, params=PlannerParams(reward_scale=1.0), horizon=10)
    raw.run(ctx, keys)
    scaled = TreeSearch(ToySimulator(), budget=1, params=PlannerParams(reward_scale=0.25), horizon=10)
    scaled.run(ctx, keys)
    assert raw.tree is not None and scaled.tree is not None
    np.testing.assert_allclose(scaled.tree.chance_reward, 0.25 * raw.tree.chance_reward)
    with pytest.raises(ValueError, match="reward_scale"):
        PlannerParams(reward_scale=0.0)


def test_minmax_normalisation_maps_q_to_unit_range_and_unvisited_to_zero() -> None:
    from alchemy_mbrl.planner.tree_search import normalise_q

    q = np.array([[-3.0, 0.0, 15.0, 7.0], [1.0, 1.0, 1.0, 1.0]])
    n = np.array([[1, 2, 3, 0], [1, 1, 1, 1]])
    out = normalise_q(q, n, np.array([-3.0, np.inf]), np.array([15.0, -np.inf]))
    np.testing.assert_allclose(out[0], [0.0, 3 / 18, 1.0, 0.0])
    np.testing.assert_allclose(out[1], q[1])  # empty range: raw Q kept
    with pytest.raises(ValueError, match="q_normalisation"):
        PlannerParams(q_normalisation="zscore")
