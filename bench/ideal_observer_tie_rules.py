"""The ideal observer's two tie rules side by side: how often they choose differently, what it costs.

``run`` plays the ideal observer with DeepMind's tie rule (``deepmind``: fewest expected potion
uses, then dm_alchemy's insertion order; docs/ideal-observer.md, "Ties") on episodes of one seed, one
episode at a time, and at every real step also asks the package's previous rule (``actions``: fewest
expected remaining actions, then the smallest action code) what it would do in the same state. Each
episode's row (return, decisions that differ) is written as soon as it ends: an interrupted run
resumes. ``summarise`` pairs the returns with the previous rule's on the same episodes (the committed
1,000-episode run, ``docs/results-cpu/ideal-observer.csv``, played with the ``actions`` rule).

    PYTHONPATH=src ALCHEMY_THREADS=1 python bench/ideal_observer_tie_rules.py run --episodes 100 --seed 3 \\
        --dir docs/results-cpu/tie-rules
    PYTHONPATH=src python bench/ideal_observer_tie_rules.py summarise --dir docs/results-cpu/tie-rules \\
        --out docs/results-cpu/tie-rules        # the per-episode rows (.csv) and the table (.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alchemy_mbrl.evaluate import play_episodes  # noqa: E402
from alchemy_mbrl.ideal_observer import IdealObserverPolicy  # noqa: E402
from alchemy_mbrl.io import write_csv, write_text  # noqa: E402
from alchemy_mbrl.stats import format_mean_sem, mean_sem, paired_difference  # noqa: E402

PREVIOUS_RUN = ROOT / "docs" / "results-cpu" / "ideal-observer.csv"
COLUMNS = ("episode", "seed", "return", "steps", "differ", "seconds")


class BothRules:
    """Acts with DeepMind's rule; asks the previous rule in the same states and counts disagreements."""

    def __init__(self) -> None:
        self.deepmind = IdealObserverPolicy("deepmind")
        self.actions = IdealObserverPolicy("actions")
        self.steps = 0
        self.differ = 0

    def act(self, context, keys):
        chosen = self.deepmind.act(context, keys)
        other = self.actions.act(context, keys)
        self.steps += chosen.size
        self.differ += int((chosen != other).sum())
        return chosen


def episode_file(directory: Path, episode: int) -> Path:
    return directory / "episodes" / f"{episode:05d}.csv"


def run(args: argparse.Namespace) -> None:
    directory = Path(args.dir)
    (directory / "episodes").mkdir(parents=True, exist_ok=True)
    for e in range(args.start, args.start + args.episodes):
        out = episode_file(directory, e)
        if out.exists():
            continue
        policy = BothRules()
        t = time.perf_counter()
        result = play_episodes(policy, args.seed, np.array([e]))
        row = {"episode": e, "seed": args.seed, "return": float(result.returns[0]), "steps": policy.steps,
               "differ": policy.differ, "seconds": round(time.perf_counter() - t, 2)}
        write_csv(out, COLUMNS, [row])
        print(row, flush=True)


def table(new: pd.DataFrame) -> str:
    """The Markdown summary of the per-episode rows ``new`` (COLUMNS), paired with the previous rule's run."""
    old = pd.read_csv(PREVIOUS_RUN)
    both = new.merge(old[["episode", "seed", "return"]], on=["episode", "seed"], suffixes=("", "_actions"), validate="1:1")
    if len(both) != len(new):
        raise SystemExit(f"{len(new) - len(both)} episodes have no return of the previous rule in {PREVIOUS_RUN}")
    d = paired_difference(both["return"], both["return_actions"])
    n = len(both)
    same = int((both["return"] == both["return_actions"]).sum())
    with_diff = int((both["differ"] > 0).sum())
    lines = [
        f"Ideal observer, DeepMind's tie rule vs the previous rule (seed {int(both['seed'].iloc[0])}, episodes "
        f"{int(both['episode'].min())}-{int(both['episode'].max())}, n = {n}):",
        "",
        "| quantity | value |",
        "| --- | ---: |",
        f"| return, DeepMind's rule | {mean_sem(both['return'])} |",
        f"| return, previous rule | {mean_sem(both['return_actions'])} |",
        f"| paired difference (DeepMind's − previous) | {format_mean_sem(d.mean, d.sem, n, digits=2)} |",
        f"| episodes with equal returns | {same} of {n} |",
        f"| episodes where some decision differs | {with_diff} of {n} |",
        f"| decisions that differ (all 200 steps of every episode) | {int(both['differ'].sum())} of "
        f"{int(both['steps'].sum())} ({100 * both['differ'].sum() / both['steps'].sum():.2f} %) |",
        f"| CPU seconds per episode (both rules searched) | {both['seconds'].mean():.1f} |",
    ]
    return "\n".join(lines) + "\n"


def summarise(args: argparse.Namespace) -> None:
    directory = Path(args.dir)
    files = sorted((directory / "episodes").glob("*.csv"))
    if not files:
        raise SystemExit(f"{directory}: no episodes played yet")
    new = pd.concat([pd.read_csv(f) for f in files], ignore_index=True).sort_values("episode")
    text = table(new)
    if args.out:
        out = Path(args.out)
        write_csv(out.with_suffix(".csv"), COLUMNS, new.to_dict("records"))
        write_text(out.with_suffix(".md"), text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--episodes", type=int, default=100)
    r.add_argument("--start", type=int, default=0)
    r.add_argument("--seed", type=int, default=3)
    r.add_argument("--dir", required=True)
    s = sub.add_parser("summarise")
    s.add_argument("--dir", required=True)
    s.add_argument("--out", default=None, help="write OUT.csv (per-episode rows) and OUT.md (the table)")
    args = ap.parse_args()
    run(args) if args.command == "run" else summarise(args)


if __name__ == "__main__":
    main()
