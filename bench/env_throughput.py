"""Environment and dataset-generation throughput on one core; prints a Markdown table.

    python bench/env_throughput.py                    # full table
    python bench/env_throughput.py --save base.json   # save the figures
    python bench/env_throughput.py --compare base.json

Steps are uniform-random actions over whole episodes, including ``reset``; the dataset
row generates a shard with HDF5 writing and gzip compression (what ``alchemy-mbrl generate``
does). The reference (dm_alchemy) reaches about 1,000-1,300 steps/s including reset (SPEC §12).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from alchemy_mbrl.data.shards import write_shard  # noqa: E402
from alchemy_mbrl.env import AlchemyEnv  # noqa: E402

REFERENCE_STEPS_PER_S = 1166.0  # SPEC §12, reference figure including reset


def env_steps_per_s(batch: int, min_steps: int, repeats: int = 3) -> float:
    env = AlchemyEnv(batch, seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 40, size=(200, batch))
    episodes = max(1, -(-min_steps // (200 * batch)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(episodes):
            env.reset()
            for t in range(200):
                env.step(actions[t])
        best = min(best, time.perf_counter() - t0)
    return episodes * 200 * batch / best


def shard_episodes_per_s(episodes: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_shard(Path(d) / "s.h5", shard=0, num_shards=1, episodes=episodes, seed=0, progress=False)
        return episodes / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 16384])
    ap.add_argument("--min-steps", type=int, default=2_000_000, help="steps per measurement at large B")
    ap.add_argument("--shard-episodes", type=int, default=20_000)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args()

    rows: dict[str, float] = {}
    for b in args.batches:
        rows[f"env steps/s, B = {b}"] = env_steps_per_s(b, min_steps=args.min_steps if b >= 1024 else 40_000 * max(1, b // 8))
    eps = shard_episodes_per_s(args.shard_episodes)
    rows["dataset episodes/s (HDF5, gzip 4)"] = eps
    rows["dataset steps/s (HDF5, gzip 4)"] = eps * 200
    base = json.loads(args.compare.read_text()) if args.compare else {}

    print("| measurement | value | vs reference (1,166 steps/s) |" + (" vs saved |" if base else ""))
    print("| --- | ---: | ---: |" + (" ---: |" if base else ""))
    for name, v in rows.items():
        ratio = f"{v / REFERENCE_STEPS_PER_S:,.0f}x" if "steps/s" in name else ""
        extra = f" {v / base[name]:.2f}x |" if base.get(name) else (" |" if base else "")
        print(f"| {name} | {v:,.0f} | {ratio} |{extra}")
    print(f"\n1e6 episodes (2e8 steps) would take {1e6 / eps / 60:.1f} CPU-minutes to generate and write.")
    if args.save:
        args.save.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
