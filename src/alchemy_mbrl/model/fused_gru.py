"""A GRU layer's recurrence with a hand-written backward: the CPU training path of the model's GRUs.

``torch.nn.GRU`` on the CPU (no cuDNN) runs a sequence through autograd one time step at a time: each
step's ~10 operations are recorded, and the backward pass replays ~25 small operations per step,
including one weight-gradient matrix product per step whose ``[3h, h]`` result is then added to the
accumulated gradient. For the observation head (39 steps, 3,200 rows, hidden 32) and the GRU backbone
(200 steps, 16 rows, hidden 512) this dominates a training step (measured: ``docs/model.md``,
"CPU training throughput").

:func:`gru_sequence` computes the same equations as ``torch.nn.GRU`` (gate order r, z, n)::

    gh = W_hh h_{t-1} + b_hh            (gi_t = W_ih x_t + b_ih is given)
    r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),  n = tanh(gi_n + r * gh_n)
    h_t = (h_{t-1} - n) * z + n         (= (1 - z) * n + z * h_{t-1}, in nn.GRU's CPU order of operations)

in the same order of floating-point operations as PyTorch's CPU cell (the same outputs, bit for bit
at the model's sizes), and its backward pass keeps one ``[T, N, 3h]`` buffer of gate gradients, so
that the weight gradient is ONE matrix product over all steps and rows; a step of the backward is
about ten element-wise operations on ``[N, h]`` tensors and one small matrix product, with no
autograd graph. The input projection stays outside (the caller computes ``gi`` for all steps at
once, or, for one-hot inputs, reads it from a table). Gradients equal autograd's through ``nn.GRU``
up to float32 rounding (``tests/test_model_train_speed.py``). It consumes no random numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:  # type: ignore[override]
        t_len, n, g3 = gi.shape
        hsz = g3 // 3
        hs = gi.new_empty(t_len, n, hsz)
        rz_all = gi.new_empty(t_len, n, 2 * hsz)  # sigmoid gates r, z
        n_all = gi.new_empty(t_len, n, hsz)  # tanh gate n
        ghn_all = gi.new_empty(t_len, n, hsz)  # n part of W_hh h + b_hh
        diff_all = gi.new_empty(t_len, n, hsz)  # h_{t-1} - n
        w_t = w_hh.t().contiguous()  # [h, 3h]: ~1.6x faster than the transposed view for 16 rows x 512 (same result)
        h = h0
        for t in range(t_len):
            gh = torch.addmm(b_hh, h, w_t)
            g = gi[t]
            rz = torch.add(gh[:, : 2 * hsz], g[:, : 2 * hsz], out=rz_all[t]).sigmoid_()
            ghn = ghn_all[t].copy_(gh[:, 2 * hsz :])
            nt = torch.mul(ghn, rz[:, :hsz], out=n_all[t]).add_(g[:, 2 * hsz :]).tanh_()
            diff = torch.sub(h, nt, out=diff_all[t])
            h = torch.mul(diff, rz[:, hsz:], out=hs[t]).add_(nt)
        ctx.save_for_backward(h0, w_hh, hs, rz_all, n_all, ghn_all, diff_all)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        h0, w_hh, hs, rz_all, n_all, ghn_all, diff_all = ctx.saved_tensors
        t_len, n, hsz = hs.shape
        dgh = grad_hs.new_empty(t_len, n, 3 * hsz)  # d(W_hh h + b_hh): [d pre_r, d pre_z, r * d pre_n]
        dgi_n = grad_hs.new_empty(t_len, n, hsz)  # d pre_n (the n part of d gi)
        d_rz = grad_hs.new_empty(n, 2 * hsz)  # [d r, d z] of one step
        dh = grad_hs[t_len - 1].clone()
        for t in range(t_len - 1, -1, -1):
            if t < t_len - 1:
                dh.add_(grad_hs[t])
            rz, nt = rz_all[t], n_all[t]
            z = rz[:, hsz:]
            # h = (h_prev - n) z + n:  dn = dh (1 - z), d pre_n = dn (1 - n^2), dz = dh (h_prev - n)
            dn = torch.addcmul(dh, dh, z, value=-1.0)
            dpn = torch.addcmul(dn, dn, nt * nt, value=-1.0, out=dgi_n[t])
            torch.mul(dpn, ghn_all[t], out=d_rz[:, :hsz])  # d r = d pre_n * gh_n
            torch.mul(dh, diff_all[t], out=d_rz[:, hsz:])
            torch.mul(d_rz, torch.addcmul(rz, rz, rz, value=-1.0), out=dgh[t, :, : 2 * hsz])  # sigmoid' = s (1 - s)
            torch.mul(dpn, rz[:, :hsz], out=dgh[t, :, 2 * hsz :])
            dh = torch.addmm(dh.mul_(z), dgh[t], w_hh)
        # the weight gradient over all steps and rows at once: h_prev = h0, then hs[:-1]
        flat = dgh.view(t_len * n, 3 * hsz)
        d_w_hh = flat[:n].t().mm(h0)
        if t_len > 1:
            d_w_hh.addmm_(flat[n:].t(), hs[:-1].reshape((t_len - 1) * n, hsz))
        d_b_hh = flat.sum(0)
        dgh[..., 2 * hsz :] = dgi_n  # now d gi = [d pre_r, d pre_z, d pre_n]
        return dgh, dh, d_w_hh, d_b_hh


def gru_sequence(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """Hidden states ``[T, N, h]`` of one GRU layer, time-major.

    Args:
        gi: ``[T, N, 3h]`` input gates ``W_ih x_t + b_ih`` of every step (float32).
        h0: ``[N, h]`` initial hidden state.
        w_hh, b_hh: the layer's ``weight_hh_l*`` ``[3h, h]`` and ``bias_hh_l*`` ``[3h]``.
    """
    return _GRUSequence.apply(gi.contiguous(), h0.contiguous(), w_hh, b_hh)
