"""The fast inference paths of the world model against their references (issue 14).

Tolerances (float32 model, float64 CDF):
* ``encode_step`` over a preallocated K/V buffer vs ``encode`` with a concatenated :class:`KVCache`:
  features within atol 2e-5 (the same arithmetic, different memory layout);
* ``sample_next`` (node-only work once per row, TorchScript loop, tanh as 2 sigmoid(2x) - 1, one matmul
  per dimension) vs ``sample_next_reference`` (today's per-sample loop): log-probabilities within 1e-5 nats,
  and the SAME samples for the same uniforms (a draw can only differ when its uniform lies within ~1e-6
  of a CDF boundary: none does in these draws);
* the ``embedding_bag`` input encoding vs the dense one-hot linear layer: within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.model.config import resolve_config
from alchemy_mbrl.model.world_model import INPUT_CATEGORIES, WorldModel, episode_inputs
from .model_helpers import ARCHS, random_codes, tiny_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _history(b: int, t: int, seed: int):
    g = np.random.default_rng(seed)
    return (torch.from_numpy(random_codes(g, (b, t + 1))), torch.from_numpy(g.integers(0, 40, (b, t))),
            torch.from_numpy(g.integers(0, 5, (b, t))))


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_sampling_equals_reference_loop(arch: str) -> None:
    model = tiny_model(arch, seed=1)
    torch.manual_seed(2)
    feats = torch.randn(64, model.backbone.out_dim) * 2
    u = rng.uniform(rng.episode_keys(9, np.arange(64)), (5, 40))
    fast = model.sample_next(feats, u)
    ref = model.sample_next_reference(feats, u)
    assert torch.equal(fast.obs_codes, ref.obs_codes) and torch.equal(fast.reward_codes, ref.reward_codes)
    torch.testing.assert_close(fast.log_probs, ref.log_probs, atol=1e-5, rtol=0)


def test_fused_sampling_equals_reference_paper_size() -> None:
    cfg, _ = resolve_config("original")
    torch.manual_seed(0)
    model = WorldModel(cfg).eval()
    feats = torch.randn(96, cfg.d_model) * 3
    u = rng.uniform(rng.episode_keys(4, np.arange(96)), (3, 40))
    fast, ref = model.sample_next(feats, u), model.sample_next_reference(feats, u)
    assert torch.equal(fast.obs_codes, ref.obs_codes) and torch.equal(fast.reward_codes, ref.reward_codes)
    torch.testing.assert_close(fast.log_probs, ref.log_probs, atol=1e-5, rtol=0)


def test_embedding_bag_input_encoding_equals_one_hot_linear() -> None:
    model = tiny_model("original")
    obs, actions, rewards = _history(3, 7, seed=1)
    o, r, a = episode_inputs(obs, actions, rewards)
    enc = model.input_encoding
    got = enc(o, r, a)
    idx = torch.cat([o + enc.obs_offsets, (r + codec.TOTAL_CATEGORIES).unsqueeze(-1),
                     (a + codec.TOTAL_CATEGORIES + 6).unsqueeze(-1)], dim=-1)
    onehot = F.one_hot(idx, INPUT_CATEGORIES).sum(-2).float()
    torch.testing.assert_close(got, enc.linear(onehot), atol=1e-5, rtol=1e-5)
    # and its gradient reaches the weight like the dense layer's
    got.sum().backward()
    assert enc.linear.weight.grad is not None and torch.isfinite(enc.linear.weight.grad).all()


def test_encode_step_over_buffer_equals_concatenated_cache() -> None:
    model = tiny_model("original")
    obs, actions, rewards = _history(3, 14, seed=5)
    o, r, a = episode_inputs(obs, actions, rewards)
    root_len = 8
    _, root = model.encode(o[:, :root_len], r[:, :root_len], a[:, :root_len])
    _, path = model.encode(o[:, root_len:12], r[:, root_len:12], a[:, root_len:12], past=root)
    depth = torch.tensor([4, 1, 0])
    dmax = 4
    kb, vb = model.kv_buffers(3, 20)
    kb[:, :, :, :root_len], vb[:, :, :, :root_len] = root.k, root.v
    kb[:, :, :, root_len : root_len + dmax] = path.k
    vb[:, :, :, root_len : root_len + dmax] = path.v
    hidden = torch.arange(dmax)[None, :] >= depth[:, None]
    mask = torch.zeros(3, root_len + dmax + 1)
    mask[:, root_len : root_len + dmax][hidden] = float("-inf")
    pos = root_len + depth
    rows = torch.arange(3)
    with torch.no_grad():
        f = model.encode_step(o[rows, pos], r[rows, pos], a[rows, pos], pos, kb, vb, root_len + dmax,
                              mask.view(3, 1, 1, -1))
        for b in range(3):
            p = int(pos[b])
            ref, kv = model.encode(o[b : b + 1, : p + 1], r[b : b + 1, : p + 1], a[b : b + 1, : p + 1])
            torch.testing.assert_close(f[b], ref[0, -1], atol=2e-5, rtol=1e-4)
            # the new token's K/V were written in place at the step slot
            torch.testing.assert_close(kb[:, b, :, root_len + dmax], kv.k[:, 0, :, -1], atol=2e-5, rtol=1e-4)


def test_planning_memory_at_paper_budget_fits_one_gpu() -> None:
    """Budget 10,000, B = 250, paper-size model, K/V in bf16: well under the 40 GB goal (issue 14)."""
    from alchemy_mbrl.simulators.learned import planning_memory_bytes

    cfg, _ = resolve_config("original")
    mem = planning_memory_bytes(cfg, batch=250, budget=10_000, k=3, kv_bytes=2)
    assert mem["total"] < 40e9
    assert 7.5e9 < mem["node_store"] < 7.9e9  # 10,001 rows x 250 x 3 layers x (K, V) x 256 x 2 bytes


def test_simulator_node_store_matches_estimate() -> None:
    from alchemy_mbrl.planner.simulator import RootContext
    from alchemy_mbrl.simulators.learned import LearnedSimulator, planning_memory_bytes

    model = tiny_model("original")
    sim = LearnedSimulator(model)
    obs, actions, rewards = _history(2, 3, seed=0)
    sim.set_roots(RootContext(3, obs.numpy(), actions.numpy(), rewards.numpy().astype(np.uint8)), max_nodes=1 + 5 * 3)
    keys = rng.episode_keys(0, np.arange(2))
    sim.expand(np.zeros(2, np.int64), np.array([1, 2]), np.array([[1, 2, 3]] * 2), keys)
    est = planning_memory_bytes(model.config, batch=2, budget=5, k=3, kv_bytes=4)
    assert sim.node_kv.numel() * 4 == est["node_store"]
