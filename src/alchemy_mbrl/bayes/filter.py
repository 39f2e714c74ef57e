"""Filtering: the posterior after a recorded history, and the history's exact log-likelihood.

:class:`BayesFilter` intersects the posterior with one consistency set per informative step
(:func:`observed_constraint`); :func:`episode_log_probs` scores whole episodes (Table 2's floor).
"""

from __future__ import annotations

import numpy as np
from alchemy_mbrl.bayes.posterior import (
    J_OF_FLIP,
    NO_CONSTRAINT,
    NUM_CLASSES,
    NUM_POTION_CIDS,
    constraint_tables,
    popcount_words,
    posterior_probabilities,
)
from alchemy_mbrl.bayes.predictive import (
    Predictive,
    StepAnalysis,
    analyse_step,
    initial_posterior,
    perceived_vertex,
    predictive,
    trial_start_stone_maps,
)
from alchemy_mbrl.env.alchemy import OBS_DIM
from alchemy_mbrl.env.constants import TRIAL_ITEMS_NATS

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
    j = J_OF_FLIP[np.minimum(new_pv, 7) ^ an.pv]
    f2 = o[rows, 5 * an.stone + 3].astype(np.int64)
    pot_ok = coords_ok & (j >= 0) & (f2 <= 3)
    cid = np.where(an.potion & pot_ok, (an.pv * 6 + an.q) * NUM_CLASSES + 4 * np.maximum(j, 0) + np.minimum(f2, 3), cid)
    within_ok = det_ok & (~an.potion | pot_ok)
    # trial start
    sets = trial_start_stone_maps(o)
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
            self.post[idx] &= constraint_tables().words_full[cid[idx]]
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
