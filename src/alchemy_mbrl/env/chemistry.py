"""Chemistries of symbolic Alchemy: the 48 potion maps, 8 stone maps and 109 graphs (SPEC §1-2).

A chemistry is ``(pi, sigma, tau, G)``. It is stored batch-first in :class:`Chemistry`
as small integer arrays. Everything the dynamics need is precomputed in tables indexed
by graph id, so stepping a batch is pure NumPy indexing.

Indices used throughout the package:

* vertex ``v = sum_k bit_k * 2**k`` with latent coordinate ``c_k = 2*bit_k - 1`` (SPEC §1.1);
* latent potion ``r = 2*d + (s+1)/2`` (axis d, direction s) (SPEC §1.3);
* colour ``q = 2*p + (s'+1)/2`` (perceived axis p, direction s') (SPEC §1.4);
* potion-map index ``m`` in 0..47 (permutation ``m // 8`` in lexicographic order,
  ``sigma_k = 2*bit_k(m % 8) - 1``), stone-map index ``i`` in 0..7, graph id ``g`` in 0..108;
* chemistry index ``(m * 8 + i) * 109 + g`` in 0..41,855 (used by the exact Bayesian model).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

NUM_POTION_MAPS = 48
NUM_STONE_MAPS = 8
NUM_GRAPHS = 109
NUM_CHEMISTRIES = NUM_POTION_MAPS * NUM_STONE_MAPS * NUM_GRAPHS  # 41,856

#: Latent coordinates of the 8 cube vertices, ``[8, 3]`` int8 of +-1.
VERTEX_COORDS: np.ndarray = np.array(
    [[2 * ((v >> k) & 1) - 1 for k in range(3)] for v in range(8)], dtype=np.int8
)
#: Value of a stone at each vertex (SPEC §3): -3, -1, +1, or +15 at (+,+,+).
VERTEX_VALUE: np.ndarray = np.array(
    [int(c.sum()) + (12 if c.sum() == 3 else 0) for c in VERTEX_COORDS.astype(int)], dtype=np.int64
)
MAX_VERTEX = 7

#: The 12 cube edges (lower vertex, higher vertex) in lexicographic order (SPEC §1.2).
CUBE_EDGES: np.ndarray = np.array(
    sorted((u, w) for u in range(8) for w in range(u + 1, 8) if bin(u ^ w).count("1") == 1), dtype=np.int8
)
EDGE_AXIS: np.ndarray = np.array([int(np.log2(int(u) ^ int(w))) for u, w in CUBE_EDGES], dtype=np.int8)
_EDGE_INDEX = {(int(u), int(w)): e for e, (u, w) in enumerate(CUBE_EDGES)}

#: The 6 permutations of (0,1,2) in lexicographic order (SPEC §2.1).
PERMUTATIONS: np.ndarray = np.array(list(itertools.permutations(range(3))), dtype=np.int8)


def edge_index(u: int, w: int) -> int:
    """Index of the cube edge between vertices ``u`` and ``w``."""
    return _EDGE_INDEX[(min(u, w), max(u, w))]


def _enumerate_graphs() -> tuple[np.ndarray, list[str], np.ndarray, list[Fraction]]:
    """All valid rule triples in the reference's order (SPEC §2.3, Appendix A)."""
    rule_values = (-1, 1, None)
    axis_rules = [(r1, r2) for r1 in rule_values for r2 in rule_values]
    edges_list, rules, ks = [], [], []
    for triple in itertools.product(axis_rules, repeat=3):
        present = np.zeros(12, dtype=bool)
        for a, (r1, r2) in enumerate(triple):
            b, b2 = [x for x in range(3) if x != a]
            for e, (u, w) in enumerate(CUBE_EDGES):
                if EDGE_AXIS[e] != a:
                    continue
                cu = VERTEX_COORDS[u]
                if (r1 is None or cu[b] == r1) and (r2 is None or cu[b2] == r2):
                    present[e] = True
        if not _connected_spanning(present):
            continue
        k = sum(r is not None for rule in triple for r in rule)
        sym = {-1: "-", 1: "+", None: "*"}
        rules.append("/".join(sym[r1] + sym[r2] for r1, r2 in triple))
        edges_list.append(present)
        ks.append(k)
    ks_arr = np.array(ks, dtype=np.int8)
    group_size = {k: int((ks_arr == k).sum()) for k in set(ks)}
    probs = [Fraction(1, 4) / group_size[k] for k in ks]
    return np.array(edges_list), rules, ks_arr, probs


