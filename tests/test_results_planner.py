"""The committed calibration of docs/results-planner.md: complete, paired, and the numbers the docs quote."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alchemy_mbrl.planner.params import PlannerParams

from .bench_support import load_bench_script

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "results-planner" / "runs"


def _bench():
    return load_bench_script("planner_calibration")


def test_every_row_is_a_prefix_of_seed_3_and_names_a_valid_reading() -> None:
    readings = json.loads((ROOT / "docs" / "results-planner" / "readings.json").read_text())
    assert readings["default"] == {} and PlannerParams.from_dict(readings["previous"]) == PlannerParams(
        reward_scale=1 / 15, tie_break="lowest")
    rows = _bench().load_rows(RUNS)
    for (reading, sim, budget), g in rows.groupby(["reading", "simulator", "budget"]):
        assert reading in readings, reading
        PlannerParams.from_dict(readings[reading])
        assert (g.seed == 3).all() and g.episode.tolist() == list(range(len(g))), (reading, sim, budget)


@pytest.mark.parametrize("sim,budget,mean,sem,n", [
    ("bayes", 100, 78.5, 1.9, 200), ("bayes", 500, 152.1, 3.3, 200), ("bayes", 1250, 179.2, 3.8, 200),
    ("oracle", 2500, 221.7, 4.3, 200), ("oracle", 5000, 248.0, 7.3, 100), ("oracle", 10000, 256.9, 7.0, 100)])
def test_the_default_readings_numbers_quoted_by_the_docs(sim: str, budget: int, mean: float, sem: float, n: int) -> None:
    r = pd.read_csv(RUNS / f"default_{sim}_b{budget}.csv")["return"]
    assert len(r) == n
    assert round(r.mean(), 1) == mean and round(r.std(ddof=1) / n**0.5, 1) == sem
    for page in ("README.md", "docs/results-planner.md"):
        assert f"{mean} ± {sem}" in (ROOT / page).read_text(), page


def test_summary_pairs_rows_on_their_common_episodes() -> None:
    bench = _bench()
    rows = bench.load_rows(RUNS)
    table = bench.summarise(rows, None, "previous")
    line = table[(table.reading == "tie_random") & (table.budget == 500)].iloc[0]
    a = rows[(rows.reading == "tie_random") & (rows.budget == 500)].set_index("episode")["return"]
    b = rows[(rows.reading == "previous") & (rows.budget == 500) & (rows.simulator == "bayes")].set_index("episode")["return"]
    assert line.vs_default == pytest.approx((a - b).mean()) and line.n_paired == 200
