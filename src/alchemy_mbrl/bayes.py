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
import math
from dataclasses import dataclass

import numpy as np

from alchemy_mbrl import rng as crng
from alchemy_mbrl.data import codec
from alchemy_mbrl.env.alchemy import EPISODE_STEPS, NUM_POTIONS, NUM_STONES, OBS_DIM, STEPS_PER_TRIAL, action_target
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

_POPCOUNT3 = np.array([bin(v).count("1") for v in range(8)], dtype=np.int64)
#: Perceived-vertex XOR of outcome class j (0: no move, 1..3: flip of perceived axis j-1).
FLIP_OF_J = np.array([0, 1, 2, 4], dtype=np.int64)
_J_OF_FLIP = np.full(8, -1, dtype=np.int64)
_J_OF_FLIP[FLIP_OF_J] = np.arange(4)
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
    [[sum(1 << i for i in range(8) if _POPCOUNT3[pv ^ 7 ^ i] == f) for f in range(4)] for pv in range(8)], dtype=np.int64
)
#: ``-log`` of the chemistry-independent factor of a trial start: 3 ln 8 + 12 ln 6 nats.
TRIAL_ITEMS_NATS = NUM_STONES * math.log(8) + NUM_POTIONS * math.log(6)
#: ``_STONE_FEATURES[pv, f]``: the 4 codes (perceived coordinates, reward feature) of a present stone.
_STONE_FEATURES = np.array([[[pv & 1, (pv >> 1) & 1, pv >> 2, f] for f in range(4)] for pv in range(8)], dtype=np.uint8)
_USED_STONE_BLOCK = np.array([codec.USED_COORD_CODE] * 3 + [codec.USED_REWARD_FEATURE_CODE, 1], dtype=np.uint8)


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
class Tables:
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
def tables() -> Tables:
    """Build (once) the consistency sets of every potion-step outcome and stone-map subset."""
    r_of_q = latent_potion_of_colour()
    m, i, g = CHEM_POTION_MAP, CHEM_STONE_MAP, CHEM_GRAPH
    potion_class = np.empty((8, 6, NUM_CHEMISTRIES), dtype=np.uint8)
    for pv in range(8):
        v = pv ^ 7 ^ i  # latent vertex of the stone under each chemistry's stone map
        for q in range(6):
            v2 = MOVE_TABLE[g, r_of_q[m, q], v].astype(np.int64)
            j = _J_OF_FLIP[v2 ^ v]  # latent and perceived flips coincide (perceived = latent XOR const)
            assert (j >= 0).all()
            potion_class[pv, q] = 4 * j + _POPCOUNT3[v2]
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
    return Tables(rows, full, potion_class)


