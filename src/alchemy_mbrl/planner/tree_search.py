"""Algorithm 1 of Pinon et al. (2022): tree search with chance nodes, batched over B searches.

B independent searches (one per real episode) advance in lockstep. Each of the
``budget`` iterations ("expansions") of a search does

* **Select**: from the root decision node, take ``a* = argmax_a Q(a) + U(a)`` with
  ``U(a) = (1/|A|) * sqrt(sum_b N(b)) / (1 + N(a)) * (C1 + log((C2 + 1 + sum_b N(b)) / C2))``
  (:func:`selection_scores`); follow the chance node of ``a*`` if it exists and sample one of
  its children with probability proportional to its weight; stop at a decision node that has
  no chance node for ``a*``, or at a decision node at the end of the episode (t = 200, terminal).
* **Expand**: ONE batched simulator call samples K outcomes (observation, reward) for every
  search; identical outcomes are merged, their counts become the children's weights
  (duplicates keep weight 0 and are never selected); the chance node's reward is the
  weighted mean of the children's rewards.
* **Backup**: ``G <- r_chance + gamma * G`` along the path from the leaf to the root
  (``G = 0`` below the leaf: the value function is zero everywhere), with running means
  ``Q(a) <- (Q(a) N(a) + G) / (N(a) + 1)``, ``N(a) <- N(a) + 1``.

After the last expansion the action probabilities are ``N_root(a)^(1/T) / sum_b N_root(b)^(1/T)``
and the action is sampled from them (:func:`action_probabilities`).

The tree lives in preallocated NumPy arrays, batch first (like DeepMind's mctx). Decision
node ids are ``0..max_nodes-1`` with ``max_nodes = 1 + budget * K``: the K children of the
i-th expansion are preassigned the ids ``1 + i*K .. i*K + K`` and chance node i is the
i-th expansion. Per-action statistics (N, Q, chance child) are stored only for decision
nodes that have been expanded from, in "stat slots" (at most ``budget`` of them; slot 0
is a permanently empty row standing for "never expanded"), which divides the memory by K.

Conventions:

* **Ties** in the selection argmax go to the **lowest action index** (``np.argmax``). At a
  fresh node every score is 0, so action 0 (the no-op) is tried first.
* **Temperature** ``T = 0`` (or the limit T -> 0) gives the argmax of the root visit counts,
  ties to the lowest index; ``T -> inf`` gives uniform over visited actions. Actions never
  visited at the root get probability 0.
* **Randomness**: every random choice of search b is a function of ``keys[b]`` alone
  (:mod:`alchemy_mbrl.rng`), so batched and one-at-a-time searches agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alchemy_mbrl import rng
from alchemy_mbrl.env.alchemy import EPISODE_STEPS, NUM_ACTIONS, OBS_DIM
from alchemy_mbrl.env.constants import STEPS_PER_TRIAL
from alchemy_mbrl.planner import tree_numba
from alchemy_mbrl.planner.params import PlannerParams
from alchemy_mbrl.planner.simulator import RootContext, Simulator

# Stream tags folded into a search's key for its different random choices.
_TAG_EXPAND = 0
_TAG_SELECT = 1
_TAG_ACT = 2


def selection_scores(
    q: np.ndarray, n: np.ndarray, n_sum: np.ndarray, c1: float, c2: float
) -> np.ndarray:
    """Algorithm 1's selection scores ``Q(a) + U(a)`` for a batch of decision nodes.

    Args:
        q: ``[..., A]`` Q-value estimates.
        n: ``[..., A]`` visit counts N(a).
        n_sum: ``[...]`` sum over actions of N (passed in because the tree keeps it).
        c1, c2: exploration constants C1, C2.

    Returns:
        ``[..., A]`` float64 scores; the selected action is their argmax (ties: lowest index).
    """
    num_actions = q.shape[-1]
    total = np.asarray(n_sum, dtype=np.float64)[..., None]
    weight = (c1 + np.log((c2 + 1.0 + total) / c2)) * np.sqrt(total) / num_actions
    return q + weight / (1.0 + n)


def normalise_q(q: np.ndarray, n: np.ndarray, q_min: np.ndarray, q_max: np.ndarray,
                unvisited: str = "bottom") -> np.ndarray:
    """MuZero's min-max normalisation of Q to [0, 1] by the range backed up so far in each tree.

    ``q, n [B, A]``, ``q_min, q_max [B]``; trees whose range is still empty keep their raw Q.
    Unvisited actions score 0, the bottom of the range, as in MuZero's pseudocode (``"bottom"``),
    or the normalised value of a zero return (``"zero"``; 0 while the range is empty).
    """
    q0 = _minmax(np.zeros((len(q), 1)), q_min, q_max) if unvisited == "zero" else 0.0
    return np.where(n > 0, _minmax(q, q_min, q_max), q0)


def _minmax(x: np.ndarray, q_min: np.ndarray, q_max: np.ndarray) -> np.ndarray:
    """``x [B, ...]`` mapped to [0, 1] by each tree's range ``q_min, q_max [B]``; raw where the range is empty."""
    span = (q_max - q_min)[:, None]
    ok = np.isfinite(span) & (span > 0)
    return np.where(ok, (x - q_min[:, None]) / np.where(ok, span, 1.0), x)


