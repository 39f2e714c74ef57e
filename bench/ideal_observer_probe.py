"""First-trial probes of the ideal observer's search, this tree against another, side by side.

    PYTHONPATH=src ALCHEMY_THREADS=1 python bench/ideal_observer_probe.py --against /path/to/other/src \
        [--potions 8] [--seed 3] [--episodes 0,1,2]

For each episode, the first trial's root (``episode_setup(seed, e)``, its posterior after the
first observation, its stones and its first ``--potions`` potions) is searched from scratch
(``TrialSearch.best``, as the agent asks at the trial's first step; then ``value``, for the check
only) by this tree's package and by the one at ``--against`` (a
``src`` folder, e.g. of a ``git worktree`` at the baseline commit), alternately, each in a fresh
process (one thread; Numba's compilation excluded by a warm-up search). Prints a table of states
memoised, states expanded (re-searches included), beliefs, seconds and store size, and fails if the
two give different values (U, N) or best actions: a speed change must not change the search's result.
States are independent of the machine's load; seconds are not (compare within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def probe(seed: int, episode: int, potions: int) -> dict:
    import numpy as np

    import alchemy_mbrl
    from alchemy_mbrl.bayes import initial_posterior
    from alchemy_mbrl.env.alchemy import AlchemyEnv
    from alchemy_mbrl.evaluate import episode_setup
    from alchemy_mbrl.ideal_observer import _C_EXPANDED, TrialSearch, observed_items

    chem, items, _ = episode_setup(seed, np.array([episode]))
    obs = AlchemyEnv(1, seed=0).reset(chem, items).observation_codes
    post = initial_posterior(obs)
    stones, colours, _ = observed_items(obs[0])
    warm = TrialSearch(post[0])  # compile first
    warm.value(warm.root, stones, np.bincount(colours[:2], minlength=6))
    warm.best(warm.root, stones, np.bincount(colours[:2], minlength=6))
    counts = np.bincount(colours[:potions], minlength=6)
    t = time.perf_counter()
    s = TrialSearch(post[0])
    best = s.best(s.root, stones, counts)  # what the agent asks at a trial's first step
    seconds = time.perf_counter() - t
    states, expanded, beliefs, mb = s.states, int(s.counters[_C_EXPANDED]), s.beliefs, s.nbytes / 1e6
    u, n, m = s.value(s.root, stones, counts)  # for the check only (not counted)
    return {"src": str(Path(alchemy_mbrl.__file__).parents[1]), "seconds": seconds, "U": u, "N": n,
            "mass": m, "best": best, "states": states, "expanded": expanded, "beliefs": beliefs, "mb": mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the other tree's src folder (the baseline)")
    ap.add_argument("--potions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--episodes", default="0,1,2")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(probe(args.seed, args.one, args.potions)))
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = {"this": here, "baseline": str(Path(args.against).resolve())}
    print(f"{'episode':>7s} {'tree':>8s} {'states':>9s} {'expanded':>9s} {'beliefs':>8s} {'seconds':>8s} {'MB':>5s}")
    bad = 0
    for e in (int(x) for x in args.episodes.split(",")):
        rows = {}
        for name, src in trees.items():
            env = dict(os.environ, PYTHONPATH=src, ALCHEMY_THREADS="1")
            cmd = [sys.executable, __file__, "--one", str(e), "--seed", str(args.seed), "--potions", str(args.potions),
                   "--against", args.against]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            r = rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
            assert r["src"] == src, (r["src"], src)
            print(f"{e:7d} {name:>8s} {r['states']:9d} {r['expanded']:9d} {r['beliefs']:8d} {r['seconds']:8.2f} "
                  f"{r['mb']:5.0f}", flush=True)
        a, b = rows["this"], rows["baseline"]
        if (a["U"], a["N"], a["mass"], a["best"]) != (b["U"], b["N"], b["mass"], b["best"]):
            print(f"  MISMATCH episode {e}: this {a} baseline {b}")
            bad += 1
        else:
            print(f"  same result (U/mass {a['U'] / a['mass']:.4f}, best {a['best']}); states x{b['states'] / a['states']:.2f}, "
                  f"seconds x{b['seconds'] / a['seconds']:.2f} fewer")
    if bad:
        raise SystemExit(f"{bad} episode(s) differ")


if __name__ == "__main__":
    main()