def constraint_words(cid: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """Rows of constraint ids ``cid [B, ...]``: ``[B, ..., 1152]``, or at word columns ``cols [B, W]``."""
    t = tables()
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


# --- observations -------------------------------------------------------------------------


def perceived_vertex(obs: np.ndarray, stone: np.ndarray) -> np.ndarray:
    """``[B]`` perceived vertex index of stone slot ``stone [B]`` from observation codes ``[B, 39]``."""
    rows = np.arange(len(obs))
    base = 5 * np.asarray(stone, dtype=np.int64)
    c = obs[rows[:, None], base[:, None] + np.arange(3)].astype(np.int64)
    return c[:, 0] + 2 * c[:, 1] + 4 * c[:, 2]


def initial_posterior(obs0: np.ndarray) -> np.ndarray:
    """``[B, 1152]`` posterior words after the first observation of an episode (codes ``[B, 39]``)."""
    obs0 = np.asarray(obs0, dtype=np.uint8)
    return tables().words_full[NUM_POTION_CIDS + _trial_start_stone_maps(obs0)].copy()


def _trial_start_stone_maps(obs: np.ndarray) -> np.ndarray:
    """``[B]`` bit set of stone maps consistent with a trial's first observation (0 if malformed)."""
    ok = _is_trial_start_observation(obs)
    sets = np.full(len(obs), 255, dtype=np.int64)
    for s in range(NUM_STONES):
        pv = perceived_vertex(obs, np.full(len(obs), s))
        f = np.minimum(obs[:, 5 * s + 3].astype(np.int64), 3)
        sets &= CONSISTENT_STONE_MAPS[np.minimum(pv, 7), f]
    return np.where(ok, sets, 0)


def _is_trial_start_observation(obs: np.ndarray) -> np.ndarray:
    """``[B]`` whether codes could be a trial's first observation (everything present)."""
    o = obs.astype(np.int64)
    ok = np.ones(len(o), dtype=bool)
    for s in range(NUM_STONES):
        ok &= (o[:, 5 * s : 5 * s + 3] <= 1).all(1) & (o[:, 5 * s + 3] <= 3) & (o[:, 5 * s + 4] == 0)
    ok &= (o[:, 15::2] <= 5).all(1) & (o[:, 16::2] == 0).all(1)
    return ok


@dataclass
class StepAnalysis:
    """What an action does to a batch of observed states, as far as it is chemistry-independent.

    Attributes:
        reward_code: ``[B]`` the (always deterministic) reward code of the step.
        base_obs: ``[B, 39]`` the next observation for deterministic rows; for potion rows the
            potion is already used, the stone's 4 features still hold their old codes.
        potion: ``[B]`` informative potion step (present stone into present potion, within a trial).
        boundary: ``[B]`` the next observation is a new trial's first (t+1 in 20..180).
        stone, pv, q, f: ``[B]`` stone slot, its perceived vertex, the potion's colour, the stone's
            reward-feature code (meaningful on potion rows).
    """

    reward_code: np.ndarray
    base_obs: np.ndarray
    potion: np.ndarray
    boundary: np.ndarray
    stone: np.ndarray
    pv: np.ndarray
    q: np.ndarray
    f: np.ndarray


_A = np.arange(40)
_ACTION_STONE, _ACTION_CAULDRON, _ACTION_POTION = action_target(_A)  # -1 where not applicable
_ACTION_S = np.maximum(_ACTION_STONE, 0)
_ACTION_P = np.maximum(_ACTION_POTION, 0)
_PV_WEIGHTS = np.array([1, 2, 4], dtype=np.int64)


def analyse_step(obs: np.ndarray, actions: np.ndarray, t: np.ndarray | int) -> StepAnalysis:
    """Decode action ``a_{t+1}`` taken after observation codes ``obs [B, 39]`` at step count ``t``.

    Steps with ``t >= 200`` (after the episode's end) are treated as no-ops with reward 0.
    """
    obs = np.asarray(obs, dtype=np.uint8)
    b = len(obs)
    rows = np.arange(b)
    t = np.broadcast_to(np.asarray(t, dtype=np.int64), (b,))
    a = np.asarray(actions, dtype=np.int64)
    s, p = _ACTION_S[a], _ACTION_P[a]
    stone_blk = obs[:, :15].reshape(b, NUM_STONES, 5)[rows, s].astype(np.int64)  # [B, 5]
    potion_blk = obs[:, 15:].reshape(b, NUM_POTIONS, 2)[rows, p]  # [B, 2]
    stone_present = (_ACTION_STONE[a] >= 0) & (t < EPISODE_STEPS) & (stone_blk[:, 4] == 0)
    do_cauldron = stone_present & _ACTION_CAULDRON[a]
    do_potion = stone_present & (_ACTION_POTION[a] >= 0) & (potion_blk[:, 1] == 0)
    f = np.minimum(stone_blk[:, 3], 3)
    reward_code = np.where(do_cauldron, REWARD_CODE_OF_FEATURE[f], ZERO_REWARD_CODE)
    base = obs.copy()
    idx = np.nonzero(do_cauldron)[0]
    if len(idx):
        base[:, :15].reshape(b, NUM_STONES, 5)[idx, s[idx]] = _USED_STONE_BLOCK
    idx = np.nonzero(do_potion)[0]
    if len(idx):
        base[:, 15:].reshape(b, NUM_POTIONS, 2)[idx, p[idx]] = (codec.USED_COLOUR_CODE, 1)
    boundary = ((t + 1) % STEPS_PER_TRIAL == 0) & (t + 1 < EPISODE_STEPS)
    return StepAnalysis(
        reward_code=reward_code,
        base_obs=base,
        potion=do_potion & ~boundary,
        boundary=boundary,
        stone=s,
        pv=np.minimum(stone_blk[:, :3], 1) @ _PV_WEIGHTS,
        q=np.minimum(potion_blk[:, 0].astype(np.int64), 5),
        f=f,
    )


def _potion_outcome_obs(base: np.ndarray, stone: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """``[B, 16, 39]``: base observation with stone ``stone`` at each outcome class (j, f')."""
    out = np.repeat(base[:, None, :], NUM_CLASSES, axis=1)
    cls = np.arange(NUM_CLASSES)
    new_pv = pv[:, None] ^ FLIP_OF_J[cls // 4][None, :]  # [B, 16]
    rows = np.arange(len(base))[:, None]
    for k in range(3):
        out[rows, cls[None, :], 5 * stone[:, None] + k] = (new_pv >> k) & 1
    out[rows, cls[None, :], 5 * stone[:, None] + 3] = cls[None, :] % 4
    return out


# --- the predictive distribution ----------------------------------------------------------


@dataclass
class Predictive:
    """The exact predictive distribution of ``(r_{t+1}, o_{t+1})`` for a batch of (posterior, obs, action).

    Within a trial the next observation is one of 16 outcome classes (deterministic rows put all
    their mass on class 0); at a trial boundary it is a fresh trial whose stones' reward features
    depend on the stone map (``stone_map_mass``) and everything else is uniform.

    Attributes:
        analysis: the chemistry-independent part of the step.
        total: ``[B]`` int64 posterior mass (bit units).
        class_mass: ``[B, 16]`` int64 mass of each outcome class (non-boundary rows).
        stone_map_mass: ``[B, 8]`` int64 mass of each stone map (used on boundary rows).
    """

    analysis: StepAnalysis
    total: np.ndarray
    class_mass: np.ndarray
    stone_map_mass: np.ndarray

    @property
    def batch_size(self) -> int:
        return len(self.total)

    @property
    def class_obs(self) -> np.ndarray:
        """``[B, 16, 39]`` uint8 next observation of each outcome class (non-boundary rows)."""
        an = self.analysis
        out = np.repeat(an.base_obs[:, None, :], NUM_CLASSES, axis=1)
        idx = np.nonzero(an.potion)[0]
        if len(idx):
            out[idx] = _potion_outcome_obs(an.base_obs[idx], an.stone[idx], an.pv[idx])
        return out

    @property
    def class_cid(self) -> np.ndarray:
        """``[B, 16]`` constraint id of each class (``NO_CONSTRAINT`` on deterministic rows)."""
        an = self.analysis
        cid = (an.pv * 6 + an.q)[:, None] * NUM_CLASSES + np.arange(NUM_CLASSES)
        return np.where(an.potion[:, None], cid, NO_CONSTRAINT)

    # -- probabilities of outcomes --------------------------------------------------------
    def log_prob(self, reward_code: np.ndarray, obs_next: np.ndarray) -> np.ndarray:
        """``[B]`` natural log of p(r_{t+1}, o_{t+1}) of observed codes (``-inf`` if impossible)."""
        r = np.asarray(reward_code, dtype=np.int64)
        o = np.asarray(obs_next, dtype=np.uint8)
        an = self.analysis
        with np.errstate(divide="ignore"):
            match = (self.class_obs == o[:, None, :]).all(-1)
            mass = (self.class_mass * match).sum(-1)
            lp = np.log(mass) - np.log(self.total)
            sets = _trial_start_stone_maps(o)
            bmass = (self.stone_map_mass * ((sets[:, None] >> np.arange(8)) & 1)).sum(-1)
            lp_b = np.log(bmass) - np.log(self.total) - TRIAL_ITEMS_NATS
        lp = np.where(an.boundary, lp_b, lp)
        return np.where(r == an.reward_code, lp, -np.inf)

    def factorised_probs(self, reward_code: np.ndarray, obs_next: np.ndarray) -> np.ndarray:
        """Teacher-forced conditionals ``[B, 40, 7]``: row 0 is p(r), row 1+i is p(o_i | r, o_<i).

        Categories follow the codec (5 reward codes, ``codec.NUM_CATEGORIES[i]`` codes for o_i;
        the rest of each row is 0). The product of the observed entries is ``exp(log_prob)``.
        A row whose conditioning prefix is impossible is all zeros.
        """
        r = np.asarray(reward_code, dtype=np.int64)
        o = np.asarray(obs_next, dtype=np.int64)
        b = self.batch_size
        an = self.analysis
        probs = np.zeros((b, 1 + OBS_DIM, codec.MAX_CATEGORIES), dtype=np.float64)
        probs[np.arange(b), 0, an.reward_code] = 1.0
        r_ok = (r == an.reward_code).astype(np.float64)
        # within a trial: mixture over the 16 classes, conditioned on the observed prefix
        codes = self.class_obs.astype(np.int64)  # [B, 16, 39]
        eq = codes == o[:, None, :]
        prefix = np.concatenate([np.ones((b, NUM_CLASSES, 1), dtype=bool), np.cumprod(eq, axis=-1)[..., :-1].astype(bool)], -1)
        w = self.class_mass[:, :, None] * prefix * r_ok[:, None, None]  # [B, 16, 39]
        onehot = codes[..., None] == np.arange(codec.MAX_CATEGORIES)  # [B, 16, 39, 7]
        num = (w[..., None] * onehot).sum(1)  # [B, 39, 7]
        den = num.sum(-1, keepdims=True)
        within = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
        # trial start: coordinates 1/2, features through the stone-map mixture, colours 1/6, flags 0
        start = np.zeros((b, OBS_DIM, codec.MAX_CATEGORIES), dtype=np.float64)
        wi = self.stone_map_mass.astype(np.float64) * r_ok[:, None]  # [B, 8]
        for s in range(NUM_STONES):
            start[:, 5 * s : 5 * s + 3, :2] = 0.5
            pv = o[:, 5 * s] + 2 * o[:, 5 * s + 1] + 4 * o[:, 5 * s + 2]
            coords_ok = (o[:, 5 * s : 5 * s + 3] <= 1).all(1)
            wi = wi * coords_ok[:, None]
            fi = _POPCOUNT3[(np.minimum(pv, 7)[:, None] ^ 7 ^ np.arange(8))]  # [B, 8] feature under each i
            num_f = (wi[:, :, None] * (fi[:, :, None] == np.arange(4))).sum(1)  # [B, 4]
            den_f = num_f.sum(-1, keepdims=True)
            start[:, 5 * s + 3, :4] = np.divide(num_f, den_f, out=np.zeros_like(num_f), where=den_f > 0)
            wi = wi * (fi == o[:, 5 * s + 3, None]) * (o[:, 5 * s + 4, None] == 0)
            start[:, 5 * s + 4, 0] = 1.0
        start[:, 15::2, :6] = 1.0 / 6.0
        start[:, 16::2, 0] = 1.0
        probs[:, 1:] = np.where(an.boundary[:, None, None], start, within)
        # zero every row whose conditioning prefix has probability 0
        idx = np.concatenate([r[:, None], o], 1).clip(0, codec.MAX_CATEGORIES - 1)
        seen = np.take_along_axis(probs, idx[..., None], -1)[..., 0] > 0  # [B, 40]
        prefix_ok = np.concatenate([np.ones((b, 1), dtype=bool), np.cumprod(seen, axis=1)[:, :-1].astype(bool)], 1)
        return probs * prefix_ok[..., None]

    def factorised_log_probs(self, reward_code: np.ndarray, obs_next: np.ndarray) -> np.ndarray:
        """``[B, 40]`` log of the observed entries of :meth:`factorised_probs` (sums to :meth:`log_prob`)."""
        probs = self.factorised_probs(reward_code, obs_next)
        idx = np.concatenate([np.asarray(reward_code, dtype=np.int64)[:, None], np.asarray(obs_next, dtype=np.int64)], 1)
        with np.errstate(divide="ignore"):
            return np.log(np.take_along_axis(probs, np.minimum(idx, codec.MAX_CATEGORIES - 1)[..., None], -1)[..., 0])

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, keys: np.ndarray, num_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``K = num_samples`` outcomes per row, each a function of ``keys[b]`` alone.

        Returns ``(reward_codes [B, K] int64, obs_codes [B, K, 39] uint8, cid [B, K] int64)`` where
        ``cid`` is the constraint that turns the posterior into the outcome's posterior.
        """
        k = int(num_samples)
        b = self.batch_size
        an = self.analysis
        u = crng.uniform(np.asarray(keys, dtype=np.uint64), (k, 1 + NUM_STONES + NUM_POTIONS))  # [B, K, 16]
        # within a trial: inverse CDF over the 16 classes, in exact integers
        cdf = np.cumsum(self.class_mass, axis=-1)  # [B, 16]
        x = u[..., 0] * cdf[:, -1:]  # [B, K]
        cls = np.minimum((cdf[:, None, :] <= x[..., None]).sum(-1), NUM_CLASSES - 1)
        obs = np.repeat(an.base_obs[:, None, :], k, axis=1)  # [B, K, 39]
        cid = np.where(an.potion[:, None], (an.pv * 6 + an.q)[:, None] * NUM_CLASSES + cls, NO_CONSTRAINT)
        idx = np.nonzero(an.potion)[0]
        if len(idx):
            c = cls[idx]  # [n, K]
            new_pv = an.pv[idx, None] ^ FLIP_OF_J[c >> 2]
            col = 5 * an.stone[idx, None, None] + np.arange(4)  # [n, 1, 4]
            obs[idx[:, None, None], np.arange(k)[None, :, None], col] = _STONE_FEATURES[new_pv, c & 3]
        # trial start: stone map from the posterior, then items uniform
        bidx = np.nonzero(an.boundary)[0]
        if len(bidx):
            ub = u[bidx]
            cdf_i = np.cumsum(self.stone_map_mass[bidx], axis=-1)
            i = np.minimum((cdf_i[:, None, :] <= (ub[..., 0] * cdf_i[:, -1:])[..., None]).sum(-1), 7)  # [n, K]
            v = np.minimum((ub[..., 1 : 1 + NUM_STONES] * 8).astype(np.int64), 7)  # [n, K, 3] latent vertices
            pv = v ^ 7 ^ i[..., None]
            start = np.zeros((len(bidx), k, OBS_DIM), dtype=np.uint8)
            sets = np.full((len(bidx), k), 255, dtype=np.int64)
            for s in range(NUM_STONES):
                for ax in range(3):
                    start[..., 5 * s + ax] = (pv[..., s] >> ax) & 1
                start[..., 5 * s + 3] = _POPCOUNT3[v[..., s]]
                sets &= CONSISTENT_STONE_MAPS[pv[..., s], _POPCOUNT3[v[..., s]]]
            start[..., 15::2] = np.minimum((ub[..., 1 + NUM_STONES :] * 6).astype(np.int64), 5)  # colours
            obs[bidx] = start
            cid[bidx] = NUM_POTION_CIDS + sets
        rewards = np.repeat(an.reward_code[:, None], k, axis=1)
        return rewards, obs, cid


def predictive(post: np.ndarray, obs: np.ndarray, actions: np.ndarray, t: np.ndarray | int, cols: np.ndarray | None = None) -> Predictive:
    """The exact predictive distribution of the next (reward, observation) for each row.

    Args:
        post: ``[B, W]`` posterior words (``W = 1152``, or compressed to word columns ``cols``).
        obs: ``[B, 39]`` current observation codes; ``actions``: ``[B]``; ``t``: steps taken so far.
        cols: ``[B, W]`` word indices of a compressed posterior (``PAD_WORD`` = zero padding).
    """
    post = np.asarray(post, dtype=np.uint64)
    an = analyse_step(obs, actions, t)
    b = len(post)
    total = popcount_words(post)
    class_mass = np.zeros((b, NUM_CLASSES), dtype=np.int64)
    class_mass[:, 0] = total
    idx = np.nonzero(an.potion)[0]
    if len(idx):
        cand = CANDIDATE_CLASSES[an.f[idx]]  # [n, 7]
        base_cid = (an.pv[idx] * 6 + an.q[idx]) * NUM_CLASSES
        cid = np.where(cand < NUM_CLASSES, base_cid[:, None] + cand, ZERO_CID)
        rows = constraint_words(cid, None if cols is None else cols[idx])  # [n, 7, W]
        mass = np.zeros((len(idx), NUM_CLASSES + 1), dtype=np.int64)
        mass[np.arange(len(idx))[:, None], cand] = popcount_words(rows & post[idx, None, :])
        class_mass[idx] = mass[:, :NUM_CLASSES]
    bidx = np.nonzero(an.boundary)[0]
    stone_map_mass = np.zeros((b, NUM_STONE_MAPS), dtype=np.int64)
    if len(bidx):
        stone_map_mass[bidx] = stone_map_masses(post[bidx], None if cols is None else cols[bidx])
    return Predictive(an, total, class_mass, stone_map_mass)


# --- filtering a history --------------------------------------------------------------------


def observed_constraint(an: StepAnalysis, reward_code: np.ndarray, obs_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The constraint an observed transition imposes, without computing the full predictive.

    Returns ``(cid [B], possible [B])``: ``cid`` is ``NO_CONSTRAINT`` on uninformative rows;
    ``possible`` is False where the chemistry-independent part of the observation is impossible
    (then the transition has probability 0 under every chemistry).
    """
    o = np.asarray(obs_next, dtype=np.uint8)
    b = len(o)
    rows = np.arange(b)
    possible = np.asarray(reward_code, dtype=np.int64) == an.reward_code
    cid = np.full(b, NO_CONSTRAINT, dtype=np.int64)
    # within a trial: everything but the potion stone's 4 features is deterministic
    stone_feat = (np.arange(OBS_DIM)[None, :] < 15) & (np.arange(OBS_DIM)[None, :] // 5 == an.stone[:, None]) & (
        np.arange(OBS_DIM)[None, :] % 5 < 4
    )
    free = stone_feat & an.potion[:, None]
    det_ok = ((o == an.base_obs) | free).all(1)
    new_pv = perceived_vertex(o, an.stone)
    coords_ok = (o[rows[:, None], 5 * an.stone[:, None] + np.arange(3)] <= 1).all(1)
    j = _J_OF_FLIP[np.minimum(new_pv, 7) ^ an.pv]
    f2 = o[rows, 5 * an.stone + 3].astype(np.int64)
    pot_ok = coords_ok & (j >= 0) & (f2 <= 3)
    cid = np.where(an.potion & pot_ok, (an.pv * 6 + an.q) * NUM_CLASSES + 4 * np.maximum(j, 0) + np.minimum(f2, 3), cid)
    within_ok = det_ok & (~an.potion | pot_ok)
    # trial start
    sets = _trial_start_stone_maps(o)
    cid = np.where(an.boundary, NUM_POTION_CIDS + sets, cid)
    possible &= np.where(an.boundary, sets > 0, within_ok)
    return cid, possible


class BayesFilter:
    """Posterior over chemistries for a batch of episodes, updated one observed step at a time.

    Example::

        f = BayesFilter(obs_codes[:, 0])
        for t in range(200):
            logp = f.update(actions[:, t], reward_codes[:, t], obs_codes[:, t + 1])  # [B] nats
    """

    def __init__(self, obs0: np.ndarray) -> None:
        self.obs = np.asarray(obs0, dtype=np.uint8).copy()
        self.post = initial_posterior(self.obs)
        self.t = 0

    @property
    def mass(self) -> np.ndarray:
        """``[B]`` int64 posterior mass in bit units (``NUM_BITS`` = prior mass 1)."""
        return popcount_words(self.post)

    def probabilities(self) -> np.ndarray:
        """``[B, 41856]`` posterior probabilities in chemistry-index order."""
        return posterior_probabilities(self.post)

    def predictive(self, actions: np.ndarray) -> Predictive:
        """The exact predictive distribution of the next step for ``actions [B]``."""
        return predictive(self.post, self.obs, actions, self.t)

    def update(self, actions: np.ndarray, reward_codes: np.ndarray, obs_next: np.ndarray) -> np.ndarray:
        """Condition on one observed step; return ``[B]`` log p(r_{t+1}, o_{t+1} | history, a_{t+1}) in nats.

        Rows whose step is impossible under every chemistry get ``-inf`` and an empty posterior.
        """
        obs_next = np.asarray(obs_next, dtype=np.uint8)
        an = analyse_step(self.obs, actions, self.t)
        cid, possible = observed_constraint(an, reward_codes, obs_next)
        logp = np.zeros(len(cid))
        before = popcount_words(self.post)
        idx = np.nonzero(cid >= 0)[0]
        if len(idx):
            self.post[idx] &= tables().words_full[cid[idx]]
            after = popcount_words(self.post[idx])
            with np.errstate(divide="ignore", invalid="ignore"):  # empty posteriors: replaced by -inf below
                logp[idx] = np.log(after) - np.log(before[idx])
        logp = logp - np.where(an.boundary, TRIAL_ITEMS_NATS, 0.0)
        logp = np.where(possible & (before > 0), logp, -np.inf)
        self.post[~possible] = 0
        self.obs = obs_next.copy()
        self.t += 1
        return logp


def episode_log_probs(obs_codes: np.ndarray, actions: np.ndarray, reward_codes: np.ndarray) -> np.ndarray:
    """``[B, T]`` log p(r_{t+1}, o_{t+1} | history, a_{t+1}) of whole recorded histories (nats)."""
    obs_codes = np.asarray(obs_codes, dtype=np.uint8)
    n_steps = actions.shape[1]
    filt = BayesFilter(obs_codes[:, 0])
    out = np.empty((len(obs_codes), n_steps))
    for t in range(n_steps):
        out[:, t] = filt.update(actions[:, t], reward_codes[:, t], obs_codes[:, t + 1])
    return out


def episode_factorised_nats(obs_codes: np.ndarray, actions: np.ndarray, reward_codes: np.ndarray) -> np.ndarray:
    """``[B, 40]`` per-episode sums over steps of the factorised cross-entropies (nats).

    Column 0 is the reward's ``-log p(r)``; column 1+i is ``-log p(o_i | r, o_<i)``. Each row sums
    to ``-episode_log_probs(...).sum(1)`` (slower than it: it builds every conditional).
    """
    obs_codes = np.asarray(obs_codes, dtype=np.uint8)
    filt = BayesFilter(obs_codes[:, 0])
    out = np.zeros((len(obs_codes), 1 + OBS_DIM))
    for t in range(actions.shape[1]):
        pred = filt.predictive(actions[:, t])
        out -= pred.factorised_log_probs(reward_codes[:, t], obs_codes[:, t + 1])
        filt.update(actions[:, t], reward_codes[:, t], obs_codes[:, t + 1])
    return out


def filter_history(obs_codes: np.ndarray, actions: np.ndarray, reward_codes: np.ndarray) -> np.ndarray:
    """``[B, 1152]`` posterior words after a recorded history (``obs [B, T+1, 39]``, ``actions [B, T]``)."""
    filt = BayesFilter(np.asarray(obs_codes)[:, 0])
    for t in range(actions.shape[1]):
        filt.update(actions[:, t], reward_codes[:, t], obs_codes[:, t + 1])
    return filt.post


__all__ = [
    "BayesFilter",
    "NUM_BITS",
    "NUM_WORDS",
    "Predictive",
    "TRIAL_ITEMS_NATS",
    "analyse_step",
    "constraint_words",
    "episode_factorised_nats",
    "episode_log_probs",
    "filter_history",
    "initial_posterior",
    "pack_chemistry_sets",
    "popcount_words",
    "posterior_probabilities",
    "predictive",
    "tables",
    "unpack_chemistry_sets",
]