def action_probabilities(n_root: np.ndarray, temperature: float) -> np.ndarray:
    """``N_root(a)^(1/T) / sum_b N_root(b)^(1/T)`` for ``n_root [..., A]``; T = 0 is the argmax.

    Computed in log space so that small temperatures do not overflow. Rows with no visits
    at all (cannot happen after a search) get a uniform distribution.
    """
    n = np.asarray(n_root, dtype=np.float64)
    if temperature == 0.0:
        probs = np.zeros_like(n)
        np.put_along_axis(probs, np.argmax(n, axis=-1)[..., None], 1.0, axis=-1)
    else:
        with np.errstate(divide="ignore"):
            logits = np.log(n) / temperature
        top = logits.max(axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        probs = np.exp(logits - top)
    total = probs.sum(axis=-1, keepdims=True)
    uniform = np.full_like(probs, 1.0 / n.shape[-1])
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), uniform)


@dataclass
class Tree:
    """B search trees in preallocated arrays (batch first).

    Decision nodes (``M = 1 + budget*K`` ids, node 0 = root):
        node_t ``[B, M]`` int32: environment step count of the node (root: ``RootContext.t``).
        slot ``[B, M]`` int32: row of the node's per-action statistics, 0 = never expanded.
    Per-action statistics (``S = budget + 1`` slots; slot 0 stays all zero / -1):
        visits ``[B, S, A]`` int32 (N), value ``[B, S, A]`` float64 (Q),
        visits_sum ``[B, S]`` int64 (sum over actions of N),
        child_chance ``[B, S, A]`` int32: chance-node id of (node, action), -1 if none.
    Chance nodes (``C = budget`` ids; chance node i is created by expansion i):
        chance_children ``[B, C, K]`` int32 decision-node ids,
        chance_weight ``[B, C, K]`` int32 merged-sample counts (0 for merged duplicates),
        chance_reward ``[B, C]`` float64 weighted mean reward of the branches.
    node_reward ``[B, M]`` float64: the (scaled) reward of the branch that created each decision node.
    Bookkeeping: ``next_slot [B]`` int32, ``num_expansions`` (int, lockstep);
        ``q_min, q_max [B]``: smallest and largest Q backed up so far in each tree (for min-max normalisation).
    """

    node_t: np.ndarray
    slot: np.ndarray
    visits: np.ndarray
    value: np.ndarray
    visits_sum: np.ndarray
    child_chance: np.ndarray
    chance_children: np.ndarray
    chance_weight: np.ndarray
    chance_reward: np.ndarray
    next_slot: np.ndarray
    q_min: np.ndarray
    q_max: np.ndarray
    node_reward: np.ndarray
    num_expansions: int = 0

    @classmethod
    def allocate(cls, batch_size: int, budget: int, k: int, num_actions: int = NUM_ACTIONS) -> "Tree":
        """Empty trees for ``batch_size`` searches of ``budget`` expansions with K samples each."""
        b, m, s = batch_size, 1 + budget * k, budget + 1
        return cls(
            node_t=np.zeros((b, m), dtype=np.int32),
            slot=np.zeros((b, m), dtype=np.int32),
            visits=np.zeros((b, s, num_actions), dtype=np.int32),
            value=np.zeros((b, s, num_actions), dtype=np.float64),
            visits_sum=np.zeros((b, s), dtype=np.int64),
            child_chance=np.full((b, s, num_actions), -1, dtype=np.int32),
            chance_children=np.zeros((b, budget, k), dtype=np.int32),
            chance_weight=np.zeros((b, budget, k), dtype=np.int32),
            chance_reward=np.zeros((b, budget), dtype=np.float64),
            next_slot=np.ones(b, dtype=np.int32),
            q_min=np.full(b, np.inf),
            q_max=np.full(b, -np.inf),
            node_reward=np.zeros((b, m), dtype=np.float64),
        )

    @property
    def batch_size(self) -> int:
        return int(self.node_t.shape[0])

    @property
    def max_nodes(self) -> int:
        return int(self.node_t.shape[1])

    @property
    def budget(self) -> int:
        return int(self.chance_reward.shape[1])

    @property
    def k(self) -> int:
        return int(self.chance_children.shape[2])

    def reset(self, root_t: np.ndarray | int) -> None:
        """Drop every node but the roots, whose step count becomes ``root_t``."""
        self.node_t[:, 0] = root_t
        self.slot.fill(0)
        self.visits.fill(0)
        self.value.fill(0.0)
        self.visits_sum.fill(0)
        self.child_chance.fill(-1)
        self.chance_weight.fill(0)
        self.chance_reward.fill(0.0)
        self.next_slot.fill(1)
        self.q_min.fill(np.inf)
        self.q_max.fill(-np.inf)
        self.node_reward.fill(0.0)
        self.num_expansions = 0

    def root_visits(self) -> np.ndarray:
        """``[B, A]`` N_root(a)."""
        b = np.arange(self.batch_size)
        return self.visits[b, self.slot[:, 0]]

    def root_values(self) -> np.ndarray:
        """``[B, A]`` Q_root(a) (0 for unvisited actions)."""
        b = np.arange(self.batch_size)
        return self.value[b, self.slot[:, 0]]


