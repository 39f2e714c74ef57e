"""World model: shapes, causality, K/V cache equality, sampling consistency, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.model.config import ARCHITECTURES, resolve_config
from alchemy_mbrl.model.world_model import (
    INPUT_CATEGORIES,
    START_REWARD_CODE,
    GRUState,
    KVCache,
    episode_inputs,
)
from .model_helpers import ARCHS, random_codes, tiny_model


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def random_history(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    obs = torch.from_numpy(random_codes(g, (b, t + 1)))
    actions = torch.from_numpy(g.integers(0, 40, (b, t)))
    rewards = torch.from_numpy(g.integers(0, 5, (b, t)))
    return obs, actions, rewards


def test_table3_defaults_and_ablations() -> None:
    m, t = resolve_config("original")
    assert (m.d_model, m.n_heads, m.n_layers, m.d_ff, m.dropout, m.mlp_hidden, m.gru_hidden) == (256, 4, 3, 256, 0.1, 512, 32)
    assert (t.lr, t.batch_size) == (1e-4, 250)
    assert resolve_config("gru_backbone")[0].backbone == "gru"
    assert resolve_config("gru_backbone")[0].gru_backbone_hidden == 512
    assert resolve_config("no_gru_head")[0].obs_head == "independent"
    m, t = resolve_config("no_final_linear")
    assert (m.obs_head, m.gru_hidden, t.lr) == ("gru_only", 64, 2e-5)
    assert set(ARCHITECTURES) == set(ARCHS)
    assert INPUT_CATEGORIES == codec.TOTAL_CATEGORIES + 6 + 40


def test_bad_config_key_and_arch() -> None:
    with pytest.raises(ValueError, match="'stepz'"):
        resolve_config("original", {"stepz": 3})
    with pytest.raises(ValueError, match="'bogus'"):
        resolve_config("original", {"model": {"bogus": 1}})
    with pytest.raises(ValueError, match="'lr'"):
        resolve_config("original", {"model": {"lr": 1e-3}})  # a training key in the model section
    with pytest.raises(ValueError, match="unknown architecture 'transformer_xl'"):
        resolve_config("transformer_xl")
    with pytest.raises(ValueError, match="'steps'"):
        resolve_config("original", {"steps": "many"})
    with pytest.raises(ValueError, match="divisible"):
        resolve_config("original", {"d_model": 30})


def test_lr_schedule_values() -> None:
    """Warm-up is linear up to lr at step warmup_steps; cosine then decays from lr to lr_min_ratio * lr at
    the last step; the paper's default is a constant lr."""
    import math

    from alchemy_mbrl.model.config import lr_factor

    _, t = resolve_config("original")
    assert (t.warmup_steps, t.lr_schedule, t.lr_min_ratio) == (0, "constant", 0.1)
    assert [lr_factor(s, t) for s in (0, 1, 10_000, 10**7)] == [1.0] * 4
    _, t = resolve_config("original", {"steps": 100, "warmup_steps": 4})
    assert [lr_factor(s, t) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    _, t = resolve_config("original", {"steps": 105, "warmup_steps": 4, "lr_schedule": "cosine", "lr_min_ratio": 0.2})
    f = [lr_factor(s, t) for s in range(105)]  # the decay spans s = 4..104
    assert f[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]  # step 5 (s = 4) is the first after the warm-up: lr
    assert f[4 + 25] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))  # a quarter of the decay
    assert f[4 + 50] == pytest.approx(0.6)  # half-way: the mean of lr and lr_min
    assert f[104] == pytest.approx(0.2)  # the last step (s = steps - 1) runs at lr_min_ratio * lr
    assert all(a >= b for a, b in zip(f[4:], f[5:]))  # non-increasing after the warm-up
    assert lr_factor(500, t) == pytest.approx(0.2)  # beyond the last step: held
    _, t = resolve_config("original", {"steps": 10, "lr_schedule": "cosine"})
    assert lr_factor(0, t) == 1.0 and lr_factor(9, t) == pytest.approx(0.1)


