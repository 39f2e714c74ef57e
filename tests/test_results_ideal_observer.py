"""The committed comparison of the ideal observer's two tie rules (docs/ideal-observer.md): complete,
paired with the previous rule's run, and the table the docs show is the one its rows give."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .bench_support import load_bench_script

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "docs" / "results-cpu" / "tie-rules.csv"


def test_the_tie_rule_rows_are_seed_3s_first_episodes_and_their_table_is_committed() -> None:
    bench = load_bench_script("ideal_observer_tie_rules")
    rows = pd.read_csv(ROWS)
    assert list(rows.columns) == list(bench.COLUMNS)
    assert (rows.seed == 3).all() and rows.episode.tolist() == list(range(len(rows))) and len(rows) >= 100
    assert ((rows.steps == 200) & (rows.differ >= 0) & (rows.differ <= rows.steps)).all()
    table = bench.table(rows)
    assert (ROOT / "docs" / "results-cpu" / "tie-rules.md").read_text() == table
    quoted = [line for line in table.splitlines() if line.startswith("| paired difference")][0].split("|")[2].strip()
    assert quoted.split(" (n=")[0] in (ROOT / "docs" / "ideal-observer.md").read_text()
