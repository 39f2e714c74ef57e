"""Figure of a 1,000-episode ideal-observer run: its speed, its score, and its gap to the search oracle.

    PYTHONPATH=src python bench/ideal_observer_run_plot.py docs/results-cpu/ideal-observer.csv \
        docs/results-cpu/search-oracle.csv --out docs/results-cpu/ideal-observer

Both CSVs are ``evaluate`` returns files on the same episodes (same seed, episodes 0..n-1). Three
panels: seconds per episode (log axis, with the issue's goal of 5 s mean and 60 s at worst), the
running mean ± 2 s.e. of the ideal observer's return against Wang et al.'s 284.4 ± 1.6, and the
histogram of the paired difference ideal observer − search oracle per episode. Writes
``OUT.png`` and ``OUT.pdf`` and prints the figures it draws.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from alchemy_mbrl.evaluate import read_returns
from alchemy_mbrl.report.plots import plt, save_figure, titled
from alchemy_mbrl.report.tables import QUOTED_BASELINES
from alchemy_mbrl.stats import RETURN_UNIT, mean_sem

GOAL_MEAN_S, GOAL_MAX_S = 5.0, 60.0  # the speed goal per episode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ideal_observer", help="returns CSV of --policy ideal-observer")
    ap.add_argument("search_oracle", help="returns CSV of --policy search-oracle on the same episodes")
    ap.add_argument("--out", required=True, help="output prefix (writes OUT.png and OUT.pdf)")
    args = ap.parse_args(argv)
    io = read_returns(args.ideal_observer).sort_values("episode").reset_index(drop=True)
    so = read_returns(args.search_oracle).set_index("episode")
    if set(io["policy"]) != {"ideal-observer"} or set(so["policy"]) != {"search-oracle"}:
        print("error: expected an ideal-observer CSV, then a search-oracle CSV", file=sys.stderr)
        return 2
    missing = np.setdiff1d(io["episode"], so.index)
    if len(missing) or set(io["seed"]) != set(so["seed"]):
        print(f"error: the files are not on the same episodes (seeds {sorted(set(io['seed']))} vs "
              f"{sorted(set(so['seed']))}; missing from the oracle: {missing[:10].tolist()})", file=sys.stderr)
        return 2
    ret = io["return"].to_numpy(dtype=float)
    diff = ret - so.loc[io["episode"], "return"].to_numpy(dtype=float)
    sec = io["seconds"].to_numpy(dtype=float)
    score, paired = mean_sem(ret), mean_sem(diff)
    n = len(ret)
    sec_mean, sec_median, over = sec.mean(), np.median(sec), int((sec > GOAL_MAX_S).sum())
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.2), layout="constrained")

    ax = axes[0]
    bins = np.logspace(np.log10(max(sec.min(), 0.1)), np.log10(sec.max() * 1.01), 40)
    ax.hist(sec, bins=bins, color="C0")
    ax.set_xscale("log")
    for x, style, label in ((sec_mean, "-", f"mean {sec_mean:.1f} s"), (sec_median, "--", f"median {sec_median:.1f} s"),
                            (GOAL_MEAN_S, ":", f"goal: mean ≤ {GOAL_MEAN_S:g} s"), (GOAL_MAX_S, "-.", f"goal: max ≤ {GOAL_MAX_S:g} s")):
        ax.axvline(x, color="k" if "goal" not in label else "C3", linestyle=style, label=label)
    ax.set_xlabel("seconds per episode (one core, as recorded)")
    ax.set_ylabel("episodes")
    ax.set_title(f"speed: max {sec.max():.0f} s, {over} of {n:,} over {GOAL_MAX_S:g} s", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1]
    k = np.arange(1, n + 1)
    # the mean and standard error of the first k episodes, for every k, from cumulative sums (exact
    # here: integer returns, sums far below 2**53)
    total, squares = np.cumsum(ret), np.cumsum(ret * ret)
    running = total / k
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(np.maximum(squares - total * running, 0.0) / (k - 1))
    band = 2 * sd / np.sqrt(k)
    ax.plot(k, running, color="C0", label=f"ideal observer, running mean: {score}")
    ax.fill_between(k, running - band, running + band, color="C0", alpha=0.25, label="± 2 s.e.")
    pub, pub_sem = QUOTED_BASELINES["Ideal Observer"]
    ax.axhspan(pub - 2 * pub_sem, pub + 2 * pub_sem, color="0.6", alpha=0.4, label=f"published {pub} ± 2 × {pub_sem}")
    ax.axhline(pub, color="k", linestyle="--")
    ax.set_xlim(10, n)
    ax.set_ylim(pub - 25, pub + 25)
    ax.set_xlabel("episodes played (in episode order)")
    ax.set_ylabel(f"running mean ({RETURN_UNIT})")
    ax.set_title("score", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[2]
    edges = np.arange(diff.min() - 0.5, 1.5, max(1.0, np.ceil((diff.max() - diff.min() + 1) / 40)))
    ax.hist(diff, bins=edges, color="C1")
    ax.axvline(paired.mean, color="k", label=f"mean {paired}")
    ax.set_yscale("log")
    ax.set_xlabel(f"ideal observer − search oracle, same episode ({RETURN_UNIT})")
    ax.set_ylabel("episodes")
    ax.set_title(f"price of not knowing the chemistry: equal on {int((diff == 0).sum()):,}, above on {int((diff > 0).sum())}",
                 fontsize=9)
    ax.legend(fontsize=8)

    seed = ", ".join(str(s) for s in sorted(set(io["seed"])))
    titled(fig, f"Ideal observer, {n:,} episodes of seed {seed}", None)
    for p in save_figure(fig, args.out):
        print(f"wrote {p}")
    print(f"ideal observer {score}; paired − oracle {paired}; seconds mean {sec_mean:.1f}, "
          f"median {sec_median:.1f}, max {sec.max():.0f}, over {GOAL_MAX_S:g} s: {over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