@dataclass
class Path:
    """The decision nodes and actions a selection went through, ``[B, D]`` (D = deepest path + 1).

    Level d of search b is valid when ``valid[b, d]``: decision node ``nodes[b, d]`` took
    ``actions[b, d]`` into chance node ``chances[b, d]`` (at the leaf level: the chance node
    the expansion creates, filled in by :func:`expand`). A path ending at a terminal node has
    no valid level for it. ``leaf_node/leaf_action/leaf_depth [B]`` describe where selection stopped,
    ``terminal [B]`` whether it stopped at the end of the episode (nothing to expand).
    """

    nodes: np.ndarray
    actions: np.ndarray
    chances: np.ndarray
    valid: np.ndarray
    leaf_node: np.ndarray
    leaf_action: np.ndarray
    leaf_depth: np.ndarray
    terminal: np.ndarray


def _unvisited_q(q: np.ndarray, n: np.ndarray, n_sum: np.ndarray, q_min: np.ndarray, q_max: np.ndarray,
                 params: PlannerParams) -> np.ndarray:
    """``[B, A]`` Q as the selection sees it: normalised under ``minmax``, and the reading ``unvisited_q``
    for actions never tried (see :data:`alchemy_mbrl.planner.params.READINGS`)."""
    if params.q_normalisation == "minmax" and params.unvisited_q != "parent":
        return normalise_q(q, n, q_min, q_max, params.unvisited_q)
    if params.unvisited_q == "zero":
        q0 = np.zeros((len(q), 1))
    elif params.unvisited_q == "bottom":
        q0 = np.where(np.isfinite(q_min), q_min, 0.0)[:, None]
    else:
        q0 = np.where(n_sum > 0, (n * q).sum(axis=1) / np.maximum(n_sum, 1), 0.0)[:, None]
        if params.q_normalisation == "minmax":
            q, q0 = _minmax(q, q_min, q_max), _minmax(q0, q_min, q_max)
    return np.where(n > 0, q, q0)


