"""The fast CPU training path of the world model against the reference computation (issue 27, item 6).

On the CPU, with gradients on and autocast off (how ``train`` runs on a CPU), a training step takes:
the GRUs through ``fused_gru.gru_sequence`` (hand-written backward) instead of ``torch.nn.GRU``, the
observation GRU's input gates from a per-category table, causal attention with dropout written out as
SDPA's CPU math fallback, and the observation log-softmax over a leading dimension. Each must give the
reference's loss and gradients: the same loss to float32 rounding (in practice bit for bit) and
gradients within 1e-5, with dropout off and on (same random numbers: the masks must not change), and
inference must keep the reference path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alchemy_mbrl.model.fused_gru import gru_sequence
from alchemy_mbrl.model.train import deterministic_cpu
from alchemy_mbrl.model.world_model import START_REWARD_CODE, causal_attention_with_dropout
from alchemy_mbrl.env.constants import OBS_DIM

from .bench_support import load_bench_script
from .model_helpers import ARCHS, TINY, random_codes, tiny_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

GRAD_RTOL = 1e-5  # of each parameter's largest gradient


def _episodes(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    return (torch.from_numpy(random_codes(g, (b, 201))), torch.from_numpy(g.integers(0, 40, (b, 200), dtype=np.uint8)),
            torch.from_numpy(g.integers(0, 5, (b, 200), dtype=np.uint8)))


def _loss_and_grads(model: torch.nn.Module, batch: tuple, dropout_seed: int = 5) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(dropout_seed)
    loss = model.loss(*batch)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_grads_close(ref: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
    assert ref.keys() == new.keys()
    for name, g in ref.items():
        scale = float(g.abs().max())
        assert scale > 0, name
        err = float((new[name] - g).abs().max())
        assert err <= GRAD_RTOL * scale, f"{name}: |delta grad| {err:.2e} > {GRAD_RTOL} x {scale:.2e}"


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("arch", ARCHS)
def test_fast_training_step_equals_reference(arch: str, dropout: float) -> None:
    """Loss and every parameter's gradient of a training step, fast path vs reference (``set_fast_path``)."""
    batch = _episodes(3, seed=1)
    model = tiny_model(arch, seed=2, dropout=dropout).train()
    loss_ref, grads_ref = _loss_and_grads(model.set_fast_path(False), batch)
    loss_new, grads_new = _loss_and_grads(model.set_fast_path(True), batch)
    assert loss_new == pytest.approx(loss_ref, rel=1e-6, abs=0)
    _assert_grads_close(grads_ref, grads_new)


@pytest.mark.parametrize("arch", ["original", "gru_backbone", "no_final_linear"])
def test_fast_path_at_cpu_scale_width(arch: str) -> None:
    """The same at the CPU-scale widths (d_model 256, MLP 512, GRU head 32/64, backbone 512), 2 episodes."""
    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.model.world_model import WorldModel

    cfg, _ = resolve_config(arch, {"d_model": 256, "d_ff": 256, "obs_context": 256, "mlp_hidden": 512})
    torch.manual_seed(0)
    model = WorldModel(cfg).train()
    batch = _episodes(2, seed=4)
    loss_ref, grads_ref = _loss_and_grads(model.set_fast_path(False), batch)
    loss_new, grads_new = _loss_and_grads(model.set_fast_path(True), batch)
    assert loss_new == pytest.approx(loss_ref, rel=1e-6, abs=0)
    _assert_grads_close(grads_ref, grads_new)


@pytest.mark.parametrize("shape", [(7, 5, 6, 4), (39, 64, 12, 8), (25, 3, 16, 24)])
def test_gru_sequence_equals_nn_gru(shape: tuple[int, int, int, int]) -> None:
    """Outputs and the gradients of input, initial state and all four parameters, with a random upstream gradient."""
    t, n, d_in, h = shape
    torch.manual_seed(sum(shape))
    gru = torch.nn.GRU(d_in, h)
    x = torch.randn(t, n, d_in, requires_grad=True)
    h0 = torch.randn(n, h, requires_grad=True)
    upstream = torch.randn(t, n, h)
    out_ref, _ = gru(x, h0[None])
    grads_ref = torch.autograd.grad((out_ref * upstream).sum(), [x, h0, *gru.parameters()])
    gi = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    out = gru_sequence(gi, h0, gru.weight_hh_l0, gru.bias_hh_l0)
    grads = torch.autograd.grad((out * upstream).sum(), [x, h0, *gru.parameters()])
    torch.testing.assert_close(out, out_ref, atol=1e-6, rtol=0)
    for g, g_ref in zip(grads, grads_ref):
        assert float((g - g_ref).abs().max()) <= GRAD_RTOL * float(g_ref.abs().max())


