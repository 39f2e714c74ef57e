"""The exact predictive distribution of the next (reward, observation) codes given a posterior.

Given a posterior set of chemistries (:mod:`alchemy_mbrl.bayes.posterior`), an observed state and
an action, the next reward is deterministic and the next observation is either deterministic
(cauldron, no-op, used items), one of at most 7 outcome classes of the stone (a potion step), or a
new trial's items (a trial boundary). :class:`Predictive` holds that distribution, factorised like
the learned world model: ``p(r) * prod_i p(o_i | r, o_<i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from alchemy_mbrl import rng as crng
from alchemy_mbrl.bayes.posterior import (
    CANDIDATE_CLASSES,
    CONSISTENT_STONE_MAPS,
    FLIP_OF_J,
    NO_CONSTRAINT,
    NUM_CLASSES,
    NUM_POTION_CIDS,
    POPCOUNT3,
    REWARD_CODE_OF_FEATURE,
    STONE_FEATURE_CODES,
    USED_STONE_BLOCK,
    ZERO_CID,
    ZERO_REWARD_CODE,
    constraint_tables,
    constraint_words,
    popcount_words,
    stone_map_masses,
)
from alchemy_mbrl.env import codec
from alchemy_mbrl.env.alchemy import (
    EPISODE_STEPS,
    NUM_POTIONS,
    NUM_STONES,
    OBS_DIM,
    STEPS_PER_TRIAL,
    action_target,
)
from alchemy_mbrl.env.chemistry import (
    NUM_STONE_MAPS,
)
from alchemy_mbrl.env.constants import TRIAL_ITEMS_NATS

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
    return constraint_tables().words_full[NUM_POTION_CIDS + trial_start_stone_maps(obs0)].copy()


def trial_start_stone_maps(obs: np.ndarray) -> np.ndarray:
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
        base[:, :15].reshape(b, NUM_STONES, 5)[idx, s[idx]] = USED_STONE_BLOCK
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
            sets = trial_start_stone_maps(o)
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
            fi = POPCOUNT3[(np.minimum(pv, 7)[:, None] ^ 7 ^ np.arange(8))]  # [B, 8] feature under each i
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
            obs[idx[:, None, None], np.arange(k)[None, :, None], col] = STONE_FEATURE_CODES[new_pv, c & 3]
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
                start[..., 5 * s + 3] = POPCOUNT3[v[..., s]]
                sets &= CONSISTENT_STONE_MAPS[pv[..., s], POPCOUNT3[v[..., s]]]
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
