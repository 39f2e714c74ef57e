"""Latency and throughput of sampling K next (observation, reward) pairs for a batch of histories.

    PYTHONPATH=src python bench/model_sampling.py [--batch 32] [--k 3] [--repeats 5] [--device cpu|cuda] [--arch original]

For each history length L in (1, 50, 200) it times one planner-style call: evaluate the token that holds
(history, action) and sample K outcomes of it, either
  * cached:   the L-1 earlier tokens are already in a K/V cache (GRU: a hidden state); one token is computed;
  * uncached: all L tokens are recomputed from scratch.
Prints one Markdown table: mean ± s.e. over repeats of the call latency, and samples per second.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from alchemy_mbrl import rng
from alchemy_mbrl.env import codec
from alchemy_mbrl.model.config import resolve_config
from alchemy_mbrl.model.world_model import WorldModel, episode_inputs


def timed(fn, repeats: int, device: torch.device) -> np.ndarray:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32, help="histories per call (B searches)")
    ap.add_argument("--k", type=int, default=3, help="sampled outcomes per history (stochastic branching factor)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="original")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ALCHEMY_THREADS", 1)),
                    help="torch CPU threads (default 1, or $ALCHEMY_THREADS; 0 = torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cfg, _ = resolve_config(args.arch)
    torch.manual_seed(0)
    model = WorldModel(cfg).to(dev).eval()
    g = np.random.default_rng(0)
    b, k = args.batch, args.k
    obs = torch.from_numpy((g.random((b, 201, 39)) * codec.NUM_CATEGORIES).astype(np.uint8))
    actions = torch.from_numpy(g.integers(0, 40, (b, 200)))
    rewards = torch.from_numpy(g.integers(0, 5, (b, 200)))
    o, r, a = (x.to(dev) for x in episode_inputs(obs, actions, rewards))
    u = rng.uniform(rng.episode_keys(0, np.arange(b)), (k, 40))
    print(f"{args.arch} on {dev} (torch {torch.__version__}, {torch.get_num_threads()} threads), B = {b}, K = {k}, "
          f"{args.repeats} repeats")
    print("| history length | mode | latency ms (mean ± s.e.) | samples/s | of which sampling ms |")
    print("| --- | --- | --- | --- | --- |")
    with torch.no_grad():
        feats_last, _ = model.encode(o[:, :1], r[:, :1], a[:, :1])
        t_sample = timed(lambda: model.sample_next(feats_last[:, -1], u), args.repeats, dev)
        for length in (1, 50, 200):
            _, past = model.encode(o[:, : length - 1], r[:, : length - 1], a[:, : length - 1]) if length > 1 else (None, None)
            sl = slice(length - 1, length)

            def cached() -> None:
                f, _ = model.encode(o[:, sl], r[:, sl], a[:, sl], past=past)
                model.sample_next(f[:, -1], u)

            def uncached() -> None:
                f, _ = model.encode(o[:, :length], r[:, :length], a[:, :length])
                model.sample_next(f[:, -1], u)

            for mode, fn in (("cached", cached), ("uncached", uncached)):
                t = timed(fn, args.repeats, dev)
                se = t.std(ddof=1) / np.sqrt(len(t)) if len(t) > 1 else float("nan")
                print(f"| {length} | {mode} | {1e3 * t.mean():.1f} ± {1e3 * se:.1f} | {b * k / t.mean():,.0f} | "
                      f"{1e3 * t_sample.mean():.1f} |", flush=True)


if __name__ == "__main__":
    main()
