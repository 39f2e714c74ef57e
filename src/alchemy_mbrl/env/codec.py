"""The categorical codec: observation features and rewards <-> small integer codes.

The paper (Section 2.3.2) encodes every real-valued observation feature and the reward
as a categorical variable. In symbolic Alchemy every feature takes a handful of exact
values (SPEC §6), so the codec is a fixed table, written out here once and used by
everything downstream: the environment emits codes, the HDF5 shards store codes, the
world model reads and predicts codes, the exact Bayesian model predicts codes.

Observation layout (39 features, SPEC §6)::

    5*s + 0..2   perceived coordinate of stone s      codes 0:-1, 1:+1, 2:2.0 (used)
    5*s + 3      reward feature of stone s            codes 0:-1, 1:-1/3, 2:1/3, 3:1, 4:2.0 (used)
    5*s + 4      stone-used flag                      codes 0:0.0, 1:1.0
    15 + 2*p     colour of potion p                   codes q=0..5: q/3-1, 6:1.0 (used)
    15 + 2*p + 1 potion-used flag                     codes 0:0.0, 1:1.0

Reward codes: 0:-3, 1:-1, 2:0, 3:+1, 4:+15.

Float values are the float32 nearest to the exact rationals (computed in float64 and
cast), as the reference does; see SPEC §6.
"""

from __future__ import annotations

import numpy as np

from alchemy_mbrl.env.constants import NUM_POTIONS, NUM_STONES, OBS_DIM

NUM_REWARD_CODES = 5

#: Feature kinds, in the order of one stone block then one potion block.
STONE_COORD_VALUES = np.array([-1.0, 1.0, 2.0])
STONE_REWARD_VALUES = np.array([-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0, 2.0])
FLAG_VALUES = np.array([0.0, 1.0])
POTION_COLOUR_VALUES = np.array([q / 3.0 - 1.0 for q in range(6)] + [1.0])

#: Code of a used slot for each kind of feature.
USED_COORD_CODE = 2
USED_REWARD_FEATURE_CODE = 4
USED_COLOUR_CODE = 6

#: The reward values in code order.
REWARD_VALUES = np.array([-3, -1, 0, 1, 15], dtype=np.int64)


def _feature_value_tables() -> list[np.ndarray]:
    tables: list[np.ndarray] = []
    for _ in range(NUM_STONES):
        tables += [STONE_COORD_VALUES] * 3 + [STONE_REWARD_VALUES, FLAG_VALUES]
    for _ in range(NUM_POTIONS):
        tables += [POTION_COLOUR_VALUES, FLAG_VALUES]
    return [t.astype(np.float64).astype(np.float32) for t in tables]


#: ``FEATURE_VALUES[i]`` is the float32 value table of observation feature i.
FEATURE_VALUES: list[np.ndarray] = _feature_value_tables()

#: ``NUM_CATEGORIES[i]`` is the number of codes of observation feature i.
NUM_CATEGORIES: np.ndarray = np.array([len(t) for t in FEATURE_VALUES], dtype=np.int64)

#: Largest number of codes of any observation feature (7, the potion colour).
MAX_CATEGORIES: int = int(NUM_CATEGORIES.max())

#: Padded value table ``[39, MAX_CATEGORIES]`` (padding is NaN), for vectorised decoding.
VALUE_TABLE: np.ndarray = np.full((OBS_DIM, MAX_CATEGORIES), np.nan, dtype=np.float32)
for _i, _t in enumerate(FEATURE_VALUES):
    VALUE_TABLE[_i, : len(_t)] = _t

#: Offset of each feature's first code in the concatenated one-hot vector (length ``TOTAL_CATEGORIES``).
CATEGORY_OFFSETS: np.ndarray = np.concatenate([[0], np.cumsum(NUM_CATEGORIES)[:-1]]).astype(np.int64)
TOTAL_CATEGORIES: int = int(NUM_CATEGORIES.sum())

_FLAT_VALUES = VALUE_TABLE.reshape(-1)


def decode_observation(codes: np.ndarray) -> np.ndarray:
    """Return the float32 observation(s) ``[..., 39]`` for integer codes ``[..., 39]``."""
    codes = np.asarray(codes)
    if codes.shape[-1] != OBS_DIM:
        raise ValueError(f"observation codes must have last dimension {OBS_DIM}, got shape {codes.shape}")
    flat = codes.astype(np.int64) + np.arange(OBS_DIM) * MAX_CATEGORIES
    return _FLAT_VALUES[flat]


def encode_observation(obs: np.ndarray) -> np.ndarray:
    """Return uint8 codes ``[..., 39]`` for float observations ``[..., 39]``.

    Raises ``ValueError`` if any feature holds a value outside its table.
    """
    obs = np.asarray(obs, dtype=np.float32)
    if obs.shape[-1] != OBS_DIM:
        raise ValueError(f"observations must have last dimension {OBS_DIM}, got shape {obs.shape}")
    codes = np.full(obs.shape, 255, dtype=np.uint8)
    for i, table in enumerate(FEATURE_VALUES):
        for c, v in enumerate(table):
            codes[..., i][obs[..., i] == v] = c
    if (codes == 255).any():
        bad = np.argwhere(codes == 255)[0]
        raise ValueError(f"observation value {obs[tuple(bad)]!r} at index {tuple(bad)} is not in the codec")
    return codes


def encode_reward(rewards: np.ndarray) -> np.ndarray:
    """Return uint8 reward codes for rewards in {-3, -1, 0, 1, 15}."""
    r = np.asarray(rewards)
    codes = np.full(r.shape, 255, dtype=np.uint8)
    for c, v in enumerate(REWARD_VALUES):
        codes[r == v] = c
    if (codes == 255).any():
        bad = r[codes == 255][0]
        raise ValueError(f"reward {bad!r} is not one of {REWARD_VALUES.tolist()}")
    return codes


def decode_reward(codes: np.ndarray) -> np.ndarray:
    """Return the integer rewards for reward codes."""
    return REWARD_VALUES[np.asarray(codes, dtype=np.int64)]


def codec_attributes() -> dict[str, np.ndarray]:
    """The codec as arrays, stored as attributes of every HDF5 shard."""
    return {
        "codec_value_table": VALUE_TABLE,
        "codec_num_categories": NUM_CATEGORIES,
        "codec_reward_values": REWARD_VALUES,
    }