def _connected_spanning(present: np.ndarray) -> bool:
    seen = {0}
    frontier = [0]
    while frontier:
        u = frontier.pop()
        for e, (a, b) in enumerate(CUBE_EDGES):
            if not present[e]:
                continue
            for x, y in ((a, b), (b, a)):
                if x == u and int(y) not in seen:
                    seen.add(int(y))
                    frontier.append(int(y))
    return len(seen) == 8


#: ``GRAPH_EDGES[g]`` is the bool edge set ``[12]`` of graph id g.
GRAPH_EDGES, GRAPH_RULES, GRAPH_NUM_CONSTRAINTS, GRAPH_PROBS_EXACT = _enumerate_graphs()
#: Prior probability of each graph id (float64).
GRAPH_PROBS: np.ndarray = np.array([float(p) for p in GRAPH_PROBS_EXACT])
assert len(GRAPH_RULES) == NUM_GRAPHS


def graph_key(edges: np.ndarray) -> str:
    """12-character edge key of an edge set (SPEC §1.2)."""
    return "".join("1" if x else "0" for x in np.asarray(edges, dtype=bool))


# Graph id of each 12-bit edge mask (bit e = edge e), -1 for the 4096 - 109 invalid sets.
_EDGE_BITS = 1 << np.arange(12, dtype=np.int64)
_GRAPH_OF_MASK = np.full(1 << 12, -1, dtype=np.int16)
_GRAPH_OF_MASK[GRAPH_EDGES.astype(np.int64) @ _EDGE_BITS] = np.arange(len(GRAPH_EDGES), dtype=np.int16)


def graph_id_of_edges(edges: np.ndarray, strict: bool = True) -> np.ndarray:
    """Graph ids ``[N]`` for edge sets ``[N, 12]``.

    An invalid set raises ``ValueError`` (``strict``) or gets id -1 (``strict=False``, for callers
    that report the first bad row themselves).
    """
    edges = np.asarray(edges, dtype=bool).reshape(-1, 12)
    out = _GRAPH_OF_MASK[edges.astype(np.int64) @ _EDGE_BITS]
    if strict and (out < 0).any():
        raise ValueError(f"edge set {graph_key(edges[int(np.argmax(out < 0))])} is not one of the 109 valid graphs")
    return out


def _move_table() -> np.ndarray:
    """``MOVE[g, r, v]``: vertex reached from v by latent potion r under graph g (SPEC §2.3)."""
    table = np.empty((NUM_GRAPHS, 6, 8), dtype=np.int8)
    for g in range(NUM_GRAPHS):
        for r in range(6):
            d, s = r // 2, 2 * (r % 2) - 1
            for v in range(8):
                table[g, r, v] = v
                if VERTEX_COORDS[v, d] == -s:
                    w = v ^ (1 << d)
                    if GRAPH_EDGES[g, edge_index(v, w)]:
                        table[g, r, v] = w
    return table


#: ``MOVE_TABLE[g, r, v]`` is the vertex a stone at v reaches with latent potion r under graph g.
MOVE_TABLE: np.ndarray = _move_table()


