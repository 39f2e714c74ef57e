"""Correctness evidence for the exact Bayesian model (``alchemy_mbrl.bayes``) and its simulator."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from alchemy_mbrl import bayes
from alchemy_mbrl import rng as crng
from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import generate_episodes
from alchemy_mbrl.env.alchemy import STONE_CODE_TABLE, ObservationTables, State, apply_actions, begin_trial, observe
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, Chemistry, all_chemistries, chemistry_prior
from alchemy_mbrl.planner.simulator import RootContext, Simulator
from alchemy_mbrl.simulators.bayes import BayesSimulator, compress, decompress

FLOOR_TRIAL_START = 9 * (3 * math.log(8) + 12 * math.log(6)) / 200  # the reference value, written out


@pytest.fixture(scope="module")
def episodes() -> dict[str, np.ndarray]:
    d = generate_episodes(np.random.default_rng(1234), 400)
    d["reward_codes"] = codec.encode_reward(d["rewards"])
    d["actions"] = d["actions"].astype(np.int64)
    return d


@pytest.fixture(scope="module")
def traces(golden_traces_path: Path) -> dict[str, np.ndarray]:
    t = dict(np.load(golden_traces_path))
    chem = Chemistry(t["potion_perm"], t["potion_sign"], t["stone_sign"], t["graph_id"])
    return {
        "obs_codes": codec.encode_observation(t["obs"]),
        "actions": t["actions"].astype(np.int64),
        "reward_codes": codec.encode_reward(t["rewards"].astype(np.int64)),
        "chemistry_index": chem.index,
    }


# --- an independent brute-force posterior: replay the real environment under every chemistry ----


def _latent_items(obs: np.ndarray, tables: ObservationTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per chemistry: latent stones [C,3] and potions [C,12] shown by ``obs`` (present items), and a validity mask."""
    c = len(tables.stone_map)
    ok = np.ones(c, dtype=bool)
    stones = np.zeros((c, 3), dtype=np.int8)
    for s in range(3):
        if obs[5 * s + 4] == 1:
            continue
        match = (STONE_CODE_TABLE[tables.stone_map][:, :8, :4] == obs[5 * s : 5 * s + 4]).all(-1)  # [C, 8]
        ok &= match.any(1)
        stones[:, s] = match.argmax(1)
    potions = np.zeros((c, 12), dtype=np.int8)
    for p in range(12):
        if obs[16 + 2 * p] == 1:
            continue
        match = tables.colour_lut[:, :6] == obs[15 + 2 * p]
        ok &= match.any(1)
        potions[:, p] = match.argmax(1)
    return stones, potions, ok


def _state_from_obs(obs: np.ndarray, chem: Chemistry, t: int) -> tuple[State, np.ndarray]:
    """The latent state each chemistry implies for observation codes ``obs [39]`` (and whether it is consistent)."""
    tables = ObservationTables.of(chem)
    stones, potions, ok = _latent_items(obs, tables)
    state = State.empty(len(chem))
    begin_trial(state, slice(None), stones, potions)  # type: ignore[arg-type]
    state.stone_used[:] = obs[4:15:5] == 1
    state.potion_used[:] = obs[16::2] == 1
    state.t[:] = t
    ok &= (observe(state, tables) == obs).all(1)
    return state, ok


def brute_force_consistent(obs: np.ndarray, actions: np.ndarray, reward_codes: np.ndarray, checkpoints: list[int]) -> dict[int, np.ndarray]:
    """``{t: [41856] bool}``: chemistries under which the env reproduces the first t steps exactly."""
    chem = all_chemistries()
    tables = ObservationTables.of(chem)
    gid = chem.graph_id.astype(np.int64)
    state, ok = _state_from_obs(obs[0], chem, 0)
    out = {}
    for t in range(max(checkpoints) + 1):
        if t in checkpoints:
            out[t] = ok.copy()
        if t == max(checkpoints):
            break
        r = apply_actions(state, gid, np.full(len(chem), actions[t], dtype=np.int64))
        ok &= codec.encode_reward(r) == reward_codes[t]
        if (t + 1) % 20 == 0 and t + 1 < 200:
            new, ok_new = _state_from_obs(obs[t + 1], chem, t + 1)
            state, ok = new, ok & ok_new
        else:
            ok &= (observe(state, tables) == obs[t + 1]).all(1)
    return out


# --- layout -------------------------------------------------------------------------------------


