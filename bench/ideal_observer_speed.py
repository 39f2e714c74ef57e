"""Speed of the exact ideal observer (and of the search oracle), one episode at a time on one core.

    PYTHONPATH=src ALCHEMY_THREADS=1 python bench/ideal_observer_speed.py [--episodes 20] [--start 0] [--seed 0]
        [--timeout 600] [--save out.json] [--baseline bench/ideal_observer_speed_baseline.json]

Episodes ``start .. start + episodes - 1``; each episode ``e`` is played by
``evaluate.play_episodes(make_policy(agent), seed, np.array([e]))`` in a fresh child process (so a
runaway episode can be stopped at ``--timeout`` seconds and peak memory is per episode); the child
compiles the search on a tiny problem first, so the times exclude Numba's compilation. Prints a
table: seconds per episode (mean / median / max; an episode stopped at the timeout counts as the
timeout, a lower bound), the share of time spent in trial 0's steps, peak RSS, and the largest trial
search (states, beliefs), for the ideal observer and the search oracle. With ``--baseline`` (a file
saved by ``--save``, same seed), it also prints the baseline's rows and, per episode both finished,
the ratio of their first trials' states (which, unlike seconds, do not depend on the machine or its
load: compare seconds only within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def one_episode(agent: str, seed: int, episode: int) -> dict:
    """Play one episode in this process; a JSON-able record of its cost."""
    from alchemy_mbrl.bayes.posterior import pack_chemistry_sets
    from alchemy_mbrl.env.chemistry import NUM_CHEMISTRIES
    from alchemy_mbrl.evaluate import make_policy, play_episodes
    from alchemy_mbrl.ideal_observer import TrialSearch

    member = np.zeros(NUM_CHEMISTRIES, dtype=bool)
    member[:40] = True  # compile the search first (tiny problem)
    s = TrialSearch(pack_chemistry_sets(member))
    s.best(s.root, np.array([4, 9, 32]), np.array([1, 1, 0, 1, 0, 0]))

    policy = make_policy(agent)
    act = policy.act
    per_step = []

    def timed_act(context, keys):
        t0 = time.perf_counter()
        out = act(context, keys)
        per_step.append(time.perf_counter() - t0)
        return out

    policy.act = timed_act  # type: ignore[method-assign]
    start = time.perf_counter()
    result = play_episodes(policy, seed, np.array([episode]))
    seconds = time.perf_counter() - start
    stats = list(policy.trial_stats) + [(x.beliefs, x.states, x.nbytes) for x in policy.searches if x is not None]
    return {
        "episode": episode,
        "seconds": seconds,
        "trial0_seconds": float(sum(per_step[:20])),
        "return": float(np.asarray(result.returns)[0]) if hasattr(result, "returns") else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_states": max(st[1] for st in stats),
        "max_beliefs": max(st[0] for st in stats),
        "trial0_states": stats[0][1],
        "trial0_beliefs": stats[0][0],
    }


def run_agent(agent: str, seed: int, episodes: int, timeout: float, start: int = 0) -> list[dict]:
    rows = []
    for e in range(start, start + episodes):
        cmd = [sys.executable, __file__, "--one", agent, "--seed", str(seed), "--episode", str(e)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row = {"episode": e, "seconds": timeout, "timed_out": True}
        print(f"  {agent} episode {e}: {json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    secs = np.array([r["seconds"] for r in rows])
    done = [r for r in rows if not r.get("timed_out")]
    t0 = sum(r["trial0_seconds"] for r in done)
    return {
        "episodes": len(rows),
        "timed_out": len(rows) - len(done),
        "seconds_mean": float(secs.mean()),
        "seconds_median": float(np.median(secs)),
        "seconds_max": float(secs.max()),
        "trial0_share": float(t0 / max(sum(r["seconds"] for r in done), 1e-9)) if done else None,
        "peak_rss_mb_max": max((r["peak_rss_mb"] for r in done), default=None),
        "max_states": max((r["max_states"] for r in done), default=None),
        "max_beliefs": max((r["max_beliefs"] for r in done), default=None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--start", type=int, default=0, help="first episode (e.g. a known hard one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per episode before it is stopped")
    ap.add_argument("--agents", default="ideal-observer,search-oracle")
    ap.add_argument("--save", default=None)
    ap.add_argument("--baseline", default=None, help="a file saved by --save: print it beside this run")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--episode", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_episode(args.one, args.seed, args.episode)))
        return
    out = {"seed": args.seed, "timeout_s": args.timeout}
    for agent in args.agents.split(","):
        rows = run_agent(agent, args.seed, args.episodes, args.timeout, args.start)
        out[agent] = {"summary": summary(rows), "episodes": rows}
    print(f"{'agent':16s} {'eps':>4s} {'t/o':>4s} {'mean s':>8s} {'median s':>9s} {'max s':>8s} {'trial0':>7s} "
          f"{'RSS MB':>7s} {'states':>10s} {'beliefs':>9s}")
    for agent in args.agents.split(","):
        s = out[agent]["summary"]
        share = "-" if s["trial0_share"] is None else f"{100 * s['trial0_share']:.0f}%"
        print(f"{agent:16s} {s['episodes']:4d} {s['timed_out']:4d} {s['seconds_mean']:8.2f} {s['seconds_median']:9.2f} "
              f"{s['seconds_max']:8.2f} {share:>7s} {s['peak_rss_mb_max'] or 0:7.0f} {s['max_states'] or 0:10d} "
              f"{s['max_beliefs'] or 0:9d}")
    if args.baseline:
        compare(out, args.baseline, args.agents.split(","))
    if args.save:
        with open(args.save, "w") as fh:
            json.dump(out, fh, indent=1)


def compare(out: dict, path: str, agents: list[str]) -> None:
    """Print the saved baseline's summary and, per agent, its trial-0 states against this run's."""
    with open(path) as fh:
        base = json.load(fh)
    if base.get("seed") != out["seed"]:
        print(f"baseline {path}: seed {base.get('seed')}, not {out['seed']}: not compared")
        return
    print(f"baseline {path} (its seconds were measured on another run: compare states, not seconds):")
    for agent in agents:
        if agent not in base:
            continue
        s = base[agent]["summary"]
        old = {r["episode"]: r for r in base[agent]["episodes"] if not r.get("timed_out")}
        new = {r["episode"]: r for r in out[agent]["episodes"] if not r.get("timed_out")}
        both = sorted(set(old) & set(new))
        ratio = [old[e]["trial0_states"] / max(new[e]["trial0_states"], 1) for e in both]
        same = all(old[e]["return"] == new[e]["return"] for e in both)
        text = (f"trial-0 states x{min(ratio):.2f}-{max(ratio):.2f} fewer on {len(both)} episodes, "
                f"returns {'identical' if same else 'DIFFERENT'}") if both else "no episode finished in both"
        print(f"  {agent:16s} mean {s['seconds_mean']:.2f} s, median {s['seconds_median']:.2f} s, "
              f"max {s['seconds_max']:.2f} s, {s['timed_out']} timed out; {text}")


if __name__ == "__main__":
    main()
