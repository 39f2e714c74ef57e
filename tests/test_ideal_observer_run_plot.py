"""bench/ideal_observer_run_plot.py: the figure of the committed 1,000-episode ideal-observer run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .bench_support import load_bench_script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results-cpu"


def _script():
    return load_bench_script("ideal_observer_run_plot")


def test_the_committed_run_is_complete_and_paired() -> None:
    io = pd.read_csv(RESULTS / "ideal-observer.csv")
    so = pd.read_csv(RESULTS / "search-oracle.csv")
    assert io["episode"].tolist() == list(range(1000)) == so["episode"].tolist()
    assert set(io["seed"]) == set(so["seed"]) == {3}
    # within one trial the oracle is optimal for the true chemistry: never below the ideal observer
    assert (io["return"].to_numpy() <= so["return"].to_numpy()).all()


def test_figure_of_the_committed_run(tmp_path, capsys) -> None:
    out = tmp_path / "io"
    assert _script().main([str(RESULTS / "ideal-observer.csv"), str(RESULTS / "search-oracle.csv"), "--out", str(out)]) == 0
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
    assert "284.8 ± 1.6 (n=1,000)" in capsys.readouterr().out


def test_files_of_different_episodes_are_refused(tmp_path, capsys) -> None:
    so = pd.read_csv(RESULTS / "search-oracle.csv")
    so.assign(seed=4).to_csv(tmp_path / "so.csv", index=False)
    rc = _script().main([str(RESULTS / "ideal-observer.csv"), str(tmp_path / "so.csv"), "--out", str(tmp_path / "x")])
    assert rc == 2 and "not on the same episodes" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