def _break_ties(scores: np.ndarray, n: np.ndarray, tie_break: str, keys: np.ndarray) -> np.ndarray:
    """``[B]`` the argmax of ``scores [B, A]`` with the reading ``tie_break``; ``keys [B]`` draw the random ones."""
    if tie_break == "lowest":
        return np.argmax(scores, axis=1)
    if tie_break == "highest":
        return scores.shape[1] - 1 - np.argmax(scores[:, ::-1], axis=1)
    # "random": uniformly among the tied actions; "untried": among the untried ones, the formula (lowest
    # index on ties) where every action has been tried
    candidates = (n == 0) if tie_break == "untried" else scores == scores.max(axis=1, keepdims=True)
    m = candidates.sum(axis=1)
    pick = np.minimum((rng.uniform(keys) * m).astype(np.int64), m - 1)
    chosen = np.argmax(candidates & (np.cumsum(candidates, axis=1) == (pick + 1)[:, None]), axis=1)
    return np.where(m > 0, chosen, np.argmax(scores, axis=1))


def select(tree: Tree, params: PlannerParams, keys: np.ndarray, horizon: int = EPISODE_STEPS) -> Path:
    """Selection for all B searches (vectorised over B, a Python loop over depth).

    ``keys [B]`` are this iteration's selection keys; the chance branch at depth d of search b
    is drawn with ``rng.fold_in(keys[b], d)``. Decision nodes with ``node_t >= horizon`` are terminal.
    """
    bsz = tree.batch_size
    bi = np.arange(bsz)
    node = np.zeros(bsz, dtype=np.int64)
    active = np.ones(bsz, dtype=bool)
    leaf_node = np.zeros(bsz, dtype=np.int64)
    leaf_action = np.zeros(bsz, dtype=np.int64)
    leaf_depth = np.zeros(bsz, dtype=np.int64)
    terminal = np.zeros(bsz, dtype=bool)
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    depth = 0
    while True:
        s = tree.slot[bi, node]
        n = tree.visits[bi, s]
        n_sum = tree.visits_sum[bi, s]
        q = _unvisited_q(tree.value[bi, s], n, n_sum, tree.q_min, tree.q_max, params)
        count = n_sum + 1 if (params.exploration_count == "node" and depth > 0) else n_sum
        scores = selection_scores(q, n, count, params.c1, params.c2)
        action = _break_ties(scores, n, params.tie_break, rng.fold_in(rng.fold_in(keys, depth), tree_numba.TIE_SALT))
        is_terminal = tree.node_t[bi, node] >= horizon
        chance = tree.child_chance[bi, s, action].astype(np.int64)
        stop = active & (is_terminal | (chance < 0))
        leaf_node[stop] = node[stop]
        leaf_action[stop] = action[stop]
        leaf_depth[stop] = depth
        terminal[stop] = is_terminal[stop]
        go_on = active & ~is_terminal & (chance >= 0)
        levels.append((node, action, np.where(go_on, chance, -1), active & ~is_terminal))
        if not go_on.any():
            break
        c = np.maximum(chance, 0)
        branch = rng.categorical(rng.fold_in(keys, depth), tree.chance_weight[bi, c])
        node = np.where(go_on, tree.chance_children[bi, c, branch].astype(np.int64), node)
        active = go_on
        depth += 1
    return Path(
        nodes=np.stack([lv[0] for lv in levels], axis=1),
        actions=np.stack([lv[1] for lv in levels], axis=1),
        chances=np.stack([lv[2] for lv in levels], axis=1),
        valid=np.stack([lv[3] for lv in levels], axis=1),
        leaf_node=leaf_node,
        leaf_action=leaf_action,
        leaf_depth=leaf_depth,
        terminal=terminal,
    )


