"""LearnedSimulator: per-node K/V tree expansion equals evaluating each path's history from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.model.world_model import episode_inputs
from alchemy_mbrl.planner.simulator import RootContext, Simulator
from alchemy_mbrl.simulators.learned import LearnedSimulator
from .model_helpers import random_codes, tiny_model


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def real_history(b: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    return random_codes(g, (b, t + 1)), g.integers(0, 40, (b, t)), g.integers(0, 5, (b, t)).astype(np.uint8)


def reference_samples(model, obs: np.ndarray, acts: np.ndarray, rcodes: np.ndarray, keys: np.ndarray, k: int):
    """Uncached: encode the whole history (obs_0..obs_d, actions a_0..a_d) and sample from its last token."""
    o, r, a = episode_inputs(obs, acts, rcodes)
    with torch.no_grad():
        f, _ = model.encode(o, r, a)
    return model.sample_next(f[:, -1], rng.uniform(keys, (k, 40)))


@pytest.mark.parametrize("arch", ["original", "gru_backbone"])
@pytest.mark.parametrize("t", [0, 5])
def test_tree_expansion_matches_uncached_model(arch: str, t: int) -> None:
    model = tiny_model(arch)
    sim = LearnedSimulator(model)
    assert isinstance(sim, Simulator) and sim.name == "learned"
    b, k = 3, 3
    obs, acts, rew = real_history(b, t, seed=t)
    sim.set_roots(RootContext(t, obs, acts, rew), max_nodes=16)
    keys = rng.episode_keys(7, np.arange(b))
    # per (search, node): the path's history as arrays, to evaluate from scratch
    hist = {(bi, 0): (obs[bi : bi + 1], acts[bi : bi + 1], rew[bi : bi + 1]) for bi in range(b)}
    plan = [  # (parent node per search, children ids)
        (np.zeros(b, dtype=np.int64), np.array([[1, 2, 3]] * b)),
        (np.array([2, 1, 3]), np.array([[4, 5, 6]] * b)),
        (np.array([5, 4, 6]), np.array([[7, 8, 9]] * b)),
        (np.array([0, 8, 2]), np.array([[10, 11, 12]] * b)),  # paths of depths 0, 3 and 1 in one batch
    ]
    for step, (parents, children) in enumerate(plan):
        a = (np.array([3, 17, 39]) + step) % 40
        kk = rng.fold_in(keys, step)
        got_obs, got_rew = sim.expand(parents, a, children, kk)
        for bi in range(b):
            o_h, a_h, r_h = hist[(bi, int(parents[bi]))]
            a_full = np.concatenate([a_h, [[a[bi]]]], axis=1)
            ref = reference_samples(model, o_h, a_full, r_h, kk[bi : bi + 1], k)
            assert np.array_equal(got_obs[bi], ref.obs_codes[0].numpy().astype(np.uint8))
            assert np.array_equal(got_rew[bi], codec.decode_reward(ref.reward_codes[0].numpy()).astype(np.float32))
            for j in range(k):
                hist[(bi, int(children[bi, j]))] = (
                    np.concatenate([o_h, got_obs[bi : bi + 1, j][:, None]], axis=1),
                    a_full,
                    np.concatenate([r_h, codec.encode_reward(got_rew[bi : bi + 1, j])[:, None]], axis=1),
                )


def test_set_roots_is_incremental_and_mask_protects_nodes() -> None:
    model = tiny_model("original")
    obs, acts, rew = real_history(2, 9, seed=3)
    inc = LearnedSimulator(model)
    inc.set_roots(RootContext(4, obs[:, :5], acts[:, :4], rew[:, :4]), max_nodes=8)
    inc.set_roots(RootContext(9, obs, acts, rew), max_nodes=8)
    fresh = LearnedSimulator(model)
    fresh.set_roots(RootContext(9, obs, acts, rew), max_nodes=8)
    torch.testing.assert_close(inc._root_kv.k, fresh._root_kv.k, atol=2e-5, rtol=1e-4)
    keys = rng.episode_keys(1, np.arange(2))
    o1, r1 = inc.expand(np.zeros(2, dtype=np.int64), np.array([5, 6]), np.array([[1, 2, 3], [1, 2, 3]]), keys,
                        mask=np.array([True, False]))
    o2, r2 = fresh.expand(np.zeros(2, dtype=np.int64), np.array([5, 6]), np.array([[1, 2, 3], [1, 2, 3]]), keys)
    assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
    assert int(inc.depth[0, 1]) == 1 and int(inc.depth[1, 1]) == 0  # masked-out search 1 stored nothing
    with pytest.raises(ValueError, match="children"):
        inc.expand(np.zeros(2, dtype=np.int64), np.array([5, 6]), np.array([[1, 2, 8], [1, 2, 3]]), keys)


def test_half_precision_kv_store_runs_and_stays_close() -> None:
    """CPU analogue of the CUDA path, where K/V are stored in the autocast dtype: with bf16 buffers and node
    store, expansions run and sample (almost always) what the float32 store samples."""
    model = tiny_model("original")
    b, t = 4, 6
    obs, acts, rew = real_history(b, t, seed=2)
    sims = [LearnedSimulator(model), LearnedSimulator(model)]
    sims[1].kv_dtype = torch.bfloat16
    outs = []
    for sim in sims:
        sim.set_roots(RootContext(t, obs, acts, rew), max_nodes=10)
        keys = rng.episode_keys(3, np.arange(b))
        o1, _ = sim.expand(np.zeros(b, np.int64), np.arange(b), np.array([[1, 2, 3]] * b), keys)
        o2, _ = sim.expand(np.array([1, 2, 3, 1]), np.arange(b) + 5, np.array([[4, 5, 6]] * b), rng.fold_in(keys, 1))
        outs.append(np.stack([o1, o2]))
    assert sims[1].node_kv.dtype == torch.bfloat16 and sims[1]._kbuf.dtype == torch.bfloat16
    assert (outs[0] == outs[1]).mean() > 0.95


def test_whole_search_with_reused_path_slots_equals_rewriting_them() -> None:
    """Keeping path K/V in the step buffer between expansions changes nothing (deep trees, many steps)."""
    from alchemy_mbrl.planner import PlannerParams, TreeSearch

    model = tiny_model("original")
    b = 5
    obs, acts, rew = real_history(b, 12, seed=4)
    keys = rng.episode_keys(8, np.arange(b))
    results = []
    for reuse in (False, True):
        sim = LearnedSimulator(model)
        sim.reuse_path_slots = reuse
        search = TreeSearch(sim, 40, PlannerParams())
        runs = [search.run(RootContext(t, obs[:, : t + 1], acts[:, :t], rew[:, :t]), keys) for t in (10, 11, 12)]
        results.append(runs)
    for a, c in zip(*results):
        np.testing.assert_array_equal(a.root_visits, c.root_visits)
        np.testing.assert_allclose(a.root_values, c.root_values, rtol=0, atol=1e-12)
