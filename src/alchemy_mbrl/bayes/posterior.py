"""The exact Bayesian model of symbolic Alchemy: a posterior over all 41,856 chemistries.

Why the posterior is the prior restricted to a set
--------------------------------------------------
Given a chemistry (pi, sigma, tau, G), every transition is deterministic (SPEC §5) except at
trial boundaries (t+1 in {20, ..., 180}), where 3 stones (uniform over the 8 latent vertices)
and 12 potions (uniform over the 6 latent potions) are drawn independently of the chemistry
(SPEC §4). So the likelihood of an observed transition under a chemistry is either 0 or a
constant that does not depend on the chemistry:

* within a trial it is 1 (the chemistry predicts exactly what is observed) or 0;
* at a trial start the observation shows, per stone, its perceived vertex ``pv = v XOR (7 XOR i)``
  (perceived = latent * tau, with stone-map index ``i``) and its reward feature ``popcount(v)``,
  and per potion its colour, a bijection of the latent potion under (pi, sigma). Given the
  chemistry each stone's (pv, feature) is uniform over the 8 pairs consistent with ``i`` and each
  colour is uniform over the 6 colours, so the likelihood is ``8**-3 * 6**-12`` when every
  stone's feature equals ``popcount(pv XOR 7 XOR i)``, and 0 otherwise.

Hence the posterior is the prior restricted to the chemistries consistent with the history:
a set, updated by intersection with one consistency set per informative step.

Representation ("weighted bits")
--------------------------------
A posterior is a packed bit set of ``NUM_WORDS = 1152`` uint64 words (9,216 bytes). Each
chemistry occupies as many bits as its prior weight in units of 1/192 of a graph's probability
(48 bits for the full cube, 4 for each k=1 graph, 1 for each k=2,3 graph), so that the prior mass
of a set is a plain popcount: ``mass = popcount(words) / 73,728``. Probabilities are ratios of
exact integers. Bits are ordered by stone map ``i`` (outermost, 144 words each), then potion map
``m`` (3 words = 192 bits each), then the graph's slot (``GRAPH_BIT_OFFSET``), so a word belongs
to exactly one stone map and a posterior that knows ``i`` and ``m`` lives in 3 words.

Consistency sets are precomputed (:func:`tables`): for a potion step, the outcome of putting a
stone at perceived vertex ``pv`` into a potion of colour ``q`` is one of 16 classes
``(j, f')`` (j: which perceived axis flipped, 0 = none; f': new reward-feature code), a function
of the chemistry; one bit set per ``(pv, q, j, f')`` (768 sets). Trial starts constrain only ``i``:
one set per subset of stone maps (256 sets). Constraint id ``cid`` indexes the concatenation.

The model is the predictive distribution of the next (reward, observation) codes, factorised like
the learned world model: ``p(r) * prod_i p(o_i | r, o_<i)`` (:meth:`Predictive.factorised_probs`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from alchemy_mbrl.env import codec
from alchemy_mbrl.env.chemistry import (
    GRAPH_PROBS,
    MOVE_TABLE,
    NUM_CHEMISTRIES,
    NUM_GRAPHS,
    NUM_POTION_MAPS,
    NUM_STONE_MAPS,
    Chemistry,
    chemistry_prior,
)

# --- bit layout ---------------------------------------------------------------------------

#: Prior weight of each graph in units of 1/192 (48, 4 or 1); a chemistry has this many bits.
GRAPH_WEIGHT: np.ndarray = np.round(GRAPH_PROBS * 192).astype(np.int64)
BITS_PER_BLOCK = int(GRAPH_WEIGHT.sum())  # 192 bits per (stone map, potion map) block
WORDS_PER_BLOCK = BITS_PER_BLOCK // 64  # 3
WORDS_PER_STONE_MAP = NUM_POTION_MAPS * WORDS_PER_BLOCK  # 144
NUM_WORDS = NUM_STONE_MAPS * WORDS_PER_STONE_MAP  # 1152 uint64 words = 9,216 bytes
NUM_BITS = NUM_WORDS * 64  # 73,728 = total prior mass in bit units
PAD_WORD = NUM_WORDS  # column index of an all-zero word (padding of compressed posteriors)
assert BITS_PER_BLOCK == 192 and NUM_BITS == 192 * NUM_STONE_MAPS * NUM_POTION_MAPS

_order = np.lexsort((np.arange(NUM_GRAPHS), GRAPH_WEIGHT))  # weight-1 graphs first, full cube last
#: First bit of each graph inside its 192-bit block.
GRAPH_BIT_OFFSET: np.ndarray = np.empty(NUM_GRAPHS, dtype=np.int64)
GRAPH_BIT_OFFSET[_order] = np.concatenate([[0], np.cumsum(GRAPH_WEIGHT[_order])[:-1]])

_chem = np.arange(NUM_CHEMISTRIES)
CHEM_GRAPH = _chem % NUM_GRAPHS
CHEM_STONE_MAP = (_chem // NUM_GRAPHS) % NUM_STONE_MAPS
CHEM_POTION_MAP = _chem // (NUM_GRAPHS * NUM_STONE_MAPS)
#: First bit of each chemistry (in chemistry-index order).
CHEM_FIRST_BIT: np.ndarray = (CHEM_STONE_MAP * NUM_POTION_MAPS + CHEM_POTION_MAP) * BITS_PER_BLOCK + GRAPH_BIT_OFFSET[CHEM_GRAPH]
#: Chemistry index of every bit.
_by_bit = np.argsort(CHEM_FIRST_BIT)
BIT_CHEM: np.ndarray = np.repeat(_chem[_by_bit], GRAPH_WEIGHT[CHEM_GRAPH[_by_bit]])
assert len(BIT_CHEM) == NUM_BITS
#: Stone map of each word (8 for the padding word).
STONE_MAP_OF_WORD: np.ndarray = np.append(np.arange(NUM_WORDS) // WORDS_PER_STONE_MAP, NUM_STONE_MAPS)

# --- small tables ---------------------------------------------------------------------------

POPCOUNT3 = np.array([bin(v).count("1") for v in range(8)], dtype=np.int64)
#: Perceived-vertex XOR of outcome class j (0: no move, 1..3: flip of perceived axis j-1).
FLIP_OF_J = np.array([0, 1, 2, 4], dtype=np.int64)
J_OF_FLIP = np.full(8, -1, dtype=np.int64)
J_OF_FLIP[FLIP_OF_J] = np.arange(4)
NUM_CLASSES = 16  # potion-step outcome classes (j, f') -> 4 * j + f'
NUM_POTION_CIDS = 8 * 6 * NUM_CLASSES  # 768: cid = (pv * 6 + q) * 16 + class
NUM_CIDS = NUM_POTION_CIDS + 256  # + one per subset of stone maps
NO_CONSTRAINT = -1
ZERO_CID = NUM_CIDS  # an all-zero row (padding of candidate classes)


def _candidate_classes() -> np.ndarray:
    """``[4, 7]``: the outcome classes a stone with reward-feature code f can reach (16 = none).

    A potion either leaves the stone (class ``(0, f)``) or moves it along one axis, changing its
    feature by one (``(j, f +- 1)``, j = 1..3). Every other class has zero posterior mass because
    a posterior always agrees with the observed feature of each present stone.
    """
    out = np.full((4, 7), NUM_CLASSES, dtype=np.int64)
    for f in range(4):
        cls = [4 * 0 + f] + [4 * j + f2 for j in (1, 2, 3) for f2 in (f - 1, f + 1) if 0 <= f2 <= 3]
        out[f, : len(cls)] = cls
    return out


#: ``CANDIDATE_CLASSES[f]``: classes with possibly non-zero mass for a stone of feature code f.
CANDIDATE_CLASSES: np.ndarray = _candidate_classes()
#: Reward code of a cauldroned stone by its reward-feature code (-3, -1, +1, +15).
REWARD_CODE_OF_FEATURE = np.array([0, 1, 3, 4], dtype=np.int64)
ZERO_REWARD_CODE = 2
#: ``CONSISTENT_STONE_MAPS[pv, f]``: bit set (over i) of stone maps under which a stone seen at
#: perceived vertex pv has reward-feature code f, i.e. ``popcount(pv ^ 7 ^ i) == f``.
CONSISTENT_STONE_MAPS: np.ndarray = np.array(
    [[sum(1 << i for i in range(8) if POPCOUNT3[pv ^ 7 ^ i] == f) for f in range(4)] for pv in range(8)], dtype=np.int64
)
#: ``STONE_FEATURE_CODES[pv, f]``: the 4 codes (perceived coordinates, reward feature) of a present stone.
STONE_FEATURE_CODES = np.array([[[pv & 1, (pv >> 1) & 1, pv >> 2, f] for f in range(4)] for pv in range(8)], dtype=np.uint8)
USED_STONE_BLOCK = np.array([codec.USED_COORD_CODE] * 3 + [codec.USED_REWARD_FEATURE_CODE, 1], dtype=np.uint8)


def popcount_words(words: np.ndarray) -> np.ndarray:
    """Prior mass (in bit units, ``NUM_BITS`` = 1) of packed sets ``[..., W]`` -> int64 ``[...]``."""
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def pack_chemistry_sets(member: np.ndarray) -> np.ndarray:
    """Pack bool sets ``[..., 41856]`` (chemistry-index order) into weighted-bit words ``[..., 1152]``."""
    member = np.asarray(member, dtype=bool)
    bits = member[..., BIT_CHEM]
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def unpack_chemistry_sets(words: np.ndarray) -> np.ndarray:
    """Bool sets ``[..., 41856]`` in chemistry-index order from packed words ``[..., 1152]``."""
    w = np.ascontiguousarray(np.asarray(words, dtype=np.uint64))
    bits = np.unpackbits(w.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., CHEM_FIRST_BIT].astype(bool)


def posterior_probabilities(words: np.ndarray) -> np.ndarray:
    """``[..., 41856]`` float64 posterior probabilities of the chemistries from packed sets."""
    member = unpack_chemistry_sets(words)
    p = member * chemistry_prior()
    return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)


def latent_potion_of_colour() -> np.ndarray:
    """``[48, 6]``: latent potion r acted on by colour q under potion map m (SPEC §2.1)."""
    col = Chemistry.from_indices(np.arange(NUM_POTION_MAPS), np.zeros(NUM_POTION_MAPS), np.zeros(NUM_POTION_MAPS)).colour_of_latent
    out = np.empty_like(col)
    out[np.arange(NUM_POTION_MAPS)[:, None], col.astype(np.int64)] = np.arange(6)
    return out.astype(np.int64)


@dataclass(frozen=True)
class ConstraintTables:
    """Precomputed constraint sets (built once, ~21 MB).

    Attributes:
        words: ``[NUM_CIDS + 1, 1153]`` uint64; row cid is a consistency set, row ``ZERO_CID`` and
            column ``PAD_WORD`` are zero padding.
        words_full: ``[NUM_CIDS + 1, 1152]`` the same without padding (contiguous rows, for full width).
        potion_class: ``[8, 6, 41856]`` uint8 outcome class ``4*j + f'`` of a stone at perceived
            vertex pv put into colour q, for every chemistry.
    """

    words: np.ndarray
    words_full: np.ndarray
    potion_class: np.ndarray


@functools.lru_cache(maxsize=1)
def constraint_tables() -> ConstraintTables:
    """Build (once) the consistency sets of every potion-step outcome and stone-map subset."""
    r_of_q = latent_potion_of_colour()
    m, i, g = CHEM_POTION_MAP, CHEM_STONE_MAP, CHEM_GRAPH
    potion_class = np.empty((8, 6, NUM_CHEMISTRIES), dtype=np.uint8)
    for pv in range(8):
        v = pv ^ 7 ^ i  # latent vertex of the stone under each chemistry's stone map
        for q in range(6):
            v2 = MOVE_TABLE[g, r_of_q[m, q], v].astype(np.int64)
            j = J_OF_FLIP[v2 ^ v]  # latent and perceived flips coincide (perceived = latent XOR const)
            assert (j >= 0).all()
            potion_class[pv, q] = 4 * j + POPCOUNT3[v2]
    rows = np.zeros((NUM_CIDS + 1, NUM_WORDS + 1), dtype=np.uint64)
    for pv in range(8):
        member = potion_class[pv][:, None, :] == np.arange(NUM_CLASSES)[None, :, None]  # [6, 16, C]
        rows[pv * 96 : (pv + 1) * 96, :NUM_WORDS] = pack_chemistry_sets(member).reshape(96, NUM_WORDS)
    sets = np.arange(256)
    allowed = (sets[:, None] >> STONE_MAP_OF_WORD[None, :NUM_WORDS]) & 1
    rows[NUM_POTION_CIDS:NUM_CIDS, :NUM_WORDS] = np.where(allowed == 1, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0))
    rows.setflags(write=False)
    full = np.ascontiguousarray(rows[:, :NUM_WORDS])
    full.setflags(write=False)
    potion_class.setflags(write=False)
    return ConstraintTables(rows, full, potion_class)


def constraint_words(cid: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """Rows of constraint ids ``cid [B, ...]``: ``[B, ..., 1152]``, or at word columns ``cols [B, W]``."""
    t = constraint_tables()
    cid = np.asarray(cid, dtype=np.int64)
    if cols is None:
        return t.words_full[cid]
    extra = cid.ndim - 1
    c = cols.reshape(cols.shape[0], *([1] * extra), cols.shape[1])
    return np.take(t.words.reshape(-1), cid[..., None] * (NUM_WORDS + 1) + c)


def stone_map_masses(post: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """``[B, 8]`` int64 posterior mass (bit units) of each stone map i."""
    pc = np.bitwise_count(post).astype(np.int64)
    if cols is None:
        return pc.reshape(len(pc), NUM_STONE_MAPS, WORDS_PER_STONE_MAP).sum(-1)
    out = np.zeros((len(pc), NUM_STONE_MAPS + 1), dtype=np.int64)
    np.add.at(out, (np.arange(len(pc))[:, None], STONE_MAP_OF_WORD[cols]), pc)
    return out[:, :NUM_STONE_MAPS]
