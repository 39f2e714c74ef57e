"""The constants of symbolic Alchemy (SPEC §2–§6), defined once and imported everywhere.

An episode has ``NUM_TRIALS`` trials of ``STEPS_PER_TRIAL`` steps; each trial draws
``NUM_STONES`` stones and ``NUM_POTIONS`` potions; there are ``NUM_ACTIONS`` actions and an
observation has ``OBS_DIM`` features.
"""

from __future__ import annotations

import math

import numpy as np

NUM_TRIALS = 10
STEPS_PER_TRIAL = 20
EPISODE_STEPS = NUM_TRIALS * STEPS_PER_TRIAL  # 200
NUM_STONES = 3
NUM_POTIONS = 12
NUM_ACTIONS = 40
OBS_DIM = 39
#: Latent stone vertices and latent potions a trial draws its items from (uniformly).
NUM_STONE_VERTICES = 8
NUM_POTION_TYPES = 6

#: ``[201]`` bool: observation t is the first observation of a trial (t = 0, 20, ..., 180).
TRIAL_START: np.ndarray = np.zeros(EPISODE_STEPS + 1, dtype=bool)
TRIAL_START[0:EPISODE_STEPS:STEPS_PER_TRIAL] = True
TRIAL_START.flags.writeable = False

#: ``[200]`` bool: transition t (predicting observation t+1) lands on a new trial's first observation.
TRIAL_START_TARGETS: np.ndarray = TRIAL_START[1:].copy()
TRIAL_START_TARGETS.flags.writeable = False

#: Entropy of the items drawn at the 9 observed trial starts, per step of an episode (nats):
#: 9 x (3 ln 8 + 12 ln 6) / 200 ~ 1.248. Under the uniform data policy new items are independent
#: of the past, so no model (not even one that knows the chemistry) can predict them.
#: ``-log`` of the chemistry-independent probability of a trial's new items: 3 ln 8 + 12 ln 6 nats.
TRIAL_ITEMS_NATS: float = NUM_STONES * math.log(NUM_STONE_VERTICES) + NUM_POTIONS * math.log(NUM_POTION_TYPES)
TRIAL_START_FLOOR_NATS: float = int(TRIAL_START_TARGETS.sum()) * TRIAL_ITEMS_NATS / EPISODE_STEPS
