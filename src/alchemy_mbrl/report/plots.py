"""The report's figures (PNG and PDF each), drawn with matplotlib's Agg backend.

* :func:`plot_score_vs_expansions` - Table 1 as a figure: score (mean ± s.e.) against tree-search
  expansions per step on a log axis, the paper's points overlaid, baselines, quoted agents and the
  measured ideal observer and search oracle as horizontal lines with ± s.e. bands;
* :func:`plot_training_curves` - training and validation entropy of each architecture (``train_log.csv``);
* :func:`plot_hpo_convergence` - every HPO trial's score and the running best against the trial index.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

from alchemy_mbrl.io import atomic_write  # noqa: E402
from alchemy_mbrl.report.tables import ARCH_LABELS, PAPER_TABLE1, PAPER_TABLE2, SIMULATOR_LABELS  # noqa: E402
from alchemy_mbrl.stats import ENTROPY_UNIT, RETURN_UNIT, format_mean_sem, read_checked_csv, read_entropy_record  # noqa: E402

#: simulator -> (colour, marker, filled): distinct shapes, and the second perfect model hollow, so
#: that rows which coincide stay visible (they are also offset sideways, below).
_SIM_STYLE = {"learned": ("C0", "o", True), "bayes": ("C2", "s", False), "oracle": ("C3", "^", True)}
#: Sideways offsets of coinciding series on the log x axis (a factor of the budget).
_SIM_OFFSET = {"learned": 1.0, "bayes": 0.94, "oracle": 1.06}
_TITLE_WIDTH = 95


def titled(fig: plt.Figure, title: str, scale: str | None) -> None:
    """Figure title: ``title``, then the scale line (wrapped) in a smaller font."""
    text = title if not scale else title + "\n" + "\n".join(textwrap.wrap(f"[{scale}]", _TITLE_WIDTH))
    fig.suptitle(text, fontsize=9 if scale else 11)


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


def plot_score_vs_expansions(table1_csv: str | Path, prefix: str | Path, scale: str | None = None,
                             learned_label: str | None = None) -> list[Path]:
    """Score vs expansions from ``table1.csv`` (written by ``report table1``); legend below the axes.

    ``learned_label`` (e.g. "pipeline check", from the run's training steps:
    :func:`alchemy_mbrl.report.tables.learned_row_label`) is appended to the learned model's label.
    """
    df = read_checked_csv(table1_csv, "Table 1", {"budget": "positive-count?", "mean": "real?", "sem": "nonneg?",
                                                  "n": "count?"})
    for col in ("agent", "kind", "simulator"):
        if col not in df.columns:
            raise ValueError(f"{table1_csv}: Table 1 lacks column '{col}' (written by `report table1`)")
    fig, ax = plt.subplots(figsize=(7.0, 7.0), layout="constrained")
    planner = df[df["kind"] == "planner"]
    for sim, rows in planner.groupby("simulator", sort=False):
        rows = rows.sort_values("budget")
        colour, marker, filled = _SIM_STYLE.get(str(sim), ("C4", "D", True))
        n = int(rows["n"].min())
        label = SIMULATOR_LABELS.get(str(sim), str(rows["agent"].iloc[0]).split(" (")[0])
        if sim == "learned" and learned_label:
            label += f", {learned_label}"
        ax.errorbar(rows["budget"] * _SIM_OFFSET.get(str(sim), 1.0), rows["mean"], yerr=rows["sem"], color=colour,
                    marker=marker, markersize=7, markerfacecolor=colour if filled else "white", markeredgewidth=1.5,
                    capsize=3, label=f"{label} (n={n:,} episodes per point)")
    budgets = sorted(PAPER_TABLE1)
    ax.errorbar(budgets, [PAPER_TABLE1[b][0] for b in budgets], yerr=[PAPER_TABLE1[b][1] for b in budgets],
                color="k", marker="x", linestyle="--", capsize=3,
                label="Pinon et al. (2022), Table 1: learned model + tree search")
    # One colour per horizontal line, none of the planner series' (C0, C2, C3, C4); measured lines
    # (baselines, ideal observer, search oracle) are labelled mean ± s.e. (n), quoted ones by source.
    colours = ["C5", "C6", "C7", "C8", "C9", "C1", "0.4", "0.6"]
    line_styles = [":", "-.", (0, (5, 2)), (0, (1, 3))]
    others = df[df["kind"].isin(["baseline", "quoted", "optimal"])]
    for i, (_, row) in enumerate(others.iterrows()):
        measured = row["kind"] != "quoted"
        mean = row["mean"] if measured else row["paper_mean"]
        sem = row["sem"] if measured else row["paper_sem"]
        if isinstance(mean, float) and math.isnan(mean):
            continue
        if measured:
            label = f"{row['agent']}: {format_mean_sem(mean, sem, row['n'])}"
            if row["kind"] == "optimal":
                source = str(row["paper_source"]).split(", in ")[0]  # "Wang et al. (2021)", not where Pinon quoted it
                label += f"; published {format_mean_sem(row['paper_mean'], row['paper_sem'])}, {source}"
        else:
            label = f"{row['agent']}: {format_mean_sem(mean, sem)} (Wang et al. 2021, quoted)"
        colour = colours[i % len(colours)]
        style = "-" if row["kind"] == "optimal" else line_styles[i % len(line_styles)]
        ax.axhline(mean, color=colour, linestyle=style, linewidth=1.4, label=label)
        if isinstance(sem, float) and not math.isnan(sem):
            ax.axhspan(mean - sem, mean + sem, color=colour, alpha=0.3, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("tree-search expansions per environment step (log scale)")
    ax.set_ylabel(f"score ({RETURN_UNIT}), mean ± s.e.")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=7.5, loc="outside lower center", ncol=1, frameon=False)
    titled(fig, "Score vs planning budget on symbolic Alchemy (Table 1)", scale)
    return save_figure(fig, prefix)


def plot_training_curves(
    logs: dict[str, Path], prefix: str | Path, scale: str | None = None, bayes: str | Path | None = None
) -> list[Path]:
    """Training (left) and validation (right) entropy vs optimisation step, one line per architecture.

    Both panels share the x axis. With ``bayes`` (a ``bayes-entropy`` output) the Bayes-optimal floor
    is drawn; the paper's final validation entropies (Table 2, after 750,000 steps) are marked at the
    right edge of the validation panel.
    """
    fig, (ax_t, ax_v) = plt.subplots(1, 2, figsize=(10, 5.6), sharey=True, sharex=True, layout="constrained")
    last_step = 0
    for i, (arch, path) in enumerate(logs.items()):
        # losses are cross-entropies: >= 0 (empty where a row has no validation)
        log = read_checked_csv(path, "training log", {"step": "count", "train_loss": "nonneg?", "val_loss": "nonneg?"})
        colour = f"C{i}"
        label = ARCH_LABELS.get(arch, arch)
        train = log.dropna(subset=["train_loss"])
        ax_t.plot(train["step"], train["train_loss"], color=colour, linewidth=1, label=label)
        val = log.dropna(subset=["val_loss"])
        ax_v.plot(val["step"], val["val_loss"], color=colour, marker="o", markersize=3, label=label)
        last_step = max(last_step, int(log["step"].max()) if len(log) else 0)
    for i, arch in enumerate(logs):
        if arch in PAPER_TABLE2:
            ax_v.plot([last_step], [PAPER_TABLE2[arch][0]], linestyle="none", marker="*", markersize=11,
                      color=f"C{i}", markeredgecolor="k",
                      label="Pinon et al. (2022), Table 2, after 750,000 steps (colour = architecture)"
                      if i == 0 else None)
    if bayes is not None:
        floor = float(read_entropy_record(bayes)["entropy_nats_per_step"])
        for ax in (ax_t, ax_v):
            ax.axhline(floor, color="k", linestyle="--", linewidth=1,
                       label=f"Bayes-optimal floor (exact): {floor:.3f}" if ax is ax_v else None)
    for ax, title in ((ax_t, "training (mini-batch)"), (ax_v, "validation (held-out shards)")):
        ax.set_xlabel("optimisation step")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    ax_t.set_yscale("log")  # a short run's losses and the paper's / the floor's differ by orders of magnitude
    ax_t.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_t.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax_t.set_ylabel(f"entropy loss ({ENTROPY_UNIT}, log scale)")
    handles, labels = ax_v.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    titled(fig, "World-model training curves of the architectures of Table 2", scale)
    return save_figure(fig, prefix)


def plot_hpo_convergence(
    history_csv: str | Path, prefix: str | Path, scale: str | None = None, initial_points: int | None = None
) -> list[Path]:
    """Each trial's score (mean ± s.e.) and the best so far, against the trial index; the best trial starred.

    The title says what ran: with ``initial_points`` at least the number of trials, every trial
    was a random point (the Gaussian-process surrogate was never used).
    """
    h = read_checked_csv(history_csv, "HPO history", {"trial": "count", "round": "count", "mean": "real",
                                                     "sem": "nonneg?", "best_mean": "real"})
    if "n" in h.columns:
        read_checked_csv(history_csv, "HPO history", {"n": "positive-count?"})
    fig, ax = plt.subplots(figsize=(6.8, 5.2), layout="constrained")
    n = int(h["n"].min()) if "n" in h.columns and len(h) else 0
    ax.errorbar(h["trial"], h["mean"], yerr=h["sem"], fmt="o", color="C0", capsize=2, alpha=0.7,
                label=f"trial score (mean ± s.e., n={n} episodes)")
    ax.step(h["trial"], h["best_mean"], where="post", color="C3", label="best so far")
    if len(h):
        top = h.loc[h["mean"].idxmax()]
        ax.plot([top["trial"]], [top["mean"]], marker="*", markersize=16, color="gold", markeredgecolor="k",
                linestyle="none", label=f"best trial #{int(top['trial'])}: {format_mean_sem(top['mean'], top['sem'])}")
    for r in sorted(h["round"].unique())[1:]:
        ax.axvline(h.loc[h["round"] == r, "trial"].min() - 0.5, color="0.7", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (grey lines separate optimisation rounds)")
    ax.set_ylabel(f"score ({RETURN_UNIT})")
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    trials = len(h)
    if initial_points is None:
        what = "Hyperparameter optimisation of the tree search"
    elif initial_points >= trials:
        what = f"Tree-search hyperparameters: random search ({trials} trials, all random initial points; GP not used)"
    else:
        what = (f"Bayesian optimisation of the tree search: {initial_points} random points, "
                f"then {trials - initial_points} from the GP surrogate")
    titled(fig, what, scale)
    return save_figure(fig, prefix)
