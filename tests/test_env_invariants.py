"""The invariants of SPEC §9 as property-based tests, plus input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alchemy_mbrl.env import codec
from alchemy_mbrl.env import FIRST, LAST, MID, AlchemyEnv, Chemistry, TrialItems
from alchemy_mbrl.env.chemistry import GRAPH_EDGES, MOVE_TABLE, NUM_CHEMISTRIES, VERTEX_COORDS, VERTEX_VALUE

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def rollout(seed: int, n: int = 16, policy: str = "uniform"):
    """Episodes with their true latent trajectories, for checking invariants."""
    rng = np.random.default_rng(seed)
    env = AlchemyEnv(n, seed=seed)
    ts = env.reset()
    obs, rew, disc, types, acts, states = [ts.observation], [], [], [ts.step_type], [], [env.state.copy()]
    for _ in range(200):
        if policy == "uniform":
            a = rng.integers(0, 40, n)
        else:  # mostly potion actions on present items: exercises the dynamics more
            a = rng.integers(2, 14, n) + 13 * rng.integers(0, 3, n)
            a = np.where(rng.random(n) < 0.15, 1 + 13 * rng.integers(0, 3, n), a)
        ts = env.step(a)
        acts.append(a), obs.append(ts.observation), rew.append(ts.reward), disc.append(ts.discount), types.append(ts.step_type)
        states.append(env.state.copy())
    return env, np.stack(obs, 1), np.stack(rew, 1), np.stack(disc, 1), np.stack(types, 1), np.stack(acts, 1), states


@settings(max_examples=15, deadline=None)
@given(seed=seeds, policy=st.sampled_from(["uniform", "potions"]))
def test_episode_invariants(seed, policy):
    env, obs, rew, disc, types, acts, states = rollout(seed, policy=policy)
    n = obs.shape[0]
    # 10. episode shape and step types
    assert obs.shape == (n, 201, 39) and rew.shape == (n, 200)
    assert (types[:, 0] == FIRST).all() and (types[:, 1:200] == MID).all() and (types[:, 200] == LAST).all()
    assert (disc[:, :199] == 1.0).all() and (disc[:, 199] == 0.0).all()
    # every value is in the codec (exact float32 values, SPEC §6)
    codes = codec.encode_observation(obs)
    assert np.array_equal(codec.decode_observation(codes), obs)
    # 7. exact defaults for used slots
    stone_blocks = obs[:, :, :15].reshape(n, 201, 3, 5)
    used = stone_blocks[..., 4] == 1.0
    assert (stone_blocks[used][:, :4] == 2.0).all()
    potion_blocks = obs[:, :, 15:].reshape(n, 201, 12, 2)
    assert (potion_blocks[potion_blocks[..., 1] == 1.0][:, 0] == 1.0).all()
    # 5. rewards only from cauldron actions on present stones; reward = value
    for t in range(200):
        a = acts[:, t]
        nz = rew[:, t] != 0
        cauldron = (a > 0) & ((a - 1) % 13 == 0)
        assert not (nz & ~cauldron).any()
        s = np.where(cauldron, (a - 1) // 13, 0)
        before = stone_blocks[np.arange(n), t, s]
        present = before[:, 4] == 0.0
        assert np.array_equal(nz, cauldron & present)
        feat = before[nz, 3]
        r = rew[nz, t]
        assert np.all(np.where(r == 15, feat == 1.0, np.isclose(3 * feat, r)))
    # 9. per-trial bounds
    per_trial = rew.reshape(n, 10, 20)
    assert (per_trial.sum(-1) >= -9).all() and (per_trial.sum(-1) <= 45).all()
    assert ((per_trial != 0).sum(-1) <= 3).all()
    # 6. monotone used flags within a trial, at most one change per step; reset at trial starts
    flags = np.concatenate([stone_blocks[..., 4], potion_blocks[..., 1]], axis=-1)
    for t in range(1, 201):
        if t % 20 == 0 and t < 200:
            assert (flags[:, t] == 0).all()
            continue
        delta = flags[:, t] - flags[:, t - 1]
        assert (delta >= 0).all() and (delta.sum(-1) <= 1).all()
    # 3. moves are unit cube moves: one perceived coordinate flips, reward feature changes by 2/3
    for t in range(1, 201):
        if t % 20 == 0 and t < 200:
            continue
        prev, cur = stone_blocks[:, t - 1], stone_blocks[:, t]
        both = (prev[..., 4] == 0) & (cur[..., 4] == 0)
        changed = both & (prev[..., :3] != cur[..., :3]).any(-1)
        flips = (prev[..., :3] != cur[..., :3]).sum(-1)
        assert (flips[changed] == 1).all()
        assert np.allclose(np.abs(cur[..., 3] - prev[..., 3])[changed], 2 / 3)
    # 11 (partial). trial-start observations: all items present
    assert (flags[:, 0:200:20] == 0).all()


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, NUM_CHEMISTRIES - 1))
def test_potion_pairs_are_inverses_and_moves_follow_graph(index):
    """Invariants 1, 2, 4, 13: pairs undo each other; moves exist iff the edge is in G."""
    chem = Chemistry.from_index([index])
    g = int(chem.graph_id[0])
    colour_of_latent = chem.colour_of_latent[0]
    for r in range(6):
        partner = r ^ 1  # same axis, opposite direction
        assert colour_of_latent[r] // 2 == colour_of_latent[partner] // 2  # same colour pair
        for v in range(8):
            w = MOVE_TABLE[g, r, v]
            if w != v:
                assert bin(int(v) ^ int(w)).count("1") == 1
                assert MOVE_TABLE[g, partner, w] == v
                d = r // 2
                assert VERTEX_COORDS[w, d] == 2 * (r % 2) - 1
    if g == 108:  # full cube: every potion opposing the stone's coordinate moves it
        for r in range(6):
            d, s = r // 2, 2 * (r % 2) - 1
            for v in range(8):
                assert (MOVE_TABLE[g, r, v] != v) == (VERTEX_COORDS[v, d] == -s)
    assert GRAPH_EDGES[g].sum() >= 7


def test_unseen_final_state_of_trials_and_items_replay():
    """At t = 20k the observation is trial k's first state; the last step shows trial 9's final state."""
    n = 4
    rng = np.random.default_rng(0)
    items = TrialItems(rng.integers(0, 8, (n, 10, 3)), rng.integers(0, 6, (n, 10, 12)))
    chem = Chemistry.from_index(rng.integers(0, NUM_CHEMISTRIES, n))
    env = AlchemyEnv(n)
    ts = env.reset(chem, items)
    for t in range(1, 201):
        ts = env.step(np.full(n, 1))  # cauldron stone 0
        if t % 20 == 0 and t < 200:
            k = t // 20
            coords = VERTEX_COORDS[items.stones[:, k].astype(int)] * chem.stone_sign[:, None, :]
            assert np.array_equal(ts.observation[:, :15].reshape(n, 3, 5)[..., :3], coords)
            assert (ts.observation[:, 4] == 0).all()  # stone 0 present again in the new trial
        if t == 200:
            assert (ts.observation[:, 4] == 1.0).all()  # trial 9's final state: stone 0 used
            assert ts.last()
    assert env.step(np.zeros(n, dtype=int)).first()  # automatic reset after LAST


def test_rewards_equal_vertex_values():
    env = AlchemyEnv(8, seed=1)
    env.reset()
    vals = VERTEX_VALUE[env.state.stones[:, 1].astype(int)]
    ts = env.step(np.full(8, 14))  # cauldron stone 1
    assert np.array_equal(ts.reward, vals.astype(np.float32))
    ts = env.step(np.full(8, 14))  # stone 1 already used: nothing happens
    assert (ts.reward == 0).all()


@pytest.mark.parametrize(
    "actions, message",
    [
        (np.array([0, 40]), "must be in 0..39"),
        (np.array([-1, 3]), "must be in 0..39"),
        (np.array([1, 2, 3]), "shape"),
        (np.array([[1, 2]]), "shape"),
        (np.array([0.5, 1.0]), "integers"),
    ],
)
def test_bad_actions_raise_value_error(actions, message):
    env = AlchemyEnv(2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=message):
        env.step(actions)


def test_bad_reset_inputs_raise_value_error():
    env = AlchemyEnv(2, seed=0)
    with pytest.raises(ValueError, match="episodes"):
        env.reset(chemistry=Chemistry.from_index([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        TrialItems(np.zeros((2, 9, 3)), np.zeros((2, 10, 12)))
    with pytest.raises(ValueError, match="permutations"):
        Chemistry([[0, 0, 1]], [[1, 1, 1]], [[1, 1, 1]], [0])
    with pytest.raises(ValueError, match="batch_size"):
        AlchemyEnv(0)


def test_same_seed_same_episodes():
    a = rollout(7, n=8)
    b = rollout(7, n=8)
    for x, y in zip(a[1:6], b[1:6]):
        assert np.array_equal(x, y)


def test_codec_round_trip_and_errors():
    env = AlchemyEnv(64, seed=5)
    ts = env.reset()
    assert np.array_equal(codec.encode_observation(ts.observation), ts.observation_codes)
    assert codec.TOTAL_CATEGORIES == 3 * (3 * 3 + 5 + 2) + 12 * (7 + 2)
    assert np.array_equal(codec.decode_reward(codec.encode_reward(np.array([-3, -1, 0, 1, 15]))), [-3, -1, 0, 1, 15])
    with pytest.raises(ValueError, match="not one of"):
        codec.encode_reward(np.array([3]))
    bad = ts.observation.copy()
    bad[0, 3] = 0.5
    with pytest.raises(ValueError, match="not in the codec"):
        codec.encode_observation(bad)
    # float32 colour values are the nearest float32 of q/3 - 1 computed in float64 (SPEC §6)
    assert codec.POTION_COLOUR_VALUES.astype(np.float32)[1].view(np.uint32) == 0xBF2AAAAB
