"""Episode data for training the world model: shards held in memory, and a resumable batch sampler.

The training shards are loaded into memory as uint8 arrays (1e6 episodes = 7.8 GB of observation
codes; fine on a GPU node with 128 GB of RAM). Batches are sampled by :class:`EpisodeSampler`, whose
order is a pure function of ``(seed, epoch, cursor)``: a seeded permutation of the episodes per epoch,
read in order. Its state is two integers, saved in every checkpoint, so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import manifest_shards, open_shard

_KEYS = ("obs_codes", "actions", "rewards")
_SHAPES = {"obs_codes": (201, codec.OBS_DIM), "actions": (200,)}


@dataclass
class EpisodeArrays:
    """Whole episodes in memory: ``obs_codes [N, 201, 39]``, ``actions [N, 200]``, ``reward_codes [N, 200]`` (uint8)."""

    obs_codes: np.ndarray
    actions: np.ndarray
    reward_codes: np.ndarray

    @property
    def episodes(self) -> int:
        return int(self.actions.shape[0])

    def take(self, idx: np.ndarray | slice) -> "EpisodeArrays":
        return EpisodeArrays(self.obs_codes[idx], self.actions[idx], self.reward_codes[idx])


def load_split(manifest: str | Path, split: str, max_episodes: int | None = None) -> EpisodeArrays:
    """Episodes of the ``split`` ('train' or 'validation') shards of a manifest, in manifest order.

    Raises ``ValueError`` if the manifest is missing or lists no shard of that split.
    """
    paths = manifest_shards(manifest, split)
    if not paths:
        raise ValueError(f"{manifest}: the manifest lists no '{split}' shard")
    counts = []
    for p in paths:
        with open_shard(p) as sh:
            counts.append(sh.episodes)
    total = sum(counts) if max_episodes is None else min(sum(counts), int(max_episodes))
    # preallocated, filled shard by shard: peak memory = the arrays plus one shard
    out = EpisodeArrays(
        np.empty((total, *_SHAPES["obs_codes"]), dtype=np.uint8),
        np.empty((total, *_SHAPES["actions"]), dtype=np.uint8),
        np.empty((total, *_SHAPES["actions"]), dtype=np.uint8),
    )
    n = 0
    for p, c in zip(paths, counts):
        if n >= total:
            break
        take = min(c, total - n)
        with open_shard(p) as sh:
            d = sh.read(0, take, keys=_KEYS)
        out.obs_codes[n : n + take] = d["obs_codes"]
        out.actions[n : n + take] = d["actions"]
        out.reward_codes[n : n + take] = codec.encode_reward(d["rewards"])
        n += take
    return out


class EpisodeSampler:
    """Episode indices in seeded per-epoch permutations; state = ``(epoch, cursor)``."""

    def __init__(self, episodes: int, seed: int, epoch: int = 0, cursor: int = 0) -> None:
        if episodes < 1:
            raise ValueError("no training episodes")
        self.episodes = int(episodes)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.cursor = int(cursor)
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.default_rng([self.seed, self.epoch, 0xDA7A]).permutation(self.episodes)
            self._perm_epoch = self.epoch
        return self._perm

    def next(self, batch: int) -> np.ndarray:
        """The next ``batch`` episode indices (continuing into the next epoch when one ends)."""
        out: list[np.ndarray] = []
        need = batch
        while need:
            perm = self._permutation()
            take = perm[self.cursor : self.cursor + need]
            out.append(take)
            need -= len(take)
            self.cursor += len(take)
            if self.cursor == self.episodes:
                self.epoch += 1
                self.cursor = 0
        return np.concatenate(out)

    @property
    def epochs_done(self) -> float:
        """Fractional number of passes over the data."""
        return self.epoch + self.cursor / self.episodes

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "episodes": self.episodes, "seed": self.seed}

    def load_state_dict(self, s: dict[str, int]) -> None:
        if int(s["episodes"]) != self.episodes or int(s["seed"]) != self.seed:
            raise ValueError(
                f"checkpoint's data order is for {s['episodes']} episodes and seed {s['seed']}, "
                f"but this run has {self.episodes} episodes and seed {self.seed}"
            )
        self.epoch, self.cursor = int(s["epoch"]), int(s["cursor"])