def as_int_array(name: str, value: object, dtype: type, lo: int, hi: int) -> np.ndarray:
    """``value`` as an integer array of ``dtype``, checked BEFORE casting (no silent wrap-around,
    truncation or NaN-to-zero): raises ``ValueError`` naming ``name`` unless every element is an
    integer (of integer dtype, or an integral finite float) in ``lo..hi``."""
    a = np.asarray(value)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers in {lo}..{hi}, got dtype {a.dtype}")
    if a.size:
        if np.issubdtype(a.dtype, np.floating):
            bad = ~np.isfinite(a) | (np.mod(np.where(np.isfinite(a), a, 0), 1) != 0)
            if bad.any():
                raise ValueError(f"{name} must hold integers in {lo}..{hi}, got {a[bad].flat[0].item()!r}")
        out = (a < lo) | (a > hi)
        if out.any():
            raise ValueError(f"{name} must hold integers in {lo}..{hi}, got {a[out].flat[0].item()!r}")
    return a.astype(dtype)


def _rows3(name: str, value: object, lo: int, hi: int) -> np.ndarray:
    """A ``[B, 3]`` int8 field of :class:`Chemistry` (one row ``[3]`` is a batch of one)."""
    a = as_int_array(f"Chemistry.{name}", value, np.int8, lo, hi)
    if a.ndim == 1 and a.shape == (3,):
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"Chemistry.{name} must have shape [B, 3], got {list(a.shape)}")
    return a


