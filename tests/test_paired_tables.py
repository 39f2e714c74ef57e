"""Issue 27: paired statistics in Tables 1 and 2 (rows that share episodes or training seeds), from hand data.

Every paired number of a table must be what :mod:`alchemy_mbrl.stats` gives on the same items; a row that
shares nothing with its reference gets no paired number, and a table none of whose rows is paired no column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alchemy_mbrl import stats
from alchemy_mbrl.cli import main
from alchemy_mbrl.report import tables


# -- stats -------------------------------------------------------------------------------------------------

def test_paired_on_keys_matches_paired_difference_on_the_shared_keys() -> None:
    x = pd.Series([3.0, 5.0, 9.0, 1.0], index=[(3, 0), (3, 1), (3, 2), (4, 0)])
    y = pd.Series([1.0, 1.5, 2.0, 8.0], index=[(3, 2), (3, 0), (3, 1), (3, 7)])
    d = stats.paired_on_keys(x, y)
    ref = stats.paired_difference([3.0, 5.0, 9.0], [1.5, 2.0, 1.0])  # (3,0), (3,1), (3,2)
    assert (d.n, d.mean, d.sem) == (3, ref.mean, pytest.approx(ref.sem))
    assert stats.paired_on_keys({1: 1.0}, {2: 1.0}).n == 0  # nothing shared: n = 0, mean NaN
    assert math.isnan(stats.paired_on_keys({1: 1.0}, {2: 1.0}).mean)
    with pytest.raises(ValueError, match="twice"):
        stats.paired_on_keys(pd.Series([1.0, 2.0], index=[0, 0]), {0: 1.0})


def test_across_seeds_is_mean_sem_over_seeds() -> None:
    a = stats.across_seeds({2022: 1.5, 2023: 1.7, 2024: 1.6})
    b = stats.mean_sem([1.5, 1.7, 1.6])
    assert (a.mean, a.sem, a.n) == (b.mean, b.sem, 3)


# -- Table 1 -----------------------------------------------------------------------------------------------

def _returns(path: Path, seed: int, values: list[float], start: int = 0, policy: str = "planner",
             simulator: str = "", budget: int | None = None) -> Path:
    rows = [{"episode": start + i, "seed": seed, "return": v, "policy": policy, "simulator": simulator,
             "budget": "" if budget is None else budget, "seconds": 0.1} for i, v in enumerate(values)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _summary(path: Path, values: list[float], **meta: object) -> Path:
    path.write_text(json.dumps({**stats.returns_summary(values), **meta}, allow_nan=False).replace("NaN", "null"))
    return path


@pytest.fixture()
def table1_runs(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(0)
    heur = list(np.round(rng.normal(140, 30, 10), 1))        # seed 3, episodes 0..9
    io = list(np.round(rng.normal(280, 10, 4), 1))           # seed 3, episodes 0..3
    lo = list(np.round(rng.normal(100, 30, 6), 1))           # seed 3, episodes 0..5 (shared)
    hi = list(np.round(np.array(lo) + rng.normal(20, 5, 6), 1))
    other = list(np.round(rng.normal(200, 30, 6), 1))        # seed 1: no episode shared with anyone
    p = tmp_path
    files = {
        "learned:60": (_returns(p / "l60.csv", 3, lo, simulator="learned", budget=60), lo, "learned", 60),
        "learned:240": (_returns(p / "l240.csv", 3, hi, simulator="learned", budget=240), hi, "learned", 240),
        "bayes:60": (_returns(p / "b60.csv", 1, other, simulator="bayes", budget=60), other, "bayes", 60),
    }
    args = ["--planner"]
    for key, (path, vals, sim, b) in files.items():
        args.append(f"{key}=" + str(_summary(p / f"{sim}{b}.json", vals, policy="planner", simulator=sim, budget=b)))
    args += ["--baseline", "random-heuristic=" + str(_summary(p / "rh.json", heur, policy="random-heuristic"))]
    args += ["--optimal", "ideal-observer=" + str(_summary(p / "io.json", io, policy="ideal-observer"))]
    returns = [f"{k}={v[0]}" for k, v in files.items()]
    returns += ["random-heuristic=" + str(_returns(p / "rh.csv", 3, heur, policy="random-heuristic")),
                "ideal-observer=" + str(_returns(p / "io.csv", 3, io, policy="ideal-observer"))]
    return {"args": args, "returns": returns, "heur": heur, "io": io, "lo": lo, "hi": hi}


def test_table1_paired_columns_are_stats_paired_differences(tmp_path: Path, table1_runs: dict) -> None:
    prefix = tmp_path / "t1"
    assert main(["report", "table1", *table1_runs["args"], "--returns", *table1_runs["returns"],
                 "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(df.columns) == list(tables.TABLE1_COLUMNS)
    rows = df.set_index("agent")
    l240 = df[(df["simulator"] == "learned") & (df["budget"] == 240)].iloc[0]
    want = stats.paired_difference(table1_runs["hi"], table1_runs["heur"][:6])
    assert (l240["vs_random_heuristic"], l240["vs_random_heuristic_n"]) == (pytest.approx(want.mean), 6)
    assert l240["vs_random_heuristic_sem"] == pytest.approx(want.sem)
    want = stats.paired_difference(table1_runs["hi"][:4], table1_runs["io"])
    assert (l240["vs_ideal_observer"], l240["vs_ideal_observer_n"]) == (pytest.approx(want.mean), 4)
    assert l240["vs_ideal_observer_sem"] == pytest.approx(want.sem)
    # the bayes row (seed 1) shares no episode: no paired number; nor the baselines and agents themselves
    b60 = df[df["simulator"] == "bayes"].iloc[0]
    assert b60[["vs_random_heuristic", "vs_random_heuristic_n", "vs_ideal_observer_n"]].isna().all()
    assert rows.loc["Random heuristic", ["vs_random_heuristic_n", "vs_ideal_observer_n"]].isna().all()
    md = prefix.with_suffix(".md").read_text()
    assert "Paired: vs random heuristic" in md and "Paired: vs ideal observer" in md
    # the rise with search is paired (both learned rows played the same 6 episodes)
    rise = stats.paired_difference(table1_runs["hi"], table1_runs["lo"])
    assert f"learned model {stats.format_mean_sem(rise.mean, rise.sem, rise.n)}" in md
    # the heuristic on the shared episodes, beside its own mean on all of them
    assert f"scores {stats.mean_sem(table1_runs['heur'][:6])}" in md


def test_table1_notes_pair_the_learned_model_with_exact_bayes_at_each_budget(tmp_path: Path,
                                                                              table1_runs: dict) -> None:
    """The learned row minus the exact-Bayes row of the same budget, on the episodes both played; a budget whose
    rows share no episode (bayes:60 is seed 1) gets no number."""
    bayes = [v - 7.0 + i for i, v in enumerate(table1_runs["hi"])]  # seed 3, episodes 0..5
    b240 = _returns(tmp_path / "b240.csv", 3, bayes, simulator="bayes", budget=240)
    s240 = _summary(tmp_path / "bayes240.json", bayes, policy="planner", simulator="bayes", budget=240)
    args = ["--planner", f"bayes:240={s240}", *table1_runs["args"][1:]]  # args[0] is --planner
    prefix = tmp_path / "t1"
    assert main(["report", "table1", *args, "--returns", *table1_runs["returns"], f"bayes:240={b240}",
                 "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()
    want = stats.paired_difference(table1_runs["hi"], bayes)
    assert f"240: {stats.format_mean_sem(want.mean, want.sem, want.n)}" in md
    line = next(x for x in md.splitlines() if "learned model minus the exact Bayesian model" in x)
    assert "60:" not in line
    # without per-episode returns there is no paired number, and no such note
    assert main(["report", "table1", *args, "--out", str(prefix)]) == 0
    assert "minus the exact Bayesian model" not in prefix.with_suffix(".md").read_text()


def test_table1_without_returns_has_no_paired_column(tmp_path: Path, table1_runs: dict) -> None:
    prefix = tmp_path / "t1"
    assert main(["report", "table1", *table1_runs["args"], "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert df["vs_random_heuristic_n"].isna().all() and df["vs_ideal_observer_n"].isna().all()
    assert "Paired" not in prefix.with_suffix(".md").read_text()


def test_table1_unpaired_rows_get_no_column(tmp_path: Path, table1_runs: dict) -> None:
    """Only the bayes row (seed 1) and the references' returns: nothing shared, no paired column."""
    only = [r for r in table1_runs["returns"] if not r.startswith("learned")]
    prefix = tmp_path / "t1"
    assert main(["report", "table1", *table1_runs["args"], "--returns", *only, "--out", str(prefix)]) == 0
    assert "Paired" not in prefix.with_suffix(".md").read_text()