def test_weighted_bits_roundtrip_and_prior_mass() -> None:
    rng = np.random.default_rng(0)
    member = rng.random((4, NUM_CHEMISTRIES)) < 0.2
    words = bayes.pack_chemistry_sets(member)
    assert words.shape == (4, bayes.NUM_WORDS) and words.dtype == np.uint64
    np.testing.assert_array_equal(bayes.unpack_chemistry_sets(words), member)
    mass = bayes.popcount_words(words) / bayes.NUM_BITS
    np.testing.assert_allclose(mass, (member * chemistry_prior()).sum(1), rtol=1e-12)
    assert bayes.popcount_words(bayes.pack_chemistry_sets(np.ones(NUM_CHEMISTRIES, bool))) == bayes.NUM_BITS
    # every word belongs to one stone map
    i_of_bit = (bayes.BIT_CHEM // 109) % 8
    assert (i_of_bit.reshape(bayes.NUM_WORDS, 64) == bayes.STONE_MAP_OF_WORD[: bayes.NUM_WORDS, None]).all()


def test_compress_roundtrip() -> None:
    rng = np.random.default_rng(1)
    member = rng.random((3, NUM_CHEMISTRIES)) < 0.001
    words = bayes.pack_chemistry_sets(member)
    small, cols = compress(words)
    assert small.shape[1] < bayes.NUM_WORDS
    np.testing.assert_array_equal(decompress(small, cols), words)


# --- the posterior --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["uniform", "traces"])
def test_posterior_equals_brute_force(source: str, episodes: dict, request: pytest.FixtureRequest) -> None:
    """The filtered set equals the set of chemistries under which the real env reproduces the history."""
    d = episodes if source == "uniform" else request.getfixturevalue("traces")
    for n in (0, 1):  # traces: one uniform-policy and one biased-policy episode
        obs, act, rew = d["obs_codes"][n], d["actions"][n], d["reward_codes"][n]
        filt = bayes.BayesFilter(obs[None, 0])
        checkpoints = [0, 3, 19, 20, 41, 200]
        brute = brute_force_consistent(obs, act, rew, checkpoints)
        for t in range(201):
            if t in checkpoints:
                expected = brute[t]
                got = bayes.unpack_chemistry_sets(filt.post)[0]
                np.testing.assert_array_equal(got, expected, err_msg=f"{source} episode {n}, t={t}")
                assert expected[d["chemistry_index"][n]]
            if t < 200:
                filt.update(act[None, t], rew[None, t], obs[None, t + 1])


@pytest.mark.parametrize("stone_map", [0, 5])
def test_first_observation_constrains_only_the_stone_map(stone_map: int) -> None:
    """After obs_0, tau is ambiguous for exactly 168 of the 512 latent stone triples (exact count),
    and the potion map and graph keep their prior (the posterior factorises)."""
    chem = Chemistry.from_indices(np.zeros(512), np.full(512, stone_map), np.zeros(512))
    triples = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(512, 3)
    state = State.empty(512)
    begin_trial(state, slice(None), triples, np.zeros((512, 12), dtype=np.int8))  # type: ignore[arg-type]
    post = bayes.initial_posterior(observe(state, ObservationTables.of(chem)))
    masses = bayes.stone_map_masses(post)
    assert (masses[:, stone_map] > 0).all()
    assert int(((masses > 0).sum(1) > 1).sum()) == 168
    assert set(np.unique(masses)) <= {0, bayes.NUM_BITS // 8}


def test_true_chemistry_keeps_nonzero_posterior(episodes: dict) -> None:
    filt = bayes.BayesFilter(episodes["obs_codes"][:, 0])
    idx = episodes["chemistry_index"]
    for t in range(200):
        lp = filt.update(episodes["actions"][:, t], episodes["reward_codes"][:, t], episodes["obs_codes"][:, t + 1])
        assert np.isfinite(lp).all() and (lp <= 1e-12).all()
        if t % 20 == 0 or t == 199:
            member = bayes.unpack_chemistry_sets(filt.post)
            assert member[np.arange(len(idx)), idx].all(), f"true chemistry excluded at t={t + 1}"


def test_true_chemistry_in_posterior_on_reference_traces(traces: dict) -> None:
    post = bayes.filter_history(traces["obs_codes"], traces["actions"], traces["reward_codes"])
    member = bayes.unpack_chemistry_sets(post)
    assert member[np.arange(len(member)), traces["chemistry_index"]].all()
    lp = bayes.episode_log_probs(traces["obs_codes"], traces["actions"], traces["reward_codes"])
    assert np.isfinite(lp).all()


def test_impossible_transition_gets_minus_infinity(episodes: dict) -> None:
    obs = episodes["obs_codes"][:4].copy()
    filt = bayes.BayesFilter(obs[:, 0])
    bad_reward = episodes["reward_codes"][:4, 0].copy()
    bad_reward[0] = (bad_reward[0] + 1) % 5  # a reward no chemistry can give
    nxt = obs[:, 1].copy()
    nxt[1, 15] = (nxt[1, 15] + 1) % 6 if nxt[1, 16] == 0 else nxt[1, 15]  # a potion changing colour
    nxt[1, 16] = 0
    lp = filt.update(episodes["actions"][:4, 0], bad_reward, nxt)
    assert lp[0] == -np.inf
    changed = not np.array_equal(nxt[1], obs[1, 1])
    assert (lp[1] == -np.inf) == changed
    assert bayes.popcount_words(filt.post[0]) == 0


# --- the predictive distribution -------------------------------------------------------------------


def _filters_at(d: dict, rows: np.ndarray, t: int) -> bayes.BayesFilter:
    filt = bayes.BayesFilter(d["obs_codes"][rows, 0])
    for s in range(t):
        filt.update(d["actions"][rows, s], d["reward_codes"][rows, s], d["obs_codes"][rows, s + 1])
    return filt


@pytest.mark.parametrize("t", [0, 4, 19, 37, 199])
def test_predictive_is_normalised_and_factorised(episodes: dict, t: int) -> None:
    rows = np.arange(60)
    filt = _filters_at(episodes, rows, t)
    for a in (0, 1, 2, 7, 15, 20, 27, 39, *episodes["actions"][:3, t]):
        actions = np.full(len(rows), a)
        pred = filt.predictive(actions)
        nb = ~pred.analysis.boundary
        np.testing.assert_array_equal(pred.class_mass[nb].sum(1), pred.total[nb])
        # only 7 candidate classes are computed: the other 9 really have zero mass
        pot = np.nonzero(pred.analysis.potion)[0]
        if len(pot):
            all16 = (pred.analysis.pv[pot] * 6 + pred.analysis.q[pot])[:, None] * 16 + np.arange(16)
            full = bayes.popcount_words(bayes.constraint_words(all16) & filt.post[pot, None, :])
            np.testing.assert_array_equal(full, pred.class_mass[pot])
        # factorised conditionals are distributions over each feature's codes
        rew, obs, _ = pred.sample(crng.episode_keys(t, rows), 1)
        probs = pred.factorised_probs(rew[:, 0], obs[:, 0])
        ncat = np.concatenate([[codec.NUM_REWARD_CODES], codec.NUM_CATEGORIES])
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
        for dim in range(40):
            assert (probs[:, dim, ncat[dim] :] == 0).all()
        # and they multiply to the joint
        joint = pred.log_prob(rew[:, 0], obs[:, 0])
        np.testing.assert_allclose(pred.factorised_log_probs(rew[:, 0], obs[:, 0]).sum(1), joint, atol=1e-9)
    # an impossible outcome (stone 0's coordinates all flipped): -inf, and rows after it are zero
    pred = filt.predictive(episodes["actions"][rows, t])
    rew, obs, _ = pred.sample(crng.episode_keys(t + 1, rows), 1)
    bad = obs[:, 0].copy()
    present = bad[:, 4] == 0
    bad[present, :3] = 1 - bad[present, :3]
    lp = pred.log_prob(rew[:, 0], bad)
    assert (lp[present & ~pred.analysis.boundary] == -np.inf).all()
    flp = pred.factorised_log_probs(rew[:, 0], bad)
    np.testing.assert_allclose(flp.sum(1), lp, atol=1e-9)
    probs = pred.factorised_probs(rew[:, 0], bad)
    first_zero = np.argmax(flp == -np.inf, axis=1)
    for r_ in np.nonzero(lp == -np.inf)[0]:
        assert (probs[r_, first_zero[r_] + 1 :] == 0).all()
    # the observed transition: the filter's fast path agrees with the full predictive
    pred = filt.predictive(episodes["actions"][rows, t])
    lp = pred.log_prob(episodes["reward_codes"][rows, t], episodes["obs_codes"][rows, t + 1])
    np.testing.assert_allclose(filt.update(episodes["actions"][rows, t], episodes["reward_codes"][rows, t], episodes["obs_codes"][rows, t + 1]), lp, atol=1e-12)


def test_trial_start_predictive_sums_to_one_exhaustively(episodes: dict) -> None:
    """At a trial boundary, summing p over every (perceived vertex, feature) of the 3 stones gives 1."""
    rows = np.arange(3)
    filt = _filters_at(episodes, rows, 19)
    pred = filt.predictive(episodes["actions"][rows, 19])
    assert pred.analysis.boundary.all()
    grid = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"), -1).reshape(-1, 3)  # (pv, f) per stone
    for b in rows:
        obs = np.zeros((len(grid), 39), dtype=np.uint8)
        for s in range(3):
            pv, f = grid[:, s] // 4, grid[:, s] % 4
            for ax in range(3):
                obs[:, 5 * s + ax] = (pv >> ax) & 1
            obs[:, 5 * s + 3] = f
        sub = bayes.Predictive(
            bayes.analyse_step(np.repeat(filt.obs[b : b + 1], len(grid), 0), np.full(len(grid), episodes["actions"][b, 19]), 19),
            np.repeat(pred.total[b : b + 1], len(grid)),
            np.repeat(pred.class_mass[b : b + 1], len(grid), 0),
            np.repeat(pred.stone_map_mass[b : b + 1], len(grid), 0),
        )
        lp = sub.log_prob(np.full(len(grid), pred.analysis.reward_code[b]), obs) + 12 * math.log(6)  # colours fixed to 0
        assert math.isclose(np.exp(lp).sum(), 1.0, rel_tol=1e-9)


def _chi_square_against(pred_probs: dict, samples: list) -> float:
    keys = sorted(set(pred_probs) | set(samples))
    counts = {k: 0 for k in keys}
    for s in samples:
        counts[s] += 1
    for k in keys:
        assert pred_probs.get(k, 0.0) > 0 or counts[k] == 0, f"outcome {k} seen but has probability 0"
    support = [k for k in keys if pred_probs.get(k, 0.0) > 0]
    if len(support) == 1:
        return 1.0
    f_obs = np.array([counts[k] for k in support], dtype=float)
    f_exp = np.array([pred_probs[k] for k in support]) * len(samples)
    return float(stats.chisquare(f_obs, f_exp).pvalue)


def _env_samples(d: dict, n: int, t: int, action: int, num: int, seed: int) -> tuple[list, bayes.Predictive]:
    """Monte Carlo: chemistries from the posterior, the real env stepped from the state they imply."""
    filt = _filters_at(d, np.array([n]), t)
    rng = np.random.default_rng(seed)
    probs = filt.probabilities()[0]
    idx = rng.choice(NUM_CHEMISTRIES, size=num, p=probs)
    chem = Chemistry.from_index(idx)
    state, ok = _state_from_obs(filt.obs[0], chem, t)
    assert ok.all(), "a chemistry of the posterior cannot explain the current observation"
    r = apply_actions(state, chem.graph_id.astype(np.int64), np.full(num, action, dtype=np.int64))
    if (t + 1) % 20 == 0:
        stones = rng.integers(0, 8, size=(num, 3))
        potions = rng.integers(0, 6, size=(num, 12))
        begin_trial(state, slice(None), stones, potions)  # type: ignore[arg-type]
    obs = observe(state, ObservationTables.of(chem))
    rc = codec.encode_reward(r)
    return [(int(rc[k]), obs[k].tobytes()) for k in range(num)], filt.predictive(np.array([action]))


def test_predictive_matches_environment_monte_carlo_within_trial(episodes: dict) -> None:
    """Potion steps with an uncertain outcome: predicted class probabilities vs env frequencies."""
    tested = 0
    for n in range(40):
        for t in (0, 2, 5, 23, 44):
            o = episodes["obs_codes"][n, t]
            stones = [s for s in range(3) if o[5 * s + 4] == 0]
            potions = [p for p in range(12) if o[16 + 2 * p] == 0]
            if not stones or not potions:
                continue
            action = 2 + 13 * stones[0] + potions[-1]
            filt = _filters_at(episodes, np.array([n]), t)
            pred = filt.predictive(np.array([action]))
            if (pred.class_mass[0] > 0).sum() < 2:
                continue
            samples, pred = _env_samples(episodes, n, t, action, 4000, seed=n * 1000 + t)
            p = pred.class_mass[0] / pred.total[0]
            pred_probs: dict = {}
            for c in range(16):
                if p[c] > 0:
                    key = (int(pred.analysis.reward_code[0]), pred.class_obs[0, c].tobytes())
                    pred_probs[key] = pred_probs.get(key, 0.0) + p[c]
            pval = _chi_square_against(pred_probs, samples)
            assert pval > 1e-4, f"episode {n}, t={t}: chi-square p = {pval}"
            tested += 1
            if tested >= 8:
                return
    assert tested >= 8, "too few uncertain potion steps found"


def test_predictive_matches_environment_monte_carlo_trial_start(episodes: dict) -> None:
    """At a trial boundary: the first stone's (perceived vertex, feature) and the first colour, vs env frequencies."""
    for n in (0, 3, 5):
        samples, pred = _env_samples(episodes, n, 19, int(episodes["actions"][n, 19]), 4000, seed=n)
        assert pred.analysis.boundary[0]
        pred_probs: dict = {}
        for pv in range(8):
            obs = np.zeros((1, 39), dtype=np.uint8)
            obs[0, :3] = [(pv >> k) & 1 for k in range(3)]
            pf = pred.factorised_probs(pred.analysis.reward_code, obs)[0, 4, :4]  # p(f | coords of stone 0)
            for f in range(4):
                if pf[f] > 0:
                    pred_probs[(pv, f)] = pf[f] / 8
        got = [(int(np.frombuffer(o, np.uint8)[:3] @ [1, 2, 4]), int(np.frombuffer(o, np.uint8)[3])) for _, o in samples]
        assert _chi_square_against(pred_probs, got) > 1e-4
        colours = [int(np.frombuffer(o, np.uint8)[15]) for _, o in samples]
        assert _chi_square_against({q: 1 / 6 for q in range(6)}, colours) > 1e-4
        assert all(r == pred.analysis.reward_code[0] for r, _ in samples)


def test_sampling_matches_predictive(episodes: dict) -> None:
    """Outcomes drawn by Predictive.sample follow the predictive probabilities."""
    for n, t in ((0, 0), (1, 2), (2, 19)):
        filt = _filters_at(episodes, np.array([n]), t)
        o = filt.obs[0]
        s = next((s for s in range(3) if o[5 * s + 4] == 0), 0)
        p = next((p for p in range(12) if o[16 + 2 * p] == 0), 0)
        action = np.array([2 + 13 * s + p])
        pred = filt.predictive(action)
        keys = crng.episode_keys(99, np.arange(3000))
        big = bayes.predictive(np.repeat(filt.post, 3000, 0), np.repeat(filt.obs, 3000, 0), np.repeat(action, 3000), t)
        rew, obs, _ = big.sample(keys, 1)
        if pred.analysis.boundary[0]:
            got = [(int(x[:3] @ [1, 2, 4]), int(x[3])) for x in obs[:, 0]]
            probs = {}
            for pv in range(8):
                q = np.zeros((1, 39), dtype=np.uint8)
                q[0, :3] = [(pv >> k) & 1 for k in range(3)]
                pf = pred.factorised_probs(pred.analysis.reward_code, q)[0, 4, :4]
                probs.update({(pv, f): pf[f] / 8 for f in range(4) if pf[f] > 0})
        else:
            got = [x.tobytes() for x in obs[:, 0]]
            probs = {}
            for c in range(16):
                if pred.class_mass[0, c]:
                    probs[pred.class_obs[0, c].tobytes()] = pred.class_mass[0, c] / pred.total[0]
        assert _chi_square_against(probs, got) > 1e-4


# --- the entropy floor ------------------------------------------------------------------------------


def test_trial_start_part_is_at_least_the_item_entropy(episodes: dict) -> None:
    lp = bayes.episode_log_probs(episodes["obs_codes"], episodes["actions"], episodes["reward_codes"])
    starts = np.zeros(200, dtype=bool)
    starts[19:199:20] = True
    per_boundary = -lp[:, starts]
    # each trial start costs the items' entropy plus -log P(new stones' features | posterior over tau) >= 0
    assert (per_boundary >= bayes.TRIAL_ITEMS_NATS - 1e-9).all()
    trial_start = per_boundary.sum(1).mean() / 200
    assert FLOOR_TRIAL_START <= trial_start < FLOOR_TRIAL_START + 0.005
    assert abs(9 * bayes.TRIAL_ITEMS_NATS / 200 - 1.2483) < 1e-4
    # within-trial steps are never surprising beyond the chemistry: 0 <= -log p
    chem_part = -lp[:, ~starts].sum(1).mean() / 200
    assert 0.0 < chem_part < 0.2


def test_a_misspecified_prior_predicts_worse(episodes: dict) -> None:
    """Gibbs' inequality: the Bayes predictor with a uniform graph prior has a higher entropy than the floor."""
    first = np.zeros(bayes.NUM_BITS, dtype=bool)
    first[bayes.CHEM_FIRST_BIT] = True
    one_bit = np.packbits(first, bitorder="little").view("<u8").astype(np.uint64)  # one bit per chemistry
    obs, act, rew = episodes["obs_codes"], episodes["actions"], episodes["reward_codes"]
    filt = bayes.BayesFilter(obs[:, 0])
    floor = np.zeros(len(obs))
    uniform = np.zeros(len(obs))
    for t in range(200):
        before = bayes.popcount_words(filt.post & one_bit)
        floor -= filt.update(act[:, t], rew[:, t], obs[:, t + 1])
        after = bayes.popcount_words(filt.post & one_bit)
        uniform -= np.log(after / before) - (bayes.TRIAL_ITEMS_NATS if (t + 1) % 20 == 0 and t < 199 else 0.0)
    diff = (uniform - floor) / 200
    assert diff.mean() > 3 * diff.std(ddof=1) / math.sqrt(len(diff))


def test_bayes_entropy_command(tmp_path: Path) -> None:
    from alchemy_mbrl.bayes.entropy import bayes_entropy
    from alchemy_mbrl.cli import bayes as bayes_cli
    from alchemy_mbrl.data.shards import write_manifest, write_shard

    a = write_shard(tmp_path / "s0.h5", shard=0, num_shards=2, episodes=20, seed=3, progress=False)
    b = write_shard(tmp_path / "s1.h5", shard=1, num_shards=2, episodes=30, seed=3, progress=False)
    write_manifest(tmp_path / "manifest.json", [a, b], validation=1)
    parser = argparse.ArgumentParser()
    bayes_cli.register(parser.add_subparsers())
    out = tmp_path / "floor.json"
    args = parser.parse_args(["bayes-entropy", "--data", str(tmp_path / "manifest.json"), "--out", str(out), "--max-episodes", "25", "--batch-episodes", "10", "--no-progress"])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["model"] == "bayes" and res["n_episodes"] == 25 and res["n_transitions"] == 5000
    assert math.isclose(res["entropy_nats_per_step"], res["trial_start_nats_per_step"] + res["chemistry_nats_per_step"], rel_tol=1e-12)
    assert res["trial_start_nats_per_step"] >= FLOOR_TRIAL_START and res["entropy_sem"] > 0
    per_dim = bayes_entropy(tmp_path / "manifest.json", max_episodes=25, progress=False, per_dimension=True)
    assert len(per_dim["per_dimension_nats_per_step"]) == 40
    assert math.isclose(sum(per_dim["per_dimension_nats_per_step"]), res["entropy_nats_per_step"], rel_tol=1e-9)
    assert per_dim["per_dimension_nats_per_step"][0] == 0.0  # rewards are predictable from the observation
    # the same numbers directly from the validation shard
    from alchemy_mbrl.data.shards import load_shard

    d = load_shard(b)
    lp = bayes.episode_log_probs(d["obs_codes"][:25], d["actions"][:25].astype(np.int64), codec.encode_reward(d["rewards"][:25]))
    assert math.isclose(res["entropy_nats_per_step"], -lp.sum() / 5000, rel_tol=1e-12)
    with pytest.raises(ValueError):
        bayes_entropy(tmp_path / "manifest.json", max_episodes=0)
    # data that no chemistry can produce is reported, naming the episode and step
    import h5py

    with h5py.File(b, "r+") as f:
        codes = f["obs_codes"][3]
        codes[5, 15:17] = ((codes[4, 15] + 1) % 6, 0)  # potion 0 present with another colour mid-trial
        f["obs_codes"][3] = codes
    with pytest.raises(ValueError, match="episode 3, step 5"):
        bayes_entropy(tmp_path / "manifest.json", progress=False)


def test_learned_model_cannot_beat_the_floor() -> None:
    """A world model's validation entropy is never below the Bayes floor on the same data."""
    model_pkg = pytest.importorskip("alchemy_mbrl.model")
    torch = pytest.importorskip("torch")
    model_cfg, _ = model_pkg.resolve_config("original", {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64})
    torch.manual_seed(0)
    model = model_pkg.build_model(model_cfg).eval()
    d = generate_episodes(np.random.default_rng(77), 16)
    rc = codec.encode_reward(d["rewards"])
    with torch.no_grad():
        rn, on = model.token_losses(torch.as_tensor(d["obs_codes"]), torch.as_tensor(d["actions"]), torch.as_tensor(rc))
    model_nats = (rn + on.sum(-1)).double().numpy().sum(1) / 200
    floor = -bayes.episode_log_probs(d["obs_codes"], d["actions"].astype(np.int64), rc).sum(1) / 200
    diff = model_nats - floor
    assert diff.mean() > -3 * diff.std(ddof=1) / math.sqrt(len(diff))


# --- the simulator ----------------------------------------------------------------------------------


def _context(d: dict, rows: np.ndarray, t: int) -> RootContext:
    return RootContext(t, d["obs_codes"][rows, : t + 1], d["actions"][rows, :t], d["reward_codes"][rows, :t])


def _run_search(sim: BayesSimulator, ctx: RootContext, seed: int, n_expand: int, k: int, b: int, rows_rng: np.random.Generator | None = None):
    """Expand random (parent, action) pairs; returns the list of (parents, actions, children, outputs)."""
    sim.set_roots(ctx, 1 + n_expand * k)
    rng = np.random.default_rng(seed)
    keys = crng.episode_keys(seed, np.arange(b)) if rows_rng is None else None
    log = []
    for e in range(n_expand):
        parents = rng.integers(0, 1 + e * k, size=b)
        actions = rng.integers(0, 40, size=b)
        children = 1 + e * k + np.arange(k)[None, :].repeat(b, 0)
        ek = crng.fold_in(keys, e)
        out = sim.expand(parents, actions, children, ek)
        log.append((parents, actions, children, ek, out))
    return log


def test_simulator_protocol_shapes_and_no_peeking(episodes: dict) -> None:
    sim = BayesSimulator()
    assert isinstance(sim, Simulator) and sim.name == "bayes"
    ctx = _context(episodes, np.arange(5), 7)
    assert ctx.chemistry is None and ctx.state is None
    log = _run_search(sim, ctx, seed=0, n_expand=20, k=3, b=5)
    for _, _, _, _, (obs, rew) in log:
        assert obs.shape == (5, 3, 39) and obs.dtype == np.uint8
        assert rew.shape == (5, 3) and rew.dtype == np.float32
        assert np.isin(rew, codec.REWARD_VALUES).all()
        codec.decode_observation(obs)  # valid codes
    with pytest.raises(ValueError):
        sim.set_roots(RootContext(3, episodes["obs_codes"][:2, :3], episodes["actions"][:2, :3], episodes["reward_codes"][:2, :3]), 10)


def _path_history(d: dict, row: int, t: int, path: list[tuple[int, int, np.ndarray]]):
    obs = [*d["obs_codes"][row, : t + 1]]
    acts = [*d["actions"][row, :t]]
    rews = [*d["reward_codes"][row, :t]]
    for a, rc, o in path:
        acts.append(a)
        rews.append(rc)
        obs.append(o)
    return np.array(obs)[None], np.array(acts, dtype=np.int64)[None], np.array(rews, dtype=np.int64)[None]


@pytest.mark.parametrize("store_bytes", [0, 2**26], ids=["recomputed", "stored"])
@pytest.mark.parametrize("t", [0, 18, 19, 60, 199])
def test_simulator_children_posteriors_and_outcomes_are_consistent(episodes: dict, t: int, store_bytes: int) -> None:
    """Each child's posterior equals filtering the path's history; each outcome is what some posterior chemistry does."""
    b, k = 6, 3
    rows = np.arange(b)
    sim = BayesSimulator(store_bytes=store_bytes)
    log = _run_search(sim, _context(episodes, rows, t), seed=t, n_expand=12, k=k, b=b)
    assert sim.stored == (store_bytes > 0)
    # reconstruct every node's path
    paths: dict[tuple[int, int], list] = {(r, 0): [] for r in rows}
    for parents, actions, children, _, (obs, rew) in log:
        for r in rows:
            for j in range(k):
                rc = int(codec.encode_reward(rew[r, j]))
                paths[(r, int(children[r, j]))] = paths[(r, int(parents[r]))] + [(int(actions[r]), rc, obs[r, j])]
    all_chem = all_chemistries()
    for (r, node), path in list(paths.items())[:: max(1, len(paths) // 40)]:
        if t + len(path) > 200:
            continue
        o, a, rc = _path_history(episodes, r, t, path)
        expected = bayes.filter_history(o, a, rc)[0]
        got = sim.node_posterior_full(np.where(rows == r, node, 0))[r]
        np.testing.assert_array_equal(got, expected, err_msg=f"search {r} node {node}")
        assert bayes.popcount_words(got) > 0
        if path:
            # replay the last step under a chemistry of the child's posterior with the real env
            parent_o = o[0, -2]
            member = np.nonzero(bayes.unpack_chemistry_sets(got))[0]
            chem = all_chem[member[:1]]
            state, ok = _state_from_obs(parent_o, chem, t + len(path) - 1)
            assert ok.all()
            rr = apply_actions(state, chem.graph_id.astype(np.int64), np.array([a[0, -1]]))
            assert codec.encode_reward(rr)[0] == rc[0, -1]
            if (t + len(path)) % 20 != 0 or t + len(path) == 200:
                np.testing.assert_array_equal(observe(state, ObservationTables.of(chem))[0], o[0, -1])


def test_simulator_is_deterministic_per_key_and_batch_independent(episodes: dict) -> None:
    b, k, n_expand, t = 6, 3, 15, 19
    rows = np.arange(b)
    sim_a, sim_b = BayesSimulator(), BayesSimulator(store_bytes=0)
    batched = _run_search(sim_a, _context(episodes, rows, t), seed=5, n_expand=n_expand, k=k, b=b)
    again = _run_search(sim_b, _context(episodes, rows, t), seed=5, n_expand=n_expand, k=k, b=b)
    for x, y in zip(batched, again):
        np.testing.assert_array_equal(x[4][0], y[4][0])
        np.testing.assert_array_equal(x[4][1], y[4][1])
    for node in range(1 + n_expand * k):  # stored and recomputed posteriors agree
        np.testing.assert_array_equal(sim_a.node_posterior_full(np.full(b, node)), sim_b.node_posterior_full(np.full(b, node)))
    for r in rows:
        sim = BayesSimulator(store_bytes=0 if r % 2 else 2**26)
        sim.set_roots(_context(episodes, rows[r : r + 1], t), 1 + n_expand * k)
        for parents, actions, children, keys, (obs, rew) in batched:
            o1, r1 = sim.expand(parents[r : r + 1], actions[r : r + 1], children[r : r + 1], keys[r : r + 1])
            np.testing.assert_array_equal(o1[0], obs[r])
            np.testing.assert_array_equal(r1[0], rew[r])
    # different keys give different outcomes somewhere
    sim = BayesSimulator()
    sim.set_roots(_context(episodes, rows, 0), 100)
    a = np.full(b, 2)  # stone 0 into potion 0: uncertain at t = 0
    o1, _ = sim.expand(np.zeros(b, int), a, np.tile([[1, 2, 3]], (b, 1)), crng.episode_keys(1, rows))
    o2, _ = sim.expand(np.zeros(b, int), a, np.tile([[4, 5, 6]], (b, 1)), crng.episode_keys(2, rows))
    assert not np.array_equal(o1, o2)


def test_simulator_mask_and_incremental_roots(episodes: dict) -> None:
    rows = np.arange(4)
    sim = BayesSimulator()
    sim.set_roots(_context(episodes, rows, 10), 50)
    before = sim.node_obs.copy()
    mask = np.array([True, False, True, False])
    sim.expand(np.zeros(4, int), np.full(4, 2), np.tile([[1, 2]], (4, 1)), crng.episode_keys(0, rows), mask)
    np.testing.assert_array_equal(sim.node_obs[~mask], before[~mask])
    assert (sim.node_t[mask][:, 1:3] == 11).all()
    # a caller reusing its buffers in place for other episodes does not fool the incremental filter
    buf_o, buf_a, buf_r = episodes["obs_codes"][:4, :31].copy(), episodes["actions"][:4, :30].copy(), episodes["reward_codes"][:4, :30].copy()
    reuse = BayesSimulator()
    reuse.set_roots(RootContext(20, buf_o[:, :21], buf_a[:, :20], buf_r[:, :20]), 10)
    buf_o[:], buf_a[:], buf_r[:] = episodes["obs_codes"][4:8, :31], episodes["actions"][4:8, :30], episodes["reward_codes"][4:8, :30]
    reuse.set_roots(RootContext(30, buf_o, buf_a, buf_r), 10)
    np.testing.assert_array_equal(reuse.node_posterior_full(np.zeros(4, int)), bayes.filter_history(buf_o, buf_a, buf_r))
    # growing the real history reuses the filter and matches a fresh one
    sim.set_roots(_context(episodes, rows, 30), 50)
    fresh = BayesSimulator()
    fresh.set_roots(_context(episodes, rows, 30), 50)
    np.testing.assert_array_equal(sim.node_posterior_full(np.zeros(4, int)), fresh.node_posterior_full(np.zeros(4, int)))
    np.testing.assert_array_equal(
        sim.node_posterior_full(np.zeros(4, int)), bayes.filter_history(episodes["obs_codes"][rows, :31], episodes["actions"][rows, :30], episodes["reward_codes"][rows, :30])
    )


def test_planner_runs_with_the_bayes_simulator() -> None:
    """Integration with the tree search (skipped until ``alchemy_mbrl.planner`` is merged)."""
    pytest.importorskip("alchemy_mbrl.planner")
    evaluate = pytest.importorskip("alchemy_mbrl.evaluate")
    from alchemy_mbrl.simulators import make_simulator

    df = evaluate.evaluate_policy(evaluate.PlannerPolicy(make_simulator("bayes"), 4), 2, seed=0, batch_size=2, progress=False)
    assert len(df) == 2 and (df["simulator"] == "bayes").all()
    assert ((df["return"] >= -90) & (df["return"] <= 450)).all()
