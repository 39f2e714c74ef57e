"""The world model of Pinon et al. (2022), Section 2.3.2, Figure 2 and Figure 4.

    token t = [one-hot obs_t | one-hot code of the reward that produced obs_t | one-hot a_t]
        -> one linear layer to d_model (the "input encoding")
        -> backbone: causal Transformer encoder (sinusoidal positions)  |  GRU (ablation)
        -> e_t
    reward head:       MLP(e_t) -> categorical over the 5 reward codes          p(r_{t+1} | h_t, a_t)
    observation head:  u_t = MLP(e_t); a GRU runs over the 39 observation dimensions (teacher
                       forcing: its input at dimension i is the one-hot true code of dimension i-1);
                       dimension i has its own linear output layer reading [u_t, g_i]
                       ("final linear layer") -> p(o^i_{t+1} | h_t, a_t, o^{<i}_{t+1})

The model factorises p(r_{t+1}, o_{t+1} | history, a_t) = p(r) * prod_i p(o^i | o^{<i}) (the reward
does not condition the observation: both are predicted from e_t). Choices where the paper is silent are
listed in ``docs/model.md``.

Incremental evaluation. Attention is causal, so a token's keys and values never change once computed.
:meth:`WorldModel.encode` takes the tokens to add plus a :class:`KVCache` of earlier tokens (an
arbitrary set of earlier tokens per row, selected by a validity mask, with explicit positions), and
returns the new tokens' features and their own per-layer K/V. A tree search can therefore store the
K/V of ONE token per node and attend over ``root cache ++ gathered path``. The GRU backbone instead
carries its hidden state (``GRUState``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alchemy_mbrl.env import codec
from alchemy_mbrl.env.codec import NUM_REWARD_CODES
from alchemy_mbrl.env.constants import NUM_ACTIONS, OBS_DIM
from alchemy_mbrl.model.config import ModelConfig
from alchemy_mbrl.model.fused_gru import gru_sequence

#: Input category of the reward before the first observation (t = 0): an extra "start" code.
START_REWARD_CODE: int = NUM_REWARD_CODES
#: Width of the one-hot input token: observation categories, 5 reward codes + start, 40 actions.
INPUT_CATEGORIES: int = codec.TOTAL_CATEGORIES + NUM_REWARD_CODES + 1 + NUM_ACTIONS
_REWARD_OFFSET = codec.TOTAL_CATEGORIES
_ACTION_OFFSET = codec.TOTAL_CATEGORIES + NUM_REWARD_CODES + 1
#: Input of the observation GRU at dimension 0 (no previous dimension): a learned "start" vector.
GRU_START_INDEX: int = codec.TOTAL_CATEGORIES


# --------------------------------------------------------------------------------------------
# GRUs in float32 under any autocast
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def float32_gru() -> Iterator[None]:
    """Turn autocast off (on every device where it is on) for GRU computations.

    PyTorch's CUDA autocast runs cuDNN RNNs in float16 whatever dtype autocast was given
    (``aten/src/ATen/cudnn/AutocastRNN.cpp``), i.e. unscaled fp16 under bf16 autocast, where the GRUs'
    small gradients underflow; CPU autocast runs the GRU's matrix products in bf16. Inside this block
    the GRUs see autocast off and compute in float32 (their inputs are cast with ``.float()``). Also
    usable as a decorator.
    """
    with contextlib.ExitStack() as stack:
        for device_type in ("cuda", "cpu"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def cpu_float32(x: Tensor) -> bool:
    """Whether ``x`` is computed on the CPU without autocast: how training runs on the CPU (``amp`` only
    applies on CUDA; ``amp: bf16`` on the CPU stands in for CUDA autocast and keeps the CUDA code path)."""
    return x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")


def use_fused_gru(x: Tensor, enabled: bool = True) -> bool:
    """Whether a GRU runs through :func:`~alchemy_mbrl.model.fused_gru.gru_sequence` (the CPU training path).

    Only where it pays and nothing else changes: on the CPU, with gradients enabled (training) and
    autocast off (float32, as training on the CPU runs). Inference (validation, ``model-eval``, the
    planner) and every CUDA or autocast path keep ``torch.nn.GRU`` (cuDNN on a GPU), bit for bit as
    before. ``enabled=False`` (the modules' ``fast_path`` attribute, :meth:`WorldModel.set_fast_path`)
    forces ``nn.GRU``: the reference the tests compare the fused path with.
    """
    return enabled and torch.is_grad_enabled() and cpu_float32(x)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


class InputEncoding(nn.Module):
    """One linear layer on the concatenated one-hot token (computed as a sum of weight columns)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.linear = nn.Linear(INPUT_CATEGORIES, d_model)
        self.register_buffer("obs_offsets", torch.as_tensor(codec.CATEGORY_OFFSETS, dtype=torch.long), persistent=False)

    def forward(self, obs_codes: Tensor, prev_reward_codes: Tensor, actions: Tensor) -> Tensor:
        """``obs_codes [B, n, 39]``, ``prev_reward_codes [B, n]`` (0..5), ``actions [B, n]`` -> ``[B, n, d]``."""
        idx = torch.cat(
            [
                obs_codes.long() + self.obs_offsets,
                (prev_reward_codes.long() + _REWARD_OFFSET).unsqueeze(-1),
                (actions.long() + _ACTION_OFFSET).unsqueeze(-1),
            ],
            dim=-1,
        )
        # W @ onehot == sum of the selected columns of W (exactly the linear layer, without the dense one-hot),
        # as one embedding_bag over the 41 indices of each token: no [.., 41, d] gather is materialised
        # (forward and backward ~20x cheaper than F.embedding(...).sum(-2) on a transposed weight).
        lead = idx.shape[:-1]
        flat = idx.reshape(-1, idx.shape[-1])
        out = F.embedding_bag(flat, self.linear.weight.t().contiguous(), mode="sum",
                              per_sample_weights=None)
        return (out + self.linear.bias).view(*lead, -1)


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """The sinusoidal positional encoding of Vaswani et al. (2017), ``[max_len, d_model]``."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe.float()


# --------------------------------------------------------------------------------------------
# Transformer backbone with a key/value cache
# --------------------------------------------------------------------------------------------


@dataclass
class KVCache:
    """Per-layer keys and values of a set of earlier tokens, for each row of a batch.

    Attributes:
        k, v: ``[L, B, H, S, d_head]`` (L layers, H heads, S cached tokens).
        mask: ``[B, S]`` bool, which cached tokens a row may attend to (``None`` = all). Lets rows hold
            different numbers of tokens (root cache + a tree path of varying depth, padded).
    """

    k: Tensor
    v: Tensor
    mask: Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.k.shape[3])

    def append(self, other: "KVCache") -> "KVCache":
        """This cache followed by ``other`` (same batch)."""
        if self.mask is None and other.mask is None:
            mask = None
        else:
            mask = torch.cat([self._full_mask(), other._full_mask()], dim=1)
        return KVCache(torch.cat([self.k, other.k], dim=3), torch.cat([self.v, other.v], dim=3), mask)

    def _full_mask(self) -> Tensor:
        if self.mask is not None:
            return self.mask
        return torch.ones(self.k.shape[1], self.k.shape[3], dtype=torch.bool, device=self.k.device)

    def index_batch(self, idx: Tensor) -> "KVCache":
        """Rows ``idx`` of the batch."""
        return KVCache(self.k[:, idx], self.v[:, idx], None if self.mask is None else self.mask[idx])


def causal_attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)`` as PyTorch computes it
    on the CPU, where dropout rules out the fused kernels and SDPA runs its "math" fallback.

    The same operations in the same order (q and k^T each scaled by d^-1/4, a 0 / -inf causal mask added,
    softmax, then ``dropout``: the same random numbers), so the same output (bit for bit here; tested to
    1e-6), without the fallback's extra passes over the ``[B, H, n, n]`` scores (building the mask at that
    size, and the "safe softmax" that looks for fully masked rows, which causal rows never are). The CPU
    training path only (:func:`cpu_float32`); everything else calls SDPA.
    """
    n, s = q.shape[-2], k.shape[-2]
    scale = math.sqrt(1.0 / math.sqrt(q.shape[-1]))
    scores = torch.matmul(q * scale, k.transpose(-2, -1) * scale)
    # an additive mask (0 / -inf) as SDPA's: its backward is free (the softmax gives masked scores zero gradient)
    causal = torch.ones(n, s, dtype=torch.bool, device=q.device).tril(s - n)
    mask = torch.zeros(n, s, dtype=scores.dtype, device=q.device).masked_fill_(~causal, float("-inf"))
    attn = F.dropout(torch.softmax(scores.add_(mask), dim=-1), dropout_p, training=True)
    return torch.matmul(attn, v)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``, over cached + new tokens."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        #: CPU training path (:func:`causal_attention_with_dropout`); False = always SDPA (the reference).
        self.fast_path = True

    def forward(
        self, x: Tensor, past_k: Tensor | None, past_v: Tensor | None, attn_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, n, d]`` -> (output ``[B, n, d]``, new keys and values ``[B, H, n, d_head]``).

        ``attn_mask`` is ``None`` for a plain causal pass without past, else a bool mask
        ``[B, 1, n, S + n]`` (True = may attend).
        """
        b, n, d = x.shape
        q, k, v = self.in_proj(x).view(b, n, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        keys = k if past_k is None else torch.cat([past_k.to(k.dtype), k], dim=2)
        values = v if past_v is None else torch.cat([past_v.to(v.dtype), v], dim=2)
        p = self.dropout if self.training else 0.0
        if attn_mask is None and n > 1 and p > 0.0 and self.fast_path and cpu_float32(x):
            out = causal_attention_with_dropout(q, keys, values, p)
        elif attn_mask is None:
            out = F.scaled_dot_product_attention(q, keys, values, dropout_p=p, is_causal=n > 1)
        else:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out), k, v

    def decode(self, x: Tensor, k_buf: Tensor, v_buf: Tensor, slot: int, attn_mask: Tensor | None) -> Tensor:
        """One new token per row, attending over a preallocated K/V buffer (inference only).

        ``x [B, 1, d]``; ``k_buf, v_buf [B, H, S_cap, d_head]`` (a layer's slice of the step buffer): the new
        token's key and value are written in place at ``slot`` and the token attends over the view
        ``[:, :, :slot + 1]`` (nothing is concatenated or copied). ``attn_mask``: ``None`` (all of
        ``0..slot`` visible) or an additive float / bool mask ``[B, 1, 1, slot + 1]``.
        """
        b, n, d = x.shape
        qkv = self.in_proj(x).view(b, 3, self.n_heads, self.d_head)
        k_buf[:, :, slot] = qkv[:, 1]
        v_buf[:, :, slot] = qkv[:, 2]
        q = qkv[:, 0].unsqueeze(2).to(k_buf.dtype)  # [B, H, 1, dh]
        out = F.scaled_dot_product_attention(q, k_buf[:, :, : slot + 1], v_buf[:, :, : slot + 1], attn_mask=attn_mask)
        return self.out_proj(out.reshape(b, 1, d).to(x.dtype))


class TransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer as ``torch.nn.TransformerEncoderLayer`` (ReLU, dropout), with a K/V cache."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, past_k: Tensor | None, past_v: Tensor | None, attn_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        a, k, v = self.self_attn(x, past_k, past_v, attn_mask)
        x = self.norm1(x + self.dropout1(a))
        x = self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x, k, v

    def decode(self, x: Tensor, k_buf: Tensor, v_buf: Tensor, slot: int, attn_mask: Tensor | None) -> Tensor:
        """:meth:`forward` for one new token over a K/V buffer (see :meth:`CausalSelfAttention.decode`)."""
        x = self.norm1(x + self.dropout1(self.self_attn.decode(x, k_buf, v_buf, slot, attn_mask)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class TransformerBackbone(nn.Module):
    """Causal Transformer encoder: ``n_layers`` layers, sinusoidal positions, input scaled by sqrt(d)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.d_model = cfg.d_model
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.register_buffer("pe", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = cfg.d_model

    def forward(self, x: Tensor, positions: Tensor | None, past: KVCache | None,
                keep_cache: bool = True) -> tuple[Tensor, KVCache | None]:
        """Features ``[B, n, d]`` and the K/V of the n tokens (``None`` when not ``keep_cache``: training
        discards them, and stacking them costs a copy)."""
        b, n, _ = x.shape
        if positions is None:
            start = 0 if past is None else past.length
            if past is not None and past.mask is not None:
                raise ValueError("positions are required when the cache has a mask (rows of different lengths)")
            if start + n > self.pe.shape[0]:
                raise ValueError(f"position {start + n - 1} exceeds max_len {self.pe.shape[0]}")
            positions = torch.arange(start, start + n, device=x.device).expand(b, n)
        elif int(positions.max()) >= self.pe.shape[0]:  # (one device sync; explicit positions only)
            raise ValueError(f"position {int(positions.max())} exceeds max_len {self.pe.shape[0]}")
        x = self.dropout(x * math.sqrt(self.d_model) + self.pe[positions])
        attn_mask = None
        if past is not None:
            causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            past_mask = past._full_mask()
            attn_mask = torch.cat([past_mask[:, None, :].expand(b, n, past.length), causal.expand(b, n, n)], dim=2)
            attn_mask = attn_mask.unsqueeze(1)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, None if past is None else past.k[i], None if past is None else past.v[i], attn_mask)
            ks.append(k)
            vs.append(v)
        return x, (KVCache(torch.stack(ks), torch.stack(vs)) if keep_cache else None)

    def decode(self, x: Tensor, positions: Tensor, k_buf: Tensor, v_buf: Tensor, slot: int,
               attn_mask: Tensor | None) -> Tensor:
        """Features ``[B, 1, d]`` of one new token per row at ``positions [B, 1]`` (checked by the caller).

        ``k_buf, v_buf [L, B, H, S_cap, d_head]``: slots ``0..slot-1`` hold the K/V of the tokens the new
        token may attend to (masked by ``attn_mask [B, 1, 1, slot + 1]`` where rows differ); each layer
        writes the new token's K/V at ``slot`` in place. Equal to :meth:`forward` with the same tokens as
        a :class:`KVCache` (tested), without concatenating the cache.
        """
        x = self.dropout(x * math.sqrt(self.d_model) + self.pe[positions])
        for i, layer in enumerate(self.layers):
            x = layer.decode(x, k_buf[i], v_buf[i], slot, attn_mask)
        return x


# --------------------------------------------------------------------------------------------
# GRU backbone (ablation)
# --------------------------------------------------------------------------------------------


@dataclass
class GRUState:
    """Hidden state ``h [L, B, hidden]`` of the GRU backbone after the last token of each row."""

    h: Tensor

    def index_batch(self, idx: Tensor) -> "GRUState":
        return GRUState(self.h[:, idx])


class GRUBackbone(nn.Module):
    """A multi-layer GRU in place of the Transformer (Table 2: 3 layers of 512 units)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(cfg.d_model, cfg.gru_backbone_hidden, num_layers=cfg.gru_backbone_layers,
                          dropout=cfg.dropout if cfg.gru_backbone_layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = cfg.gru_backbone_hidden
        #: CPU training path (:func:`use_fused_gru`); False = always ``nn.GRU`` (the reference).
        self.fast_path = True

    def forward(self, x: Tensor, past: GRUState | None) -> tuple[Tensor, GRUState]:
        x = self.dropout(x)
        if use_fused_gru(x, self.fast_path):
            return self._fused_forward(x.float(), past)
        with float32_gru():
            out, h = self.gru(x.float(), None if past is None else past.h.float().contiguous())
        return out, GRUState(h)

    def _fused_forward(self, x: Tensor, past: GRUState | None) -> tuple[Tensor, GRUState]:
        """``nn.GRU``'s CPU computation layer by layer through :func:`gru_sequence`: the same equations,
        the same inter-layer dropout calls in the same order on the same time-major ``[T, B, h]`` layer
        outputs (so the same masks), and a cheaper backward pass."""
        gru = self.gru
        layer_in = x.transpose(0, 1)  # [T, B, d] (as nn.GRU transposes a batch-first input)
        finals = []
        for layer in range(gru.num_layers):
            gi = F.linear(layer_in, getattr(gru, f"weight_ih_l{layer}"), getattr(gru, f"bias_ih_l{layer}"))
            h0 = (x.new_zeros(x.shape[0], gru.hidden_size) if past is None else past.h[layer].float())
            out = gru_sequence(gi, h0, getattr(gru, f"weight_hh_l{layer}"), getattr(gru, f"bias_hh_l{layer}"))
            finals.append(out[-1])
            layer_in = out
            if gru.dropout and self.training and layer < gru.num_layers - 1:
                layer_in = F.dropout(out, gru.dropout, training=True)
        return layer_in.transpose(0, 1), GRUState(torch.stack(finals))


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


class MLP(nn.Sequential):
    """One hidden layer with ReLU."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class ObservationHead(nn.Module):
    """MLP -> GRU over the 39 dimensions -> per-dimension linear layers (Figure 4), or an ablation.

    ``obs_head``: ``gru_linear`` (paper; dimension i's layer reads [u, g_i]), ``independent`` (reads u
    only: the dimensions are independent given the history), ``gru_only`` (reads g_i only: no final
    linear layer from the MLP output).
    """

    def __init__(self, cfg: ModelConfig, d_in: int) -> None:
        super().__init__()
        self.kind = cfg.obs_head
        self.mlp = MLP(d_in, cfg.mlp_hidden, cfg.obs_context)
        self.uses_gru = self.kind in ("gru_linear", "gru_only")
        self.uses_context = self.kind in ("gru_linear", "independent")
        h = cfg.gru_hidden
        if self.uses_gru:
            self.gru_init = nn.Linear(cfg.obs_context, h)  # h_0 = tanh(W u + b)
            # One-hot (global category index of the previous dimension's code) through a linear map of width 3h
            # == a linear layer on the one-hot, since the GRU's input matrix has 3h rows anyway.
            self.gru_input = nn.Embedding(codec.TOTAL_CATEGORIES + 1, 3 * h)
            self.gru = nn.GRU(3 * h, h, batch_first=True)
        m = codec.MAX_CATEGORIES
        if self.uses_context:
            self.w_context = nn.Parameter(torch.empty(OBS_DIM, m, cfg.obs_context))
        if self.uses_gru:
            self.w_gru = nn.Parameter(torch.empty(OBS_DIM, m, h))
        self.bias = nn.Parameter(torch.zeros(OBS_DIM, m))
        fan_in = (cfg.obs_context if self.uses_context else 0) + (h if self.uses_gru else 0)
        bound = 1.0 / math.sqrt(fan_in)
        for name in ("w_context", "w_gru"):
            if hasattr(self, name):
                nn.init.uniform_(getattr(self, name), -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        valid = torch.arange(m)[None, :] < torch.as_tensor(codec.NUM_CATEGORIES)[:, None]
        self.register_buffer("valid", valid, persistent=False)  # [39, m]
        self.register_buffer("offsets", torch.as_tensor(codec.CATEGORY_OFFSETS, dtype=torch.long), persistent=False)
        # fused path: row of the input-gate table for (step i, code c of dimension i - 1); step 0 reads the
        # start row; padding codes (never one-hot) point at a valid row
        rows = torch.full((OBS_DIM, m), GRU_START_INDEX, dtype=torch.long)
        for i in range(1, OBS_DIM):
            k = int(codec.NUM_CATEGORIES[i - 1])
            rows[i] = int(codec.CATEGORY_OFFSETS[i - 1]) + torch.arange(m).clamp(max=k - 1)
        self.register_buffer("gate_rows", rows, persistent=False)  # [39, m]
        #: CPU training path (:func:`use_fused_gru`); False = always ``nn.GRU`` (the reference).
        self.fast_path = True

    def _mask(self, logits: Tensor, dims: slice | int) -> Tensor:
        return logits.float().masked_fill(~self.valid[dims], float("-inf"))

    def context(self, e: Tensor) -> Tensor:
        """``u = MLP(e)``."""
        return self.mlp(e)

    def init_hidden(self, u: Tensor) -> Tensor:
        """Initial GRU hidden state ``[1, N, h]`` from the MLP output."""
        return torch.tanh(self.gru_init(u)).unsqueeze(0)

    def teacher_forced_logits(self, e: Tensor, next_obs_codes: Tensor) -> Tensor:
        """Logits ``[N, 39, MAX_CATEGORIES]`` (float32, -inf on invalid codes) for features ``e [N, D]``."""
        u = self.context(e)
        n = u.shape[0]
        logits = self.bias.expand(n, -1, -1)
        if self.uses_context:
            logits = logits + (u @ self.w_context.reshape(-1, u.shape[-1]).t()).view(n, OBS_DIM, -1)
        if self.uses_gru and use_fused_gru(u, self.fast_path):
            logits = logits + self._fused_gru_logits(u, next_obs_codes)
        elif self.uses_gru:
            prev = torch.cat(
                [torch.full((n, 1), GRU_START_INDEX, dtype=torch.long, device=e.device),
                 next_obs_codes[:, :-1].long() + self.offsets[:-1]],
                dim=1,
            )
            x, h0 = self.gru_input(prev).float(), self.init_hidden(u).float().contiguous()
            with float32_gru():  # float32 under any autocast (cuDNN's autocast would run it in unscaled fp16)
                g, _ = self.gru(x, h0)  # [N, 39, h]
            logits = logits + torch.einsum("nih,ich->nic", g, self.w_gru.to(g.dtype))
        return self._mask(logits, slice(None))

    def _fused_gru_logits(self, u: Tensor, next_obs_codes: Tensor) -> Tensor:
        """The GRU part of the teacher-forced logits, ``[N, 39, m]``, on the CPU training path.

        The same maths as the reference (embedding -> ``nn.GRU`` -> einsum), computed cheaper: the GRU's
        input gates of every possible input are ONE ``[C + 1, 3h]`` table (embedding rows through the
        input layer) instead of the input layer applied to all N x 39 gathered embeddings; step i reads
        its rows by a one-hot product over the <= 7 codes of dimension i - 1 (exactly the gathered rows:
        the other terms are 0), whose backward is a small matrix product instead of a scatter over
        N x 39 rows; and the recurrence runs through :func:`gru_sequence`.
        """
        n, m = u.shape[0], codec.MAX_CATEGORIES
        gru = self.gru
        table = F.linear(self.gru_input.weight, gru.weight_ih_l0, gru.bias_ih_l0)  # [C + 1, 3h]
        onehot = u.new_zeros(OBS_DIM, n, m)  # step i: one-hot of the code of dimension i - 1; step 0: start
        onehot[0, :, 0] = 1.0
        onehot[1:].scatter_(2, next_obs_codes[:, :-1].t().long().unsqueeze(-1), 1.0)
        gi = torch.bmm(onehot, table[self.gate_rows])  # [39, N, 3h]
        hs = gru_sequence(gi, torch.tanh(self.gru_init(u)), gru.weight_hh_l0, gru.bias_hh_l0)  # [39, N, h]
        return torch.bmm(hs, self.w_gru.transpose(1, 2)).transpose(0, 1)


# --------------------------------------------------------------------------------------------
# The world model
# --------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """K sampled outcomes per row: codes and the model's log-probability of each outcome (nats)."""

    reward_codes: Tensor  # [B, K] int64
    obs_codes: Tensor  # [B, K, 39] int64
    log_probs: Tensor  # [B, K] float64, log p(r) + sum_i log p(o^i | o^<i)


def inverse_cdf(probs: Tensor, u: Tensor, num_valid: Tensor | int) -> Tensor:
    """Index drawn from each row of ``probs [N, n]`` (float64) by inverse CDF with uniforms ``u [N]``."""
    cdf = probs.cumsum(dim=-1)
    x = (u * cdf[:, -1]).unsqueeze(-1)
    idx = (cdf <= x).sum(dim=-1)
    if isinstance(num_valid, int):
        return idx.clamp(max=num_valid - 1)
    return torch.minimum(idx, num_valid - 1)


class WorldModel(nn.Module):
    """Input encoding + backbone + reward head + observation head. See the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.input_encoding = InputEncoding(cfg.d_model)
        self.backbone: nn.Module = TransformerBackbone(cfg) if cfg.backbone == "transformer" else GRUBackbone(cfg)
        d = self.backbone.out_dim
        self.reward_head = MLP(d, cfg.mlp_hidden, NUM_REWARD_CODES)
        self.observation_head = ObservationHead(cfg, d)
        self.register_buffer("num_categories", torch.as_tensor(codec.NUM_CATEGORIES, dtype=torch.long), persistent=False)
        self._obs_offsets: list[int] = [int(x) for x in codec.CATEGORY_OFFSETS]
        self._obs_num_valid: list[int] = [int(x) for x in codec.NUM_CATEGORIES]

    # ---- backbone -----------------------------------------------------------------------

    @property
    def is_transformer(self) -> bool:
        return self.config.backbone == "transformer"

    def encode(
        self,
        obs_codes: Tensor,
        prev_reward_codes: Tensor,
        actions: Tensor,
        past: KVCache | GRUState | None = None,
        positions: Tensor | None = None,
        keep_cache: bool = True,
    ) -> tuple[Tensor, KVCache | GRUState | None]:
        """Features of ``n`` new tokens per row, after the tokens summarised by ``past``.

        Args:
            obs_codes: ``[B, n, 39]`` codes of obs_t for each new token.
            prev_reward_codes: ``[B, n]`` code of the reward that produced obs_t (``START_REWARD_CODE`` at t = 0).
            actions: ``[B, n]`` the action a_t taken after obs_t.
            past: Transformer: a :class:`KVCache` of earlier tokens (``None`` = none); GRU: a :class:`GRUState`.
            positions: ``[B, n]`` time index t of each new token (Transformer; default: continue after ``past``;
                required when ``past.mask`` is set).
            keep_cache: Transformer: ``False`` returns ``None`` for the K/V (training discards them; stacking
                them costs a copy).

        Returns:
            ``(features [B, n, D], new)``: Transformer: ``new`` is the :class:`KVCache` of the n new tokens
            ONLY (append it to ``past`` to extend the history); GRU: the state after the last new token.
        """
        x = self.input_encoding(obs_codes, prev_reward_codes, actions)
        if self.is_transformer:
            if past is not None and not isinstance(past, KVCache):
                raise TypeError("the Transformer backbone takes a KVCache as past")
            return self.backbone(x, positions, past, keep_cache=keep_cache)
        if past is not None and not isinstance(past, GRUState):
            raise TypeError("the GRU backbone takes a GRUState as past")
        return self.backbone(x, past)

    def kv_buffers(self, batch: int, capacity: int, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Empty K and V step buffers ``[L, B, H, capacity, d_head]`` for :meth:`encode_step` (Transformer)."""
        cfg = self.config
        dev = device if device is not None else next(self.parameters()).device
        shape = (cfg.n_layers, batch, cfg.n_heads, capacity, cfg.d_model // cfg.n_heads)
        dt = dtype or torch.float32
        return torch.zeros(shape, dtype=dt, device=dev), torch.zeros(shape, dtype=dt, device=dev)

    def encode_step(self, obs_codes: Tensor, prev_reward_codes: Tensor, actions: Tensor, positions: Tensor,
                    k_buf: Tensor, v_buf: Tensor, slot: int, attn_mask: Tensor | None = None) -> Tensor:
        """Features ``[B, D]`` of ONE new token per row over preallocated K/V buffers (Transformer, inference).

        ``obs_codes [B, 39]``, ``prev_reward_codes [B]``, ``actions [B]``, ``positions [B]`` (< max_len,
        unchecked: no device sync). ``k_buf, v_buf`` from :meth:`kv_buffers`: slots ``0..slot-1`` hold the
        earlier tokens; the new token's per-layer K/V are written at ``slot``. ``attn_mask [B, 1, 1, slot + 1]``
        (additive float in the buffers' dtype, or bool) hides slots a row must not see; ``None``: all.
        Equals :meth:`encode` with the visible slots as a :class:`KVCache` (tested).
        """
        if not self.is_transformer:
            raise TypeError("encode_step needs the Transformer backbone")
        x = self.input_encoding(obs_codes[:, None], prev_reward_codes[:, None], actions[:, None])
        return self.backbone.decode(x, positions[:, None], k_buf, v_buf, slot, attn_mask)[:, 0]

    # ---- training -----------------------------------------------------------------------

    def set_fast_path(self, enabled: bool) -> "WorldModel":
        """Let training on the CPU take the fast paths (default: :func:`causal_attention_with_dropout`,
        :func:`~alchemy_mbrl.model.fused_gru.gru_sequence`) or force the reference computation (SDPA,
        ``nn.GRU``) everywhere; the tests compare the two."""
        for mod in self.modules():
            if hasattr(mod, "fast_path"):
                mod.fast_path = bool(enabled)
        return self

    def token_losses(self, obs_codes: Tensor, actions: Tensor, reward_codes: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced cross-entropies of whole episodes.

        Args:
            obs_codes: ``[B, T+1, 39]``; actions: ``[B, T]``; reward_codes: ``[B, T]`` (codec order).

        Returns:
            ``(reward_nll [B, T], obs_nll [B, T, 39])`` in nats (float32).
        """
        b, t = actions.shape
        prev_r = torch.cat(
            [torch.full((b, 1), START_REWARD_CODE, dtype=torch.long, device=actions.device), reward_codes[:, :-1].long()], dim=1
        )
        e, _ = self.encode(obs_codes[:, :t], prev_r, actions, keep_cache=False)
        e = e.reshape(b * t, -1)
        r_logits = self.reward_head(e).float()
        reward_nll = F.cross_entropy(r_logits, reward_codes.reshape(-1).long(), reduction="none").view(b, t)
        target = obs_codes[:, 1:].reshape(b * t, OBS_DIM).long()
        # log-softmax over the <= 7 codes with the codes as the LEADING dimension ([m, N, 39]): the same values
        # (bit for bit here; tested to 1e-6) as over a last dimension of 7, where the CPU kernel is ~2x slower
        logits = self.observation_head.teacher_forced_logits(e, target).permute(2, 0, 1).contiguous()
        logp = torch.log_softmax(logits, dim=0)
        obs_nll = -logp.gather(0, target.unsqueeze(0)).squeeze(0).view(b, t, OBS_DIM)
        return reward_nll, obs_nll

    def loss(self, obs_codes: Tensor, actions: Tensor, reward_codes: Tensor) -> Tensor:
        """Mean over transitions of the summed cross-entropy (nats per step)."""
        r, o = self.token_losses(obs_codes, actions, reward_codes)
        return (r + o.sum(-1)).mean()

    # ---- prediction and sampling --------------------------------------------------------

    def log_probs_of(self, features: Tensor, reward_codes: Tensor, next_obs_codes: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities of given outcomes: ``features [N, D]`` -> (``log p(r) [N, 5]``, ``log p(o^i|o^<i) [N, 39, 7]``)."""
        r = torch.log_softmax(self.reward_head(features).float(), dim=-1)
        o = torch.log_softmax(self.observation_head.teacher_forced_logits(features, next_obs_codes.long()), dim=-1)
        return r, o

    @torch.no_grad()
    @float32_gru()  # the heads and the unrolled GRU cell in float32 under any autocast
    def sample_next(self, features: Tensor, uniforms: np.ndarray | Tensor) -> Samples:
        """Sample K next (reward, observation) pairs per row by inverse CDF.

        Args:
            features: ``[B, D]`` backbone output of the token holding (history, action).
            uniforms: ``[B, K, 40]`` float64 in [0, 1) (e.g. ``alchemy_mbrl.rng.uniform(keys, (K, 40))``):
                column 0 draws the reward, column 1 + i draws observation dimension i. A row's samples
                depend only on its features and its uniforms.

        Returns:
            :class:`Samples` with ``reward_codes [B, K]``, ``obs_codes [B, K, 39]``, ``log_probs [B, K]``.

        The work that depends only on the row (reward head, observation MLP, the context part of every
        dimension's logits, the GRU's h_0) is done once per row, not once per sample; the 39-step
        autoregressive loop over the B*K samples runs as one TorchScript function
        (:func:`_sample_observation_codes`: ~20 small tensor ops per dimension, no Python).
        Equal to :meth:`sample_next_reference` (the unfused per-sample loop) up to float32 rounding of
        the GRU (``|delta logit| ~ 1e-6``): samples coincide unless a uniform falls within ~1e-6 of a CDF
        boundary (tested).
        """
        b = features.shape[0]
        u_all = torch.as_tensor(np.asarray(uniforms) if not isinstance(uniforms, Tensor) else uniforms,
                                dtype=torch.float64, device=features.device)
        if u_all.ndim != 3 or u_all.shape[0] != b or u_all.shape[2] != 1 + OBS_DIM:
            raise ValueError(f"uniforms must have shape [B={b}, K, {1 + OBS_DIM}], got {tuple(u_all.shape)}")
        k = u_all.shape[1]
        n = b * k
        f = features.float()
        # ---- node-only work: once per row ----
        logp_r = torch.log_softmax(self.reward_head(f).float(), dim=-1).double()  # [B, 5]
        head = self.observation_head
        ctx = head.context(f).float()  # [B, C]
        base = head.bias.float().expand(b, -1, -1)
        if head.uses_context:
            base = base + (ctx @ head.w_context.float().reshape(-1, ctx.shape[-1]).t()).view(b, OBS_DIM, -1)
        base = base.masked_fill(~head.valid, float("-inf"))  # invalid codes: probability 0
        # [39, N, M] with sample j of row r at n = r*K + j (row-major, as repeat_interleave)
        logits = base.transpose(0, 1).repeat_interleave(k, dim=1).contiguous()
        hsz = head.gru.hidden_size if head.uses_gru else 0
        if head.uses_gru:
            h0 = head.init_hidden(ctx)[0].float().repeat_interleave(k, dim=0)
            gates_in = (head.gru_input.weight.float() @ head.gru.weight_ih_l0.float().t() + head.gru.bias_ih_l0.float())
            w_hh_t = head.gru.weight_hh_l0.float().t().contiguous()
            b_hh = head.gru.bias_hh_l0.float().clone()
            # n-gate columns doubled (multiplying by 2 is exact): the loop evaluates tanh(x) as 2 sigmoid(2x) - 1
            gates_in[:, 2 * hsz :] *= 2.0
            w_hh_t[:, 2 * hsz :] *= 2.0
            b_hh[2 * hsz :] *= 2.0
            w_gru_t = head.w_gru.float().transpose(1, 2).contiguous()  # [39, h, M]
        else:
            h0 = gates_in = w_hh_t = b_hh = w_gru_t = torch.empty(0, device=f.device)
        u = u_all.reshape(n, 1 + OBS_DIM)
        r = inverse_cdf(logp_r.exp().repeat_interleave(k, dim=0), u[:, 0], NUM_REWARD_CODES)
        codes, log_z = _sample_observation_codes(logits, h0, gates_in, w_hh_t, b_hh, w_gru_t, u[:, 1:].contiguous(),
                                                 self._obs_offsets, self._obs_num_valid, head.uses_gru, hsz,
                                                 GRU_START_INDEX)
        # log-probabilities of the drawn codes (logits now include the GRU part; log_z from the loop's CDFs)
        logp_o = logits.gather(2, codes.t().unsqueeze(-1)).squeeze(-1).double() - log_z  # [39, N]
        total = logp_r.repeat_interleave(k, dim=0).gather(1, r[:, None]).squeeze(1) + logp_o.sum(0)
        return Samples(r.view(b, k), codes.view(b, k, OBS_DIM), total.view(b, k))

    @torch.no_grad()
    @float32_gru()
    def sample_next_reference(self, features: Tensor, uniforms: np.ndarray | Tensor) -> Samples:
        """The unfused reference of :meth:`sample_next` (every head per sample, a Python loop, float64 CDF).

        Args:
            features: ``[B, D]`` backbone output of the token holding (history, action).
            uniforms: ``[B, K, 40]`` float64 in [0, 1) (e.g. ``alchemy_mbrl.rng.uniform(keys, (K, 40))``):
                column 0 draws the reward, column 1 + i draws observation dimension i. A row's samples
                depend only on its features and its uniforms.

        Returns:
            :class:`Samples` with ``reward_codes [B, K]``, ``obs_codes [B, K, 39]``, ``log_probs [B, K]``.
        """
        b = features.shape[0]
        u_all = torch.as_tensor(np.asarray(uniforms) if not isinstance(uniforms, Tensor) else uniforms,
                                dtype=torch.float64, device=features.device)
        if u_all.ndim != 3 or u_all.shape[0] != b or u_all.shape[2] != 1 + OBS_DIM:
            raise ValueError(f"uniforms must have shape [B={b}, K, {1 + OBS_DIM}], got {tuple(u_all.shape)}")
        k = u_all.shape[1]
        u_all = u_all.reshape(b * k, 1 + OBS_DIM)
        f = features.float().repeat_interleave(k, dim=0)
        logp_r = torch.log_softmax(self.reward_head(f).float(), dim=-1).double()
        r = inverse_cdf(logp_r.exp(), u_all[:, 0], NUM_REWARD_CODES)
        total = logp_r.gather(1, r[:, None]).squeeze(1)
        head = self.observation_head
        ctx = head.context(f).float()
        n = b * k
        # the context part of every dimension's logits at once: [N, 39, MAX_CATEGORIES]
        base = head.bias.expand(n, -1, -1)
        if head.uses_context:
            base = base + (ctx @ head.w_context.reshape(-1, ctx.shape[-1]).t()).view(n, OBS_DIM, -1)
        if head.uses_gru:
            # GRU cell unrolled by hand (same equations as torch.nn.GRU), with the input gates of every
            # possible one-hot input precomputed: one small matmul per dimension.
            w_ih, w_hh = head.gru.weight_ih_l0, head.gru.weight_hh_l0
            b_ih, b_hh = head.gru.bias_ih_l0, head.gru.bias_hh_l0
            gates_in = head.gru_input.weight @ w_ih.t() + b_ih  # [157, 3h]
            h = head.init_hidden(ctx)[0].float()
        valid = head.valid
        prev = torch.full((n,), GRU_START_INDEX, dtype=torch.long, device=f.device)
        codes = torch.empty(n, OBS_DIM, dtype=torch.long, device=f.device)
        for i in range(OBS_DIM):
            logits = base[:, i]
            if head.uses_gru:
                gi = gates_in[prev]
                gh = h @ w_hh.t() + b_hh
                i_r, i_z, i_n = gi.chunk(3, dim=1)
                h_r, h_z, h_n = gh.chunk(3, dim=1)
                rg = torch.sigmoid(i_r + h_r)
                zg = torch.sigmoid(i_z + h_z)
                ng = torch.tanh(i_n + rg * h_n)
                h = (1 - zg) * ng + zg * h
                logits = logits + h @ head.w_gru[i].t()
            logp_i = torch.log_softmax(logits.masked_fill(~valid[i], float("-inf")).double(), dim=-1)
            c = inverse_cdf(logp_i.exp(), u_all[:, 1 + i], int(codec.NUM_CATEGORIES[i]))
            codes[:, i] = c
            total = total + logp_i.gather(1, c[:, None]).squeeze(1)
            prev = c + int(codec.CATEGORY_OFFSETS[i])
        return Samples(r.view(b, k), codes.view(b, k, OBS_DIM), total.view(b, k))


def _sample_observation_codes_eager(
    logits: Tensor, h: Tensor, gates_in: Tensor, w_hh_t: Tensor, b_hh: Tensor, w_gru_t: Tensor, u: Tensor,
    offsets: list[int], num_valid: list[int], uses_gru: bool, hsz: int, start_index: int,
) -> tuple[Tensor, Tensor]:
    """The 39-step autoregressive draw of :meth:`WorldModel.sample_next` (compiled by TorchScript below).

    ``logits [39, N, M]`` float32 holds the context part of every dimension's logits (-inf on invalid
    codes); the GRU part of dimension i is added IN PLACE, so on return ``logits`` holds the full logits
    of the drawn path. ``h [N, h]``: GRU h_0; ``gates_in [C + 1, 3h]``: input gates of every one-hot
    input; ``w_hh_t [h, 3h]``, ``b_hh [3h]``, ``w_gru_t [39, h, M]``; ``u [N, 39]`` float64.
    Returns the codes ``[N, 39]`` int64 and each dimension's log normaliser ``[39, N]`` float64 (so that
    ``log p = logit - log_z``). GRU equations as ``torch.nn.GRU`` (gate order r, z, n).
    """
    n = logits.shape[1]
    m = logits.shape[2]
    d = len(num_valid)
    codes = torch.empty(n, d, dtype=torch.long, device=logits.device)
    prev = torch.full((n,), start_index, dtype=torch.long, device=logits.device)
    log_z = torch.empty(d, n, dtype=torch.float64, device=logits.device)  # log of each dimension's normaliser
    gh = torch.empty(0)
    g3 = 3 * hsz
    if uses_gru:
        gh = torch.addmm(b_hh, h, w_hh_t)
        # one matmul per step gives the next step's hidden gates AND dimension i's GRU logits; the logit
        # columns are zero-padded to 16 (small-N GEMMs are ~3x faster at 16 columns than at 7)
        w_cat = torch.zeros(d, hsz, g3 + 16, dtype=w_hh_t.dtype, device=w_hh_t.device)
        w_cat[:, :, :g3] = w_hh_t
        w_cat[:, :, g3 : g3 + m] = w_gru_t
    else:
        w_cat = torch.empty(0)
    for i in range(d):
        li = logits[i]
        if uses_gru:
            gi = gates_in.index_select(0, prev)
            rz = torch.sigmoid(gi[:, : 2 * hsz] + gh[:, : 2 * hsz])
            # the n-gate columns of gates_in / w_hh_t / b_hh arrive doubled (exact), so this is sigmoid(2x)
            # and tanh(x) = 2 sigmoid(2x) - 1 (CPU tanh is ~6x slower than sigmoid at this size)
            ng = torch.sigmoid(torch.addcmul(gi[:, 2 * hsz :], rz[:, :hsz], gh[:, 2 * hsz :])).mul_(2.0).sub_(1.0)
            h = torch.lerp(ng, h, rz[:, hsz:])  # (1 - z) * n + z * h
            both = torch.mm(h, w_cat[i])
            li.add_(both[:, g3 : g3 + m])
            gh = both[:, :g3] + b_hh
        ld = li.double()
        top = ld.amax(dim=-1, keepdim=True)
        # unnormalised CDF (softmax over a width-7 dimension is ~15x slower than these ops on CPU)
        cdf = torch.exp(ld - top).cumsum(dim=-1)
        x = u[:, i : i + 1] * cdf[:, -1:]
        c = (cdf <= x).sum(dim=-1).clamp_(max=num_valid[i] - 1)
        codes[:, i] = c
        log_z[i] = torch.log(cdf[:, -1]) + top[:, 0]
        prev = c + offsets[i]
    return codes, log_z


try:  # TorchScript removes the Python interpreter from the ~800 small ops of the loop (deprecated, still the
    # only ahead-of-time route here without a compiler at run time: torch.compile would need g++ and ~1 min)
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", DeprecationWarning)
        _sample_observation_codes = torch.jit.script(_sample_observation_codes_eager)
except Exception:  # pragma: no cover - TorchScript unavailable: same function, eager
    _sample_observation_codes = _sample_observation_codes_eager


def build_model(cfg: ModelConfig) -> WorldModel:
    """A freshly initialised :class:`WorldModel` (seed torch first for reproducibility)."""
    return WorldModel(cfg)


def episode_inputs(obs_codes: np.ndarray | Tensor, actions: np.ndarray | Tensor, reward_codes: np.ndarray | Tensor,
                   device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """The token inputs ``(obs [B, t, 39], prev_reward [B, t], actions [B, t])`` of histories with t actions.

    ``obs_codes [B, >=t, 39]``, ``actions [B, t]``, ``reward_codes [B, t]``: token j = (obs_j, r_j, a_j) where
    r_j is the code of the reward that produced obs_j (START_REWARD_CODE for j = 0).
    """
    a = torch.as_tensor(np.asarray(actions), device=device).long()
    b, t = a.shape
    o = torch.as_tensor(np.asarray(obs_codes), device=device).long()[:, :t]
    r = torch.as_tensor(np.asarray(reward_codes), device=device).long()
    prev = torch.cat([torch.full((b, 1), START_REWARD_CODE, dtype=torch.long, device=device), r[:, : t - 1]], dim=1)[:, :t]
    return o, prev, a
