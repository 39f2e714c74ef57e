"""Training throughput (tokens/s) of each world-model architecture, forward + backward + Adam step.

    PYTHONPATH=src python bench/train_throughput.py [--episodes 8] [--steps 3] [--device cpu|cuda|all]
        [--options '{"d_model": 128, "d_ff": 128, "obs_context": 128, "mlp_hidden": 256, "gru_backbone_hidden": 256}']

Uses random valid episodes (throughput does not depend on the values). Prints one Markdown table, with
the loss of the first step (same seed: old and new code must print the same loss). One torch thread by
default (``--threads`` / ``$ALCHEMY_THREADS``): compare code versions with the same thread count.
The paper trained 750k steps x 250 episodes x 200 tokens in ~2 days on one RTX 6000 (~217k tokens/s).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from alchemy_mbrl.env import codec
from alchemy_mbrl.model.config import ARCHITECTURES, resolve_config
from alchemy_mbrl.model.train import autocast_dtype
from alchemy_mbrl.model.world_model import WorldModel


def random_episodes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    obs = (rng.random((n, 201, 39)) * codec.NUM_CATEGORIES).astype(np.uint8)
    return (torch.from_numpy(obs), torch.from_numpy(rng.integers(0, 40, (n, 200), dtype=np.uint8)),
            torch.from_numpy(rng.integers(0, 5, (n, 200), dtype=np.uint8)))


def measure(arch: str, device: torch.device, episodes: int, steps: int,
            options: dict | None = None) -> tuple[float, float, int, float]:
    """(mean tokens/s, s.e., n timed steps, loss of the first step) after one warm-up step; ``options``:
    keys of ``train --config`` (e.g. another width) applied after the architecture's defaults."""
    m_cfg, t_cfg = resolve_config(arch, options)
    torch.manual_seed(0)
    model = WorldModel(m_cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=t_cfg.lr)
    o, a, r = (x.to(device) for x in random_episodes(episodes))
    amp = autocast_dtype(device, True)
    rates = []
    first_loss = float("nan")
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model.loss(o, a, r)
        loss.backward()
        opt.step()
        if i == 0:
            first_loss = float(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            rates.append(episodes * 200 / (time.perf_counter() - t0))
    x = np.array(rates)
    return (float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan"), len(x),
            first_loss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=8, help="episodes per step on CPU (GPU: 250)")
    ap.add_argument("--gpu-episodes", type=int, default=250)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per architecture")
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda when available)")
    ap.add_argument("--arch", nargs="*", default=list(ARCHITECTURES))
    ap.add_argument("--options", type=json.loads, default=None,
                    help="JSON mapping of `train --config` keys applied to every architecture (e.g. a width)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ALCHEMY_THREADS", 1)),
                    help="torch CPU threads (default 1, or $ALCHEMY_THREADS; 0 = torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("| architecture | device | episodes/step | tokens/s (mean ± s.e.) | n steps | first-step loss | days for 750k x 250 episodes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for dev in devices:
        eps = args.episodes if dev == "cpu" else args.gpu_episodes
        for arch in args.arch:
            mean, se, n, loss = measure(arch, torch.device(dev), eps, args.steps, args.options)
            days = 750_000 * 250 * 200 / mean / 86400
            print(f"| {arch} | {dev} | {eps} | {mean:,.0f} ± {se:,.0f} | {n} | {loss:.6f} | {days:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
