"""Counter-based random numbers, one independent stream per episode or search.

Batched code (B searches in lockstep) must make the same random choices for a search
whatever else is in its batch, so that batched and one-at-a-time runs agree and an
evaluation can be split into chunks freely. A shared ``np.random.Generator`` cannot do
that. Instead every search carries a 64-bit *key*; random draws are pure functions of
(key, counter) computed with the SplitMix64 finaliser, vectorised over the batch.

    keys = episode_keys(seed=0, episodes=np.arange(8))     # [8] uint64
    k2 = fold_in(keys, step)                              # a new key per step
    u = uniform(k2, (3,))                                 # [8, 3] floats in [0, 1)
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (a bijection on uint64 with good avalanche)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def fold_in(keys: np.ndarray, data: int | np.ndarray) -> np.ndarray:
    """New keys from ``keys`` and integer ``data`` (broadcast): a different stream per value."""
    k = np.asarray(keys, dtype=np.uint64)
    d = np.asarray(data, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(k ^ _mix(d * _GOLDEN + _GOLDEN))


def episode_keys(seed: int, episodes: np.ndarray) -> np.ndarray:
    """``[len(episodes)]`` keys: episode i of an evaluation with global ``seed``."""
    return fold_in(fold_in(np.uint64(0x5EED), int(seed)), np.asarray(episodes, dtype=np.int64))


def bits(keys: np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``[*keys.shape, *shape]`` uint64 random words, counter-indexed per key."""
    k = np.asarray(keys, dtype=np.uint64)
    n = int(np.prod(shape)) if shape else 1
    ctr = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        out = _mix(k[..., None] + (ctr + np.uint64(1)) * _GOLDEN)
    return out.reshape(*k.shape, *shape)


def uniform(keys: np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``[*keys.shape, *shape]`` float64 uniforms in [0, 1) (53 random bits each)."""
    return (bits(keys, shape) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def integers(keys: np.ndarray, high: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``[*keys.shape, *shape]`` int64 uniform in ``0..high-1``."""
    return np.minimum((uniform(keys, shape) * high).astype(np.int64), high - 1)


def categorical(keys: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs [..., n]`` (rows need not be normalised), inverse-CDF with :func:`uniform`."""
    p = np.asarray(probs, dtype=np.float64)
    cdf = np.cumsum(p, axis=-1)
    u = uniform(keys) * cdf[..., -1]
    return np.minimum((cdf <= u[..., None]).sum(axis=-1), p.shape[-1] - 1)
