"""The planner's simulator with a perfect model: the exact Bayesian posterior over chemistries.

Each search's root posterior is filtered from the real history (:mod:`alchemy_mbrl.bayes`);
it never looks at the true chemistry or state. Outcomes of an action are sampled from the exact
predictive distribution, and every child's posterior is its parent's restricted to the
chemistries consistent with the sampled outcome.

Memory per node
---------------
A node always stores its observation codes (39 B), its step count (2 B), the id of the
constraint its transition imposed (4 B) and a pointer to its nearest ancestor that imposed one
(4 B): 49 bytes. The root posterior of each search is stored once, compressed to the W words
that are non-zero in it (posteriors only shrink below the root, so every node's posterior lives
in those words): W <= 432 (3.4 kB) after the first observation, typically a few words once the
potion and stone maps are known (see ``docs/bayes.md``).

A node's posterior is then either

* **stored** (8 W bytes per node) when all of them fit in ``store_bytes`` (default 64 MiB;
  e.g. B = 50 searches x 3,751 nodes x W <= 43 words), so expanding a node reads it directly; or
* **recomputed** on expansion as the root posterior AND the constraint sets on the node's path
  (one gathered row per *informative* step; uninformative steps are skipped by the ancestor
  pointers), which needs no per-node posterior memory at all.

Both give bit-identical posteriors; the choice is made per ``set_roots`` call.
"""

from __future__ import annotations

import numpy as np

from alchemy_mbrl import bayes
from alchemy_mbrl.env import codec
from alchemy_mbrl.env.alchemy import OBS_DIM
from alchemy_mbrl.planner.simulator import RootContext


