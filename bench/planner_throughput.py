"""Expansions per second of the batched tree search, for B = 1, 16, 256 searches in lockstep.

For every available simulator (``oracle`` always; ``bayes`` if importable; ``learned`` if
importable and ``--model DIR`` is given) and device (CPU; CUDA too for the learned model
when available), one real step is planned from the first state of B fresh episodes with
Table 4's parameters, and the wall-clock time of ``TreeSearch.run`` (after one warm-up run)
gives expansions/s = B * budget / seconds. "vs B=1" is the ratio to the same code run one
search at a time (B = 1), i.e. the speed-up of batching.

    PYTHONPATH=src python bench/planner_throughput.py [--budget 100] [--model DIR]
        [--save bench.json] [--baseline bench.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from alchemy_mbrl import rng
from alchemy_mbrl.env.alchemy import AlchemyEnv
from alchemy_mbrl.planner import PlannerParams, TreeSearch
from alchemy_mbrl.simulators import make_simulator
from alchemy_mbrl.planner.simulator import RootContext


def root_context(batch_size: int, seed: int = 0) -> RootContext:
    env = AlchemyEnv(batch_size, seed=seed)
    ts = env.reset()
    return RootContext(
        t=0, obs_codes=ts.observation_codes[:, None].copy(), actions=np.zeros((batch_size, 0), np.int64),
        reward_codes=np.zeros((batch_size, 0), np.uint8), chemistry=env.chemistry, state=env.state.copy(),
    )


def expansions_per_s(simulator, batch_size: int, budget: int, repeats: int = 2) -> float:
    search = TreeSearch(simulator, budget, PlannerParams())
    ctx = root_context(batch_size)
    keys = rng.episode_keys(0, np.arange(batch_size))
    search.run(ctx, keys)  # warm-up (allocation, caches, kernels)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        search.run(ctx, keys)
        best = min(best, time.perf_counter() - start)
    return batch_size * budget / best


def available(model: str | None) -> list[tuple[str, str]]:
    """(simulator, device) pairs that can run here."""
    out = [("oracle", "cpu")]
    try:
        make_simulator("bayes")
        out.append(("bayes", "cpu"))
    except (ImportError, ValueError) as exc:
        print(f"# bayes simulator skipped: {exc}")
    if model is None:
        print("# learned simulator skipped: no --model DIR")
    else:
        try:
            import torch

            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            for dev in devices:
                make_simulator("learned", model_dir=model, device=dev)
                out.append(("learned", dev))
        except (ImportError, ValueError, FileNotFoundError) as exc:
            print(f"# learned simulator skipped: {exc}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=100, help="expansions per search (default 100)")
    ap.add_argument("--batch-sizes", default="1,16,256")
    ap.add_argument("--model", default=None, help="trained model directory for the learned simulator")
    ap.add_argument("--save", default=None, help="write the results as JSON")
    ap.add_argument("--baseline", default=None, help="JSON from --save to compare against")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    baseline = json.load(open(args.baseline)) if args.baseline else {}
    results: dict[str, float] = {}
    print(f"{'simulator':<10}{'device':<8}{'B':>6}{'expansions/s':>15}{'vs B=1':>9}{'vs baseline':>13}")
    for name, device in available(args.model):
        single = None
        for b in sizes:
            sim = make_simulator(name, model_dir=args.model, device=device)
            rate = expansions_per_s(sim, b, args.budget)
            single = rate if b == 1 else single
            key = f"{name}/{device}/B={b}"
            results[key] = rate
            ratio = f"{rate / single:8.1f}x" if single else f"{'':>9}"
            base = f"{rate / baseline[key]:12.2f}x" if key in baseline else f"{'':>13}"
            print(f"{name:<10}{device:<8}{b:>6}{rate:>15,.0f}{ratio}{base}", flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
