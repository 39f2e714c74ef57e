"""Throughput of the exact Bayesian model: entropy filtering and simulator expansions.

    PYTHONPATH=src python bench/bayes_throughput.py [--episodes 2000] [--save out.json] [--baseline old.json]

Prints one table: episodes/s of the entropy computation (``bayes.episode_log_probs``: posterior
update and log-probability of every step of whole 200-step episodes), and expansions/s of
``BayesSimulator.expand`` (one call = one expansion of each of the B searches, K = 3 outcomes)
for B = 1, 16, 64, averaged over roots at several real steps t (the posterior is largest at t = 0).
Figures are given per wall-clock second and per CPU second of this process (the latter is what an
unloaded core would do); ``--baseline`` compares the per-CPU-second figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from alchemy_mbrl import bayes
from alchemy_mbrl import rng as crng
from alchemy_mbrl.env import codec
from alchemy_mbrl.data.shards import generate_episodes
from alchemy_mbrl.planner.simulator import RootContext
from alchemy_mbrl.simulators.bayes import BayesSimulator

ROOT_STEPS = (0, 10, 40, 100, 180)


def bench_entropy(d: dict[str, np.ndarray], batch: int = 1000) -> tuple[float, float]:
    """Episodes per wall-clock second and per CPU second of the full-episode log-probability computation."""
    n = len(d["actions"])
    start, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, n, batch):
        bayes.episode_log_probs(d["obs_codes"][lo : lo + batch], d["actions"][lo : lo + batch], d["reward_codes"][lo : lo + batch])
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def bench_simulator(d: dict[str, np.ndarray], b: int, expansions: int, k: int = 3) -> tuple[float, float, float, float]:
    """(expansions per wall second, per CPU second, set_roots seconds, mean root words) over roots at ``ROOT_STEPS``."""
    sim = BayesSimulator()
    seconds = cpu_s = roots_s = 0.0
    words = []
    rng = np.random.default_rng(0)
    for t in ROOT_STEPS:
        ctx = RootContext(t, d["obs_codes"][:b, : t + 1], d["actions"][:b, :t], d["reward_codes"][:b, :t])
        t0 = time.perf_counter()
        sim.set_roots(ctx, 1 + expansions * k)
        roots_s += time.perf_counter() - t0
        words.append(sim.cols.shape[1])
        keys = crng.episode_keys(t, np.arange(b))
        plan = [(rng.integers(0, 1 + e * k, size=b), rng.integers(0, 40, size=b)) for e in range(expansions)]
        t0, c0 = time.perf_counter(), time.process_time()
        for e, (parents, actions) in enumerate(plan):
            children = 1 + e * k + np.arange(k)[None, :].repeat(b, 0)
            sim.expand(parents, actions, children, crng.fold_in(keys, e))
        seconds += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
    n = expansions * len(ROOT_STEPS)
    return n / seconds, n / cpu_s, roots_s / len(ROOT_STEPS), float(np.mean(words))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=2000, help="episodes for the entropy benchmark")
    ap.add_argument("--expansions", type=int, default=200, help="expansions per root step for the simulator benchmark")
    ap.add_argument("--save", type=Path, help="write the figures to this JSON file")
    ap.add_argument("--baseline", type=Path, help="compare with figures saved by --save")
    args = ap.parse_args()
    d = generate_episodes(np.random.default_rng(0), max(args.episodes, 64))
    d["actions"] = d["actions"].astype(np.int64)
    d["reward_codes"] = codec.encode_reward(d["rewards"])
    bayes.constraint_tables()  # build once, outside the timings
    rows: list[tuple[str, float, float, str]] = []
    wall, cpu = bench_entropy({k: v[: args.episodes] for k, v in d.items()})
    rows.append(("entropy: episodes/s (200 steps each)", wall, cpu, f"10,000 episodes in {1e4 / wall:.0f} s"))
    for b in (1, 16, 64):
        wall, cpu, roots_s, words = bench_simulator(d, b, args.expansions)
        rows.append((f"simulator B={b}: expansions/s (K=3)", wall, cpu, f"{1e3 / wall:.2f} ms/call, {wall * b:.0f} search-expansions/s, "
                     f"set_roots {1e3 * roots_s:.1f} ms, root words {words:.0f}"))
    base = json.loads(args.baseline.read_text()) if args.baseline else {}
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (per-CPU-second figures are less sensitive to it)")
    print(f"| {'measure':<40} | {'per wall s':>10} | {'per CPU s':>10} | {'vs baseline':>11} | notes |")
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 12}|{'-' * 13}|-------|")
    for name, value, cpu_value, note in rows:
        ratio = f"{cpu_value / base[name]:.2f}x" if name in base else ""
        print(f"| {name:<40} | {value:>10.1f} | {cpu_value:>10.1f} | {ratio:>11} | {note} |")
    if args.save:
        args.save.write_text(json.dumps({name: cpu_value for name, _, cpu_value, _ in rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