def merge_samples(obs_codes: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Weights ``[B, K]`` int32 of K samples after merging identical (observation, reward) pairs.

    The first occurrence of each distinct outcome gets the number of samples equal to it;
    later duplicates get 0. Weights sum to K in every row, so the weighted empirical
    distribution is exactly the empirical distribution of the K samples (no bias).
    """
    o = np.asarray(obs_codes)
    r = np.asarray(rewards)
    k = o.shape[1]
    same = (o[:, :, None, :] == o[:, None, :, :]).all(axis=-1) & (r[:, :, None] == r[:, None, :])  # [B, K, K]
    first = np.argmax(same, axis=2)  # index of the first sample equal to sample k (<= k)
    return (first[:, :, None] == np.arange(k)).sum(axis=1).astype(np.int32)


def expand(tree: Tree, simulator: Simulator, path: Path, keys: np.ndarray, reward_scale: float = 1.0) -> None:
    """Create chance node ``tree.num_expansions`` under every non-terminal leaf: one simulator call.

    ``keys [B]`` are this iteration's expansion keys (passed to the simulator); the tree stores
    rewards multiplied by ``reward_scale`` (:attr:`PlannerParams.reward_scale`).
    """
    bsz, k = tree.batch_size, tree.k
    i = tree.num_expansions
    if i >= tree.budget:
        raise RuntimeError(f"the tree holds {tree.budget} expansions; reset it before searching again")
    bi = np.arange(bsz)
    grow = ~path.terminal
    children = np.broadcast_to(1 + i * k + np.arange(k, dtype=np.int64), (bsz, k))
    obs, rewards = simulator.expand(path.leaf_node, path.leaf_action, children, keys, grow)
    rewards = np.asarray(rewards, dtype=np.float64)
    weight = merge_samples(obs, rewards)
    rewards = rewards * reward_scale
    weight[~grow] = 0
    tree.chance_children[:, i] = children
    tree.chance_weight[:, i] = weight
    tree.chance_reward[:, i] = (weight * rewards).sum(axis=1) / np.maximum(weight.sum(axis=1), 1)
    tree.node_t[:, children[0]] = (tree.node_t[bi, path.leaf_node] + 1)[:, None]
    tree.node_reward[bi[:, None], children] = rewards
    # give the leaf a stat slot if it has none yet, then hang the chance node under (leaf, a*)
    g = bi[grow]
    leaf = path.leaf_node[grow]
    fresh = tree.slot[g, leaf] == 0
    tree.slot[g[fresh], leaf[fresh]] = tree.next_slot[g[fresh]]
    tree.next_slot[g[fresh]] += 1
    tree.child_chance[g, tree.slot[g, leaf], path.leaf_action[grow]] = i
    path.chances[g, path.leaf_depth[grow]] = i
    tree.num_expansions = i + 1


def backup(tree: Tree, path: Path, gamma: float, backup_reward: str = "chance_mean", discount: str = "step") -> None:
    """Backup along every path: ``G <- r_chance + gamma*G`` from the leaf up, running-mean Q, N += 1.

    ``G`` starts at 0 below the leaf (zero value function; a terminal leaf contributes nothing
    of its own). Vectorised over B, a Python loop over depth. ``backup_reward = "branch"`` backs up
    the reward of the branch taken above the new chance node; ``discount = "trial"`` applies gamma only
    where a step ends a trial (the readings of :data:`alchemy_mbrl.planner.params.READINGS`).
    """
    bi = np.arange(tree.batch_size)
    g_return = np.zeros(tree.batch_size, dtype=np.float64)
    depth = path.nodes.shape[1]
    for d in range(depth - 1, -1, -1):
        v = path.valid[:, d]
        if not v.any():
            continue
        r = tree.chance_reward[bi, np.maximum(path.chances[:, d], 0)]
        if backup_reward == "branch" and d + 1 < depth:
            upper = d < path.leaf_depth
            r = np.where(upper, tree.node_reward[bi, path.nodes[:, d + 1]], r)
        g = gamma
        if discount == "trial":
            g = np.where((tree.node_t[bi, path.nodes[:, d]] + 1) % STEPS_PER_TRIAL == 0, gamma, 1.0)
        g_return = np.where(v, r + g * g_return, g_return)
        b = bi[v]
        s = tree.slot[b, path.nodes[v, d]]
        a = path.actions[v, d]
        n = tree.visits[b, s, a]
        q_new = (tree.value[b, s, a] * n + g_return[v]) / (n + 1)
        tree.value[b, s, a] = q_new
        tree.q_min[b] = np.minimum(tree.q_min[b], q_new)
        tree.q_max[b] = np.maximum(tree.q_max[b], q_new)
        tree.visits[b, s, a] = n + 1
        tree.visits_sum[b, s] += 1


def _weight_table(budget: int, c1: float, c2: float, num_actions: int) -> np.ndarray:
    """``U``'s numerator for every possible ``sum_b N(b)`` (0..budget), computed by the NumPy expression
    of :func:`selection_scores` itself, so that the compiled selection is bit-identical to it."""
    total = np.arange(budget + 2, dtype=np.float64)[:, None]
    return ((c1 + np.log((c2 + 1.0 + total) / c2)) * np.sqrt(total) / num_actions)[:, 0].copy()


def _select_compiled(tree: Tree, params: PlannerParams, keys: np.ndarray, horizon: int, table: np.ndarray,
                     max_depth: int) -> Path:
    """:func:`select` through :func:`tree_numba.select_kernel` (same :class:`Path`)."""
    out = tree_numba.select_kernel(
        tree.slot, tree.value, tree.visits, tree.visits_sum, tree.child_chance, tree.chance_children,
        tree.chance_weight, tree.node_t, tree.q_min, tree.q_max, np.asarray(keys, dtype=np.uint64), table,
        params.q_normalisation == "minmax", int(horizon), int(max_depth),
        tree_numba.UNVISITED_CODES[params.unvisited_q], tree_numba.TIE_CODES[params.tie_break],
        params.exploration_count == "node")
    return Path(*out)


def _expand_compiled(tree: Tree, simulator: Simulator, path: Path, keys: np.ndarray, reward_scale: float) -> None:
    """:func:`expand` with its bookkeeping (merge, chance node, slots) in :func:`tree_numba.expand_kernel`."""
    bsz, k = tree.batch_size, tree.k
    i = tree.num_expansions
    if i >= tree.budget:
        raise RuntimeError(f"the tree holds {tree.budget} expansions; reset it before searching again")
    grow = ~path.terminal
    children = np.ascontiguousarray(np.broadcast_to(1 + i * k + np.arange(k, dtype=np.int64), (bsz, k)))
    obs, rewards = simulator.expand(path.leaf_node, path.leaf_action, children, keys, grow)
    tree_numba.expand_kernel(
        np.ascontiguousarray(obs), np.ascontiguousarray(rewards, dtype=np.float64), grow, children, path.leaf_node,
        path.leaf_action, path.leaf_depth, path.chances, i, float(reward_scale), tree.chance_children,
        tree.chance_weight, tree.chance_reward, tree.node_t, tree.slot, tree.next_slot, tree.child_chance,
        tree.node_reward)
    tree.num_expansions = i + 1


@dataclass
class SearchResult:
    """Outcome of B searches: the sampled actions ``[B]``, the action probabilities ``[B, A]``,
    and the root statistics N ``[B, A]``, Q ``[B, A]`` (Q in units of ``reward_scale`` rewards)."""

    actions: np.ndarray
    probabilities: np.ndarray
    root_visits: np.ndarray
    root_values: np.ndarray


def available_memory_bytes() -> int:
    """Memory this process may still allocate: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the
    physical memory; ``ALCHEMY_MAX_SEARCH_BYTES`` overrides it (for tests, or to leave room for others)."""
    import os

    override = os.environ.get("ALCHEMY_MAX_SEARCH_BYTES")
    if override:
        return int(override)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


#: Fraction of the available memory the search trees of one evaluation may take.
MEMORY_FRACTION = 0.8


def search_bytes(budget: int, k: int, node_bytes: int = 0, num_actions: int = NUM_ACTIONS) -> int:
    """Bytes of the preallocated arrays of ONE search (:meth:`Tree.allocate`) plus the simulator's
    ``node_bytes`` per decision node: ``(1 + budget*K)`` nodes, ``budget + 1`` statistic slots of
    ``num_actions`` actions, ``budget`` chance nodes of K children; plus the transient K x K x 40
    boolean comparison of :func:`merge_samples` at every expansion (what dominates for a large K)."""
    nodes = 1 + budget * k
    slot = num_actions * (4 + 8 + 4) + 8  # visits int32, value float64, child_chance int32; visits_sum int64
    merge = k * k * (OBS_DIM + 2)
    return nodes * (4 + 4 + 8 + node_bytes) + (budget + 1) * slot + budget * (k * 8 + 8) + merge


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**27 else f"{n / 2**20:.3g} MiB"


class TreeSearch:
    """Algorithm 1 over any :class:`~alchemy_mbrl.planner.simulator.Simulator`, B searches in lockstep.

    Example::

        search = TreeSearch(OracleSimulator(), budget=100)
        result = search.run(context, keys)     # one real step of B episodes
        env.step(result.actions)
    """

    def __init__(
        self,
        simulator: Simulator,
        budget: int,
        params: PlannerParams | None = None,
        horizon: int = EPISODE_STEPS,
        num_actions: int = NUM_ACTIONS,
    ) -> None:
        if int(budget) != budget or budget < 1:
            raise ValueError(f"budget (expansions per step) must be an integer >= 1, got {budget}")
        self.simulator = simulator
        self.budget = int(budget)
        self.params = params or PlannerParams()
        self.horizon = int(horizon)
        self.num_actions = int(num_actions)
        self.tree: Tree | None = None
        #: use the Numba kernels of :mod:`tree_numba` (bit-identical to the NumPy functions above) when available
        self.compiled = True

    def check_memory(self, batch_size: int, limit: int | None = None) -> int:
        """Estimate the memory of ``batch_size`` searches (budget x K x batch nodes) and refuse, before
        anything is allocated, when it exceeds ``limit`` (default: 80 % of the available memory).

        Returns the estimate in bytes; raises ``ValueError`` with the estimate, the limit and the
        largest ``--batch`` that fits (or the advice to lower the budget or K when none does).
        """
        k = self.params.k
        node_bytes = int(getattr(self.simulator, "node_bytes", 0))
        per_search = search_bytes(self.params.iterations(self.budget), k, node_bytes, self.num_actions)
        total = per_search * int(batch_size)
        if limit is None:
            limit = int(MEMORY_FRACTION * available_memory_bytes())
        if total > limit:
            fits = limit // per_search
            advice = (f"lower --batch to {fits} or less (results do not depend on the batch)" if fits >= 1 else
                      "even --batch 1 does not fit: lower --budget or the planner's k")
            raise ValueError(
                f"the search trees would need about {_gib(total)} (batch {batch_size} x budget {self.budget:,} x "
                f"K {k} nodes, {_gib(per_search)} per search), more than the limit of {_gib(limit)} "
                f"({MEMORY_FRACTION:.0%} of the available memory); {advice}"
            )
        return total

    def run(self, context: RootContext, keys: np.ndarray) -> SearchResult:
        """Search from the B roots of ``context`` with per-search keys ``keys [B]`` (uint64)."""
        bsz = context.batch_size
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.shape != (bsz,):
            raise ValueError(f"keys must have shape ({bsz},), got {keys.shape}")
        if not 0 <= context.t < self.horizon:
            raise ValueError(f"cannot plan at t={context.t}: the episode ends at t={self.horizon}")
        k = self.params.k
        iterations = self.params.iterations(self.budget)
        if self.tree is None or self.tree.batch_size != bsz or self.tree.budget != iterations or self.tree.k != k:
            self.tree = None
            self.check_memory(bsz)
            self.tree = Tree.allocate(bsz, iterations, k, self.num_actions)
        tree = self.tree
        tree.reset(context.t)
        self.simulator.set_roots(context, tree.max_nodes)
        fast = self.compiled and tree_numba.AVAILABLE
        if fast:
            p = self.params
            table = _weight_table(iterations, p.c1, p.c2, tree.value.shape[2])
            max_depth = min(iterations, max(self.horizon - int(context.t), 0)) + 2
            branch = p.backup_reward == "branch"
            by_trial = p.discount == "trial"
        for i in range(iterations):
            if fast:
                sel_keys, exp_keys = tree_numba.iteration_keys(keys, i, _TAG_SELECT, _TAG_EXPAND)
                path = _select_compiled(tree, p, sel_keys, self.horizon, table, max_depth)
                _expand_compiled(tree, self.simulator, path, exp_keys, p.reward_scale)
                tree_numba.backup_kernel(path.nodes, path.actions, path.chances, path.valid, tree.chance_reward,
                                         tree.slot, tree.value, tree.visits, tree.visits_sum, tree.q_min, tree.q_max,
                                         float(p.gamma), path.leaf_depth if branch else None,
                                         tree.node_reward if branch else None, tree.node_t if by_trial else None,
                                         STEPS_PER_TRIAL if by_trial else 0)
                continue
            it_keys = rng.fold_in(keys, i)
            path = select(tree, self.params, rng.fold_in(it_keys, _TAG_SELECT), self.horizon)
            expand(tree, self.simulator, path, rng.fold_in(it_keys, _TAG_EXPAND), self.params.reward_scale)
            backup(tree, path, self.params.gamma, self.params.backup_reward, self.params.discount)
        n_root = tree.root_visits()
        probs = action_probabilities(n_root, self.params.temperature)
        act_keys = rng.fold_in(keys, -1 - _TAG_ACT)
        actions = rng.categorical(act_keys, probs)
        return SearchResult(actions.astype(np.int64), probs, n_root.copy(), tree.root_values().copy())
