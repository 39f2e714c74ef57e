"""Evaluation on given episodes (issue 15): episodes files, ``evaluate --episodes-file``, ``alchemy-mbrl episodes``.

An episodes file holds the chemistry and trial items of N episodes in SPEC §11's arrays; row i is
episode i, and the policy's random key still derives from ``(--seed, i)``, so a file written from
seed S plays exactly like seed S.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alchemy_mbrl.cli import main
from alchemy_mbrl.env.alchemy import AlchemyEnv, TrialItems
from alchemy_mbrl.env.chemistry import Chemistry, graph_id_of_edges
from alchemy_mbrl.env.constants import EPISODE_STEPS
from alchemy_mbrl.env.episodes import EPISODE_ARRAYS, load_episodes, save_episodes
from alchemy_mbrl.evaluate import EpisodeSource, episode_setup, evaluate_policy, make_policy
from alchemy_mbrl.io import live_temporary_files

SPEC_DTYPES = {"potion_perm": np.int8, "potion_sign": np.int8, "stone_sign": np.int8, "graph_edges": np.bool_,
               "stones": np.int8, "potions": np.int8, "graph_id": np.int16}


def _save_seed(path, seed: int, n: int):
    chemistry, items, _ = episode_setup(seed, np.arange(n))
    save_episodes(path, chemistry, items)
    return chemistry, items


def _returns(df: pd.DataFrame) -> list[float]:
    return df["return"].tolist()


def test_round_trip_plays_the_seeds_episodes(tmp_path) -> None:
    """(a) Saved and re-loaded episodes of seed S give the same returns as seed S, for a baseline and the planner."""
    path = tmp_path / "eval-set.npz"
    chemistry, items = _save_seed(path, seed=11, n=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-set.npz"] and not live_temporary_files()
    c2, i2 = load_episodes(path)
    for field in ("potion_perm", "potion_sign", "stone_sign", "graph_id"):
        np.testing.assert_array_equal(getattr(c2, field), getattr(chemistry, field))
    np.testing.assert_array_equal(i2.stones, items.stones)
    np.testing.assert_array_equal(i2.potions, items.potions)
    with np.load(path) as f:  # SPEC §11 dtypes and shapes
        for name, dtype in SPEC_DTYPES.items():
            assert f[name].dtype == dtype and len(f[name]) == 6, name
        assert f["stones"].shape == (6, 10, 3, 3) and int(f["format_version"]) == 1

    heuristic = make_policy("random-heuristic")
    by_seed = evaluate_policy(heuristic, 6, seed=11, progress=False)
    by_file = evaluate_policy(heuristic, None, seed=11, episodes_file=path, progress=False)
    assert _returns(by_file) == _returns(by_seed) and by_file["episode"].tolist() == list(range(6))
    assert (by_file["seed"] == 11).all()
    # another seed: same episodes, different policy randomness
    other = evaluate_policy(heuristic, None, seed=12, episodes_file=path, progress=False)
    assert _returns(other) != _returns(by_seed)

    planner = make_policy("planner", simulator="oracle", budget=20)
    by_seed = evaluate_policy(planner, 4, seed=11, batch_size=4, progress=False)
    by_file = evaluate_policy(planner, 4, seed=EpisodeSource(11, path), batch_size=4, progress=False)
    assert _returns(by_file) == _returns(by_seed)


def test_golden_traces_are_an_episodes_file(golden_traces_path, tmp_path, capsys) -> None:
    """(b) The reference's 200 episodes load as the chemistry and items replay builds, and replaying the
    recorded actions through them reproduces the recorded returns; then a baseline plays the file."""
    chemistry, items = load_episodes(golden_traces_path)
    with np.load(golden_traces_path) as f:
        d = {k: f[k] for k in (*EPISODE_ARRAYS, "graph_id", "actions", "obs", "returns")}
    n = len(d["actions"])
    assert n == 200 and len(chemistry.graph_id) == n
    expected = Chemistry(d["potion_perm"], d["potion_sign"], d["stone_sign"], graph_id_of_edges(d["graph_edges"]))
    for field in ("potion_perm", "potion_sign", "stone_sign", "graph_id"):
        np.testing.assert_array_equal(getattr(chemistry, field), getattr(expected, field))
    np.testing.assert_array_equal(chemistry.graph_id, d["graph_id"])
    expected_items = TrialItems.from_coordinates(d["stones"], d["potions"])
    np.testing.assert_array_equal(items.stones, expected_items.stones)
    np.testing.assert_array_equal(items.potions, expected_items.potions)

    env = AlchemyEnv(n)
    ts = env.reset(chemistry, items)
    np.testing.assert_array_equal(ts.observation, d["obs"][:, 0])
    returns = np.zeros(n, dtype=np.float32)
    for t in range(EPISODE_STEPS):
        ts = env.step(d["actions"][:, t].astype(np.int64))
        returns += ts.reward
    np.testing.assert_array_equal(ts.observation, d["obs"][:, -1])
    np.testing.assert_array_equal(returns, d["returns"])

    # saving what was loaded gives back the file's episode arrays exactly
    save_episodes(tmp_path / "golden-episodes.npz", chemistry, items)
    with np.load(tmp_path / "golden-episodes.npz") as f:
        for name in (*EPISODE_ARRAYS, "graph_id"):
            np.testing.assert_array_equal(f[name], d[name], err_msg=name)
            assert f[name].dtype == d[name].dtype, name

    out = tmp_path / "rh.csv"
    assert main(["evaluate", "--policy", "random-heuristic", "--episodes-file", str(golden_traces_path),
                 "--episodes", "20", "--seed", "5", "--no-progress", "--out", str(out)]) == 0
    assert "20 episodes of" in capsys.readouterr().out
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["episode", "seed", "return", "policy", "simulator", "budget", "seconds"]
    assert df["episode"].tolist() == list(range(20)) and (df["seed"] == 5).all()
    assert (df["policy"] == "random-heuristic").all() and (df["simulator"] == "").all()
    api = evaluate_policy(make_policy("random-heuristic"), 20, seed=5, episodes_file=golden_traces_path, progress=False)
    assert df["return"].tolist() == _returns(api)
    assert df["return"].between(-3 * 30, 15 * 30).all()


def test_chunks_of_a_file_merge_into_the_unchunked_run(tmp_path, capsys) -> None:
    """(c) --chunk 0/2 and 1/2 on a file, merged, equal the unchunked run (episode column = row index)."""
    path = tmp_path / "e.npz"
    _save_seed(path, seed=21, n=5)
    common = ["evaluate", "--policy", "planner", "--simulator", "oracle", "--budget", "3", "--episodes-file",
              str(path), "--seed", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "all.csv")]) == 0
    assert main([*common, "--chunk", "1/2", "--batch", "2", "--out", str(tmp_path / "c1.csv")]) == 0
    assert main([*common, "--chunk", "0/2", "--batch", "1", "--out", str(tmp_path / "c0.csv")]) == 0
    assert main(["merge-returns", str(tmp_path / "c0.csv"), str(tmp_path / "c1.csv"), "--out",
                 str(tmp_path / "merged.csv")]) == 0
    assert "(n=5)" in capsys.readouterr().out
    cols = ["episode", "seed", "return", "policy", "simulator", "budget"]
    whole = pd.read_csv(tmp_path / "all.csv", dtype={"seed": "uint64"})
    merged = pd.read_csv(tmp_path / "merged.csv", dtype={"seed": "uint64"})
    pd.testing.assert_frame_equal(whole[cols], merged[cols])
    assert whole["episode"].tolist() == list(range(5))


def test_episodes_command_writes_what_evaluate_plays(tmp_path, capsys) -> None:
    """(d) `alchemy-mbrl episodes` writes a file that `evaluate --episodes-file` plays like `--seed`."""
    path = tmp_path / "set" / "eval.npz"
    assert main(["episodes", "--episodes", "7", "--seed", "4", "--out", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    assert sorted(p.name for p in path.parent.iterdir()) == ["eval.npz"]
    chemistry, items = load_episodes(path)
    ref_chem, ref_items, _ = episode_setup(4, np.arange(7))
    np.testing.assert_array_equal(chemistry.graph_id, ref_chem.graph_id)
    np.testing.assert_array_equal(items.potions, ref_items.potions)
    for name, source in (("file", ["--episodes-file", str(path)]), ("seed", ["--episodes", "7"])):
        assert main(["baseline", "--policy", "uniform", *source, "--seed", "4", "--no-progress",
                     "--out", str(tmp_path / f"{name}.csv")]) == 0
    by_file, by_seed = pd.read_csv(tmp_path / "file.csv"), pd.read_csv(tmp_path / "seed.csv")
    assert len(by_file) == 7  # no --episodes: every row of the file
    pd.testing.assert_frame_equal(by_file.drop(columns="seconds"), by_seed.drop(columns="seconds"))
    # the first N rows of a file are episodes 0..N-1
    three = evaluate_policy(make_policy("uniform"), 3, seed=4, episodes_file=path, progress=False)
    assert _returns(three) == by_seed["return"].tolist()[:3]


def test_episode_source_checks_counts_and_rows(tmp_path) -> None:
    path = tmp_path / "e.npz"
    _save_seed(path, seed=0, n=3)
    src = EpisodeSource(0, path)
    assert src.rows == 3 and src.count(None) == 3 and src.count(2) == 2
    with pytest.raises(ValueError, match=r"--episodes 4 is more than the 3 episodes of .*e\.npz"):
        src.count(4)
    with pytest.raises(ValueError, match="--episodes is required"):
        EpisodeSource(0).count(None)
    with pytest.raises(ValueError, match="rows of"):
        src.setup(np.array([3]))
    with pytest.raises(ValueError, match="not both"):
        evaluate_policy(make_policy("uniform"), 2, seed=src, episodes_file=path, progress=False)
    with pytest.raises(ValueError, match="items hold"):
        chemistry, items, _ = episode_setup(0, np.arange(3))
        save_episodes(tmp_path / "x.npz", chemistry, TrialItems(items.stones[:2], items.potions[:2]))
    assert not (tmp_path / "x.npz").exists()
