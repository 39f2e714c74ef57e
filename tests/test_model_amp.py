"""The GRUs compute in float32 under any autocast (issue 11, defect 1).

CUDA autocast runs cuDNN RNNs in float16 whatever dtype autocast was given (unscaled fp16 under
bf16 autocast); CPU autocast runs their matrix products in bf16. ``world_model.float32_gru`` turns
autocast off around every GRU. CPU autocast exercises the same model code as CUDA autocast, so these
tests run under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.model.world_model import episode_inputs

from .model_helpers import ARCHS, episodes_tensors, make_dataset, tiny_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: |bf16-autocast loss - float32 loss| <= LOSS_RTOL x float32 loss (measured <= 3e-5 at initialisation; bf16 keeps 8 bits,
#: 2^-8 = 0.4 % per value; the loss averages 40 cross-entropies over 800 transitions).
LOSS_RTOL = 1e-3


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = make_dataset(tmp_path_factory.mktemp("amp"), train_episodes=4, val_episodes=2, seed=9)
    return episodes_tensors(m.parent / "shard-000.h5", 4)


def _record_grus(model: torch.nn.Module) -> tuple[list[dict[str, object]], list[object]]:
    """Hooks on every ``nn.GRU``: autocast state and dtypes of what it receives and returns."""
    calls: list[dict[str, object]] = []
    handles = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.GRU):
            def pre(_m: torch.nn.Module, args: tuple) -> None:
                calls.append({"autocast": torch.is_autocast_enabled("cpu"),
                              "in": [a.dtype for a in args if isinstance(a, torch.Tensor)],
                              "weights": {p.dtype for p in _m.parameters()}})

            def post(_m: torch.nn.Module, args: tuple, out: tuple) -> None:
                calls[-1]["out"] = [out[0].dtype, out[1].dtype]

            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    return calls, handles


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_autocast_training_step_keeps_grus_float32(arch: str, episodes: tuple) -> None:
    o, a, r = episodes
    model = tiny_model(arch, dropout=0.0)
    model.train()
    with torch.no_grad():
        loss32 = float(model.loss(o, a, r))
    calls, handles = _record_grus(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(o, a, r)
    loss.backward()
    for h in handles:
        h.remove()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    opt.step()
    n_grus = sum(isinstance(m, torch.nn.GRU) for m in model.modules())
    assert len(calls) == n_grus == {"original": 1, "gru_backbone": 2, "no_gru_head": 0, "no_final_linear": 1}[arch]
    for call in calls:
        assert call["autocast"] is False, "a GRU ran under autocast"
        assert call["in"] and set(call["in"]) == {torch.float32}  # input (and initial state, when given)
        assert call["out"] == [torch.float32, torch.float32]
        assert call["weights"] == {torch.float32}
    for name, g in grads.items():
        if ".gru." in name:
            assert g.dtype == torch.float32 and float(g.abs().max()) > 0, name
    loss = float(loss.detach())
    assert abs(loss - loss32) <= LOSS_RTOL * loss32, (loss, loss32)


@pytest.mark.parametrize("arch", ["original", "gru_backbone", "no_final_linear"])
def test_sampling_and_gru_state_under_autocast_equal_float32(arch: str, episodes: tuple) -> None:
    """What the learned simulator calls (``encode`` of the GRU backbone, ``sample_next`` with its
    hand-unrolled GRU cell) gives bit-identical results with and without bf16 autocast."""
    o, a, r = episodes
    model = tiny_model(arch)
    tok = episode_inputs(o.numpy(), a.numpy()[:, :7], r.numpy()[:, :7])
    keys = rng.episode_keys(5, np.arange(4))
    u = rng.uniform(keys, (3, 40))
    with torch.no_grad():
        feats, state = model.encode(*tok)
        ref = model.sample_next(feats[:, -1], u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.sample_next(feats[:, -1], u)
            if not model.is_transformer:
                feats16, state16 = model.encode(*tok)
                assert feats16.dtype == torch.float32 and torch.equal(state16.h, state.h)
    assert torch.equal(got.obs_codes, ref.obs_codes) and torch.equal(got.reward_codes, ref.reward_codes)
    assert torch.equal(got.log_probs, ref.log_probs)
