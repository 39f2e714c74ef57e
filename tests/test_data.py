"""HDF5 shards and manifests: determinism, layout, integrity checks and failure paths."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy import stats

from alchemy_mbrl.cli import main
from alchemy_mbrl.data import shards
from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import ShardError, load_shard, manifest_shards, open_shard, read_manifest, sha256_of, write_shard
from alchemy_mbrl.env import AlchemyEnv, Chemistry, TrialItems
from alchemy_mbrl.env.chemistry import VERTEX_COORDS


def test_same_seed_and_shard_give_byte_identical_files(tmp_path):
    a = write_shard(tmp_path / "a.h5", shard=1, num_shards=4, episodes=300, seed=9, progress=False)
    b = write_shard(tmp_path / "b.h5", shard=1, num_shards=4, episodes=300, seed=9, progress=False)
    c = write_shard(tmp_path / "c.h5", shard=2, num_shards=4, episodes=300, seed=9, progress=False)
    assert sha256_of(a) == sha256_of(b)
    assert not np.array_equal(load_shard(a)["actions"], load_shard(c)["actions"])


def test_shard_layout_and_attributes(small_dataset):
    path = manifest_shards(small_dataset, "train")[0]
    with h5py.File(path) as f:
        assert f["obs_codes"].dtype == np.uint8 and f["obs_codes"].shape == (64, 201, 39)
        assert f["actions"].dtype == np.uint8 and f["rewards"].dtype == np.int8
        assert f["obs_codes"].compression == "gzip" and f["obs_codes"].chunks[0] == 64
        assert f["trial_start"][:].nonzero()[0].tolist() == list(range(0, 200, 20))
        for key in ("seed", "shard", "num_shards", "level", "package_version", "codec_value_table"):
            assert key in f.attrs
        assert np.array_equal(f.attrs["codec_num_categories"], codec.NUM_CATEGORIES)


def test_shard_episodes_replay_in_the_environment(small_dataset):
    """Stored episodes are real: replaying chemistry + trial-start items + actions reproduces them."""
    d = load_shard(manifest_shards(small_dataset, "train")[0])
    chem = Chemistry(d["potion_perm"], d["potion_sign"], d["stone_sign"], d["graph_id"])
    assert np.array_equal(chem.index, d["chemistry_index"])
    obs = codec.decode_observation(d["obs_codes"])
    # latent stones of each trial from its first observation: perceived * tau
    coords = obs[:, 0:200:20, :15].reshape(-1, 10, 3, 5)[..., :3] * chem.stone_sign[:, None, None, :]
    bits = (coords > 0).astype(int)
    stones = bits[..., 0] + 2 * bits[..., 1] + 4 * bits[..., 2]
    colour_to_latent = np.argsort(chem.colour_of_latent, axis=1)
    colours = d["obs_codes"][:, 0:200:20, 15::2].astype(int)
    potions = np.take_along_axis(colour_to_latent[:, None, :].repeat(10, 1), colours, axis=2)
    env = AlchemyEnv(len(chem))
    ts = env.reset(chem, TrialItems(stones, potions))
    assert np.array_equal(ts.observation_codes, d["obs_codes"][:, 0])
    for t in range(200):
        ts = env.step(d["actions"][:, t].astype(np.int64))
        assert np.array_equal(ts.observation_codes, d["obs_codes"][:, t + 1])
        assert np.array_equal(ts.reward, d["rewards"][:, t])


def test_trial_start_marginals_are_uniform(tmp_path):
    """SPEC §9.11: perceived coordinates ±1 w.p. 1/2, colours 1/6, reward feature 1/8, 3/8, 3/8, 1/8."""
    d = load_shard(write_shard(tmp_path / "m.h5", shard=0, num_shards=1, episodes=2000, seed=4, progress=False))
    first = d["obs_codes"][:, 0:200:20]
    coords = first[..., :15].reshape(-1, 3, 5)[..., :3].ravel()
    assert stats.chisquare(np.bincount(coords, minlength=2)).pvalue > 1e-3
    feats = first[..., :15].reshape(-1, 3, 5)[..., 3].ravel()
    assert stats.chisquare(np.bincount(feats, minlength=4), np.array([1, 3, 3, 1]) / 8 * feats.size).pvalue > 1e-3
    colours = first[..., 15::2].ravel()
    assert stats.chisquare(np.bincount(colours, minlength=6)).pvalue > 1e-3


def test_manifest_lists_shards_with_checksums(small_dataset):
    m = json.loads(small_dataset.read_text())
    assert m["episodes"] == {"train": 128, "validation": 64}
    assert [e["split"] for e in m["shards"]] == ["train", "train", "validation"]
    entries = read_manifest(small_dataset, verify=True)
    assert all(e.path.is_absolute() and e.path.exists() for e in entries)


def test_manifest_detects_modified_shard(tmp_path):
    paths = [write_shard(tmp_path / f"s{i}.h5", shard=i, num_shards=2, episodes=10, seed=1, progress=False) for i in range(2)]
    shards.write_manifest(tmp_path / "m.json", paths, validation=1)
    with h5py.File(paths[0], "a") as f:
        f["actions"][0, 0] = (int(f["actions"][0, 0]) + 1) % 40
    with pytest.raises(ShardError, match="SHA-256 differs"):
        read_manifest(tmp_path / "m.json", verify=True)


def test_manifest_rejects_duplicate_shards_and_bad_split(tmp_path):
    p = write_shard(tmp_path / "s.h5", shard=0, num_shards=1, episodes=5, seed=1, progress=False)
    q = write_shard(tmp_path / "t.h5", shard=0, num_shards=1, episodes=5, seed=1, progress=False)
    with pytest.raises(ValueError, match="same"):
        shards.write_manifest(tmp_path / "m.json", [p, q], validation=1)
    with pytest.raises(ValueError, match="--validation"):
        shards.write_manifest(tmp_path / "m.json", [p], validation=1)


def test_truncated_and_corrupt_shards_fail_with_the_file_name(tmp_path):
    p = write_shard(tmp_path / "s.h5", shard=0, num_shards=1, episodes=300, seed=2, progress=False)
    raw = p.read_bytes()
    trunc = tmp_path / "truncated.h5"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ShardError, match="truncated.h5"):
        load_shard(trunc)
    # corrupt the compressed data in the middle of the file (HDF5 metadata intact)
    corrupt = tmp_path / "corrupt.h5"
    data = bytearray(raw)
    mid = len(data) // 2
    data[mid : mid + 4096] = bytes(4096)
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="corrupt.h5"):
        load_shard(corrupt)
    with pytest.raises(ShardError, match="does not exist"):
        open_shard(tmp_path / "missing.h5")
    notes = tmp_path / "notes.h5"
    notes.write_text("not hdf5")
    with pytest.raises(ShardError, match="not a readable HDF5"):
        open_shard(notes)


def test_wrong_layout_is_rejected(tmp_path):
    p = tmp_path / "wrong.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format_version"] = shards.FORMAT_VERSION
        f.create_dataset("obs_codes", data=np.zeros((3, 201, 38), dtype=np.uint8))
    with pytest.raises(ShardError, match="'obs_codes' has shape"):
        open_shard(p)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = shards.generate_episodes

    def failing(rng, n):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(rng, n)

    monkeypatch.setattr(shards, "GENERATION_BATCH", 16)
    monkeypatch.setattr(shards, "generate_episodes", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / "s.h5", shard=0, num_shards=1, episodes=40, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_generate_and_manifest_cli(tmp_path, capsys):
    for i in range(2):
        assert main(["generate", "--shard", str(i), "--num-shards", "2", "--episodes", "20", "--seed", "3",
                     "--out", str(tmp_path / f"s{i}.h5"), "--no-progress"]) == 0
    assert main(["data", "manifest", str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5"), "--validation", "1",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert main(["data", "inspect", str(tmp_path / "m.json")]) == 0
    assert "all readable" in capsys.readouterr().out
    assert main(["generate", "--shard", "2", "--num-shards", "2", "--episodes", "5", "--seed", "3", "--out", str(tmp_path / "x.h5")]) == 2
    assert "--shard must be in 0..1" in capsys.readouterr().err


def test_stored_chemistry_and_first_observations_are_consistent(small_dataset):
    d = load_shard(manifest_shards(small_dataset, "validation")[0])
    obs = codec.decode_observation(d["obs_codes"][:, 0])
    # the reward feature equals the mean latent coordinate, latent = perceived * tau
    perceived = obs[:, :15].reshape(-1, 3, 5)[..., :3]
    latent = perceived * d["stone_sign"][:, None, :]
    assert np.allclose(latent.mean(-1), obs[:, :15].reshape(-1, 3, 5)[..., 3])
    assert set(np.unique(latent)) <= set(VERTEX_COORDS.ravel().tolist())
