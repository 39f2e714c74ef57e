"""The learned world model as a planner :class:`~alchemy_mbrl.planner.simulator.Simulator`.

Per search b the simulator keeps
  * a root cache: the per-layer K/V of the real tokens 0..t-1 (Transformer), or the GRU hidden state
    after them; :meth:`set_roots` appends only the real tokens that are new since the previous call;
  * per tree node n (arrays ``[B, max_nodes, ...]``): the K/V of the ONE token that led to n (the token
    (obs_parent, reward code of obs_parent, action)), its parent, depth, observation and reward code.

Expanding node p with action a evaluates one new token (obs_p, r_p, a) at position t + depth(p), which
attends over ``root cache ++ K/V of the nodes on the path root -> p`` (gathered, padded to the deepest
path of the batch and masked), then samples K outcomes by inverse CDF from the per-search keys. The K
children all store that token's K/V (it is the token that led to each of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.planner.simulator import RootContext


class LearnedSimulator:
    """Tree-search simulator backed by a trained :class:`~alchemy_mbrl.model.world_model.WorldModel`."""

    name = "learned"

    def __init__(self, model: "torch.nn.Module", k: int | None = None) -> None:
        from alchemy_mbrl.model.world_model import WorldModel

        if not isinstance(model, WorldModel):
            raise TypeError("LearnedSimulator needs a WorldModel")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.max_len = model.config.max_len
        self._b = 0
        self._max_nodes = 0
        self._real: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # obs, actions, reward codes encoded so far
        self._root_kv = None  # KVCache of the real tokens (Transformer)
        self._root_h: torch.Tensor | None = None  # [L, B, H] (GRU)
        self._t = 0

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None) -> "LearnedSimulator":
        from alchemy_mbrl.model.checkpoint import load_model

        return cls(load_model(model_dir, device))

    # ---- roots ---------------------------------------------------------------------------

    @torch.no_grad()
    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        from alchemy_mbrl.model.world_model import START_REWARD_CODE, GRUState

        b, t = context.batch_size, int(context.t)
        obs = np.asarray(context.obs_codes)[:, : t + 1]
        act = np.asarray(context.actions, dtype=np.int64)[:, :t]
        rew = np.asarray(context.reward_codes, dtype=np.int64)[:, :t]
        if obs.shape != (b, t + 1, codec.OBS_DIM) or act.shape != (b, t) or rew.shape != (b, t):
            raise ValueError(f"RootContext arrays do not match t={t}: obs {obs.shape}, actions {act.shape}, rewards {rew.shape}")
        # reuse the encoded prefix when the new history extends it
        done = 0
        if self._real is not None and self._b == b and self._t <= t:
            o0, a0, r0 = self._real
            n = a0.shape[1]
            if np.array_equal(o0[:, :n], obs[:, :n]) and np.array_equal(a0, act[:, :n]) and np.array_equal(r0, rew[:, :n]):
                done = n
        if done == 0:
            self._root_kv, self._root_h = None, None
        if t > done:
            o = torch.as_tensor(obs[:, done:t], device=self.device).long()
            a = torch.as_tensor(act[:, done:t], device=self.device)
            prev = np.concatenate([np.full((b, 1), START_REWARD_CODE), rew[:, : t - 1]], axis=1)[:, done:t]
            p = torch.as_tensor(prev, device=self.device)
            if self.model.is_transformer:
                _, new = self.model.encode(o, p, a, past=self._root_kv)
                self._root_kv = new if self._root_kv is None else self._root_kv.append(new)
            else:
                _, st = self.model.encode(o, p, a, past=None if self._root_h is None else GRUState(self._root_h))
                self._root_h = st.h
        self._real = (obs.copy(), act.copy(), rew.copy())
        self._t, self._b = t, b
        if max_nodes != self._max_nodes or b != self._node_rows():
            self._allocate(b, max_nodes)
        self.parent.zero_()
        self.depth.zero_()
        self.obs[:, 0] = torch.as_tensor(obs[:, t], device=self.device).long()
        self.reward_code[:, 0] = int(START_REWARD_CODE) if t == 0 else torch.as_tensor(rew[:, t - 1], device=self.device)
        if not self.model.is_transformer:
            h0 = self._root_h if self._root_h is not None else torch.zeros(
                self.model.config.gru_backbone_layers, b, self.model.config.gru_backbone_hidden, device=self.device)
            self.node_h[:, 0] = h0.permute(1, 0, 2).to(self.node_h.dtype)

    def _node_rows(self) -> int:
        return int(self.parent.shape[0]) if hasattr(self, "parent") else -1

    @property
    def node_bytes(self) -> int:
        """Bytes stored per tree node: parent, depth, observation and reward codes (int64), and the
        K/V of the node's token (Transformer) or the backbone's hidden state (GRU), float32."""
        cfg = self.model.config
        per = 8 * (3 + codec.OBS_DIM)
        if self.model.is_transformer:
            return per + 4 * cfg.n_layers * 2 * cfg.d_model
        return per + 4 * cfg.gru_backbone_layers * cfg.gru_backbone_hidden

    def _allocate(self, b: int, max_nodes: int) -> None:
        cfg = self.model.config
        dev = self.device
        self._max_nodes = max_nodes
        self.parent = torch.zeros(b, max_nodes, dtype=torch.long, device=dev)
        self.depth = torch.zeros(b, max_nodes, dtype=torch.long, device=dev)
        self.obs = torch.zeros(b, max_nodes, codec.OBS_DIM, dtype=torch.long, device=dev)
        self.reward_code = torch.zeros(b, max_nodes, dtype=torch.long, device=dev)
        dtype = torch.float32  # the model runs in float32 when planning; stored K/V stay exact
        if self.model.is_transformer:
            d_head = cfg.d_model // cfg.n_heads
            # K/V of the token that led to each node: [B, nodes, layers, 2 (k, v), heads, d_head]
            self.node_kv = torch.zeros(b, max_nodes, cfg.n_layers, 2, cfg.n_heads, d_head, dtype=dtype, device=dev)
        else:
            self.node_h = torch.zeros(b, max_nodes, cfg.gru_backbone_layers, cfg.gru_backbone_hidden, dtype=torch.float32, device=dev)

    # ---- expansion -----------------------------------------------------------------------

    @torch.no_grad()
    def expand(
        self,
        parents: np.ndarray,
        actions: np.ndarray,
        children: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        from alchemy_mbrl.model.world_model import GRUState, KVCache

        if self._real is None:
            raise RuntimeError("call set_roots before expand")
        b = self._b
        dev = self.device
        par = torch.as_tensor(np.asarray(parents, dtype=np.int64), device=dev)
        act = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=dev)
        ch_np = np.asarray(children, dtype=np.int64)
        if par.shape != (b,) or act.shape != (b,) or ch_np.ndim != 2 or ch_np.shape[0] != b:
            raise ValueError(f"expand: parents/actions must be [B={b}], children [B, K]; got {par.shape}, {act.shape}, {ch_np.shape}")
        if b and (int(act.min()) < 0 or int(act.max()) > 39):
            raise ValueError("expand: actions must be in 0..39")
        k = ch_np.shape[1]
        rows = torch.arange(b, device=dev)
        tok_o = self.obs[rows, par].unsqueeze(1)
        tok_r = self.reward_code[rows, par].unsqueeze(1)
        tok_a = act.unsqueeze(1)
        if self.model.is_transformer:
            depth = self.depth[rows, par]
            dmax = int(depth.max()) if b else 0
            past = self._root_kv
            if dmax > 0:
                path = torch.zeros(b, dmax, dtype=torch.long, device=dev)
                cur = par.clone()
                for i in range(dmax):
                    slot = depth - 1 - i  # a node at depth d sits at path index d - 1
                    ok = slot >= 0
                    path[rows[ok], slot[ok]] = cur[ok]
                    cur = torch.where(ok, self.parent[rows, cur], cur)
                kv = self.node_kv[rows[:, None], path]  # [B, D, L, 2, H, dh]
                kv = kv.permute(2, 3, 0, 4, 1, 5)  # [L, 2, B, H, D, dh]
                path_cache = KVCache(kv[:, 0], kv[:, 1], mask=torch.arange(dmax, device=dev)[None, :] < depth[:, None])
                past = path_cache if past is None else KVCache(past.k, past.v).append(path_cache)
            elif past is not None:
                past = KVCache(past.k, past.v)
            positions = (self._t + depth).clamp(max=self.max_len - 1).unsqueeze(1)
            feats, new = self.model.encode(tok_o, tok_r, tok_a, past=past, positions=positions)
            new_kv = torch.stack([new.k[:, :, :, 0], new.v[:, :, :, 0]], dim=1).permute(2, 0, 1, 3, 4)  # [B, L, 2, H, dh]
        else:
            h = self.node_h[rows, par].permute(1, 0, 2).contiguous()
            feats, st = self.model.encode(tok_o, tok_r, tok_a, past=GRUState(h))
            new_h = st.h.permute(1, 0, 2)
        u = rng.uniform(np.asarray(keys, dtype=np.uint64), (k, 1 + codec.OBS_DIM))
        s = self.model.sample_next(feats[:, -1], u)
        m = np.ones(b, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if m.any():
            mr = torch.as_tensor(np.nonzero(m)[0], device=dev)
            ch = torch.as_tensor(ch_np[m], device=dev)  # [M, K]
            if int(ch.min()) < 1 or int(ch.max()) >= self._max_nodes:
                raise ValueError(f"children ids must be in 1..{self._max_nodes - 1}")
            r2 = mr[:, None].expand(-1, k)
            self.parent[r2, ch] = par[mr, None].expand(-1, k)
            self.depth[r2, ch] = (self.depth[mr, par[mr]] + 1)[:, None].expand(-1, k)
            self.obs[r2, ch] = s.obs_codes[mr]
            self.reward_code[r2, ch] = s.reward_codes[mr]
            if self.model.is_transformer:
                self.node_kv[r2, ch] = new_kv[mr, None].expand(-1, k, -1, -1, -1, -1).to(self.node_kv.dtype)
            else:
                self.node_h[r2, ch] = new_h[mr, None].expand(-1, k, -1, -1).to(self.node_h.dtype)
        obs_out = s.obs_codes.cpu().numpy().astype(np.uint8)
        rewards = codec.decode_reward(s.reward_codes.cpu().numpy()).astype(np.float32)
        self.last_log_probs = s.log_probs.cpu().numpy()
        return obs_out, rewards
