"""Table 1's calibration: the planner's readings of Algorithm 1 on the same episodes, paired.

``run`` plays every (reading, budget) of a readings file with ``alchemy-mbrl evaluate`` (one CPU thread
per process, ``--jobs`` processes), in chunks whose per-episode CSVs are kept: an interrupted run
resumes from the chunks it finished. ``summarise`` pairs every row with the default reading and with
the ideal observer on the same episodes (``docs/results-cpu/ideal-observer.csv``: seed 3, episodes
0-999), compares it with the paper's Table 1, and writes a Markdown table and a plot.

    python bench/planner_calibration.py run --readings bench/planner_readings.json --budgets 100 500 \\
        --simulator bayes --episodes 200 --seed 3 --jobs 2 --dir docs/results-planner/runs
    python bench/planner_calibration.py summarise --dir docs/results-planner/runs \\
        --out docs/results-planner/calibration    # .md table, .png/.pdf plot

A readings file is a JSON object ``{name: planner params}`` (the keys of ``--params``, docs/formats.md);
``{}`` is the package's default reading. Rows are paired with the reading ``--reference`` (default
``previous``: the package's reading before the calibration). Row files are ``DIR/<name>_<simulator>_b<budget>.csv``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alchemy_mbrl.io import write_text  # noqa: E402
from alchemy_mbrl.report.plots import save_figure  # noqa: E402
from alchemy_mbrl.report.tables import PAPER_TABLE1  # noqa: E402
from alchemy_mbrl.stats import mean_sem, paired_difference  # noqa: E402

IDEAL_OBSERVER_CSV = ROOT / "docs" / "results-cpu" / "ideal-observer.csv"
#: Readings drawn in a colour of their own and bold (the others in the default cycle, thin).
HIGHLIGHT = {"default": "tab:blue", "tuned": "tab:red"}
ROW = re.compile(r"^(?P<name>.+)_(?P<sim>bayes|oracle|learned)_b(?P<budget>\d+)\.csv$")


def row_path(directory: Path, name: str, simulator: str, budget: int) -> Path:
    return directory / f"{name}_{simulator}_b{budget}.csv"


def _play(job: tuple[str, dict, int, str, int, int, int, Path]) -> str:
    """One (reading, budget) row: its chunks (skipping finished ones), then their merge."""
    name, params, budget, simulator, episodes, seed, chunks, directory = job
    out = row_path(directory, name, simulator, budget)
    if out.exists():
        return f"{out.name}: done before"
    parts = directory / "chunks" / out.stem
    parts.mkdir(parents=True, exist_ok=True)
    params_file = parts / "params.json"
    write_text(params_file, json.dumps(params, sort_keys=True) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    files = []
    for i in range(chunks):
        part = parts / f"c{i}.csv"
        files.append(str(part))
        if part.exists():
            continue
        cmd = ["alchemy-mbrl", "evaluate", "--policy", "planner", "--simulator", simulator, "--budget", str(budget),
               "--episodes", str(episodes), "--seed", str(seed), "--chunk", f"{i}/{chunks}", "--params",
               str(params_file), "--no-progress", "--out", str(part)]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["alchemy-mbrl", "merge-returns", *files, "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return f"{out.name}: played"


def cmd_run(args: argparse.Namespace) -> None:
    readings = json.loads(Path(args.readings).read_text())
    if args.only:
        readings = {k: v for k, v in readings.items() if k in args.only}
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(name, params, b, args.simulator, args.episodes, args.seed, args.chunks, directory)
            for b in args.budgets for name, params in readings.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(_play, jobs):
            print(line, flush=True)


def load_rows(directory: Path) -> pd.DataFrame:
    """Every row file of DIR: one line per (reading, simulator, budget, episode)."""
    frames = []
    for f in sorted(directory.glob("*.csv")):
        m = ROW.match(f.name)
        if not m:
            continue
        d = pd.read_csv(f, usecols=["episode", "seed", "return"])
        d["reading"], d["simulator"], d["budget"] = m["name"], m["sim"], int(m["budget"])
        frames.append(d)
    if not frames:
        raise SystemExit(f"{directory}: no row files (<name>_<simulator>_b<budget>.csv)")
    return pd.concat(frames, ignore_index=True)


def summarise(rows: pd.DataFrame, ideal: pd.Series | None, reference: str = "previous") -> pd.DataFrame:
    """One line per (simulator, budget, reading): mean ± s.e., paired differences (with the ``reference``
    reading and with the ideal observer, on the episodes both played), gap to the paper."""
    out = []
    for (sim, budget), g in rows.groupby(["simulator", "budget"]):
        default = g[g.reading == reference].set_index("episode")["return"]
        for reading, r in g.groupby("reading"):
            x = r.set_index("episode")["return"].sort_index()
            s = mean_sem(x)
            line = {"simulator": sim, "budget": budget, "reading": reading, "mean": s.mean, "sem": s.sem, "n": s.n}
            if len(default) and reading != reference:
                both = x.index.intersection(default.index)
                d = paired_difference(x.loc[both], default.loc[both])
                line.update(vs_default=d.mean, vs_default_sem=d.sem, n_paired=d.n)
            if ideal is not None:
                both = x.index.intersection(ideal.index)
                d = paired_difference(x.loc[both], ideal.loc[both])
                line.update(vs_ideal=d.mean, vs_ideal_sem=d.sem)
            if budget in PAPER_TABLE1:
                pm, ps = PAPER_TABLE1[budget]
                line.update(paper=pm, gap=s.mean - pm, gap_in_se=(s.mean - pm) / math.hypot(s.sem, ps))
            out.append(line)
    return pd.DataFrame(out).sort_values(["simulator", "budget", "mean"], ascending=[True, True, False])


def _pm(m: float, s: float, digits: int = 1) -> str:
    return "" if not np.isfinite(m) else f"{m:+.{digits}f} ± {s:.{digits}f}"


def strongest(table: pd.DataFrame, min_n: int = 100) -> str:
    """Beyond the paper: per (simulator, budget), the reading of highest mean (on at least ``min_n``
    episodes) and how far it stays below the ideal observer on the same episodes (paired)."""
    lines = ["### The strongest reading per budget, paired with the ideal observer", "",
             "| simulator | expansions | strongest reading | return (mean ± s.e.) | n | paired vs ideal observer |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for (sim, budget), g in table[table.n >= min_n].groupby(["simulator", "budget"], sort=True):
        r = g.sort_values("mean", ascending=False).iloc[0]
        lines.append(f"| {sim} | {budget:,} | {r.reading} | {r['mean']:.1f} ± {r['sem']:.1f} | {r.n} | "
                     f"{_pm(r.get('vs_ideal', np.nan), r.get('vs_ideal_sem', np.nan))} |")
    return "\n".join(lines + [""])


def markdown(table: pd.DataFrame, reference: str = "previous") -> str:
    lines = [strongest(table)]
    for (sim, budget), g in table.groupby(["simulator", "budget"], sort=True):
        paper = PAPER_TABLE1.get(budget)
        head = f"### {sim}, {budget:,} expansions" + (f" (paper: {paper[0]} ± {paper[1]})" if paper else "")
        lines += [head, "", f"| reading | return (mean ± s.e.) | n | paired vs {reference} | paired vs ideal observer "
                  "| gap to paper (combined s.e.) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in g.itertuples():
            gap = f"{r.gap:+.1f} ({r.gap_in_se:+.1f})" if hasattr(r, "gap") and np.isfinite(r.gap) else ""
            lines.append(f"| {r.reading} | {r.mean:.1f} ± {r.sem:.1f} | {r.n} | "
                         f"{_pm(getattr(r, 'vs_default', np.nan), getattr(r, 'vs_default_sem', np.nan))} | "
                         f"{_pm(getattr(r, 'vs_ideal', np.nan), getattr(r, 'vs_ideal_sem', np.nan))} | {gap} |")
        lines.append("")
    return "\n".join(lines)


def plot(table: pd.DataFrame, path: Path, readings: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    b = sorted(PAPER_TABLE1)
    ax.errorbar(b, [PAPER_TABLE1[x][0] for x in b], yerr=[2 * PAPER_TABLE1[x][1] for x in b], color="black", lw=2,
                marker="s", capsize=3, label="paper (learned model), ± 2 s.e.")
    for (sim, reading), g in table.groupby(["simulator", "reading"]):
        if readings and reading not in readings:
            continue
        if g.budget.nunique() < 2:
            continue
        g = g.sort_values("budget")
        main = reading in HIGHLIGHT  # the default and its tuned parameters stand out; the rest are context
        ax.errorbar(g.budget, g["mean"], yerr=2 * g["sem"], marker="o", ms=4 if main else 3, capsize=2,
                    lw=2.2 if main else 0.8, alpha=1.0 if main else 0.55, color=HIGHLIGHT.get(reading),
                    ls="-" if sim == "bayes" else "--", label=f"{reading} ({sim})")
    ax.set_xscale("log")
    ax.set_xlabel("expansions per step (log scale)")
    ax.set_ylabel("return per episode (mean ± 2 s.e.)")
    ax.set_title("Algorithm 1's readings with perfect models (seed 3, paired episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)


def cmd_summarise(args: argparse.Namespace) -> None:
    rows = load_rows(Path(args.dir))
    ideal = None
    if IDEAL_OBSERVER_CSV.exists():
        io = pd.read_csv(IDEAL_OBSERVER_CSV)
        if set(rows.seed.unique()) <= set(io.seed.unique()):
            ideal = io.set_index("episode")["return"]
    table = summarise(rows, ideal, args.reference)
    text = markdown(table, args.reference)
    print(text)
    if args.out:
        out = Path(args.out)
        write_text(out.with_suffix(".md"), text + "\n")
        plot(table, out, args.plot_readings)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(required=True)
    r = sub.add_parser("run", help="play readings x budgets (resumable chunks)")
    r.add_argument("--readings", required=True, help="JSON {name: planner params}")
    r.add_argument("--only", nargs="*", help="only these reading names")
    r.add_argument("--budgets", type=int, nargs="+", required=True)
    r.add_argument("--simulator", default="bayes", choices=["bayes", "oracle", "learned"])
    r.add_argument("--episodes", type=int, default=200)
    r.add_argument("--seed", type=int, default=3)
    r.add_argument("--chunks", type=int, default=4, help="chunks per row (each a resumable CSV)")
    r.add_argument("--jobs", type=int, default=2, help="rows played at once (one CPU thread each)")
    r.add_argument("--dir", required=True)
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("summarise", help="paired table and plot of the rows of DIR")
    s.add_argument("--dir", required=True)
    s.add_argument("--out", default=None, help="write OUT.md, OUT.png, OUT.pdf")
    s.add_argument("--reference", default="previous", help="the reading every row is paired with")
    s.add_argument("--plot-readings", nargs="*", default=None, help="readings drawn (default: all with 2+ budgets)")
    s.set_defaults(func=cmd_summarise)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
