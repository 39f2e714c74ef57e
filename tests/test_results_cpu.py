"""The CPU-scale claims of docs/results-cpu.md (issue 27) recomputed from the committed per-episode files in
docs/results-cpu/: every Table 1 row, paired difference and across-seed spread the page quotes is the one its
data give (`stats`), so the page cannot drift from the numbers it rests on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alchemy_mbrl import stats
from alchemy_mbrl.report.tables import episode_returns

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "results-cpu"
PAGE = (ROOT / "docs" / "results-cpu.md").read_text()
SEEDS = (2022, 2023, 2024)
BUDGETS = (60, 120, 240, 500, 1250)
NAMES = {"learned": "learned model (original, seed 2022)", "bayes": "exact Bayes", "oracle": "true chemistry"}


def _pm(d: stats.MeanSem, digits: int = 1, sign: bool = True) -> str:
    """``mean ± s.e.`` as the page writes it (a signed mean with the typographic minus)."""
    text = f"{d.mean:+.{digits}f} ± {d.sem:.{digits}f}" if sign else f"{d.mean:.{digits}f} ± {d.sem:.{digits}f}"
    return text.replace("-", "\u2212")


def _rows() -> dict[tuple[str, int], pd.Series]:
    rows = {}
    for sim in NAMES:
        for b in BUDGETS:
            path = DATA / ("learned-rows" if sim == "learned" else "reference-rows") / f"{sim}-{b}.csv"
            if path.exists():
                rows[(sim, b)] = episode_returns(path)
    return rows


def _entropies(arch: str, seed: int) -> pd.Series | None:
    path = DATA / "model-eval" / (f"{arch}.csv" if seed == 2022 else f"{arch}-seed-{seed}.csv")
    return stats.read_episode_entropies(path) if path.exists() else None


def _mean_entropy(arch: str, seed: int) -> float | None:
    e = _entropies(arch, seed)
    return None if e is None else float(e.mean())


def test_every_planner_row_plays_the_same_64_episodes() -> None:
    rows = _rows()
    assert {("learned", b) for b in BUDGETS} <= set(rows)
    assert {(s, b) for s in ("bayes", "oracle") for b in BUDGETS} <= set(rows)
    keys = {(3, e) for e in range(64)}
    for name, r in rows.items():
        assert set(r.index) == keys, name
    for other in ("random-heuristic", "ideal-observer-64"):
        assert keys <= set(episode_returns(DATA / "reference-rows" / f"{other}.csv").index)


def test_table1_rows_are_the_paired_differences_of_the_committed_returns() -> None:
    """Each row of the page's "Table 1 so far": its return and its paired differences with the heuristic, the ideal
    observer and the exact-Bayes row of the same budget, on the same 64 episodes."""
    heuristic = episode_returns(DATA / "reference-rows" / "random-heuristic.csv")
    observer = episode_returns(DATA / "reference-rows" / "ideal-observer-64.csv")
    rows = _rows()
    for (sim, b), r in rows.items():
        vs_bayes = _pm(stats.paired_on_keys(r, rows[("bayes", b)])) if sim != "bayes" else "—"
        line = (f"| {NAMES[sim]} | {b:,} | {_pm(stats.mean_sem(r.to_numpy()), sign=False)} | "
                f"{_pm(stats.paired_on_keys(r, heuristic))} | {_pm(stats.paired_on_keys(r, observer))} | {vs_bayes} |")
        assert line in PAGE, line


def test_the_quoted_rises_with_the_budget_are_paired_on_the_same_episodes() -> None:
    rows = _rows()
    learned = [b for b in BUDGETS if ("learned", b) in rows]
    rise = stats.paired_on_keys(rows[("learned", learned[-1])], rows[("learned", 60)])
    assert f"{_pm(rise)} from 60 to {learned[-1]:,}" in PAGE
    bayes = stats.paired_on_keys(rows[("bayes", learned[-1])], rows[("bayes", 60)])
    assert f"exact model gains {_pm(bayes)} from 60 to {learned[-1]:,}" in PAGE


@pytest.mark.parametrize(("arch", "seeds", "digits"),
                         [("no_gru_head", SEEDS, 4), ("gru_backbone", SEEDS[:2], 4), ("no_final_linear", SEEDS[:2], 2)])
def test_each_architecture_against_the_original_across_seeds(arch: str, seeds: tuple[int, ...], digits: int) -> None:
    """Table 2's claims: the across-seed mean ± s.e. of each architecture and of the original, and each seed's model
    minus the original of the same seed (paired by seed, n seeds)."""
    per_seed = {a: {s: _mean_entropy(a, s) for s in seeds} for a in ("original", arch)}
    assert all(v is not None for a in per_seed.values() for v in a.values())
    n = len(seeds)
    diff = stats.across_seeds({s: per_seed[arch][s] - per_seed["original"][s] for s in seeds})
    assert f"{_pm(diff, digits)} (n = {n})" in PAGE.replace("**", "")
    assert f"{_pm(stats.across_seeds(per_seed[arch]), digits, sign=False)} (n = {n})" in PAGE
    original = stats.across_seeds({s: _mean_entropy("original", s) for s in SEEDS})
    assert f"{_pm(original, 4, sign=False)} (n = 3)" in PAGE


def test_the_gru_head_is_paired_by_episode_too() -> None:
    by_episode = stats.paired_on_keys(_entropies("no_gru_head", 2022), _entropies("original", 2022))
    assert f"{_pm(by_episode, 4)} (n = 1,000)" in PAGE
    assert by_episode.n == 1000


@pytest.mark.parametrize(("arch", "digits"),
                         [("gru_backbone", 3), ("no_final_linear", 3), ("no_final_linear-original_lr", 2)])
def test_the_other_architectures_are_paired_with_the_original_on_the_same_episodes(arch: str, digits: int) -> None:
    d = stats.paired_on_keys(_entropies(arch, 2022), _entropies("original", 2022))
    assert d.n == 1000
    assert f"{_pm(d, digits)} (n = 1,000)" in PAGE


def test_the_learning_rate_control_separates_the_architecture_from_the_learning_rate() -> None:
    """The control (no_final_linear at the original's lr) minus no_final_linear at lr / 5, and minus the original:
    the learning rate's and the architecture's shares of the final linear layer's effect, paired on the episodes."""
    control = _entropies("no_final_linear-original_lr", 2022)
    lr_share = stats.paired_on_keys(control, _entropies("no_final_linear", 2022))
    architecture = stats.paired_on_keys(control, _entropies("original", 2022))
    assert lr_share.n == architecture.n == 1000
    page = PAGE.replace("**", "")
    assert f"{_pm(lr_share, 3)} (n = 1,000)" in page
    assert f"{abs(lr_share.mean):.3f} ± {lr_share.sem:.3f}" in page and f"{_pm(architecture, 3)}" in page


def test_the_committed_workflow_table1_is_the_committed_returns() -> None:
    """docs/results-cpu/tables/table1_long.md (the workflow's own Table 1 of the run, every budget): each planner
    row's score and its paired differences are those of the committed per-episode returns."""
    labels = {"learned": "Ours: learned model + tree search", "bayes": "Tree search with the exact Bayesian model",
              "oracle": "Tree search with the true chemistry"}
    table = (DATA / "tables" / "table1_long.md").read_text().splitlines()
    heuristic = episode_returns(DATA / "reference-rows" / "random-heuristic.csv")
    observer = episode_returns(DATA / "reference-rows" / "ideal-observer-64.csv")
    cell = lambda d: f"{d.mean:.1f} ± {d.sem:.1f} (n={d.n})"  # noqa: E731 (the tables' own format)
    rows = _rows()
    assert len(rows) == 15
    for (sim, b), r in rows.items():
        line = [row for row in table if row.startswith(f"| {labels[sim]}") and f"({b:,} expansions" in row]
        assert len(line) == 1, (sim, b)
        cells = [c.strip() for c in line[0].split("|")[2:5]]
        assert cells == [cell(stats.mean_sem(r.to_numpy())), cell(stats.paired_on_keys(r, heuristic)),
                         cell(stats.paired_on_keys(r, observer))], (sim, b, cells)
