"""Expansions per second of the batched tree search over whole episodes, one thread, old vs new code.

For each simulator (``oracle``, ``bayes``, ``learned``) and batch size B, one real step is planned
(Table 4's parameters, ``--budget`` expansions) from the states reached after t steps of B episodes
played with a fixed random policy, for t on a grid (default 0, 50, 100, 150, 199). The wall-clock time
of ``TreeSearch.run`` (best of ``--repeats`` after a warm-up, and of ``--rounds`` child processes, old and
new alternating) gives the cost per expansion c(t); the
**episode average** is ``1 / mean_t c(t)`` with c interpolated linearly over t = 0..199 (the cost of a
whole 200-step episode divided by its expansions). Columns t=0 / t=100 / t=199 are the rates there.

Every measurement runs in a child process with ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``
(``--threads`` to change): on a shared machine more threads per process collapse when others load it;
run chunks in parallel processes instead. ``--baseline-src DIR`` measures a second copy of the code
(e.g. ``git archive <commit> src | tar -x -C DIR``) in the SAME run, alternating old and new per row,
and prints the ratios; ``--save`` writes all figures as JSON, ``--baseline JSON`` compares with a saved
run instead. The learned simulator needs ``--model DIR`` or ``--random-model ARCH`` (a freshly initialised
model of that architecture, e.g. ``original`` = the paper's size: throughput does not depend on training,
except through how many sampled outcomes merge).

    PYTHONPATH=src python bench/planner_throughput.py --random-model original --baseline-src /tmp/base/src \
        [--simulators oracle,bayes,learned] [--batch-sizes 256] [--budget 50] [--save bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GRID = (0, 50, 100, 150, 199)
HORIZON = 200


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _contexts(batch_size: int, times: list[int], seed: int = 0) -> dict[int, object]:
    """RootContexts at steps ``times`` of B episodes played with a fixed random policy."""
    from alchemy_mbrl.env.alchemy import AlchemyEnv

    try:
        from alchemy_mbrl.planner.simulator import RootContext  # after the restructure
    except ImportError:
        from alchemy_mbrl.simulators.base import RootContext
    env = AlchemyEnv(batch_size, seed=seed)
    ts = env.reset()
    g = np.random.default_rng(seed)
    t_max = max(times)
    obs = np.zeros((batch_size, t_max + 1, 39), np.uint8)
    actions = np.zeros((batch_size, t_max), np.int64)
    rewards = np.zeros((batch_size, t_max), np.uint8)
    obs[:, 0] = ts.observation_codes
    out = {}
    try:
        from alchemy_mbrl.env.codec import encode_reward  # after the restructure
    except ImportError:
        from alchemy_mbrl.data.codec import encode_reward
    for t in range(t_max + 1):
        if t in times:
            out[t] = RootContext(t=t, obs_codes=obs[:, : t + 1].copy(), actions=actions[:, :t].copy(),
                                 reward_codes=rewards[:, :t].copy(), chemistry=env.chemistry, state=env.state.copy())
        if t == t_max:
            break
        a = g.integers(0, 40, batch_size)
        ts = env.step(a)
        actions[:, t] = a
        rewards[:, t] = encode_reward(ts.reward)
        obs[:, t + 1] = ts.observation_codes
    return out


def _worker(spec: dict) -> dict:
    """Seconds per expansion at each t of ``spec['times']`` (runs inside the child process)."""
    _threads(spec["threads"])
    from alchemy_mbrl import rng
    from alchemy_mbrl.planner import PlannerParams, TreeSearch
    from alchemy_mbrl.simulators import make_simulator

    b, budget = spec["batch_size"], spec["budget"]
    sim = make_simulator(spec["simulator"], model_dir=spec.get("model"), device="cpu") if spec["simulator"] != "oracle" \
        else make_simulator("oracle")
    ctxs = _contexts(b, spec["times"])
    keys = rng.episode_keys(0, np.arange(b))
    out = {}
    for t in spec["times"]:
        search = TreeSearch(sim, budget, PlannerParams())
        search.run(ctxs[t], keys)  # warm-up (allocation, root encoding, TorchScript, caches)
        best = float("inf")
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            search.run(ctxs[t], keys)
            best = min(best, time.perf_counter() - start)
        out[str(t)] = best / (b * budget)
    return out


def run_child(src: str, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"worker failed ({src}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def episode_rate(cost: dict[str, float]) -> float:
    """1 / mean over t = 0..199 of the per-expansion cost, linearly interpolated between grid points."""
    ts = sorted(int(t) for t in cost)
    c = np.interp(np.arange(HORIZON), ts, [cost[str(t)] for t in ts])
    return float(1.0 / c.mean())


def summarise(cost: dict[str, float]) -> dict[str, float]:
    row = {"episode": episode_rate(cost)}
    for t in (0, 100, 199):
        if str(t) in cost:
            row[f"t={t}"] = 1.0 / cost[str(t)]
    return row


def random_model_dir(arch: str) -> str:
    import dataclasses

    import torch

    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.model.world_model import WorldModel

    cfg, _ = resolve_config(arch)
    torch.manual_seed(0)
    model = WorldModel(cfg)
    d = tempfile.mkdtemp(prefix=f"bench-model-{arch}-")
    torch.save({"config": dataclasses.asdict(cfg), "state_dict": model.state_dict()}, Path(d) / "model.pt")
    return d


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--simulators", default="oracle,bayes,learned")
    ap.add_argument("--batch-sizes", default="256")
    ap.add_argument("--budget", type=int, default=50, help="expansions per search and step (default 50)")
    ap.add_argument("--times", default=",".join(map(str, GRID)), help="steps t measured (episode grid)")
    ap.add_argument("--repeats", type=int, default=2, help="timed searches per t in one child (best is kept)")
    ap.add_argument("--rounds", type=int, default=2, help="children per variant, old and new alternating")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ALCHEMY_THREADS", 1)))
    ap.add_argument("--model", default=None, help="trained model directory for the learned simulator")
    ap.add_argument("--random-model", default=None, metavar="ARCH", help="or: a fresh model of this architecture")
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"), help="code to measure")
    ap.add_argument("--baseline-src", default=None, help="a second src/ tree measured in the same run")
    ap.add_argument("--baseline", default=None, help="JSON from --save to compare against")
    ap.add_argument("--save", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    _threads(args.threads)
    model = args.model or (random_model_dir(args.random_model) if args.random_model else None)
    times = [int(t) for t in args.times.split(",")]
    sims = [s for s in args.simulators.split(",") if s != "learned" or model is not None]
    saved = json.load(open(args.baseline)) if args.baseline else {}
    load = os.getloadavg()
    print(f"# budget {args.budget}, {args.threads} thread(s) per process, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    cols = ["episode", "t=0", "t=100", "t=199"]
    print("| simulator | B | code | " + " | ".join(f"{c} (exp/s)" for c in cols) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
    results: dict[str, dict] = {}
    for name in sims:
        for b in (int(x) for x in args.batch_sizes.split(",")):
            spec = dict(simulator=name, batch_size=b, budget=args.budget, times=times, repeats=args.repeats,
                        threads=args.threads, model=model)
            variants = [("new", args.src)] + ([("old", args.baseline_src)] if args.baseline_src else [])
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.rounds):  # alternate old and new; keep each t's fastest round (least disturbed)
                for label, src in variants:
                    cost = run_child(src, spec)
                    prev = best.get(label, {})
                    best[label] = {t: min(c, prev.get(t, c)) for t, c in cost.items()}
            rows = {}
            for label, _ in variants:
                rows[label] = {"cost_s": best[label], **summarise(best[label])}
                results[f"{name}/cpu/B={b}/{label}"] = rows[label]
            ref = rows.get("old") or saved.get(f"{name}/cpu/B={b}/new")
            for label in [v[0] for v in variants]:
                r = rows[label]
                cells = [f"{r[c]:,.0f}" if c in r else "" for c in cols]
                print(f"| {name} | {b} | {label} | " + " | ".join(cells) + " |", flush=True)
            if ref is not None:
                r = rows["new"]
                cells = [f"{r[c] / ref[c]:.2f}x" if c in r and c in ref else "" for c in cols]
                print(f"| {name} | {b} | new/old | " + " | ".join(cells) + " |", flush=True)
    load = os.getloadavg()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.save:
        with open(args.save, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