class BayesSimulator:
    """Exact Bayesian simulator (``name = "bayes"``) implementing :class:`~alchemy_mbrl.planner.simulator.Simulator`."""

    name = "bayes"

    def __init__(self, store_bytes: int = 64 * 2**20) -> None:
        """``store_bytes``: budget for storing every node's posterior; above it, posteriors are recomputed."""
        self.store_bytes = int(store_bytes)
        self.stored = False
        self.node_post = np.zeros((0, 0, 1), dtype=np.uint64)
        self._hist_obs: np.ndarray | None = None
        self._hist_actions: np.ndarray | None = None
        self._hist_rewards: np.ndarray | None = None
        self._filter: bayes.BayesFilter | None = None
        self.root_post = np.zeros((0, 1), dtype=np.uint64)
        self.cols = np.zeros((0, 1), dtype=np.int64)
        self.node_obs = np.zeros((0, 0, OBS_DIM), dtype=np.uint8)
        self.node_t = np.zeros((0, 0), dtype=np.int16)
        self.node_cid = np.zeros((0, 0), dtype=np.int32)
        self.node_up = np.zeros((0, 0), dtype=np.int32)

    # --- roots ---------------------------------------------------------------------------
    def set_roots(self, context: RootContext, max_nodes: int) -> None:
        """Filter the real histories into root posteriors (incrementally when the history only grew)."""
        obs = np.asarray(context.obs_codes, dtype=np.uint8)
        actions = np.asarray(context.actions, dtype=np.int64)
        rewards = np.asarray(context.reward_codes, dtype=np.int64)
        b, t = obs.shape[0], int(context.t)
        if obs.shape != (b, t + 1, OBS_DIM) or actions.shape != (b, t) or rewards.shape != (b, t):
            raise ValueError(
                f"RootContext shapes inconsistent with t={t}: obs {obs.shape}, actions {actions.shape}, rewards {rewards.shape}"
            )
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        filt = self._filter
        if not self._extends_previous(obs, actions, rewards):
            filt = bayes.BayesFilter(obs[:, 0])
        assert filt is not None
        for s in range(filt.t, t):
            lp = filt.update(actions[:, s], rewards[:, s], obs[:, s + 1])
            if not np.isfinite(lp).all():
                bad = int(np.nonzero(~np.isfinite(lp))[0][0])
                raise ValueError(f"search {bad}: the real history is impossible under every chemistry (step {s + 1})")
        self._filter = filt
        # copies: the caller may reuse its buffers for other episodes
        self._hist_obs, self._hist_actions, self._hist_rewards = obs.copy(), actions.copy(), rewards.copy()
        self.root_post, self.cols = compress(filt.post)
        if self.node_obs.shape[:2] != (b, max_nodes):
            self.node_obs = np.zeros((b, max_nodes, OBS_DIM), dtype=np.uint8)
            self.node_t = np.zeros((b, max_nodes), dtype=np.int16)
            self.node_cid = np.full((b, max_nodes), bayes.NO_CONSTRAINT, dtype=np.int32)
            self.node_up = np.full((b, max_nodes), -1, dtype=np.int32)
        w = self.cols.shape[1]
        self.stored = b * max_nodes * w * 8 <= self.store_bytes
        if self.stored:
            if self.node_post.shape != (b, max_nodes, w):
                self.node_post = np.zeros((b, max_nodes, w), dtype=np.uint64)
            self.node_post[:, 0] = self.root_post
        else:
            self.node_post = np.zeros((0, 0, 1), dtype=np.uint64)
        self.node_obs[:, 0] = obs[:, -1]
        self.node_t[:, 0] = t
        self.node_cid[:, 0] = bayes.NO_CONSTRAINT
        self.node_up[:, 0] = -1

    def _extends_previous(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> bool:
        if self._filter is None or self._hist_obs is None or self._hist_actions is None or self._hist_rewards is None:
            return False
        t0 = self._hist_actions.shape[1]
        return (
            obs.shape[0] == self._hist_obs.shape[0]
            and actions.shape[1] >= t0
            and np.array_equal(obs[:, : t0 + 1], self._hist_obs)
            and np.array_equal(actions[:, :t0], self._hist_actions)
            and np.array_equal(rewards[:, :t0], self._hist_rewards)
        )

    # --- nodes ---------------------------------------------------------------------------
    def node_posterior(self, nodes: np.ndarray) -> np.ndarray:
        """``[B, W]`` compressed posterior words (columns ``self.cols``) of decision nodes ``nodes [B]``."""
        nodes = np.asarray(nodes, dtype=np.int64)
        rows = np.arange(len(nodes))
        if self.stored:
            return self.node_post[rows, nodes]
        post = self.root_post.copy()
        cur = np.where(self.node_cid[rows, nodes] >= 0, nodes, self.node_up[rows, nodes]).astype(np.int64)
        while True:
            idx = np.nonzero(cur >= 0)[0]
            if not len(idx):
                return post
            c = self.node_cid[idx, cur[idx]]
            post[idx] &= bayes.constraint_words(c, self.cols[idx])
            cur[idx] = self.node_up[idx, cur[idx]]

    def node_posterior_full(self, nodes: np.ndarray) -> np.ndarray:
        """``[B, 1152]`` uncompressed posterior words of decision nodes ``nodes [B]`` (for inspection)."""
        return decompress(self.node_posterior(nodes), self.cols)

    def expand(
        self,
        parents: np.ndarray,
        actions: np.ndarray,
        children: np.ndarray,
        keys: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample K outcomes of ``actions`` from ``parents`` with the exact predictive distribution.

        Nodes at the end of the episode (t = 200) have no further dynamics: expanding them
        returns the same observation with reward 0.
        """
        b = self.root_post.shape[0]
        parents = np.asarray(parents, dtype=np.int64)
        children = np.asarray(children, dtype=np.int64)
        actions = np.asarray(actions, dtype=np.int64)
        if parents.shape != (b,) or actions.shape != (b,) or children.ndim != 2 or children.shape[0] != b:
            raise ValueError(f"expand: expected parents [{b}], actions [{b}], children [{b}, K]; got {parents.shape}, {actions.shape}, {children.shape}")
        live = np.ones(b, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        parents = np.where(live, parents, 0)
        actions = np.where(live, actions, 0)
        rows = np.arange(b)
        post = self.node_posterior(parents)
        obs = self.node_obs[rows, parents]
        t = self.node_t[rows, parents].astype(np.int64)
        pred = bayes.predictive(post, obs, actions, t, cols=self.cols)
        k = children.shape[1]
        reward_codes, child_obs, cid = pred.sample(keys, k)
        # store the children of the live searches
        lb, lk = np.nonzero(live[:, None] & np.ones((1, k), dtype=bool))
        ch = children[lb, lk]
        par = parents[lb]
        self.node_obs[lb, ch] = child_obs[lb, lk]
        self.node_t[lb, ch] = t[lb] + 1
        self.node_cid[lb, ch] = cid[lb, lk]
        self.node_up[lb, ch] = np.where(self.node_cid[lb, par] >= 0, par, self.node_up[lb, par])
        if self.stored:
            c = cid[lb, lk]
            rows_ = bayes.constraint_words(np.maximum(c, 0)[:, None], self.cols[lb])[:, 0]
            self.node_post[lb, ch] = np.where((c >= 0)[:, None], post[lb] & rows_, post[lb])
        return child_obs, codec.decode_reward(reward_codes).astype(np.float32)


def compress(post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the words that are non-zero in some row: ``(words [B, W], cols [B, W])``, padded with ``PAD_WORD``."""
    nz = post != 0
    w = max(int(nz.sum(1).max(initial=0)), 1)
    order = np.argsort(~nz, axis=1, kind="stable")[:, :w]
    keep = np.take_along_axis(nz, order, 1)
    cols = np.where(keep, order, bayes.PAD_WORD).astype(np.int64)
    words = np.where(keep, np.take_along_axis(post, order, 1), np.uint64(0))
    return words, cols


def decompress(words: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``[B, 1152]`` full posterior words from compressed ``(words, cols)``."""
    full = np.zeros((len(words), bayes.NUM_WORDS + 1), dtype=np.uint64)
    full[np.arange(len(words))[:, None], cols] = words
    return full[:, : bayes.NUM_WORDS]
