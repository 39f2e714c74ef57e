"""The report's figures (PNG and PDF each), drawn with matplotlib's Agg backend.

* :func:`plot_score_vs_expansions` - Table 1 as a figure: score (mean ± s.e.) against tree-search
  expansions per step on a log axis, the paper's points overlaid, baselines as horizontal lines;
* :func:`plot_training_curves` - training and validation entropy of each architecture (``train_log.csv``);
* :func:`plot_hpo_convergence` - every HPO trial's score and the running best against the trial index.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from alchemy_mbrl.io import atomic_write  # noqa: E402
from alchemy_mbrl.report.tables import PAPER_TABLE1  # noqa: E402
from alchemy_mbrl.stats import ENTROPY_UNIT, RETURN_UNIT  # noqa: E402

_SIM_STYLE = {"learned": ("C0", "o"), "bayes": ("C2", "s"), "oracle": ("C3", "^")}


def save_figure(fig: plt.Figure, prefix: str | Path) -> list[Path]:
    """Save ``PREFIX.png`` (150 dpi) and ``PREFIX.pdf``; close the figure."""
    prefix = Path(prefix)
    paths = [prefix.with_suffix(".png"), prefix.with_suffix(".pdf")]
    try:
        for path, dpi in zip(paths, (150, None)):
            with atomic_write(path) as tmp:
                fig.savefig(tmp, format=path.suffix[1:], dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return paths


def plot_score_vs_expansions(table1_csv: str | Path, prefix: str | Path) -> list[Path]:
    """Score vs expansions from ``table1.csv`` (written by ``report table1``)."""
    df = pd.read_csv(table1_csv)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    planner = df[df["kind"] == "planner"]
    for sim, rows in planner.groupby("simulator", sort=False):
        rows = rows.sort_values("budget")
        colour, marker = _SIM_STYLE.get(str(sim), ("C4", "D"))
        n = int(rows["n"].min())
        ax.errorbar(rows["budget"], rows["mean"], yerr=rows["sem"], color=colour, marker=marker, capsize=3,
                    label=f"{rows['agent'].iloc[0].split(' (')[0]} (n={n} episodes per point)")
    budgets = sorted(PAPER_TABLE1)
    ax.errorbar(budgets, [PAPER_TABLE1[b][0] for b in budgets], yerr=[PAPER_TABLE1[b][1] for b in budgets],
                color="k", marker="x", linestyle="--", capsize=3, label="Pinon et al. (2022), Table 1")
    line_styles = [":", "-.", (0, (5, 2)), (0, (1, 3))]
    others = df[df["kind"].isin(["baseline", "quoted"])]
    for i, (_, row) in enumerate(others.iterrows()):
        measured = row["kind"] == "baseline"
        mean = row["mean"] if measured else row["paper_mean"]
        sem = row["sem"] if measured else row["paper_sem"]
        if isinstance(mean, float) and math.isnan(mean):
            continue
        what = f"n={int(row['n'])}, measured" if measured else "quoted"
        ax.axhline(mean, color=f"C{5 + i}", linestyle=line_styles[i % len(line_styles)], linewidth=1.2,
                   label=f"{row['agent']}: {mean:.1f} ± {sem:.1f} ({what})")
        ax.axhspan(mean - sem, mean + sem, color=f"C{5 + i}", alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("tree-search expansions per environment step (log scale)")
    ax.set_ylabel(f"score ({RETURN_UNIT}), mean ± s.e.")
    ax.set_title("Score vs planning budget on symbolic Alchemy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return save_figure(fig, prefix)


def plot_training_curves(logs: dict[str, Path], prefix: str | Path) -> list[Path]:
    """Training (left) and validation (right) entropy vs optimisation step, one line per architecture."""
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for i, (arch, path) in enumerate(logs.items()):
        log = pd.read_csv(path)
        for col in ("step", "train_loss", "val_loss"):
            if col not in log.columns:
                raise ValueError(f"{path}: training log lacks column '{col}' (see docs/formats.md)")
        colour = f"C{i}"
        train = log.dropna(subset=["train_loss"])
        ax_t.plot(train["step"], train["train_loss"], color=colour, linewidth=1, label=arch)
        val = log.dropna(subset=["val_loss"])
        ax_v.plot(val["step"], val["val_loss"], color=colour, marker="o", markersize=3, label=arch)
    for ax, title in ((ax_t, "training (mini-batch)"), (ax_v, "validation (held-out shards)")):
        ax.set_xlabel("optimisation step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_t.set_ylabel(f"entropy loss ({ENTROPY_UNIT})")
    ax_v.legend(fontsize=8)
    fig.suptitle("World-model training curves of the four architectures (Table 2)")
    return save_figure(fig, prefix)


def plot_hpo_convergence(history_csv: str | Path, prefix: str | Path) -> list[Path]:
    """Each trial's score (mean ± s.e.) and the best so far, against the trial index."""
    h = pd.read_csv(history_csv)
    for col in ("trial", "round", "mean", "sem", "best_mean"):
        if col not in h.columns:
            raise ValueError(f"{history_csv}: HPO history lacks column '{col}'")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    n = int(h["n"].min()) if "n" in h.columns and len(h) else 0
    ax.errorbar(h["trial"], h["mean"], yerr=h["sem"], fmt="o", color="C0", capsize=2, alpha=0.7,
                label=f"trial score (mean ± s.e., n={n} episodes)")
    ax.step(h["trial"], h["best_mean"], where="post", color="C3", label="best so far")
    for r in sorted(h["round"].unique())[1:]:
        ax.axvline(h.loc[h["round"] == r, "trial"].min() - 0.5, color="0.7", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (grey lines separate optimisation rounds)")
    ax.set_ylabel(f"score ({RETURN_UNIT})")
    ax.set_title("Hyperparameter optimisation of the tree search (GP surrogate)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, prefix)