def _refused(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The command fails (exit 2) with a message naming the problem, writing nothing."""
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_table1_returns_of_an_unknown_row_are_refused(tmp_path: Path, table1_runs: dict, capsys) -> None:
    bad = table1_runs["returns"][0].replace("learned:60", "learned:61")
    _refused(["report", "table1", *table1_runs["args"], "--returns", bad, "--out", str(tmp_path / "t1")],
             "--returns learned:61: not a planner row", capsys)


# -- Table 2 -----------------------------------------------------------------------------------------------

def _entropy(tmp_path: Path, name: str, arch: str, per_episode: np.ndarray) -> tuple[Path, Path]:
    rec = stats.entropy_record(arch, per_episode * 200, per_episode * 150, 200, 1.248)
    j, c = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
    j.write_text(json.dumps(rec))
    pd.DataFrame({"episode": np.arange(per_episode.size), "entropy_nats_per_step": per_episode,
                  "trial_start_nats_per_step": per_episode * 0.75}).to_csv(c, index=False)
    return j, c


@pytest.fixture()
def table2_runs(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(1)
    base = rng.normal(1.6, 0.05, 20)
    h = {("original", 2022): base, ("original", 2023): base + 0.01, ("original", 2024): base - 0.02,
         ("no_gru_head", 2022): base + rng.normal(0.1, 0.01, 20), ("no_gru_head", 2023): base + 0.08,
         ("no_gru_head", 2024): base + 0.13, ("gru_backbone", 2022): base + rng.normal(0.02, 0.02, 20),
         ("lr_orig", 2022): base + 0.3}
    files = {k: _entropy(tmp_path, f"{k[0]}-{k[1]}", "no_final_linear" if k[0] == "lr_orig" else k[0], v)
             for k, v in h.items()}
    args = ["--model-eval", *(f"{a}@{s}={files[(a, s)][0]}" for a, s in h if a != "lr_orig"),
            "--control", f"lr_orig:no_final_linear@2022={files[('lr_orig', 2022)][0]}",
            "--per-episode", *(f"{a}@{s}={files[(a, s)][1]}" for a, s in h)]
    return {"args": args, "h": h}


def test_table2_paired_and_across_seed_columns(tmp_path: Path, table2_runs: dict) -> None:
    h = table2_runs["h"]
    prefix = tmp_path / "t2"
    assert main(["report", "table2", *table2_runs["args"], "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv")).set_index("model")
    assert list(df.index) == ["original", "gru_backbone", "no_gru_head", "lr_orig"]
    want = stats.paired_difference(h[("no_gru_head", 2022)], h[("original", 2022)])
    row = df.loc["no_gru_head"]
    assert (row["vs_original"], row["vs_original_sem"], row["vs_original_n"]) == (
        pytest.approx(want.mean), pytest.approx(want.sem), 20)
    assert row["seed"] == 2022 and row["entropy"] == pytest.approx(h[("no_gru_head", 2022)].mean())
    per_seed = {s: h[("no_gru_head", s)].mean() for s in (2022, 2023, 2024)}
    across = stats.mean_sem(list(per_seed.values()))
    assert (row["seeds_entropy"], row["seeds_entropy_sem"], row["seeds_n"]) == (
        pytest.approx(across.mean), pytest.approx(across.sem), 3)
    d = stats.paired_difference(list(per_seed.values()), [h[("original", s)].mean() for s in (2022, 2023, 2024)])
    assert (row["seeds_vs_original"], row["seeds_vs_original_sem"], row["seeds_vs_original_n"]) == (
        pytest.approx(d.mean), pytest.approx(d.sem), 3)
    # one seed: a per-episode paired number, no across-seed one
    g = df.loc["gru_backbone"]
    assert g["vs_original_n"] == 20 and pd.isna(g["seeds_n"]) and pd.isna(g["seeds_vs_original_n"])
    # the original is the reference: nothing paired with itself; the control is a labelled row of its own
    assert pd.isna(df.loc["original", "vs_original_n"]) and df.loc["original", "seeds_n"] == 3
    assert df.loc["lr_orig", "control_of"] == "no_final_linear" and "control 'lr_orig'" in df.loc["lr_orig", "architecture"]
    # no no_final_linear row given: the control has no architecture row to be paired with
    assert pd.isna(df.loc["lr_orig", "vs_architecture_n"]) and df["vs_architecture_n"].isna().all()
    assert math.isnan(df.loc["lr_orig", "paper_entropy"])  # a control has no published number
    md = prefix.with_suffix(".md").read_text()
    assert "Paired: vs original" in md and "Across seeds: entropy" in md and "Across seeds: vs original" in md
    assert "Across seeds, entropy minus the original's" in md


def test_table2_without_per_episode_or_seeds_has_no_paired_column(tmp_path: Path, table2_runs: dict) -> None:
    h = table2_runs["h"]
    evals = [f"{a}={tmp_path / f'{a}-2022.json'}" for a in ("original", "no_gru_head")]
    prefix = tmp_path / "t2"
    assert main(["report", "table2", "--model-eval", *evals, "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()
    assert "Paired" not in md and "Across seeds" not in md
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert df[["vs_original_n", "seeds_n", "seeds_vs_original_n"]].isna().all().all()
    assert h  # (the fixture wrote the files)


@pytest.mark.parametrize("spec, match", [
    ("transformer@1={j}", "unknown architecture"),
    ("original@x={j}", "seed after '@'"),
    ("original", "expected"),
])
def test_table2_bad_specs_are_refused(tmp_path: Path, table2_runs: dict, spec: str, match: str, capsys) -> None:
    j = tmp_path / "original-2022.json"
    _refused(["report", "table2", "--model-eval", spec.format(j=j), "--out", str(tmp_path / "t2")], match, capsys)


def test_table2_per_episode_of_no_model_is_refused(tmp_path: Path, table2_runs: dict, capsys) -> None:
    j, c = tmp_path / "original-2022.json", tmp_path / "original-2022.csv"
    _refused(["report", "table2", "--model-eval", f"original@2022={j}", "--per-episode", f"original@7={c}",
              "--out", str(tmp_path / "t2")], "names no model evaluation", capsys)


def test_table2_same_seed_twice_is_refused(tmp_path: Path, table2_runs: dict, capsys) -> None:
    j = tmp_path / "original-2022.json"
    _refused(["report", "table2", "--model-eval", f"original@2022={j}", f"original@2022={j}",
              "--out", str(tmp_path / "t2")], "given twice", capsys)


def test_run_info_records_seeds_and_controls(tmp_path: Path) -> None:
    """run_info.json records the training seeds and the controls; the scale line names them; Table 2 labels a
    control's row with its options from it."""
    out = tmp_path / "run_info.json"
    assert main(["report", "run-info", "--name", "t", "--description", "d", "--train-steps", "3000", "--batch-size", "16",
                 "--episodes", "learned=64", "reference=64", "baselines=1000", "ideal_observer=64", "search_oracle=1000",
                 "--train-seeds", "original=2022,2023,2024", "gru_backbone=2022", "--controls",
                 '{"lr_orig": {"architecture": "no_final_linear", "options": {"lr": 0.001}}}', "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["train_seeds"] == {"original": [2022, 2023, 2024], "gru_backbone": [2022]}
    assert info["controls"] == {"lr_orig": {"architecture": "no_final_linear", "options": {"lr": 0.001}}}
    assert "training seeds: original 3" in info["scale"] and "controls: lr_orig" in info["scale"]
    assert "gru_backbone 1" not in info["scale"]


def test_table2_labels_a_control_with_its_options(tmp_path: Path, table2_runs: dict) -> None:
    info = tmp_path / "run_info.json"
    assert main(["report", "run-info", "--name", "t", "--description", "d", "--train-steps", "3000", "--batch-size", "16",
                 "--episodes", "learned=64", "reference=64", "baselines=1000", "ideal_observer=64", "search_oracle=1000",
                 "--controls", '{"lr_orig": {"architecture": "no_final_linear", "options": {"lr": 0.001}}}',
                 "--out", str(info)]) == 0
    prefix = tmp_path / "t2"
    assert main(["report", "table2", *table2_runs["args"], "--run-info", str(info), "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv")).set_index("model")
    assert df.loc["lr_orig", "architecture"] == "control 'lr_orig': without the final linear layer, lr=0.001"


def test_table2_pairs_a_control_with_its_architecture_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(1.6, 0.05, 30)
    h = {"original": base, "no_final_linear": base + rng.normal(0.5, 0.02, 30), "lr_orig": base + rng.normal(0.2, 0.02, 30)}
    f = {k: _entropy(tmp_path, k, "no_final_linear" if k == "lr_orig" else k, v) for k, v in h.items()}
    prefix = tmp_path / "t2"
    assert main(["report", "table2", "--model-eval", f"original@1={f['original'][0]}",
                 f"no_final_linear@1={f['no_final_linear'][0]}", "--control", f"lr_orig:no_final_linear@1={f['lr_orig'][0]}",
                 "--per-episode", *(f"{k}@1={v[1]}" for k, v in f.items()), "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv")).set_index("model")
    want = stats.paired_difference(h["lr_orig"], h["no_final_linear"])
    row = df.loc["lr_orig"]
    assert (row["vs_architecture"], row["vs_architecture_sem"], row["vs_architecture_n"]) == (
        pytest.approx(want.mean), pytest.approx(want.sem), 30)
    assert df.drop(index="lr_orig")["vs_architecture_n"].isna().all()  # only controls have one
    assert "Paired: control vs its architecture's row" in prefix.with_suffix(".md").read_text()
