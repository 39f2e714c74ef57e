"""Tables 1 and 2: our measurements beside the paper's published numbers.

Every measured number is shown as ``mean ± s.e. (n=...)`` with its unit in the column header:
returns are *return per episode* (sum of the 200 rewards), entropies are *nats per step*
(per predicted transition). Published numbers are copied from Pinon et al. (2022), Tables 1
and 2; V-MPO and the Ideal Observer are quoted from Wang et al. (2021) and marked as quoted.
Table 1 also measures two reference agents here (``report table1 --optimal``): the ideal observer,
shown beside Wang et al.'s 284.4 ± 1.6 (whose quoted row stays), and the search oracle with the
true chemistry, beside dm_alchemy's recorded evaluation (288.5 ± 1.5). Each row's published number
names its source (CSV column ``paper_source``, the tables' "Published in" column).

A table is written four ways from one DataFrame: ``PREFIX.csv`` (machine-readable, one column
per quantity), ``PREFIX.md`` (Markdown for humans), ``PREFIX.tex`` (a LaTeX ``tabular``) and
``PREFIX.html`` (a standalone page, embedded in the Snakemake report). The three human-readable
forms share one caption that starts with the *scale* line (which config produced the numbers:
its name, description, training steps and episodes per row) and end with the table's notes.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from alchemy_mbrl.env.constants import NUM_ACTIONS
from alchemy_mbrl.io import atomic_write, write_text
from alchemy_mbrl.stats import (
    ENTROPY_UNIT,
    RETURN_UNIT,
    MeanSem,
    across_seeds,
    as_float,
    format_mean_sem,
    is_number,
    mean_sem,
    paired_on_keys,
    read_entropy_record,
    read_episode_entropies,
    read_summary,
)

#: Paper's Table 1, learned model + tree search: expansions -> (mean, s.e.) of the score.
PAPER_TABLE1: dict[int, tuple[float, float]] = {
    100: (79.3, 1.6),
    500: (161.8, 3.9),
    1250: (207.1, 3.5),
    2500: (220.5, 3.2),
    5000: (229.5, 3.9),
    10000: (251.5, 4.5),
}
#: Where a row's published number (``paper_mean``, ``paper_sem``) comes from.
PAPER_SOURCE = "Pinon et al. (2022), Table 1"
WANG_SOURCE = "Wang et al. (2021), in Pinon et al. (2022), Table 1"
DM_ALCHEMY_SOURCE = "dm_alchemy recorded evaluation"
#: Baselines of Table 1 (Wang et al. 2021 as reported in the paper): name -> (mean, s.e.).
PAPER_RANDOM_HEURISTIC: tuple[float, float] = (145.7, 1.5)
QUOTED_BASELINES: dict[str, tuple[float, float]] = {"V-MPO": (155.4, 1.6), "Ideal Observer": (284.4, 1.6)}
QUOTED_SOURCE = "quoted from Wang et al. (2021), not measured here"
#: Table 1's measured reference agents (``evaluate --policy NAME``): name -> row label.
OPTIMAL_LABELS: dict[str, str] = {
    "ideal-observer": "Ideal observer (measured here)",
    "search-oracle": "Search oracle (true chemistry, measured)",
}
#: What each measured reference agent is (a note under Table 1).
OPTIMAL_NOTES: dict[str, str] = {
    "ideal-observer": "The ideal observer (measured here) chooses each action by exact Bayesian expectimax over the "
    "chemistries consistent with what it has seen: it is not told the chemistry, like Wang et al. (2021)'s Ideal "
    "Observer, whose quoted row is kept below it.",
    "search-oracle": "The search oracle (measured here) searches with the true chemistry, like the search oracle of "
    "dm_alchemy's recorded evaluation: it is told what every other agent of the table must infer.",
}
#: The published number each is shown beside: name -> (mean, s.e., source).
OPTIMAL_PUBLISHED: dict[str, tuple[float, float, str]] = {
    "ideal-observer": (*QUOTED_BASELINES["Ideal Observer"], WANG_SOURCE),
    "search-oracle": (288.5, 1.5, DM_ALCHEMY_SOURCE),
}

#: Paper's training run (Table 3): optimisation steps x episodes per step.
PAPER_TRAIN_STEPS = 750_000
PAPER_BATCH_SIZE = 250
#: Below this many training steps the learned rows are a *pipeline check* (the quick and test scales: the
#: model has barely started to learn); from it up to the paper's, a *reduced-scale model* (config/cpu.yaml).
PIPELINE_CHECK_STEPS = 1_000


def learned_row_label(train_steps: int | None) -> str:
    """What Table 1's learned rows are, given the world model's training steps ('' at the paper's scale or unknown)."""
    if train_steps is None or train_steps >= PAPER_TRAIN_STEPS:
        return ""
    return "pipeline check" if train_steps < PIPELINE_CHECK_STEPS else "reduced-scale model"

#: Paper's Table 2: architecture -> (validation entropy, chemistry part or None), nats per step.
PAPER_TABLE2: dict[str, tuple[float, float | None]] = {
    "original": (1.31, 0.066),
    "gru_backbone": (1.37, 0.11),
    "no_gru_head": (1.61, None),
    "no_final_linear": (2.25, None),
}
ARCH_LABELS: dict[str, str] = {
    "original": "original architecture",
    "gru_backbone": "replace Transformer with GRU",
    "no_gru_head": "without the GRU head",
    "no_final_linear": "without the final linear layer",
}
SIMULATOR_LABELS: dict[str, str] = {
    "learned": "Ours: learned model + tree search",
    "bayes": "Tree search with the exact Bayesian model",
    "oracle": "Tree search with the true chemistry (oracle)",
}
BASELINE_LABELS: dict[str, str] = {"random-heuristic": "Random heuristic", "uniform": "Uniform random policy"}

#: The agents Table 1's planner rows are compared with, episode by episode (``report table1 --returns``): the
#: ``--returns`` name -> (CSV column prefix, display label).
PAIRED_REFERENCES: dict[str, tuple[str, str]] = {
    "random-heuristic": ("vs_random_heuristic", "random heuristic"),
    "ideal-observer": ("vs_ideal_observer", "ideal observer"),
}
#: ``kind``: planner | baseline | optimal (the measured ideal observer and search oracle) | quoted.
#: ``vs_*``: the planner row minus the reference on the episodes both played (matched by (seed, episode)):
#: mean, s.e. and n of the per-episode differences; empty where they share no episode.
TABLE1_COLUMNS: tuple[str, ...] = (
    "agent", "kind", "simulator", "budget", "mean", "sem", "n", "paper_mean", "paper_sem", "paper_source", "source",
    *(f"{prefix}{suffix}" for prefix, _ in PAIRED_REFERENCES.values() for suffix in ("", "_sem", "_n")),
)
#: ``seed``: the training seed of the row's model (the first given: the workflow's default seed);
#: ``vs_original*``: the row's model minus the original's on the same validation episodes (mean, s.e., n episodes);
#: ``vs_architecture*``: a control's model minus its architecture's row (same seed, same episodes): what the
#: control's options change;
#: ``seeds_*``: the entropy over the row's training seeds (mean, s.e., n seeds); ``seeds_vs_original*``: the
#: per-seed entropy minus the original's of the same seed, over the seeds both have (mean, s.e., n seeds).
TABLE2_COLUMNS: tuple[str, ...] = (
    "model", "architecture", "entropy", "entropy_sem", "chemistry", "trial_start", "n_episodes",
    "paper_entropy", "paper_chemistry", "seed", "control_of",
    "vs_original", "vs_original_sem", "vs_original_n", "vs_architecture", "vs_architecture_sem", "vs_architecture_n",
    "seeds_entropy", "seeds_entropy_sem", "seeds_n", "seeds_vs_original", "seeds_vs_original_sem", "seeds_vs_original_n",
)


def _summary(path: str | Path, **expected: Any) -> tuple[float, float, int]:
    """``(mean, sem, n)`` of a returns summary whose own ``policy``/``simulator``/``budget`` (when it
    records them) must be the ``expected`` ones: a summary is never relabelled."""
    s = read_summary(path)
    for key, want in expected.items():
        got = s.get(key)
        if got is None or got == "":
            continue
        if str(got) != str(want):
            raise ValueError(f"{path}: the summary is for {key} {got!r}, but was given as {key} {want!r}")
    if s["n"] < 1:
        raise ValueError(f"{path}: the summary holds n = {s['n']} episodes")
    return s["mean"], s["sem"], s["n"]


@dataclass(frozen=True)
class PlannerResult:
    """One evaluated planner configuration: simulator, expansions per step, summary file."""

    simulator: str
    budget: int
    summary: Path


def parse_planner_spec(spec: str) -> PlannerResult:
    """``SIM:BUDGET=PATH`` (e.g. ``learned:1250=results/eval/.../summary.json``)."""
    try:
        key, path = spec.split("=", 1)
        sim, budget = key.split(":", 1)
        result = PlannerResult(sim, int(budget), Path(path))
    except ValueError:
        raise ValueError(f"planner result '{spec}': expected SIMULATOR:BUDGET=PATH") from None
    if result.budget < 1:
        raise ValueError(f"planner result '{spec}': the budget must be an integer >= 1")
    if result.simulator not in SIMULATOR_LABELS:
        raise ValueError(f"planner result '{spec}': simulator must be one of {sorted(SIMULATOR_LABELS)}")
    return result


def parse_named(spec: str, what: str, allowed: dict[str, str] | None = None) -> tuple[str, Path]:
    """``NAME=PATH``; ``NAME`` checked against ``allowed`` when given."""
    if "=" not in spec:
        raise ValueError(f"{what} '{spec}': expected NAME=PATH")
    name, path = spec.split("=", 1)
    if allowed is not None and name not in allowed:
        raise ValueError(f"{what} '{spec}': name must be one of {sorted(allowed)}")
    return name, Path(path)


def episode_returns(path: str | Path) -> pd.Series:
    """The per-episode returns of a returns CSV (``evaluate``/``merge-returns``), indexed by (seed, episode):
    the key under which two agents played the same episode."""
    from alchemy_mbrl.evaluate import read_returns

    r = read_returns(path)
    index = pd.MultiIndex.from_arrays([r["seed"].astype("uint64").to_numpy(), r["episode"].to_numpy()],
                                      names=["seed", "episode"])
    return pd.Series(r["return"].to_numpy(dtype=float), index=index)


def check_returns_names(returns: dict[str, Path], planner: list[PlannerResult]) -> None:
    """``report table1 --returns`` names: ``SIM:BUDGET`` of a planner row, a baseline or a measured agent."""
    allowed = {f"{r.simulator}:{r.budget}" for r in planner} | set(BASELINE_LABELS) | set(OPTIMAL_LABELS)
    unknown = sorted(set(returns) - allowed)
    if unknown:
        raise ValueError(f"--returns {unknown[0]}: not a planner row (SIM:BUDGET given to --planner), a baseline or a "
                         f"measured agent; expected one of {', '.join(sorted(allowed))}")


def read_returns_by_name(returns: dict[str, Any], planner: list[PlannerResult]) -> dict[str, pd.Series]:
    """``--returns`` (name -> returns CSV, or the returns already read by :func:`episode_returns`) as
    name -> per-episode returns indexed by (seed, episode), the names checked (:func:`check_returns_names`)."""
    check_returns_names(returns, planner)
    return {name: r if isinstance(r, pd.Series) else episode_returns(r) for name, r in returns.items()}


def build_table1(
    planner: list[PlannerResult],
    baselines: dict[str, Path],
    train_steps: int | None = None,
    optimal: dict[str, Path] | None = None,
    returns: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Table 1: planner rows by simulator then budget, measured baselines, V-MPO (quoted), the measured
    ideal observer above the quoted Ideal Observer, and the measured search oracle.

    ``optimal`` maps ``ideal-observer`` / ``search-oracle`` to their ``merge-returns`` summaries
    (either may be absent: its measured row is then left out; the quoted Ideal Observer always stays).
    With ``train_steps`` below the paper's 750,000, the learned rows are labelled as a pipeline
    check or a reduced-scale model (:func:`learned_row_label`; :func:`table1_notes` says why).

    ``returns`` maps ``SIM:BUDGET`` (a planner row), a baseline or a measured agent to its per-episode returns
    (CSV, or :func:`read_returns_by_name`'s series): each planner row is then compared, episode by episode, with each of :data:`PAIRED_REFERENCES` whose
    returns are given, on the (seed, episode) pairs both played (``vs_*`` columns; empty where none is shared:
    a row that shares no episode with a reference gets no paired number).
    """
    optimal = dict(optimal or {})
    unknown = sorted(set(optimal) - set(OPTIMAL_LABELS))
    if unknown:
        raise ValueError(f"unknown optimal agent(s) {unknown}; choose from {', '.join(OPTIMAL_LABELS)}")
    rows: list[dict[str, Any]] = []
    order = {name: i for i, name in enumerate(SIMULATOR_LABELS)}
    scale_label = learned_row_label(train_steps)
    for r in sorted(planner, key=lambda r: (order[r.simulator], r.budget)):
        mean, sem, n = _summary(r.summary, policy="planner", simulator=r.simulator, budget=r.budget)
        paper = PAPER_TABLE1.get(r.budget) if r.simulator == "learned" else None
        suffix = f"; {scale_label}" if scale_label and r.simulator == "learned" else ""
        rows.append(
            {
                "agent": f"{SIMULATOR_LABELS[r.simulator]} ({r.budget:,} expansions{suffix})",
                "kind": "planner",
                "simulator": r.simulator,
                "budget": r.budget,
                "mean": mean, "sem": sem, "n": n,
                "paper_mean": paper[0] if paper else math.nan,
                "paper_sem": paper[1] if paper else math.nan,
                "paper_source": PAPER_SOURCE if paper else "",
                "source": "measured",
            }
        )
    for name in BASELINE_LABELS:
        if name not in baselines:
            continue
        mean, sem, n = _summary(baselines[name], policy=name)
        paper = PAPER_RANDOM_HEURISTIC if name == "random-heuristic" else None
        rows.append(
            {
                "agent": BASELINE_LABELS[name], "kind": "baseline", "simulator": "", "budget": math.nan,
                "mean": mean, "sem": sem, "n": n,
                "paper_mean": paper[0] if paper else math.nan,
                "paper_sem": paper[1] if paper else math.nan,
                "paper_source": WANG_SOURCE if paper else "",
                "source": "measured",
            }
        )

    def quoted(name: str) -> None:
        pm, ps = QUOTED_BASELINES[name]
        rows.append(
            {
                "agent": name, "kind": "quoted", "simulator": "", "budget": math.nan,
                "mean": math.nan, "sem": math.nan, "n": math.nan,
                "paper_mean": pm, "paper_sem": ps, "paper_source": WANG_SOURCE, "source": QUOTED_SOURCE,
            }
        )

    def measured(name: str) -> None:
        if name not in optimal:
            return
        mean, sem, n = _summary(optimal[name], policy=name)
        pm, ps, source = OPTIMAL_PUBLISHED[name]
        rows.append(
            {
                "agent": OPTIMAL_LABELS[name], "kind": "optimal", "simulator": "", "budget": math.nan,
                "mean": mean, "sem": sem, "n": n,
                "paper_mean": pm, "paper_sem": ps, "paper_source": source, "source": "measured",
            }
        )

    quoted("V-MPO")
    measured("ideal-observer")  # the measured ideal observer right above Wang et al.'s quoted one
    quoted("Ideal Observer")
    measured("search-oracle")
    per_episode = read_returns_by_name(returns or {}, planner)
    for row in rows:
        for ref, (prefix, _) in PAIRED_REFERENCES.items():
            d = None
            key = f"{row['simulator']}:{row['budget']}"
            if row["kind"] == "planner" and key in per_episode and ref in per_episode:
                d = paired_on_keys(per_episode[key], per_episode[ref])
            shared = d is not None and d.n > 0
            row[prefix] = d.mean if shared else math.nan
            row[f"{prefix}_sem"] = d.sem if shared else math.nan
            row[f"{prefix}_n"] = d.n if shared else pd.NA
    df = pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))
    df["budget"] = df["budget"].astype("Int64")
    df["n"] = df["n"].astype("Int64")
    for prefix, _ in PAIRED_REFERENCES.values():
        df[f"{prefix}_n"] = df[f"{prefix}_n"].astype("Int64")
    return df


def _in_sems(mean: float, sem: float) -> str:
    """`` (z s.e.)``: a difference's size in its own standard errors, or nothing where the s.e. is 0 or missing."""
    return f" ({mean / sem:.1f} s.e.)" if is_number(sem) and sem > 0 else ""


def _vs_exact_bayes_notes(planner: pd.DataFrame, per_episode: dict[str, pd.Series]) -> list[str]:
    """What a simulator's imperfection (or, for the true chemistry, its perfect knowledge) changes: each learned and
    true-chemistry row minus the exact-Bayes row of the same budget, paired on the episodes both played."""
    notes = []
    for sim, name in (("learned", "learned model"), ("oracle", "true chemistry")):
        parts = []
        for budget in sorted(int(b) for b in planner.loc[planner["simulator"] == sim, "budget"].dropna()):
            row, ref = per_episode.get(f"{sim}:{budget}"), per_episode.get(f"bayes:{budget}")
            d = paired_on_keys(row, ref) if row is not None and ref is not None else None
            if d is None or d.n < 2 or not is_number(d.sem):
                continue
            parts.append(f"{budget:,}: {format_mean_sem(d.mean, d.sem, d.n)}{_in_sems(d.mean, d.sem)}")
        if parts:
            notes.append(f"The {name} minus the exact Bayesian model at the same budget (paired: mean ± s.e. of the "
                         f"per-episode differences over the n episodes both played; expansions: difference): "
                         + "; ".join(parts) + ".")
    return notes


def table1_notes(df: pd.DataFrame, train_steps: int | None = None, batch_size: int | None = None,
                 returns: dict[str, pd.Series] | None = None) -> list[str]:
    """Notes printed under Table 1: what its rows can and cannot show. ``returns``: the rows' per-episode returns
    (:func:`read_returns_by_name`), which make the change with search and the comparisons paired."""
    notes: list[str] = []
    planner = df[df["kind"] == "planner"]
    learned = planner[planner["simulator"] == "learned"]
    scale_label = learned_row_label(train_steps)
    if scale_label and len(learned):
        trained = f"a world model trained for {train_steps:,} steps" + (f" of {batch_size} episodes" if batch_size else "")
        paper = f"(the paper: {PAPER_TRAIN_STEPS:,} steps of {PAPER_BATCH_SIZE})"
        if scale_label == "pipeline check":
            notes.append(f"Pipeline check: the learned rows plan with {trained} {paper}; they show that every step "
                         "of the workflow runs, not the paper's scores.")
        else:
            notes.append(f"Reduced-scale model: the learned rows plan with {trained} {paper}; they measure what "
                         "that model's planner reaches against the perfect models and the baselines on the same "
                         "episodes, not the paper's scores.")
    small = sorted({int(b) for b in planner["budget"].dropna() if int(b) <= NUM_ACTIONS})
    if small:
        notes.append(
            f"At {', '.join(f'{b:,}' for b in small)} expansions per step (at most {NUM_ACTIONS}, the number of "
            "actions) the search tries the root actions one by one in index order and hardly goes deeper, so "
            "its choice depends on the model only through immediate rewards."
        )
    per_episode = returns or {}
    rises, rises_paired = [], []
    for sim in ("bayes", "oracle", "learned"):
        rows = planner[planner["simulator"] == sim].sort_values("budget")
        if len(rows) < 2 or not all(is_number(x) for x in (*rows["sem"], *rows["mean"])):
            continue
        lo, hi = rows.iloc[0], rows.iloc[-1]
        name = {"bayes": "exact Bayesian model", "oracle": "true chemistry", "learned": "learned model"}[sim]
        span = f"from {int(lo['budget']):,} to {int(hi['budget']):,} expansions"
        lo_r, hi_r = (per_episode.get(f"{sim}:{int(r['budget'])}") for r in (lo, hi))
        paired = paired_on_keys(hi_r, lo_r) if lo_r is not None and hi_r is not None else None
        if paired is not None and paired.n >= 2 and is_number(paired.sem):
            rises_paired.append(f"{name} {format_mean_sem(paired.mean, paired.sem, paired.n)}"
                                f"{_in_sems(paired.mean, paired.sem)} {span}")
            continue
        diff, se = hi["mean"] - lo["mean"], math.hypot(hi["sem"], lo["sem"])
        rises.append(f"{name} {format_mean_sem(diff, se)} ({diff / se:.1f} s.e.) {span}" if se > 0 else f"{name} {diff:.1f}")
    if rises_paired:
        notes.append("Change of the score with search (highest minus lowest budget, paired: mean ± s.e. of the "
                     "per-episode differences over the n episodes both rows played): " + "; ".join(rises_paired) + ".")
    if rises:
        notes.append(
            "Change of the score with search (highest minus lowest budget, ± the s.e. of the difference of two "
            "independent means; the rows share their episodes, which makes this s.e. typically conservative): " + "; ".join(rises) + "."
        )
    notes.extend(_vs_exact_bayes_notes(planner, per_episode))
    for ref, (prefix, label) in PAIRED_REFERENCES.items():
        paired_rows = planner[planner[f"{prefix}_n"].notna()]
        if not len(paired_rows):
            continue
        n_ref = per_episode[ref].size
        shared = sorted({int(n) for n in paired_rows[f"{prefix}_n"]})
        own = ""
        keysets = {frozenset(per_episode[f"{r['simulator']}:{int(r['budget'])}"].index) for _, r in paired_rows.iterrows()}
        keys = pd.Index(list(next(iter(keysets)))) if len(keysets) == 1 else None
        on_shared = per_episode[ref].loc[per_episode[ref].index.intersection(keys, sort=False)] if keys is not None else None
        if on_shared is not None and len(on_shared) < n_ref:  # every paired row on the same episodes
            own = (f" On those episodes the {label} scores {mean_sem(on_shared)}, against "
                   f"{mean_sem(per_episode[ref])} on all of its {n_ref:,}: compare the planner rows with the former.")
        notes.append(
            f"'vs {label}': the planner row minus the {label}, episode by episode on the episodes both played "
            f"(matched by seed and episode; n = {', '.join(f'{n:,}' for n in shared)}), mean ± s.e. of the "
            f"per-episode differences.{own}"
        )
    by_budget = planner[planner["simulator"].isin(["bayes", "oracle"])].groupby("budget")
    same, same_mean = [], []
    for budget, rows in by_budget:
        if len(rows) != 2:
            continue
        shown = {format_mean_sem(m, e, n) for m, e, n in zip(rows["mean"], rows["sem"], rows["n"])}
        if rows["mean"].nunique() == 1 and rows["sem"].nunique() == 1 and rows["n"].nunique() == 1:
            same.append(int(budget))
        elif len(shown) == 1:
            sems = sorted(rows["sem"])
            same_mean.append(f"{int(budget):,} (s.e. {sems[0]:.3f} vs {sems[1]:.3f})")
    if same:
        notes.append(
            f"The exact-Bayesian and true-chemistry rows coincide at {', '.join(f'{b:,}' for b in same)} expansions: "
            "the searches play the same episodes with the same random keys, and a tree this small stays near the "
            "root, where both models predict the same rewards (a stone's value is observed, so placing it in the "
            "cauldron is predicted exactly by both); the models differ only deeper, after a potion's unknown effect."
        )
    if same_mean:
        notes.append(
            f"The exact-Bayesian and true-chemistry rows print the same at {', '.join(same_mean)} expansions, but "
            "their per-episode returns differ: both play the same episodes with the same random keys, and with a "
            "tree this small most decisions are made near the root, where both models predict the same rewards, so "
            "the few episodes where they differ happen to add up to the same total."
        )
    optimal = df[df["kind"] == "optimal"]
    about = [OPTIMAL_NOTES[name] for name, label in OPTIMAL_LABELS.items() if label in set(optimal["agent"])]
    if about:
        notes.append(" ".join(about))
    for _, row in optimal.iterrows():
        if not is_number(row["paper_mean"]):
            continue
        diff = row["mean"] - row["paper_mean"]
        se = math.hypot(row["sem"], row["paper_sem"]) if is_number(row["sem"]) else math.nan
        z = f", {diff / se:.1f} s.e." if is_number(se) and se > 0 else ""
        notes.append(
            f"{row['agent']}: {format_mean_sem(row['mean'], row['sem'], row['n'])}; published "
            f"{format_mean_sem(row['paper_mean'], row['paper_sem'])} ({row['paper_source']}); difference "
            f"{format_mean_sem(diff, se)}{z} (the s.e. of a difference of two independent means)."
        )
    return notes


def table2_notes(train_steps: int | None = None, batch_size: int | None = None,
                 df: pd.DataFrame | None = None) -> list[str]:
    """Notes printed under Table 2: why a short run's entropies are far from the paper's, and what the paired
    and across-seed columns are (with the claims they support) when ``df`` has them."""
    notes: list[str] = []
    if train_steps is not None and train_steps < PAPER_TRAIN_STEPS:
        batch = f" of {batch_size} episodes" if batch_size else ""
        notes.append(
            f"These models trained for {train_steps:,} steps{batch}, against the paper's {PAPER_TRAIN_STEPS:,} steps of "
            f"{PAPER_BATCH_SIZE} episodes (about {PAPER_TRAIN_STEPS * PAPER_BATCH_SIZE / max(train_steps * (batch_size or 1), 1):,.0f} "
            "times more episodes seen), so their entropies are far above the paper's and above the Bayes-optimal floor; "
            "only the floor (exact, no training) is comparable with the paper's numbers."
        )
    if df is None:
        return notes
    if df["vs_original_n"].notna().any():
        notes.append("'vs original': the row's model minus the original's, validation episode by validation episode "
                     "(the first training seed of each), mean ± s.e. over the n episodes both were scored on. This s.e. "
                     "is the evaluation noise of two given models only: it says nothing of how another training seed "
                     "would do.")
    if df["vs_architecture_n"].notna().any():
        notes.append("'Control vs its architecture's row': a control's model minus the model of its architecture's own "
                     "row (the same seed, the same validation episodes), which differ only by the control's options: "
                     "with 'vs original', it separates what the architecture changes from what those options change.")
    if df["seeds_n"].notna().any():
        paired_seeds = df["seeds_vs_original_n"].notna().any()
        notes.append("'Across seeds': the validation entropy of each training seed's model, mean ± s.e. over the n seeds "
                     "(the spread between independently trained models)" + (
                         "; 'across seeds vs original': each seed's model minus the original of the same seed, mean ± "
                         "s.e. over the n seeds both have. Claims about the architectures rest on this column."
                         if paired_seeds else "."))
        claims = []
        for _, row in df[df["seeds_vs_original_n"].notna()].iterrows():
            m, se = row["seeds_vs_original"], row["seeds_vs_original_sem"]
            claims.append(f"{row['architecture']} {format_mean_sem(m, se, row['seeds_vs_original_n'], 3)}{_in_sems(m, se)}")
        if claims:
            notes.append(f"Across seeds, entropy minus the original's ({ENTROPY_UNIT}): " + "; ".join(claims) + ".")
    return notes


@dataclass(frozen=True)
class ModelEval:
    """One world model's evaluation for Table 2: its row (an architecture, or a control's name), architecture,
    training seed (None: not given), ``model-eval`` JSON and, when given, its per-episode CSV."""

    row: str
    arch: str
    seed: int | None
    record: Path
    episodes: Path | None = None
    control: bool = False


def parse_model_eval_spec(spec: str, control: bool = False) -> ModelEval:
    """``ARCH[@SEED]=JSON`` (``--model-eval``) or, for a control, ``NAME:ARCH[@SEED]=JSON`` (``--control``)."""
    form = "NAME:ARCH[@SEED]=JSON" if control else "ARCH[@SEED]=JSON"
    key, sep, path = spec.partition("=")
    if not sep or not key or not path:
        raise ValueError(f"model evaluation '{spec}': expected {form}")
    key, at, seed_text = key.partition("@")
    seed = None
    if at:
        if not seed_text.isdigit():
            raise ValueError(f"model evaluation '{spec}': the seed after '@' must be an integer >= 0")
        seed = int(seed_text)
    name, colon, arch = key.partition(":")
    if control != bool(colon):
        raise ValueError(f"model evaluation '{spec}': expected {form}")
    arch = arch if control else name
    if arch not in ARCH_LABELS:
        raise ValueError(f"unknown architecture(s) {[arch]} in '{spec}'; choose from {', '.join(ARCH_LABELS)}")
    if control and (name in ARCH_LABELS or name == "bayes" or not name):
        raise ValueError(f"model evaluation '{spec}': a control needs a name of its own, not an architecture's")
    return ModelEval(name, arch, seed, Path(path), control=control)


def attach_episodes(evals: list[ModelEval], specs: dict[str, Path]) -> list[ModelEval]:
    """``--per-episode ROW[@SEED]=CSV``: each evaluation's per-episode CSV (each key must name one of ``evals``)."""
    out, used = [], set()
    for e in evals:
        key = e.row if e.seed is None else f"{e.row}@{e.seed}"
        for k in (key, e.row) if e.seed is None else (key,):
            if k in specs:
                used.add(k)
                e = ModelEval(e.row, e.arch, e.seed, e.record, specs[k], e.control)
                break
        out.append(e)
    unknown = sorted(set(specs) - used)
    if unknown:
        raise ValueError(f"--per-episode {unknown[0]}: names no model evaluation given (ROW[@SEED] of --model-eval or "
                         "--control)")
    return out


def build_table2(model_evals: dict[str, Path] | list[ModelEval], bayes: Path | None,
                 control_labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Table 2: validation entropy of each architecture (then each control), and the Bayes-optimal floor.

    ``model_evals``: ``{arch: JSON}`` (one model each), or :class:`ModelEval` items, several per row for several
    training seeds: the row shows the first one's entropy, and with two or more seeds their mean ± s.e.
    (:func:`~alchemy_mbrl.stats.across_seeds`). With per-episode CSVs, each row is paired with the original on the
    same validation episodes, and (seeds given) seed by seed (:func:`~alchemy_mbrl.stats.paired_on_keys`).
    ``control_labels``: a control's name -> what it changes (its row label says it)."""
    if isinstance(model_evals, dict):
        unknown = [a for a in model_evals if a not in ARCH_LABELS]
        if unknown:
            raise ValueError(f"unknown architecture(s) {unknown} in --model-eval; choose from {', '.join(ARCH_LABELS)}")
        model_evals = [ModelEval(a, a, None, Path(p)) for a, p in model_evals.items()]
    by_row: dict[str, list[ModelEval]] = {}
    for e in model_evals:
        group = by_row.setdefault(e.row, [])
        if group and (group[0].arch, group[0].control) != (e.arch, e.control):
            raise ValueError(f"model evaluation row {e.row!r} is given as two different models")
        if any(g.seed == e.seed for g in group):
            raise ValueError(f"model evaluation {e.row}@{e.seed}: the same row and seed given twice")
        group.append(e)
    archs = [a for a in by_row if not by_row[a][0].control]
    names = ([a for a in PAPER_TABLE2 if a in archs] + [a for a in archs if a not in PAPER_TABLE2]
             + [c for c in by_row if by_row[c][0].control])
    records = {(e.row, e.seed): read_entropy_record(e.record) for g in by_row.values() for e in g}
    episodes = {(e.row, e.seed): read_episode_entropies(e.episodes) for g in by_row.values() for e in g if e.episodes}
    original = by_row.get("original")
    rows: list[dict[str, Any]] = []
    for name in names:
        group = by_row[name]
        main = group[0]
        if main.control:
            what = (control_labels or {}).get(name)
            label = f"control '{name}': {ARCH_LABELS[main.arch]}" + (f", {what}" if what else "")
        else:
            label = ARCH_LABELS.get(name, name)
        row = _table2_row(main.arch, label, main.record, None if main.control else PAPER_TABLE2.get(name),
                          records[(name, main.seed)])
        row["model"] = name
        row["seed"] = main.seed if main.seed is not None else pd.NA
        row["control_of"] = main.arch if main.control else ""
        d = None
        if original and name != "original" and (name, main.seed) in episodes and ("original", original[0].seed) in episodes:
            d = paired_on_keys(episodes[(name, main.seed)], episodes[("original", original[0].seed)])
        _put(row, "vs_original", d)
        d = None
        own = by_row.get(main.arch)
        if main.control and own and (name, main.seed) in episodes and (main.arch, own[0].seed) in episodes:
            d = paired_on_keys(episodes[(name, main.seed)], episodes[(main.arch, own[0].seed)])
        _put(row, "vs_architecture", d)
        per_seed = {e.seed: records[(name, e.seed)]["entropy_nats_per_step"] for e in group if e.seed is not None}
        _put(row, "seeds_entropy", across_seeds(per_seed) if len(per_seed) >= 2 else None, n_key="seeds_n")
        d = None
        if original and name != "original" and len(per_seed) >= 2:
            base = {e.seed: records[("original", e.seed)]["entropy_nats_per_step"] for e in original if e.seed is not None}
            d = paired_on_keys(per_seed, base)
            d = d if d.n >= 2 else None
        _put(row, "seeds_vs_original", d)
        rows.append(row)
    if bayes is not None:
        row = _table2_row("bayes", "Bayes-optimal predictor (exact posterior; floor)", bayes, None)
        row.update(seed=pd.NA, control_of="")
        for key in ("vs_original", "vs_architecture", "seeds_entropy", "seeds_vs_original"):
            _put(row, key, None, n_key="seeds_n" if key == "seeds_entropy" else None)
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(TABLE2_COLUMNS))
    for col in ("n_episodes", "seed", "vs_original_n", "vs_architecture_n", "seeds_n", "seeds_vs_original_n"):
        df[col] = df[col].astype("Int64")
    return df


def _put(row: dict[str, Any], key: str, d: MeanSem | None, n_key: str | None = None) -> None:
    """``key``, ``key_sem`` and ``key_n`` (or ``n_key``) of ``row`` from ``d``; empty when ``d`` is None or empty."""
    ok = d is not None and d.n > 0
    row[key] = d.mean if ok else math.nan
    row[f"{key}_sem"] = d.sem if ok else math.nan
    row[n_key or f"{key}_n"] = d.n if ok else pd.NA


def _table2_row(model: str, label: str, path: Path, paper: tuple[float, float | None] | None,
                e: dict[str, Any] | None = None) -> dict[str, Any]:
    e = read_entropy_record(path) if e is None else e  # entropies >= 0, counts integers (stats.read_entropy_record)
    if e.get("model") not in (None, model):
        raise ValueError(f"{path}: the evaluation is of model {e['model']!r}, but was given as {model!r}")
    return {
        "model": model,
        "architecture": label,
        "entropy": float(e["entropy_nats_per_step"]),
        "entropy_sem": as_float(e.get("entropy_sem")),
        "chemistry": float(e["chemistry_nats_per_step"]),
        "trial_start": as_float(e.get("trial_start_nats_per_step")),
        "n_episodes": int(e["n_episodes"]) if "n_episodes" in e else pd.NA,
        "paper_entropy": paper[0] if paper else math.nan,
        "paper_chemistry": paper[1] if paper and paper[1] is not None else math.nan,
    }


def _paired_cells(df: pd.DataFrame, prefix: str) -> list[str]:
    """``mean ± s.e. (n=N)`` of a paired column, an em dash on the rows without one."""
    return [format_mean_sem(m, s, n) if is_number(n) else "—"
            for m, s, n in zip(df[prefix], df[f"{prefix}_sem"], df[f"{prefix}_n"])]


def table1_display(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable Table 1 (strings); a paired column (``vs random heuristic``, ``vs ideal observer``) only
    when some planner row shares episodes with that agent."""
    paired = {
        f"Paired: vs {label}, {RETURN_UNIT} (mean ± s.e. of per-episode differences, n shared episodes)":
            _paired_cells(df, prefix)
        for prefix, label in PAIRED_REFERENCES.values() if prefix in df and df[f"{prefix}_n"].notna().any()
    }
    return pd.DataFrame(
        {
            "Agent": df["agent"],
            f"Ours: score, {RETURN_UNIT} (mean ± s.e., n episodes)": [
                format_mean_sem(m, s, n) for m, s, n in zip(df["mean"], df["sem"], df["n"])
            ],
            **paired,
            f"Published: score, {RETURN_UNIT} (mean ± s.e.)": [
                format_mean_sem(m, s) for m, s in zip(df["paper_mean"], df["paper_sem"])
            ],
            "Published in": [p if isinstance(p, str) and p else "—" for p in df["paper_source"]],
            "Source": df["source"],
        }
    )


def table2_display(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable Table 2 (strings); the paired and across-seed columns only when some row has them."""
    def cells(prefix: str, n_key: str | None = None) -> list[str]:
        n_col = df[n_key or f"{prefix}_n"] if (n_key or f"{prefix}_n") in df else pd.Series([pd.NA] * len(df))
        return [format_mean_sem(m, s, n, 3) if is_number(n) else "—"
                for m, s, n in zip(df[prefix], df[f"{prefix}_sem"], n_col)]

    extra: dict[str, list[str]] = {}
    if "vs_original_n" in df and df["vs_original_n"].notna().any():
        extra[f"Paired: vs original, {ENTROPY_UNIT} (mean ± s.e., n validation episodes)"] = cells("vs_original")
    if "vs_architecture_n" in df and df["vs_architecture_n"].notna().any():
        extra[f"Paired: control vs its architecture's row, {ENTROPY_UNIT} (mean ± s.e., n validation episodes)"] = cells(
            "vs_architecture")
    if "seeds_n" in df and df["seeds_n"].notna().any():
        extra[f"Across seeds: entropy, {ENTROPY_UNIT} (mean ± s.e., n training seeds)"] = cells("seeds_entropy", "seeds_n")
        if df["seeds_vs_original_n"].notna().any():
            extra[f"Across seeds: vs original, {ENTROPY_UNIT} (paired by seed: mean ± s.e., n seeds)"] = cells(
                "seeds_vs_original")
    return pd.DataFrame(
        {
            "Model": df["architecture"],
            f"Ours: validation entropy, {ENTROPY_UNIT} (mean ± s.e.)": [
                format_mean_sem(m, s, None, 3) for m, s in zip(df["entropy"], df["entropy_sem"])
            ],
            f"Ours: chemistry part, {ENTROPY_UNIT}": [format_mean_sem(c, None, None, 3) for c in df["chemistry"]],
            "Validation episodes": [f"{int(n):,}" if is_number(n) else "—" for n in df["n_episodes"]],
            **extra,
            f"Paper: entropy, {ENTROPY_UNIT}": [format_mean_sem(p, None, None, 2) for p in df["paper_entropy"]],
            f"Paper: chemistry part, {ENTROPY_UNIT}": [format_mean_sem(p, None, None, 3) for p in df["paper_chemistry"]],
        }
    )


def to_markdown(display: pd.DataFrame, caption: str) -> str:
    """A GitHub Markdown table (no extra dependency) preceded by its caption."""
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|")

    header = "| " + " | ".join(esc(c) for c in display.columns) + " |"
    sep = "| " + " | ".join("---" for _ in display.columns) + " |"
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in display.itertuples(index=False)]
    return "\n".join([caption, "", header, sep, *body]) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters; ``±`` and ``—`` become math/text commands."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("—", "---")


def to_latex(display: pd.DataFrame, caption: str, label: str) -> str:
    """A ``table`` environment with a ``tabular`` (booktabs rules)."""
    cols = "l" * len(display.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in display.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in display.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


TABLE1_CAPTION = (
    "Table 1: score on symbolic Alchemy (return per episode: the sum of the 200 rewards), "
    "mean ± standard error over n evaluation episodes, beside the published numbers (Pinon et al. 2022; "
    "Wang et al. 2021; dm_alchemy's recorded evaluation: the 'Published in' column says which). "
    "Expansions = tree-search expansions per environment step."
)
TABLE2_CAPTION = (
    "Table 2: entropy loss (nats per predicted step) on the held-out validation shards, "
    "and its part due to the uncertainty on the chemistry, beside Pinon et al. (2022). "
    "The Bayes-optimal row is the exact posterior predictive: no model can do better."
)


def full_caption(caption: str, scale: str | None = None) -> str:
    """The caption preceded by the scale line (``Scale: ...``) when there is one."""
    return f"[{scale}] {caption}" if scale else caption


_HTML_STYLE = (
    ".alchemy-table{font-family:sans-serif;font-size:13px;margin:1em 0;max-width:100%;overflow-x:auto}"
    ".alchemy-table table{border-collapse:collapse}"
    ".alchemy-table th,.alchemy-table td{border:1px solid #bbb;padding:4px 8px;text-align:left}"
    ".alchemy-table th{background:#eee}.alchemy-table td.num{white-space:nowrap}"
    ".alchemy-table td:first-child{min-width:12em}"
    ".alchemy-table caption{caption-side:top;text-align:left;padding-bottom:6px;max-width:70em}"
    ".alchemy-table .scale{background:#fff3cd;border:1px solid #e0c060;padding:6px;max-width:70em}"
    ".alchemy-table .notes{max-width:70em}"
)


def to_html(display: pd.DataFrame, caption: str, title: str, scale: str | None = None, notes: list[str] = ()) -> str:
    """An HTML5 page (no ``html``/``head``/``body`` tags, which HTML5 lets one omit): the scale banner,
    the table with its caption, and the notes, in one ``div.alchemy-table`` whose style is scoped to
    it, so that the same file can also be embedded in another page (the report's front page does)."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in display.columns)
    def cell(v: Any) -> str:
        text = str(v)
        num = "±" in text or text == "—" or text.replace(",", "").replace(".", "", 1).isdigit()
        return f'<td class="num">{esc(text)}</td>' if num else f"<td>{esc(text)}</td>"

    body = "\n".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in display.itertuples(index=False))
    banner = f'<p class="scale"><strong>Scale:</strong> {esc(scale)}</p>\n' if scale else ""
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (
        f'<!DOCTYPE html>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n<style>{_HTML_STYLE}</style>\n'
        f'<div class="alchemy-table">\n{banner}<table>\n<caption>{esc(caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        + (f'<ul class="notes">{notes_html}</ul>\n' if notes else "")
        + "</div>\n"
    )


def write_table(
    df: pd.DataFrame,
    display: pd.DataFrame,
    prefix: str | Path,
    caption: str,
    label: str,
    scale: str | None = None,
    notes: list[str] = (),
) -> list[Path]:
    """Write ``PREFIX.csv`` (raw numbers), ``PREFIX.md``, ``PREFIX.tex`` and ``PREFIX.html``; return the paths.

    The human-readable forms carry the scale line before the caption and the notes after the table.
    """
    prefix = Path(prefix)
    paths = [prefix.with_suffix(s) for s in (".csv", ".md", ".tex", ".html")]
    with atomic_write(paths[0]) as tmp:
        df.to_csv(tmp, index=False)
    cap = full_caption(caption, scale)
    write_text(paths[1], to_markdown(display, cap) + "".join(f"\nNote: {n}\n" for n in notes))
    write_text(paths[2], to_latex(display, cap + "".join(f" Note: {n}" for n in notes), label))
    write_text(paths[3], to_html(display, caption, caption.split(":")[0], scale, list(notes)))
    return paths
