"""Tables 1-2 and the plots from synthetic step outputs (the formats of docs/formats.md)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from alchemy_mbrl.cli import main
from alchemy_mbrl.report import tables
from alchemy_mbrl.stats import format_mean_sem


def write_summary(path: Path, mean: float, sem: float, n: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mean": mean, "sem": sem, "n": n, "std": sem * math.sqrt(n), "unit": "return per episode"}))
    return str(path)


@pytest.fixture()
def table1_inputs(tmp_path: Path) -> list[str]:
    planner = [
        f"learned:{b}=" + write_summary(tmp_path / f"learned-{b}.json", 50.0 + b / 10, 2.5, 8) for b in (100, 1250, 77)
    ]
    planner.append("oracle:1250=" + write_summary(tmp_path / "oracle.json", 270.0, 3.0, 8))
    planner.append("bayes:1250=" + write_summary(tmp_path / "bayes.json", 260.0, 3.1, 8))
    baselines = [
        "random-heuristic=" + write_summary(tmp_path / "rh.json", 144.9, 0.8, 1000),
        "uniform=" + write_summary(tmp_path / "u.json", -60.2, 0.5, 1000),
    ]
    optimal = [
        "ideal-observer=" + write_summary(tmp_path / "io.json", 281.3, 2.0, 16),
        "search-oracle=" + write_summary(tmp_path / "so.json", 287.9, 0.4, 1000),
    ]
    return ["--planner", *planner, "--baseline", *baselines, "--optimal", *optimal]


def test_table1(tmp_path: Path, table1_inputs: list[str]) -> None:
    prefix = tmp_path / "tables" / "table1"
    assert main(["report", "table1", *table1_inputs, "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(df.columns) == list(tables.TABLE1_COLUMNS)
    learned = df[df["simulator"] == "learned"]
    assert list(learned["budget"]) == [77, 100, 1250]  # sorted by budget
    row = learned[learned["budget"] == 1250].iloc[0]
    assert (row["mean"], row["sem"], row["n"]) == (175.0, 2.5, 8)
    assert (row["paper_mean"], row["paper_sem"]) == (207.1, 3.5)
    assert math.isnan(learned[learned["budget"] == 77].iloc[0]["paper_mean"])  # not in the paper
    assert list(df[df["kind"] == "planner"]["simulator"]) == ["learned"] * 3 + ["bayes", "oracle"]
    rh = df[df["agent"] == "Random heuristic"].iloc[0]
    assert (rh["mean"], rh["paper_mean"], rh["paper_sem"], rh["n"]) == (144.9, 145.7, 1.5, 1000)
    quoted = df[df["kind"] == "quoted"].set_index("agent")
    assert quoted.loc["V-MPO", "paper_mean"] == 155.4 and quoted.loc["Ideal Observer", "paper_mean"] == 284.4
    assert quoted["mean"].isna().all() and (quoted["source"].str.contains("quoted")).all()
    # the measured ideal observer right above the quoted one (which stays), the search oracle last
    assert list(df["agent"][-6:]) == ["Random heuristic", "Uniform random policy", "V-MPO", "Ideal observer (measured here)",
                                      "Ideal Observer", "Search oracle (true chemistry, measured)"]
    assert list(df["kind"][-6:]) == ["baseline", "baseline", "quoted", "optimal", "quoted", "optimal"]
    opt = df[df["kind"] == "optimal"].set_index("agent")
    io, so = opt.loc["Ideal observer (measured here)"], opt.loc["Search oracle (true chemistry, measured)"]
    assert (io["mean"], io["sem"], io["n"], io["paper_mean"], io["paper_sem"]) == (281.3, 2.0, 16, 284.4, 1.6)
    assert (so["mean"], so["sem"], so["n"], so["paper_mean"], so["paper_sem"]) == (287.9, 0.4, 1000, 288.5, 1.5)
    assert "Wang et al. (2021)" in io["paper_source"] and so["paper_source"] == "dm_alchemy recorded evaluation"
    assert (opt["source"] == "measured").all()
    sources = df.loc[df["simulator"] == "learned"].set_index("budget")["paper_source"]
    assert sources[1250] == sources[100] == "Pinon et al. (2022), Table 1" and pd.isna(sources[77])

    md = prefix.with_suffix(".md").read_text()
    assert "175.0 ± 2.5 (n=8)" in md and "207.1 ± 3.5" in md
    assert "return per episode" in md and "mean ± s.e." in md
    assert "144.9 ± 0.8 (n=1,000)" in md and "145.7 ± 1.5" in md
    assert "quoted from Wang et al. (2021)" in md
    lines = [l for l in md.splitlines() if l.startswith("|")]
    assert len(lines) == 2 + len(df) and len({l.count("|") for l in lines}) == 1
    tex = prefix.with_suffix(".tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "±" not in tex
    assert tex.count(r"\\") == 1 + len(df)

    # the measured and quoted rows in every human-readable form, with the notes comparing them
    io_row = "| Ideal observer (measured here) | 281.3 ± 2.0 (n=16) | 284.4 ± 1.6 | Wang et al. (2021)"
    so_row = "| Search oracle (true chemistry, measured) | 287.9 ± 0.4 (n=1,000) | 288.5 ± 1.5 | dm_alchemy recorded evaluation"
    assert io_row in md and so_row in md and "| Ideal Observer | — | 284.4 ± 1.6 |" in md
    assert "difference -3.1 ± 2.6, -1.2 s.e." in md and "difference -0.6 ± 1.6, -0.4 s.e." in md
    assert "exact Bayesian expectimax" in md and "searches with the true chemistry" in md
    page = prefix.with_suffix(".html").read_text()
    for text in ("Ideal observer (measured here)", "281.3 ± 2.0 (n=16)", "Ideal Observer", QUOTED,
                 "Search oracle (true chemistry, measured)", "287.9 ± 0.4 (n=1,000)", "288.5 ± 1.5",
                 "dm_alchemy recorded evaluation", "difference -3.1 ± 2.6"):
        assert text in page, text
    assert page.count("<tr>") == 1 + len(df)
    for text in ("Ideal observer (measured here)", r"281.3 $\pm$ 2.0 (n=16)", r"284.4 $\pm$ 1.6",
                 "Search oracle (true chemistry, measured)", r"287.9 $\pm$ 0.4 (n=1,000)", r"288.5 $\pm$ 1.5",
                 r"dm\_alchemy recorded evaluation"):
        assert text in tex, text


QUOTED = "quoted from Wang et al. (2021), not measured here"


def test_table1_without_measured_optimal_agents(tmp_path: Path) -> None:
    """Without --optimal the quoted Ideal Observer stays alone and no search-oracle row appears;
    an unknown agent, or a summary of another policy, is refused naming it."""
    prefix = tmp_path / "t"
    rh = "random-heuristic=" + write_summary(tmp_path / "rh.json", 144.9, 0.8, 1000)
    assert main(["report", "table1", "--baseline", rh, "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(df["agent"]) == ["Random heuristic", "V-MPO", "Ideal Observer"]
    assert "optimal" not in set(df["kind"]) and "earch oracle" not in prefix.with_suffix(".md").read_text()
    io = tmp_path / "io.json"
    io.write_text(json.dumps({"mean": 280.0, "sem": 2.0, "n": 16, "policy": "search-oracle"}))
    with pytest.raises(ValueError, match="io.json: the summary is for policy 'search-oracle'"):
        tables.build_table1([], {}, optimal={"ideal-observer": io})
    with pytest.raises(ValueError, match="unknown optimal agent"):
        tables.build_table1([], {}, optimal={"oracle": io})


def test_table2(tmp_path: Path) -> None:
    evals = []
    for i, arch in enumerate(["original", "gru_backbone", "no_gru_head", "no_final_linear"]):
        p = tmp_path / f"{arch}.json"
        p.write_text(json.dumps({"model": arch, "entropy_nats_per_step": 1.3 + 0.1 * i, "entropy_sem": 0.002,
                                 "trial_start_nats_per_step": 1.2, "chemistry_nats_per_step": 0.07 + 0.01 * i,
                                 "n_transitions": 20000, "n_episodes": 100}))
        evals.append(f"{arch}={p}")
    bayes = tmp_path / "bayes.json"
    bayes.write_text(json.dumps({"model": "bayes", "entropy_nats_per_step": 1.25, "entropy_sem": 0.001,
                                 "trial_start_nats_per_step": 1.2, "chemistry_nats_per_step": 0.05,
                                 "n_transitions": 20000, "n_episodes": 100}))
    prefix = tmp_path / "table2"
    assert main(["report", "table2", "--model-eval", *evals, "--bayes", str(bayes), "--out", str(prefix)]) == 0
    df = pd.read_csv(prefix.with_suffix(".csv"))
    assert list(df["model"]) == ["original", "gru_backbone", "no_gru_head", "no_final_linear", "bayes"]
    assert list(df["paper_entropy"][:4]) == [1.31, 1.37, 1.61, 2.25]
    assert list(df["paper_chemistry"][:2]) == [0.066, 0.11]
    assert df["paper_chemistry"][2:].isna().all()
    md = prefix.with_suffix(".md").read_text()
    assert "1.300 ± 0.002" in md and "nats per step" in md and "Bayes-optimal" in md
    assert prefix.with_suffix(".tex").exists()


def test_missing_field_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mean": 1.0}))
    assert main(["report", "table1", "--planner", f"learned:100={bad}", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "sem" in err
    assert main(["report", "table1", "--planner", f"mcts:100={bad}", "--out", str(tmp_path / "t")]) == 2
    assert "simulator must be one of" in capsys.readouterr().err
    assert main(["report", "table1", "--optimal", f"oracle={bad}", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "optimal agent 'oracle=" in err and "name must be one of ['ideal-observer', 'search-oracle']" in err
    assert main(["report", "table1", "--optimal", f"ideal-observer={bad}", "--out", str(tmp_path / "t")]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_plots(tmp_path: Path, table1_inputs: list[str]) -> None:
    prefix = tmp_path / "table1"
    assert main(["report", "table1", *table1_inputs, "--out", str(prefix)]) == 0
    assert main(["report", "plots", "score", "--table1", str(prefix.with_suffix(".csv")),
                 "--out", str(tmp_path / "plots" / "score")]) == 0

    logs = []
    for arch in ("original", "gru_backbone"):
        path = tmp_path / arch / "train_log.csv"
        path.parent.mkdir()
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "epoch", "train_loss", "val_loss", "learning_rate", "seconds", "tokens_per_s"])
            for step in range(0, 100, 10):
                w.writerow([step, 0, 3.0 - step / 100, "" if step % 50 else 3.1 - step / 100, 1e-4, step, 1000])
        logs.append(f"{arch}={path}")
    assert main(["report", "plots", "training", "--log", *logs, "--out", str(tmp_path / "plots" / "training")]) == 0

    hist = tmp_path / "history.csv"
    pd.DataFrame({"trial": range(4), "round": [0, 0, 1, 1], "point": [0, 1, 0, 1], "mean": [10.0, 30.0, 20.0, 40.0],
                  "sem": [2.0] * 4, "n": [4] * 4, "best_mean": [10.0, 30.0, 30.0, 40.0]}).to_csv(hist, index=False)
    assert main(["report", "plots", "hpo", "--history", str(hist), "--out", str(tmp_path / "plots" / "hpo")]) == 0

    for name in ("score", "training", "hpo"):
        png = tmp_path / "plots" / f"{name}.png"
        pdf = tmp_path / "plots" / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"


def test_training_plot_rejects_wrong_log(tmp_path: Path) -> None:
    bad = tmp_path / "train_log.csv"
    bad.write_text("step,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="train_loss"):
        from alchemy_mbrl.report import plots

        plots.plot_training_curves({"original": bad}, tmp_path / "x")


@pytest.mark.parametrize(("text", "expected"), [("a_b & 50%", r"a\_b \& 50\%"), ("1 ± 2", r"1 $\pm$ 2"), ("—", "---")])
def test_latex_escape(text: str, expected: str) -> None:
    assert tables.latex_escape(text) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [((175.0, 2.5, 8), "175.0 ± 2.5 (n=8)"), ((1.2882, 0.00036, None, 3), "1.2882 ± 0.0004"),
     ((146.2, 0.8, 1000), "146.2 ± 0.8 (n=1,000)"), ((float("nan"), 1.0), "—"), ((1.31, None, None, 2), "1.31")],
)
def test_format_mean_sem_shows_the_uncertainty(args: tuple, expected: str) -> None:
    assert format_mean_sem(*args) == expected


SCALE = "quick scale: a test line; training 120 steps x 16 episodes"


def test_scale_line_labels_and_notes(tmp_path: Path) -> None:
    """The scale line starts every caption; a short training labels the learned rows a pipeline check;
    coinciding perfect-model rows and tiny budgets are explained in notes; the HTML table has the rows."""
    planner = [f"learned:5={write_summary(tmp_path / 'l5.json', 20.0, 3.0, 4)}"]
    for sim in ("bayes", "oracle"):
        planner.append(f"{sim}:60={write_summary(tmp_path / f'{sim}60.json', 80.8, 6.9, 24)}")
        planner.append(f"{sim}:240=" + write_summary(tmp_path / f"{sim}240.json", 140.0 + (sim == "oracle"), 9.0, 24))
    prefix = tmp_path / "t1"
    assert main(["report", "table1", "--planner", *planner, "--train-steps", "120", "--batch-size", "16",
                 "--scale", SCALE, "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()
    assert md.startswith(f"[{SCALE}] Table 1")
    assert "5 expansions; pipeline check" in md and "Pipeline check" in md and "120 steps of 16 episodes" in md
    assert "coincide at 60 expansions" in md and "240" not in md.split("coincide at")[1].split(":")[0]
    assert "At 5 expansions per step" in md
    assert "true chemistry 60.2 ± 11.3 (5.3 s.e.) from 60 to 240 expansions" in md
    page = prefix.with_suffix(".html").read_text()
    assert page.count("<tr>") == 1 + len(pd.read_csv(prefix.with_suffix(".csv")))
    assert "80.8 ± 6.9 (n=24)" in page and SCALE in page and 'class="notes"' in page
    assert SCALE in prefix.with_suffix(".tex").read_text()
    planner[1] = f"bayes:60={write_summary(tmp_path / 'b60.json', 80.8, 6.93, 24)}"  # same print, other episodes
    assert main(["report", "table1", "--planner", *planner, "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()
    assert "print the same at 60 (s.e. 6.900 vs 6.930)" in md and "coincide at" not in md
    assert "pipeline check" not in md  # no --train-steps: nothing is known of the training
    assert main(["report", "table1", "--planner", *planner, "--train-steps", "4000", "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()  # the CPU scale's training: a reduced-scale model, not a check
    assert "5 expansions; reduced-scale model" in md and "Reduced-scale model: " in md and "pipeline check" not in md
    assert main(["report", "table1", "--planner", *planner, "--train-steps", "750000", "--out", str(prefix)]) == 0
    md = prefix.with_suffix(".md").read_text()
    assert "reduced-scale" not in md and "pipeline check" not in md

    # Table 2: a short run says why its entropies are far from the paper's; a paper-length run does not
    e = tmp_path / "o.json"
    e.write_text(json.dumps({"entropy_nats_per_step": 26.1, "entropy_sem": 0.1, "chemistry_nats_per_step": 20.0,
                             "n_episodes": 500}))
    for steps, expect in (("120", True), ("750000", False)):
        assert main(["report", "table2", "--model-eval", f"original={e}", "--train-steps", steps, "--batch-size", "16",
                     "--scale", SCALE, "--out", str(tmp_path / "t2")]) == 0
        text = (tmp_path / "t2.md").read_text()
        assert ("far above the paper's" in text) is expect


def test_plots_with_scale_floor_and_best_trial(tmp_path: Path, table1_inputs: list[str]) -> None:
    from matplotlib import pyplot as plt

    from alchemy_mbrl.report import plots

    prefix = tmp_path / "table1"
    assert main(["report", "table1", *table1_inputs, "--out", str(prefix)]) == 0
    titles: list[str] = []
    real_save = plots.save_figure

    def spy(fig, out):
        titles.append(fig._suptitle.get_text())
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        titles.append(" | ".join(t.get_text() for leg in legends for t in leg.get_texts()))
        return real_save(fig, out)

    plots.save_figure = spy
    try:
        plots.plot_score_vs_expansions(prefix.with_suffix(".csv"), tmp_path / "s", scale=SCALE)
        log = tmp_path / "train_log.csv"
        log.write_text("step,epoch,train_loss,val_loss\n0,0,5.0,5.1\n50,0,4.0,4.2\n")
        bayes = tmp_path / "bayes.json"
        bayes.write_text(json.dumps({"entropy_nats_per_step": 1.288, "chemistry_nats_per_step": 0.04}))
        plots.plot_training_curves({"original": log, "gru_backbone": log}, tmp_path / "t", scale=SCALE, bayes=bayes)
        hist = tmp_path / "h.csv"
        pd.DataFrame({"trial": range(4), "round": [0, 0, 1, 1], "mean": [10.0, 30.0, 20.0, 25.0], "sem": [2.0] * 4,
                      "n": [4] * 4, "best_mean": [10.0, 30.0, 30.0, 30.0]}).to_csv(hist, index=False)
        plots.plot_hpo_convergence(hist, tmp_path / "h", scale=SCALE, initial_points=4)
        plots.plot_hpo_convergence(hist, tmp_path / "h2", scale=SCALE, initial_points=2)
    finally:
        plots.save_figure = real_save
        plt.close("all")
    score_title, score_legend, train_title, train_legend, hpo_title, hpo_legend, hpo2_title, _ = titles
    assert all(SCALE.split(";")[0] in t for t in (score_title, train_title, hpo_title))
    assert "Tree search with the exact Bayesian model" in score_legend
    # measured reference agents as horizontal lines labelled mean ± s.e. (n), the quoted ones by source
    assert "Ideal observer (measured here): 281.3 ± 2.0 (n=16); published 284.4 ± 1.6, Wang et al. (2021) |" in score_legend
    assert ("Search oracle (true chemistry, measured): 287.9 ± 0.4 (n=1,000); published 288.5 ± 1.5, "
            "dm_alchemy recorded evaluation" in score_legend)
    assert "Ideal Observer: 284.4 ± 1.6 (Wang et al. 2021, quoted)" in score_legend
    assert "Random heuristic: 144.9 ± 0.8 (n=1,000)" in score_legend
    assert "original architecture" in train_legend and "gru_backbone" not in train_legend
    assert "Bayes-optimal floor (exact): 1.288" in train_legend and "after 750,000 steps" in train_legend
    assert "random search" in hpo_title and "GP not used" in hpo_title and "best trial #1" in hpo_legend
    assert "2 random points, then 2 from the GP surrogate" in hpo2_title


def test_run_info_is_the_scale_as_data(tmp_path: Path) -> None:
    """`report run-info` writes the run's scale once; tables and plots read it (`--run-info`), no caption is parsed."""
    import json

    info = tmp_path / "run_info.json"
    assert main(["report", "run-info", "--name", "quick", "--description", "a test line", "--train-steps", "120",
                 "--batch-size", "16", "--episodes", "learned=16", "reference=32", "baselines=1000",
                 "ideal_observer=10", "search_oracle=1000", "--out", str(info)]) == 0
    data = json.loads(info.read_text())
    assert data["name"] == "quick" and data["train_steps"] == 120 and data["episodes"]["baselines"] == 1000
    assert data["scale"].startswith("quick scale: a test line; training 120 steps x 16 episodes")
    assert "commit" in data
    assert main(["report", "run-info", "--name", "q", "--description", "d", "--train-steps", "1", "--batch-size", "1",
                 "--episodes", "learned=1", "--out", str(tmp_path / "bad.json")]) == 2  # episodes missing
    assert not (tmp_path / "bad.json").exists()


def test_run_info_records_the_planner_readings(tmp_path: Path) -> None:
    """The workflow config's `planner` mapping is in run_info.json and in the scale line that starts every caption;
    without it the record says `{}` (the package's defaults) and the scale line does not mention readings."""
    import json

    args = ["report", "run-info", "--name", "q", "--description", "d", "--train-steps", "1", "--batch-size", "1",
            "--episodes", "learned=1", "reference=0", "baselines=1", "ideal_observer=0", "search_oracle=0"]
    out = tmp_path / "readings.json"
    assert main([*args, "--planner", "expansion_unit=sample", "reward_scale=0.1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["planner"] == {"expansion_unit": "sample", "reward_scale": 0.1}
    assert "planner readings: expansion_unit=sample, reward_scale=0.1" in data["scale"]
    default = tmp_path / "default.json"
    assert main([*args, "--out", str(default)]) == 0
    data = json.loads(default.read_text())
    assert data["planner"] == {} and "readings" not in data["scale"]
    assert main([*args, "--planner", "sideways", "--out", str(tmp_path / "bad.json")]) == 2
