"""The learned world model as a planner :class:`~alchemy_mbrl.planner.simulator.Simulator`.

Transformer backbone: a preallocated per-step K/V buffer ``[L, B, H, S_cap, d_head]`` (K and V).
  * Slots ``0..t-1`` hold the real tokens 0..t-1 ("root history"). :meth:`set_roots` writes only the
    real tokens that are new since its previous call, once per real step.
  * Expanding node p with action a evaluates one new token (obs_p, r_p, a) at position t + depth(p):
    the K/V of the tokens on the path root -> p are gathered from the node store into slots
    ``t .. t+D-1`` (D = deepest path of the batch; shorter paths are masked), the new token's K/V are
    written at slot ``t+D`` in place, and attention runs over the view ``[:t+D+1]``. Nothing is
    concatenated: an expansion at t = 199 touches the root once (to read it), not three times.
  * Node store: the K children of one expansion were all reached by the same token, so its K/V are
    stored ONCE per expansion (row e of ``node_kv [B, E, L, 2, H, d_head]``) and every node keeps the
    row of the token that led to it (``node_e``). This divides the memory by K
    (budget 10,000, B = 250, paper model: 7.7 GB in bf16 on CUDA, 15.4 GB in float32).
GRU backbone: the hidden state after the token that led to a node, again stored once per expansion.

On CUDA the model runs under autocast and the K/V are stored in the autocast dtype (bf16/fp16).
Tree topology (parent, depth, row) lives in NumPy: path walks are a few small NumPy ops per level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.planner.simulator import RootContext


def planning_memory_bytes(cfg, batch: int, budget: int, k: int = 3, kv_bytes: int = 2) -> dict[str, int]:
    """Device memory of :class:`LearnedSimulator`'s per-step state for one search of ``budget`` expansions.

    ``cfg``: the model's :class:`~alchemy_mbrl.model.config.ModelConfig`; ``kv_bytes``: bytes per stored
    K/V value (2 for the bf16/fp16 autocast dtype on CUDA, 4 for float32 on CPU). Excludes the model's
    weights and the transient activations of one expansion (~B*K rows), and the tree's NumPy arrays
    (host memory, :class:`~alchemy_mbrl.planner.tree_search.Tree`).
    """
    nodes = 1 + budget * k
    rows = 1 + budget  # node-store rows: the root + one per expansion
    if cfg.backbone == "transformer":
        per_token = cfg.n_layers * 2 * cfg.d_model
        store = rows * batch * per_token * kv_bytes
        step = batch * per_token * (cfg.max_len + 1) * kv_bytes
    else:
        store = rows * batch * cfg.gru_backbone_layers * cfg.gru_backbone_hidden * 4
        step = 0
    codes = nodes * batch * (codec.OBS_DIM + 1)  # uint8 observation and reward codes per node
    return {"node_store": store, "step_buffer": step, "node_codes": codes, "total": store + step + codes}


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
        self._t = 0
        self._kbuf: torch.Tensor | None = None  # [L, B, H, S_cap, dh] (Transformer)
        self._slot_rows = np.zeros((0, 0), dtype=np.int64)  # [B, S_cap] node-store row held by each path slot, -1: none
        #: keep path K/V in the buffer between expansions and rewrite only the slots that changed
        self.reuse_path_slots = True
        self._vbuf: torch.Tensor | None = None
        self._root_h: torch.Tensor | None = None  # [L, B, H] (GRU)
        self._n_rows = 1  # rows of the node store in use (row 0: the root)
        self.node_kv: torch.Tensor | None = None
        self.node_h: torch.Tensor | None = None
        if self.device.type == "cuda":
            from alchemy_mbrl.model.train import autocast_dtype

            self.kv_dtype = autocast_dtype(self.device, True) or torch.float32
        else:
            self.kv_dtype = torch.float32

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None) -> "LearnedSimulator":
        from alchemy_mbrl.model.checkpoint import load_model

        return cls(load_model(model_dir, device))

    def _autocast(self):
        if self.device.type == "cuda" and self.kv_dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.kv_dtype)
        return torch.autocast("cpu", enabled=False)

    @property
    def _root_kv(self):
        """The real tokens' K/V as a :class:`KVCache` (views of the step buffer)."""
        from alchemy_mbrl.model.world_model import KVCache

        if self._kbuf is None or self._t == 0:
            return None
        return KVCache(self._kbuf[:, :, :, : self._t], self._vbuf[:, :, :, : self._t])

    # ---- roots ---------------------------------------------------------------------------

    def _ensure_capacity(self, b: int, slots: int) -> None:
        """Step buffers for ``b`` rows holding at least ``slots`` tokens (grown, root slots kept)."""
        if self._kbuf is not None and self._kbuf.shape[1] == b and self._kbuf.shape[3] >= slots:
            return
        self._slot_rows = np.full((b, max(slots, self.max_len + 1)), -1, dtype=np.int64)
        cap = max(slots, self.max_len + 1)
        k, v = self.model.kv_buffers(b, cap, self.kv_dtype, self.device)
        if self._kbuf is not None and self._kbuf.shape[1] == b:
            keep = min(self._t, self._kbuf.shape[3])
            k[:, :, :, :keep] = self._kbuf[:, :, :, :keep]
            v[:, :, :, :keep] = self._vbuf[:, :, :, :keep]
        self._kbuf, self._vbuf = k, v

    @torch.no_grad()
    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        from alchemy_mbrl.model.world_model import START_REWARD_CODE, GRUState, KVCache

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
            self._root_h = None
        if self.model.is_transformer:
            self._t = done  # slots 0..done-1 are valid
            self._ensure_capacity(b, t + 1)
        if t > done:
            o = torch.as_tensor(obs[:, done:t], device=self.device).long()
            a = torch.as_tensor(act[:, done:t], device=self.device)
            prev = np.concatenate([np.full((b, 1), START_REWARD_CODE), rew[:, : t - 1]], axis=1)[:, done:t]
            p = torch.as_tensor(prev, device=self.device)
            with self._autocast():
                if self.model.is_transformer:
                    past = None if done == 0 else KVCache(self._kbuf[:, :, :, :done], self._vbuf[:, :, :, :done])
                    _, new = self.model.encode(o, p, a, past=past)
                    self._kbuf[:, :, :, done:t] = new.k
                    self._vbuf[:, :, :, done:t] = new.v
                else:
                    _, st = self.model.encode(o, p, a, past=None if self._root_h is None else GRUState(self._root_h))
                    self._root_h = st.h
        self._real = (obs.copy(), act.copy(), rew.copy())
        self._t, self._b = t, b
        if max_nodes != self._max_nodes or b != self._node_rows():
            self._allocate(b, max_nodes)
        self.parent[:, 0] = 0
        self.depth[:, 0] = 0
        self.node_e[:, 0] = 0
        self._n_rows = 1
        if self.model.is_transformer:
            self._slot_rows.fill(-1)  # node-store rows are reused from this step on: nothing in the buffer is valid
        self.obs[:, 0] = torch.as_tensor(obs[:, t], device=self.device).to(self.obs.dtype)
        self.reward_code[:, 0] = int(START_REWARD_CODE) if t == 0 else torch.as_tensor(rew[:, t - 1], device=self.device).to(self.reward_code.dtype)
        if not self.model.is_transformer:
            h0 = self._root_h if self._root_h is not None else torch.zeros(
                self.model.config.gru_backbone_layers, b, self.model.config.gru_backbone_hidden, device=self.device)
            self._ensure_rows(1)
            self.node_h[:, 0] = h0.permute(1, 0, 2).to(self.node_h.dtype)

    def _node_rows(self) -> int:
        return int(self.parent.shape[0]) if hasattr(self, "parent") else -1

    @property
    def node_bytes(self) -> int:
        """Bytes stored per tree node, an upper bound used by the planner's memory check: parent, depth,
        observation and reward codes, and the K/V of the node's token (Transformer) or the backbone's
        hidden state (GRU) in float32. The node store holds one K/V row per expansion (shared by its K
        children), so the real K/V part is about 1/K of this (:func:`planning_memory_bytes` is exact)."""
        cfg = self.model.config
        per = 8 * (3 + codec.OBS_DIM)
        if self.model.is_transformer:
            return per + 4 * cfg.n_layers * 2 * cfg.d_model
        return per + 4 * cfg.gru_backbone_layers * cfg.gru_backbone_hidden

    def _allocate(self, b: int, max_nodes: int) -> None:
        dev = self.device
        self._max_nodes = max_nodes
        self.parent = np.zeros((b, max_nodes), dtype=np.int32)
        self.depth = np.zeros((b, max_nodes), dtype=np.int32)
        self.node_e = np.zeros((b, max_nodes), dtype=np.int32)  # node-store row of the token that led to the node
        self.obs = torch.zeros(b, max_nodes, codec.OBS_DIM, dtype=torch.uint8, device=dev)
        self.reward_code = torch.zeros(b, max_nodes, dtype=torch.uint8, device=dev)
        self.node_kv = None
        self.node_h = None

    def _ensure_rows(self, rows: int, k: int = 1) -> None:
        """A node store with at least ``rows`` rows (allocated for the tree's worst case, grown if exceeded)."""
        cfg = self.model.config
        have = 0 if (self.node_kv if self.model.is_transformer else self.node_h) is None else \
            int((self.node_kv if self.model.is_transformer else self.node_h).shape[1])
        if have >= rows:
            return
        b = self._b
        want = max(rows, 1 + (self._max_nodes - 1 + k - 1) // max(k, 1))
        if self.model.is_transformer:
            new = torch.zeros(b, want, cfg.n_layers, 2, cfg.n_heads, cfg.d_model // cfg.n_heads,
                              dtype=self.kv_dtype, device=self.device)
            if have:
                new[:, :have] = self.node_kv
            self.node_kv = new
        else:
            new = torch.zeros(b, want, cfg.gru_backbone_layers, cfg.gru_backbone_hidden, dtype=torch.float32, device=self.device)
            if have:
                new[:, :have] = self.node_h
            self.node_h = new

    # ---- expansion -----------------------------------------------------------------------

    def _path_rows(self, par: np.ndarray, depth: np.ndarray, dmax: int) -> np.ndarray:
        """``[B, dmax]`` node-store rows of the tokens on each path root -> parent (0-padded)."""
        b = par.shape[0]
        bi = np.arange(b)
        out = np.zeros((b, dmax), dtype=np.int64)
        cur = par.astype(np.int64)
        for i in range(dmax):
            slot = depth - 1 - i  # a node at depth d sits at path index d - 1
            ok = slot >= 0
            out[bi[ok], slot[ok]] = self.node_e[bi[ok], cur[ok]]
            cur = np.where(ok, self.parent[bi, cur], cur)
        return out

    @torch.no_grad()
    def expand(
        self,
        parents: np.ndarray,
        actions: np.ndarray,
        children: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        from alchemy_mbrl.model.world_model import GRUState

        if self._real is None:
            raise RuntimeError("call set_roots before expand")
        b = self._b
        dev = self.device
        par_np = np.asarray(parents, dtype=np.int64)
        act_np = np.asarray(actions, dtype=np.int64)
        ch_np = np.asarray(children, dtype=np.int64)
        if par_np.shape != (b,) or act_np.shape != (b,) or ch_np.ndim != 2 or ch_np.shape[0] != b:
            raise ValueError(f"expand: parents/actions must be [B={b}], children [B, K]; got {par_np.shape}, {act_np.shape}, {ch_np.shape}")
        if b and (int(act_np.min()) < 0 or int(act_np.max()) > 39):
            raise ValueError("expand: actions must be in 0..39")
        k = ch_np.shape[1]
        m = np.ones(b, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if m.any() and (int(ch_np[m].min()) < 1 or int(ch_np[m].max()) >= self._max_nodes):
            raise ValueError(f"children ids must be in 1..{self._max_nodes - 1}")
        bi = np.arange(b)
        e = self._n_rows  # node-store row of this expansion's token
        self._ensure_rows(e + 1, k)
        par = torch.as_tensor(par_np, device=dev)
        tok_o = self.obs[par.new_tensor(bi), par].long()
        tok_r = self.reward_code[par.new_tensor(bi), par].long()
        tok_a = torch.as_tensor(act_np, device=dev)
        depth = self.depth[bi, par_np]
        with self._autocast():
            if self.model.is_transformer:
                t = self._t
                dmax = int(depth.max()) if b else 0
                slot = t + dmax
                self._ensure_capacity(b, slot + 1)
                attn_mask = None
                if dmax > 0:
                    path_e = self._path_rows(par_np, depth, dmax)
                    hidden = np.arange(dmax)[None, :] >= depth[:, None]  # padding of shorter paths
                    # write only the path slots whose content changed since the last expansion (consecutive
                    # selections share most of their path): _slot_rows[b, s] = node-store row held in slot s
                    held = self._slot_rows[:, t:slot]
                    if not self.reuse_path_slots:
                        held.fill(-1)
                    bs, js = np.nonzero((path_e != held) & ~hidden)
                    if len(bs):
                        flat = path_e[bs, js] + bs * self.node_kv.shape[1]
                        kv = self.node_kv.view(-1, *self.node_kv.shape[2:]).index_select(
                            0, torch.as_tensor(flat, device=dev))  # [n, L, 2, H, dh]
                        bt = torch.as_tensor(bs, device=dev)
                        st = torch.as_tensor(t + js, device=dev)
                        self._kbuf[:, bt, :, st] = kv[:, :, 0]
                        self._vbuf[:, bt, :, st] = kv[:, :, 1]
                        held[bs, js] = path_e[bs, js]
                    if hidden.any():
                        mk = np.zeros((b, slot + 1), dtype=np.float32)
                        mk[:, t:slot][hidden] = -np.inf
                        attn_mask = torch.as_tensor(mk, device=dev).to(self.kv_dtype).view(b, 1, 1, slot + 1)
                pos = np.minimum(t + depth, self.max_len - 1)
                positions = torch.as_tensor(pos, device=dev)
                feats = self.model.encode_step(tok_o, tok_r, tok_a, positions, self._kbuf, self._vbuf, slot, attn_mask)
                # this token's K/V -> row e of the node store (all rows: unmasked ones are never referenced)
                self.node_kv[:, e, :, 0] = self._kbuf[:, :, :, slot].transpose(0, 1)
                self.node_kv[:, e, :, 1] = self._vbuf[:, :, :, slot].transpose(0, 1)
                self._slot_rows[:, slot] = e  # the buffer slot now holds row e's K/V in every row
            else:
                h = self.node_h[par.new_tensor(bi), torch.as_tensor(self.node_e[bi, par_np], device=dev)]
                f3, st = self.model.encode(tok_o[:, None], tok_r[:, None], tok_a[:, None],
                                           past=GRUState(h.permute(1, 0, 2).contiguous()))
                feats = f3[:, -1]
                self.node_h[:, e] = st.h.permute(1, 0, 2).to(self.node_h.dtype)
            u = rng.uniform(np.asarray(keys, dtype=np.uint64), (k, 1 + codec.OBS_DIM))
            s = self.model.sample_next(feats.float(), u)
        self._n_rows = e + 1
        if m.any():
            mr_np = np.nonzero(m)[0]
            ch_m = ch_np[m]
            r2_np = np.broadcast_to(mr_np[:, None], ch_m.shape)
            self.parent[r2_np, ch_m] = par_np[mr_np, None]
            self.depth[r2_np, ch_m] = (depth[mr_np] + 1)[:, None]
            self.node_e[r2_np, ch_m] = e
            mr = torch.as_tensor(mr_np, device=dev)
            ch = torch.as_tensor(ch_m, device=dev)
            r2 = mr[:, None].expand(-1, k)
            self.obs[r2, ch] = s.obs_codes[mr].to(self.obs.dtype)
            self.reward_code[r2, ch] = s.reward_codes[mr].to(self.reward_code.dtype)
        obs_out = s.obs_codes.cpu().numpy().astype(np.uint8)
        rewards = codec.decode_reward(s.reward_codes.cpu().numpy()).astype(np.float32)
        self.last_log_probs = s.log_probs.cpu().numpy()
        return obs_out, rewards
