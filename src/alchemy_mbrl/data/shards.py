"""HDF5 shards of uniform-random episodes, and the manifest that lists them.

One shard = one HDF5 file of N whole episodes, generated from ``(seed, shard index)`` alone,
so that any shard can be regenerated independently and byte-identically. Layout
(``FORMAT_VERSION`` 1; see ``docs/formats.md``)::

    obs_codes        uint8  [N, 201, 39]   codec codes of obs_0 .. obs_200
    actions          uint8  [N, 200]       a_1 .. a_200 (the action taken after obs_{t-1})
    rewards          int8   [N, 200]       r_1 .. r_200 in {-3, -1, 0, 1, 15}
    potion_perm      int8   [N, 3]         the chemistry (SPEC §2) ...
    potion_sign      int8   [N, 3]
    stone_sign       int8   [N, 3]
    graph_id         int16  [N]
    chemistry_index  int32  [N]            (m * 8 + i) * 109 + g
    trial_start      bool   [201]          True where obs_t is a trial's first observation (t = 0, 20, ..., 180)

Datasets are chunked by episodes and gzip-compressed. File attributes record the seed,
shard index, number of shards, level, policy, codec tables and package version.
A shard is written through :func:`alchemy_mbrl.io.atomic_write`: renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
from tqdm import tqdm

from alchemy_mbrl import __version__
from alchemy_mbrl.env import codec
from alchemy_mbrl.env.alchemy import AlchemyEnv
from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES, NUM_GRAPHS
from alchemy_mbrl.env.constants import EPISODE_STEPS, NUM_ACTIONS, OBS_DIM, TRIAL_START
from alchemy_mbrl.io import atomic_write, write_json

FORMAT_VERSION = 1
LEVEL = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"
GENERATION_BATCH = 4096  # episodes stepped together; part of the format's determinism contract
CHUNK_EPISODES = 256


_SPECS: dict[str, tuple[tuple[int, ...], np.dtype]] = {
    "obs_codes": ((EPISODE_STEPS + 1, OBS_DIM), np.dtype(np.uint8)),
    "actions": ((EPISODE_STEPS,), np.dtype(np.uint8)),
    "rewards": ((EPISODE_STEPS,), np.dtype(np.int8)),
    "potion_perm": ((3,), np.dtype(np.int8)),
    "potion_sign": ((3,), np.dtype(np.int8)),
    "stone_sign": ((3,), np.dtype(np.int8)),
    "graph_id": ((), np.dtype(np.int16)),
    "chemistry_index": ((), np.dtype(np.int32)),
}


class ShardError(ValueError):
    """A shard or manifest is missing, truncated, corrupt or of the wrong format."""


def _value_errors(name: str, arr: np.ndarray) -> tuple[np.ndarray, str] | None:
    """``(mask of values outside the valid range, description of the range)`` for a dataset, or None."""
    if name == "obs_codes":
        bad = arr >= codec.NUM_CATEGORIES.astype(np.uint8)
        return bad, "codes 0..n-1 of each feature's n categories (env/codec.py)"
    if name == "actions":
        return arr >= NUM_ACTIONS, f"0..{NUM_ACTIONS - 1}"
    if name == "rewards":
        return ~np.isin(arr, codec.REWARD_VALUES), f"one of {codec.REWARD_VALUES.tolist()}"
    if name in ("potion_sign", "stone_sign"):
        return ~np.isin(arr, (-1, 1)), "-1 or +1"
    if name == "potion_perm":
        bad = (arr < 0) | (arr > 2)
        if arr.size and not bad.any():
            bad = np.zeros(arr.shape, dtype=bool)
            bad[:, 0] = (np.sort(arr, axis=1) != np.arange(3)).any(axis=1)
        return bad, "rows that are permutations of (0, 1, 2)"
    if name == "graph_id":
        return (arr < 0) | (arr >= NUM_GRAPHS), f"0..{NUM_GRAPHS - 1}"
    if name == "chemistry_index":
        return (arr < 0) | (arr >= NUM_CHEMISTRIES), f"0..{NUM_CHEMISTRIES - 1}"
    return None


def check_values(path: str | Path, name: str, arr: np.ndarray, start: int = 0) -> None:
    """Raise :class:`ShardError` naming the shard, the dataset and the first bad index if any value of
    dataset ``name`` (episodes ``start:``) lies outside its codec range."""
    found = _value_errors(name, arr)
    if found is None:
        return
    bad, allowed = found
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        idx = (idx[0] + start, *idx[1:])
        value = arr[(idx[0] - start, *idx[1:])].item()
        raise ShardError(
            f"{path}: dataset '{name}' holds {value!r} at index {list(idx)} (episode {idx[0]}), outside its range "
            f"({allowed}): corrupt shard, or not one of this package's"
        )


def shard_seed_sequence(seed: int, shard: int) -> np.random.SeedSequence:
    """The seed sequence of shard ``shard`` of a dataset with global seed ``seed``."""
    return np.random.SeedSequence([int(seed), int(shard)])


def generate_episodes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Roll out ``n`` episodes of the uniform-random policy; return the shard arrays."""
    env = AlchemyEnv(n, seed=rng)
    obs = np.empty((n, EPISODE_STEPS + 1, OBS_DIM), dtype=np.uint8)
    actions = rng.integers(0, 40, size=(n, EPISODE_STEPS), dtype=np.uint8)
    rewards = np.empty((n, EPISODE_STEPS), dtype=np.int8)
    ts = env.reset()
    obs[:, 0] = ts.observation_codes
    for t in range(EPISODE_STEPS):
        ts = env.step(actions[:, t])
        obs[:, t + 1] = ts.observation_codes
        rewards[:, t] = ts.reward
    chem = env.chemistry
    assert chem is not None
    return {
        "obs_codes": obs,
        "actions": actions,
        "rewards": rewards,
        "potion_perm": chem.potion_perm,
        "potion_sign": chem.potion_sign,
        "stone_sign": chem.stone_sign,
        "graph_id": chem.graph_id,
        "chemistry_index": chem.index.astype(np.int32),
    }