@pytest.mark.parametrize("overrides, match", [
    ({"lr_schedule": "linear"}, "'lr_schedule' must be one of constant, cosine"),
    ({"lr_schedule": None}, "'lr_schedule'"),
    ({"warmup_steps": -1}, r"'warmup_steps' must be an integer in 0\.\."),
    ({"warmup_steps": 1.5}, "'warmup_steps' has an invalid value"),
    ({"warmup_steps": None}, "'warmup_steps'"),
    ({"steps": 10, "warmup_steps": 10}, r"'warmup_steps' \(10\) must be smaller than 'steps' \(10\)"),
    ({"lr_min_ratio": 1.5}, r"'lr_min_ratio' must be in \[0, 1\]"),
    ({"lr_min_ratio": -0.1}, "'lr_min_ratio'"),
    ({"lr_min_ratio": "low"}, "'lr_min_ratio' has an invalid value"),
])
def test_bad_lr_schedule_rejected(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_config("original", overrides)


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_forcing_shapes(arch: str) -> None:
    model = tiny_model(arch)
    obs, actions, rewards = random_history(3, 7)
    r_nll, o_nll = model.token_losses(obs, actions, rewards)
    assert r_nll.shape == (3, 7) and o_nll.shape == (3, 7, codec.OBS_DIM)
    assert torch.isfinite(r_nll).all() and torch.isfinite(o_nll).all() and (o_nll >= 0).all()
    feats, _ = model.encode(*episode_inputs(obs, actions, rewards))
    logits = model.observation_head.teacher_forced_logits(feats.reshape(21, -1), obs[:, 1:].reshape(21, -1))
    assert logits.shape == (21, codec.OBS_DIM, codec.MAX_CATEGORIES)
    invalid = torch.arange(codec.MAX_CATEGORIES)[None, :] >= torch.as_tensor(codec.NUM_CATEGORIES)[:, None]
    assert torch.isneginf(logits[:, invalid]).all() and torch.isfinite(logits[:, ~invalid]).all()
    # an untrained model is close to uniform: loss near sum of log(#categories) + log 5
    uniform = float(np.log(codec.NUM_CATEGORIES).sum() + np.log(5))
    assert abs(float((r_nll + o_nll.sum(-1)).mean().detach()) - uniform) < 0.15 * uniform


@pytest.mark.parametrize("arch", ["original", "gru_backbone"])
def test_causality(arch: str) -> None:
    """Changing token j (its observation, reward or action) never changes the outputs before j."""
    model = tiny_model(arch)
    obs, actions, rewards = random_history(2, 30, seed=1)
    o, r, a = episode_inputs(obs, actions, rewards)
    base, _ = model.encode(o, r, a)
    for j in (0, 11, 29):
        o2, r2, a2 = o.clone(), r.clone(), a.clone()
        o2[:, j] = torch.from_numpy(random_codes(np.random.default_rng(j + 100), (2,)))
        a2[:, j] = (a2[:, j] + 7) % 40
        if j:
            r2[:, j] = (r2[:, j] + 1) % 5
        out, _ = model.encode(o2, r2, a2)
        assert torch.equal(out[:, :j], base[:, :j]) if j else True
        assert not torch.allclose(out[:, j], base[:, j])  # and the change is seen from j on


def test_causality_of_losses() -> None:
    """The loss of transition t does not depend on what follows obs_{t+1} (targets only through teacher forcing)."""
    model = tiny_model("original")
    obs, actions, rewards = random_history(1, 20, seed=2)
    r1, o1 = model.token_losses(obs, actions, rewards)
    obs2, act2 = obs.clone(), actions.clone()
    obs2[:, 15:] = torch.from_numpy(random_codes(np.random.default_rng(5), (1, 6)))
    act2[:, 15:] = (act2[:, 15:] + 1) % 40
    r2, o2 = model.token_losses(obs2, act2, rewards)
    assert torch.equal(r1[:, :14], r2[:, :14]) and torch.equal(o1[:, :14], o2[:, :14])


def test_kv_cache_equals_full_pass() -> None:
    """Token-by-token and chunked evaluation with the cache equal the uncached pass (float tolerance)."""
    model = tiny_model("original")
    obs, actions, rewards = random_history(3, 40, seed=3)
    o, r, a = episode_inputs(obs, actions, rewards)
    full, kv_full = model.encode(o, r, a)
    feats, cache = model.encode(o[:, :17], r[:, :17], a[:, :17])
    outs = [feats]
    for t in range(17, 40):
        f, new = model.encode(o[:, t : t + 1], r[:, t : t + 1], a[:, t : t + 1], past=cache)
        assert isinstance(new, KVCache) and new.length == 1
        cache = cache.append(new)
        outs.append(f)
    inc = torch.cat(outs, dim=1)
    torch.testing.assert_close(inc, full, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(cache.k, kv_full.k, atol=2e-5, rtol=1e-4)
    # the predicted distributions agree too
    rl1, ol1 = model.log_probs_of(full[:, -1], rewards[:, -1], obs[:, -1])
    rl2, ol2 = model.log_probs_of(inc[:, -1], rewards[:, -1], obs[:, -1])
    torch.testing.assert_close(rl1, rl2, atol=1e-4, rtol=1e-4)
    fin = torch.isfinite(ol1)
    torch.testing.assert_close(ol1[fin], ol2[fin], atol=1e-4, rtol=1e-4)


def test_tree_style_cache_with_mask_and_positions() -> None:
    """A root cache + a padded, gathered path of per-node K/V (rows of different depths) gives the
    same features as evaluating each row's full history from scratch."""
    model = tiny_model("original")
    obs, actions, rewards = random_history(2, 12, seed=4)
    o, r, a = episode_inputs(obs, actions, rewards)
    root_len = 6
    _, root = model.encode(o[:, :root_len], r[:, :root_len], a[:, :root_len])
    # per-token K/V of tokens 6..10 ("nodes"), as a tree would store them one per node
    _, path = model.encode(o[:, root_len:11], r[:, root_len:11], a[:, root_len:11], past=root)
    depth = torch.tensor([4, 2])  # row 0 has a path of 4 nodes, row 1 of 2 (then padding)
    garbage = KVCache(torch.randn_like(path.k[:, :, :, :1]) * 50, torch.randn_like(path.v[:, :, :, :1]) * 50)
    path_padded = KVCache(torch.cat([path.k[:, :, :, :4], garbage.k], 3), torch.cat([path.v[:, :, :, :4], garbage.v], 3),
                          mask=torch.arange(5)[None, :] < depth[:, None])
    past = KVCache(root.k, root.v).append(path_padded)
    pos = (root_len + depth).unsqueeze(1)
    rows = torch.arange(2)
    tok = (o[rows, pos[:, 0]].unsqueeze(1), r[rows, pos[:, 0]].unsqueeze(1), a[rows, pos[:, 0]].unsqueeze(1))
    f, _ = model.encode(*tok, past=past, positions=pos)
    for b in range(2):
        p = int(pos[b, 0])
        ref, _ = model.encode(o[b : b + 1, : p + 1], r[b : b + 1, : p + 1], a[b : b + 1, : p + 1])
        torch.testing.assert_close(f[b, 0], ref[0, -1], atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="positions"):
        model.encode(*tok, past=past)


def test_gru_backbone_state_carries_history() -> None:
    model = tiny_model("gru_backbone")
    obs, actions, rewards = random_history(2, 25, seed=5)
    o, r, a = episode_inputs(obs, actions, rewards)
    full, _ = model.encode(o, r, a)
    f1, state = model.encode(o[:, :10], r[:, :10], a[:, :10])
    assert isinstance(state, GRUState)
    outs = [f1]
    for t in range(10, 25):
        f, state = model.encode(o[:, t : t + 1], r[:, t : t + 1], a[:, t : t + 1], past=state)
        outs.append(f)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_sampling_log_probs_match_training_factorisation(arch: str) -> None:
    """Sampled outcomes are valid codes, and their log-probabilities equal the teacher-forced ones."""
    model = tiny_model(arch)
    obs, actions, rewards = random_history(4, 9, seed=6)
    feats, _ = model.encode(*episode_inputs(obs, actions, rewards))
    e = feats[:, -1]
    k = 3
    u = rng.uniform(rng.episode_keys(0, np.arange(4)), (k, 40))
    s = model.sample_next(e, u)
    assert s.reward_codes.shape == (4, k) and s.obs_codes.shape == (4, k, 39) and s.log_probs.dtype == torch.float64
    assert (s.obs_codes < torch.as_tensor(codec.NUM_CATEGORIES)).all() and (s.reward_codes < 5).all()
    ef = e.repeat_interleave(k, 0)
    lr, lo = model.log_probs_of(ef, s.reward_codes.reshape(-1), s.obs_codes.reshape(-1, 39))
    ref = lr.gather(1, s.reward_codes.reshape(-1, 1))[:, 0] + lo.gather(2, s.obs_codes.reshape(-1, 39, 1))[..., 0].sum(1)
    torch.testing.assert_close(s.log_probs.reshape(-1).float(), ref, atol=1e-3, rtol=1e-4)


def test_sampling_rows_are_independent_of_batch_and_follow_the_model() -> None:
    model = tiny_model("original")
    obs, actions, rewards = random_history(5, 4, seed=7)
    feats, _ = model.encode(*episode_inputs(obs, actions, rewards))
    e = feats[:, -1]
    u = rng.uniform(rng.episode_keys(1, np.arange(5)), (3, 40))
    together = model.sample_next(e, u)
    alone = model.sample_next(e[2:3], u[2:3])
    assert torch.equal(together.obs_codes[2], alone.obs_codes[0]) and torch.equal(together.reward_codes[2], alone.reward_codes[0])
    # with many draws, the empirical reward distribution matches the model's (chi-square-like bound)
    n = 4000
    u = rng.uniform(rng.episode_keys(2, np.arange(1)), (n, 40))
    s = model.sample_next(e[:1], u)
    with torch.no_grad():
        p = torch.softmax(model.reward_head(e[:1]).float(), -1)[0].double()
    freq = torch.bincount(s.reward_codes[0], minlength=5).double() / n
    assert (freq - p).abs().max() < 4 * float(torch.sqrt(p * (1 - p) / n).max()) + 1e-3
    with pytest.raises(ValueError, match="uniforms"):
        model.sample_next(e, np.zeros((5, 3, 39)))


def test_start_reward_code_and_episode_inputs() -> None:
    obs, actions, rewards = random_history(2, 5)
    o, r, a = episode_inputs(obs, actions, rewards)
    assert (r[:, 0] == START_REWARD_CODE).all() and torch.equal(r[:, 1:], rewards[:, :4])
    assert o.shape == (2, 5, 39) and torch.equal(o, obs[:, :5].long())


def test_positions_beyond_max_len_rejected() -> None:
    model = tiny_model("original", max_len=8)
    obs, actions, rewards = random_history(1, 9)
    with pytest.raises(ValueError, match="max_len"):
        model.encode(*episode_inputs(obs, actions, rewards))