@dataclass
class Chemistry:
    """A batch of chemistries, batch-first.

    Attributes:
        potion_perm: ``[B, 3]`` int8, ``pi[p]`` = latent axis of perceived potion axis p.
        potion_sign: ``[B, 3]`` int8 of +-1, ``sigma[d]`` indexed by latent axis.
        stone_sign: ``[B, 3]`` int8 of +-1, ``tau``; perceived = latent * tau.
        graph_id: ``[B]`` int16, id in Appendix A order.
    """

    potion_perm: np.ndarray
    potion_sign: np.ndarray
    stone_sign: np.ndarray
    graph_id: np.ndarray

    def __post_init__(self) -> None:
        self.potion_perm = _rows3("potion_perm", self.potion_perm, 0, 2)
        self.potion_sign = _rows3("potion_sign", self.potion_sign, -1, 1)
        self.stone_sign = _rows3("stone_sign", self.stone_sign, -1, 1)
        g = as_int_array("Chemistry.graph_id", self.graph_id, np.int16, 0, NUM_GRAPHS - 1)
        if g.ndim > 1:
            raise ValueError(f"Chemistry.graph_id must have shape [B], got {list(g.shape)}")
        self.graph_id = g.reshape(-1)
        n = len(self.graph_id)
        for name in ("potion_perm", "potion_sign", "stone_sign"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Chemistry.{name} has {len(getattr(self, name))} rows, graph_id has {n}")
        if n and (np.sort(self.potion_perm, axis=1) != np.arange(3)).any():
            raise ValueError("Chemistry.potion_perm rows must be permutations of (0, 1, 2)")
        for name in ("potion_sign", "stone_sign"):
            if n and not np.isin(getattr(self, name), (-1, 1)).all():
                raise ValueError(f"Chemistry.{name} must hold only -1 and +1")
        if n and ((self.graph_id < 0) | (self.graph_id >= NUM_GRAPHS)).any():
            raise ValueError(f"Chemistry.graph_id must be in 0..{NUM_GRAPHS - 1}")

    def __len__(self) -> int:
        return len(self.graph_id)

    def __getitem__(self, idx: object) -> "Chemistry":
        return Chemistry(
            self.potion_perm[idx], self.potion_sign[idx], self.stone_sign[idx], self.graph_id[idx]  # type: ignore[index]
        )

    # --- derived quantities -------------------------------------------------------------
    @property
    def colour_of_latent(self) -> np.ndarray:
        """``[B, 6]`` colour index q of each latent potion r (SPEC §2.1)."""
        inv = np.argsort(self.potion_perm, axis=1)  # inv[d] = perceived axis of latent axis d
        r = np.arange(6)
        d, s = r // 2, 2 * (r % 2) - 1
        sd = self.potion_sign[:, d].astype(np.int64)
        return (2 * inv[:, d] + (s * sd + 1) // 2).astype(np.int8)

    @property
    def graph_edges(self) -> np.ndarray:
        """``[B, 12]`` bool edge sets."""
        return GRAPH_EDGES[self.graph_id]

    @property
    def potion_map_index(self) -> np.ndarray:
        """``[B]`` reference potion-map index m in 0..47."""
        perm_idx = _perm_index(self.potion_perm)
        bits = ((self.potion_sign + 1) // 2).astype(np.int64)
        return perm_idx * 8 + bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2]

    @property
    def stone_map_index(self) -> np.ndarray:
        """``[B]`` reference stone-map index i in 0..7."""
        bits = ((self.stone_sign + 1) // 2).astype(np.int64)
        return bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2]

    @property
    def index(self) -> np.ndarray:
        """``[B]`` chemistry index ``(m * 8 + i) * 109 + g`` in 0..41,855."""
        return (self.potion_map_index * NUM_STONE_MAPS + self.stone_map_index) * NUM_GRAPHS + self.graph_id

    @classmethod
    def from_indices(cls, potion_map: np.ndarray, stone_map: np.ndarray, graph_id: np.ndarray) -> "Chemistry":
        """Build chemistries from reference indices (m, i, g)."""
        m = np.asarray(potion_map, dtype=np.int64).reshape(-1)
        i = np.asarray(stone_map, dtype=np.int64).reshape(-1)
        bits = (m % 8)[:, None] >> np.arange(3) & 1
        return cls(
            potion_perm=PERMUTATIONS[m // 8],
            potion_sign=2 * bits - 1,
            stone_sign=2 * ((i[:, None] >> np.arange(3)) & 1) - 1,
            graph_id=graph_id,
        )

    @classmethod
    def from_index(cls, index: np.ndarray) -> "Chemistry":
        """Build chemistries from chemistry indices in 0..41,855."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if ((idx < 0) | (idx >= NUM_CHEMISTRIES)).any():
            raise ValueError(f"chemistry index must be in 0..{NUM_CHEMISTRIES - 1}")
        g = idx % NUM_GRAPHS
        mi = idx // NUM_GRAPHS
        return cls.from_indices(mi // NUM_STONE_MAPS, mi % NUM_STONE_MAPS, g)

    @classmethod
    def concatenate(cls, chems: list["Chemistry"]) -> "Chemistry":
        return cls(
            np.concatenate([c.potion_perm for c in chems]),
            np.concatenate([c.potion_sign for c in chems]),
            np.concatenate([c.stone_sign for c in chems]),
            np.concatenate([c.graph_id for c in chems]),
        )


def _perm_index(perm: np.ndarray) -> np.ndarray:
    code = perm[:, 0].astype(np.int64) * 9 + perm[:, 1].astype(np.int64) * 3 + perm[:, 2].astype(np.int64)
    lut = np.full(27, -1, dtype=np.int64)
    for j, p in enumerate(PERMUTATIONS):
        lut[p[0] * 9 + p[1] * 3 + p[2]] = j
    return lut[code]


def sample_chemistries(rng: np.random.Generator, n: int) -> Chemistry:
    """Draw n chemistries from the level's prior (SPEC §2): uniform maps, ``graph_distr`` graphs."""
    m = rng.integers(0, NUM_POTION_MAPS, size=n)
    i = rng.integers(0, NUM_STONE_MAPS, size=n)
    g = rng.choice(NUM_GRAPHS, size=n, p=GRAPH_PROBS)
    return Chemistry.from_indices(m, i, g)


def all_chemistries() -> Chemistry:
    """All 41,856 chemistries, in chemistry-index order."""
    return Chemistry.from_index(np.arange(NUM_CHEMISTRIES))


def chemistry_prior() -> np.ndarray:
    """``[41856]`` prior probability of each chemistry index (float64, sums to 1)."""
    return np.tile(GRAPH_PROBS, NUM_POTION_MAPS * NUM_STONE_MAPS) / (NUM_POTION_MAPS * NUM_STONE_MAPS)