def test_causal_attention_with_dropout_equals_sdpa() -> None:
    """Same output for the same random numbers (the dropout mask), and the same gradients."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, requires_grad=True) for _ in range(3))
    upstream = torch.randn(2, 3, 9, 8)
    torch.manual_seed(7)
    ref = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)
    next_ref = torch.rand(4)
    g_ref = torch.autograd.grad((ref * upstream).sum(), [q, k, v])
    torch.manual_seed(7)
    out = causal_attention_with_dropout(q, k, v, 0.3)
    nxt = torch.rand(4)
    g = torch.autograd.grad((out * upstream).sum(), [q, k, v])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert torch.equal(nxt, next_ref)  # the same part of the random stream used
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_observation_nll_equals_last_dimension_log_softmax() -> None:
    """``token_losses`` (log-softmax over a leading code dimension) = the plain last-dimension formula."""
    model = tiny_model("original", seed=3)
    obs, actions, rewards = _episodes(2, seed=6)
    b, t = actions.shape
    with torch.no_grad():
        _, obs_nll = model.token_losses(obs, actions, rewards)
        prev_r = torch.cat([torch.full((b, 1), START_REWARD_CODE), rewards[:, :-1].long()], dim=1)
        e, _ = model.encode(obs[:, :t], prev_r, actions)
        target = obs[:, 1:].reshape(b * t, OBS_DIM).long()
        logp = torch.log_softmax(model.observation_head.teacher_forced_logits(e.reshape(b * t, -1), target), dim=-1)
        ref = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).view(b, t, OBS_DIM)
    torch.testing.assert_close(obs_nll, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["original", "gru_backbone"])
def test_inference_keeps_nn_gru(arch: str) -> None:
    """Evaluation and planning (no gradients) run ``nn.GRU`` as before; a training step does not."""
    model = tiny_model(arch)
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if isinstance(m, torch.nn.GRU)]
    batch = _episodes(2)
    with torch.no_grad():
        model.loss(*batch)
    assert len(calls) == len(hooks) > 0
    calls.clear()
    model.train()
    model.loss(*batch).backward()
    assert not calls
    for h in hooks:
        h.remove()


def test_deterministic_cpu_keeps_algorithms_and_drops_the_nan_fill() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    try:
        deterministic_cpu(torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]


@pytest.mark.parametrize("arch", ["original", "gru_backbone"])
def test_nan_fill_off_changes_no_result(arch: str) -> None:
    """Three Adam steps with and without NaN-filling new tensors end with the same weights, bit for bit."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    weights = []
    try:
        for fill in (True, False):
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.utils.deterministic.fill_uninitialized_memory = fill
            model = tiny_model(arch, seed=4).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            torch.manual_seed(9)
            for s in range(3):
                opt.zero_grad(set_to_none=True)
                model.loss(*_episodes(2, seed=s)).backward()
                opt.step()
            weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


def test_throughput_bench_measures_and_compares(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/train_throughput.py``: one in-process repeat at tiny sizes, and its comparison table."""
    bench = load_bench_script("train_throughput")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    try:
        runs = [bench.measure("no_gru_head", "cpu", 2, 1, dict(TINY), 1) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]
    assert runs[0]["first_loss"] == runs[1]["first_loss"] and np.isfinite(runs[0]["first_loss"])
    assert all(r["tokens_per_s"] > 0 and r["tokens_per_cpu_s"] > 0 for r in runs)
    row = bench.summarise(runs)
    assert row["n"] == 2 and row["tokens_per_cpu_s_se"] >= 0
    base = {"rows": {"no_gru_head@cpu": row}, "paired_with": "x"}
    new = {"rows": {"no_gru_head@cpu": row}, "run_id": "x"}
    assert bench.print_comparison(base, new)
    assert "1.00 ± 0.00x" in capsys.readouterr().out
    other = {"rows": {"no_gru_head@cpu": {**row, "first_loss": row["first_loss"] * 1.001}}}
    assert not bench.print_comparison(other, new)