def write_shard(
    path: str | Path,
    *,
    shard: int,
    num_shards: int,
    episodes: int,
    seed: int,
    compression_level: int = 4,
    progress: bool = True,
) -> Path:
    """Generate shard ``shard`` (of ``num_shards``) with ``episodes`` episodes and write it atomically."""
    for flag, value in (("--episodes", episodes), ("--shard", shard), ("--num-shards", num_shards), ("--seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{flag} must be an integer, got {value!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"--seed must be an integer in 0..2^63-1 (stored as a 64-bit attribute), got {seed}")
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"--shard must be in 0..{num_shards - 1}, got {shard}")
    path = Path(path)
    ss = shard_seed_sequence(seed, shard)
    n_batches = -(-episodes // GENERATION_BATCH)
    batch_seeds = ss.spawn(n_batches)
    chunk = min(CHUNK_EPISODES, episodes)
    # The file is built in memory (HDF5's core driver, no backing store) and its image written with
    # Python's own file I/O. HDF5 writing to disk directly fails badly on a full disk: H5Fclose
    # fails half-way, and h5py's clean-up at interpreter exit then segfaults (exit 139, issue 12).
    # Written this way, a full disk is an ordinary OSError (ENOSPC), and atomic_write turns it into
    # "no space left on device: PATH" after removing the temporary file.
    with atomic_write(path) as tmp:
        with h5py.File(f"{tmp.name}.image", "w", driver="core", backing_store=False, track_order=True) as f:
            dsets = {
                name: f.create_dataset(
                    name,
                    shape=(episodes, *shape),
                    dtype=dtype,
                    chunks=(chunk, *shape),
                    compression="gzip",
                    compression_opts=compression_level,
                    shuffle=False,
                    track_times=False,
                )
                for name, (shape, dtype) in _SPECS.items()
            }
            f.create_dataset("trial_start", data=TRIAL_START, track_times=False)
            attrs = {
                "format_version": FORMAT_VERSION,
                "level": LEVEL,
                "policy": "uniform",
                "seed": int(seed),
                "shard": int(shard),
                "num_shards": int(num_shards),
                "episodes": int(episodes),
                "generation_batch": GENERATION_BATCH,
                "package_version": __version__,
                **codec.codec_attributes(),
            }
            for k, v in attrs.items():
                f.attrs[k] = v
            bar = tqdm(total=episodes, unit="episode", desc=f"shard {shard}", disable=not progress)
            for b in range(n_batches):
                lo, hi = b * GENERATION_BATCH, min(episodes, (b + 1) * GENERATION_BATCH)
                arrays = generate_episodes(np.random.default_rng(batch_seeds[b]), hi - lo)
                for name, arr in arrays.items():
                    dsets[name][lo:hi] = arr
                bar.update(hi - lo)
            bar.close()
            f.flush()
            image = f.id.get_file_image()
        with open(tmp, "wb") as out:
            out.write(image)
    return path


@dataclass
class Shard:
    """An open, validated shard. Use as a context manager or call :meth:`close`."""

    path: Path
    file: h5py.File

    @property
    def episodes(self) -> int:
        return int(self.file["obs_codes"].shape[0])

    @property
    def attrs(self) -> dict[str, object]:
        return dict(self.file.attrs)

    def read(self, start: int = 0, stop: int | None = None, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Episodes ``start:stop`` as in-memory arrays (all datasets, or ``keys``)."""
        names = keys or tuple(_SPECS)
        try:
            out = {k: self.file[k][start:stop] for k in names}
        except (OSError, KeyError, RuntimeError) as exc:
            raise ShardError(f"{self.path}: cannot read episodes {start}:{stop}: {exc}") from exc
        for k, arr in out.items():
            check_values(self.path, k, arr, start)
        return out

    def iter_batches(self, batch_episodes: int, keys: tuple[str, ...] | None = None) -> Iterator[dict[str, np.ndarray]]:
        for lo in range(0, self.episodes, batch_episodes):
            yield self.read(lo, min(self.episodes, lo + batch_episodes), keys)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Shard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_shard(path: str | Path) -> Shard:
    """Open a shard, checking that it exists, is HDF5, and has the expected datasets and format.

    Raises :class:`ShardError` (a ``ValueError``) naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: shard file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 shard (truncated or corrupt?): {exc}") from exc
    try:
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise ShardError(f"{path}: format_version is {version!r}, expected {FORMAT_VERSION}")
        n = None
        for name, (shape, dtype) in _SPECS.items():
            if name not in f:
                raise ShardError(f"{path}: dataset '{name}' is missing")
            d = f[name]
            if d.shape[1:] != shape or d.dtype != dtype:
                raise ShardError(f"{path}: dataset '{name}' has shape {d.shape} dtype {d.dtype}, expected [N, *{shape}] {dtype}")
            if n is None:
                n = d.shape[0]
            elif d.shape[0] != n:
                raise ShardError(f"{path}: dataset '{name}' has {d.shape[0]} episodes, 'obs_codes' has {n}")
        if "trial_start" not in f or not np.array_equal(f["trial_start"][()], TRIAL_START):
            raise ShardError(f"{path}: dataset 'trial_start' is missing or differs from the level's trial starts")
        if n != f.attrs.get("episodes"):
            raise ShardError(f"{path}: holds {n} episodes but its 'episodes' attribute says {f.attrs.get('episodes')}")
    except ShardError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError) as exc:
        f.close()
        raise ShardError(f"{path}: corrupt shard: {exc}") from exc
    return Shard(path, f)


def load_shard(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """All episodes of a shard as in-memory arrays (validated)."""
    with open_shard(path) as s:
        return s.read(keys=keys)


def sha256_of(path: str | Path, block: int = 1 << 20) -> str:
    from alchemy_mbrl.io import check_input

    check_input(path, "file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


# --- manifest ---------------------------------------------------------------------------

MANIFEST_VERSION = 1


def write_manifest(out: str | Path, shards: list[str | Path], validation: int) -> dict:
    """Write a JSON manifest listing ``shards``; the last ``validation`` of them are held out.

    Paths are stored relative to the manifest's directory. Each entry records the episode
    count and SHA-256 of the file, checked again by :func:`read_manifest` when asked.
    """
    out = Path(out)
    if not shards:
        raise ValueError("no shards given to the manifest")
    if not 0 <= validation < len(shards):
        raise ValueError(f"--validation must be in 0..{len(shards) - 1} (some shards must remain for training), got {validation}")
    entries = []
    seeds = set()
    for i, p in enumerate(shards):
        with open_shard(p) as s:
            n = s.episodes
            seeds.add((int(s.attrs["seed"]), int(s.attrs["shard"])))
        entries.append(
            {
                "path": os.path.relpath(Path(p).resolve(), out.parent.resolve()),
                "episodes": n,
                "sha256": sha256_of(p),
                "split": "validation" if i >= len(shards) - validation else "train",
            }
        )
    if len(seeds) != len(shards):
        raise ValueError("two shards were generated from the same (seed, shard index): they hold the same episodes")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "level": LEVEL,
        "package_version": __version__,
        "episodes": {
            "train": sum(e["episodes"] for e in entries if e["split"] == "train"),
            "validation": sum(e["episodes"] for e in entries if e["split"] == "validation"),
        },
        "shards": entries,
    }
    write_json(out, manifest)
    return manifest


@dataclass
class ManifestEntry:
    path: Path
    episodes: int
    sha256: str
    split: str


def read_manifest(path: str | Path, verify: bool = False, split: str | None = None) -> list[ManifestEntry]:
    """Shards listed by a manifest (absolute paths). ``verify`` re-checks the SHA-256 and the episode
    count of every shard (of ``split`` only, when given) against the manifest; a mismatch raises
    :class:`ShardError` naming the file. Hashing costs about 0.1 s per 10,000-episode shard
    (docs/formats.md).

    Always refused (provenance): a shard listed twice (the same file, or the same SHA-256 under
    two names), hence any shard in both the training and the validation split; an entry whose
    ``episodes`` is not an integer >= 1 or whose ``sha256`` is not 64 hex digits; totals
    (``episodes.train``/``episodes.validation``) that differ from the entries' sums."""
    from alchemy_mbrl.io import check_input, read_bytes

    path = Path(path)
    try:
        check_input(path, "manifest")
    except FileNotFoundError:
        raise ShardError(f"{path}: manifest does not exist") from None
    except ValueError as exc:
        raise ShardError(f"{exc} (expected a manifest JSON file)") from None
    raw = read_bytes(path, "manifest", 64 * 2**20)
    try:
        m = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        entries = [
            ManifestEntry((path.parent / _entry_str(e, "path")).resolve(), _entry_count(e), _entry_str(e, "sha256"),
                          _entry_str(e, "split"))
            for e in m["shards"]
        ]
    except UnicodeDecodeError:
        raise ShardError(f"{path}: not a manifest (not UTF-8 text: an HDF5 shard? expected manifest.json)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ShardError(f"{path}: not a valid manifest: {type(exc).__name__ if isinstance(exc, KeyError) else ''}"
                         f"{exc}") from None
    seen_path: dict[Path, ManifestEntry] = {}
    seen_sha: dict[str, ManifestEntry] = {}
    for e in entries:
        if e.split not in ("train", "validation"):
            raise ShardError(f"{path}: shard {e.path} has unknown split {e.split!r}")
        if len(e.sha256) != 64 or any(c not in "0123456789abcdef" for c in e.sha256):
            raise ShardError(f"{path}: shard {e.path}: 'sha256' must be 64 lowercase hex digits, got {e.sha256!r}")
        for seen, key in ((seen_path, e.path), (seen_sha, e.sha256)):
            other = seen.get(key)
            if other is not None:
                both = (f"in both the {other.split} and the {e.split} split" if other.split != e.split
                        else f"twice in the {e.split} split")
                raise ShardError(f"{path}: lists the same shard {both} ({other.path}"
                                 f"{'' if other.path == e.path else f' and {e.path}, equal SHA-256'}): "
                                 "a shard may appear once")
            seen[key] = e
        if not e.path.exists():
            raise ShardError(f"{path}: lists shard {e.path}, which does not exist")
    totals = m.get("episodes") if isinstance(m, dict) else None
    if totals is not None:
        for sp in ("train", "validation"):
            want = sum(e.episodes for e in entries if e.split == sp)
            if not isinstance(totals, dict) or totals.get(sp) != want or isinstance(totals.get(sp), bool):
                got = totals.get(sp) if isinstance(totals, dict) else totals
                raise ShardError(f"{path}: episodes.{sp} is {got!r}, but its {sp} shards hold {want}")
    for e in entries:
        if verify and (split is None or e.split == split):
            if sha256_of(e.path) != e.sha256:
                raise ShardError(f"{e.path}: SHA-256 differs from the manifest {path} (modified or corrupt shard; "
                                 "regenerate it, or rebuild the manifest if the change is intended)")
            with open_shard(e.path) as s:
                if s.episodes != e.episodes:
                    raise ShardError(f"{path}: lists {e.episodes} episodes for {e.path}, which holds {s.episodes}")
    return entries


def _no_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _entry_str(e: Any, key: str) -> str:
    if not isinstance(e, dict):
        raise TypeError(f"each shard entry must be an object, got {e!r}")
    v = e[key]
    if not isinstance(v, str):
        raise TypeError(f"shard entry '{key}' must be a string, got {v!r}")
    return v


def _entry_count(e: Any) -> int:
    if not isinstance(e, dict):
        raise TypeError(f"each shard entry must be an object, got {e!r}")
    v = e["episodes"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"shard entry 'episodes' must be an integer >= 1, got {v!r} (entry {e.get('path')!r})")
    return v


def manifest_shards(path: str | Path, split: str, verify: bool = True) -> list[Path]:
    """Paths of the ``split`` ('train' or 'validation') shards of a manifest, each checked against the
    manifest's SHA-256 unless ``verify`` is false."""
    return [e.path for e in read_manifest(path, verify, split) if e.split == split]


@dataclass(frozen=True)
class ShardReport:
    """What ``data inspect`` found in one readable shard."""

    path: Path
    split: str
    episodes: int
    seed: int
    shard: int
    num_shards: int


def inspect_shards(paths: list[Path]) -> list[ShardReport]:
    """Validate shard files (or every shard of a manifest ``.json``, re-checking SHA-256) by reading them whole.

    Raises :class:`ShardError` (a ``ValueError``) naming the first bad file.
    """
    targets: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.suffix == ".json":
            targets += [(e.path, e.split) for e in read_manifest(p, verify=True)]
        else:
            targets.append((p, "-"))
    reports = []
    for p, split in targets:
        with open_shard(p) as s:
            s.read()  # decompress everything once (catches corrupt chunks) and check every value's range
            a = s.attrs
            reports.append(ShardReport(p, split, s.episodes, int(a["seed"]), int(a["shard"]), int(a["num_shards"])))
    return reports
