"""Training throughput (tokens/s) of each world-model architecture: one training step as ``train`` runs it.

    PYTHONPATH=src python bench/train_throughput.py [--config config/cpu.yaml] [--episodes 8] [--steps 3]
        [--repeats 1] [--device cpu|cuda|all] [--arch ...] [--options '{"d_model": 128, ...}'] [--threads 1]
        [--save FILE.json] [--compare BASELINE.json] [--side-by-side GIT_REF --save-baseline FILE.json]

A step = sample a batch of episodes (``EpisodeSampler``, ``EpisodeArrays.take``, ``to_device``),
``zero_grad``, loss, backward, Adam and the learning-rate schedule, with the CPU settings of ``train``
(deterministic algorithms). Random valid episodes (throughput does not depend on the values). Each
repeat is a fresh process (``--worker``): a new model (``torch.manual_seed(0)``), one warm-up step,
then ``--steps`` timed steps; tokens/s = episodes x 200 / seconds, per wall-clock second and per CPU
second of the process (``time.process_time``: what the process got of a shared machine; the steadier
figure under load). Tables give mean ± s.e. over the repeats (each repeat's mean over its steps), n =
repeats, and the loss of the warm-up step (the first step of training: old and new code must print the
same loss).

``--config FILE``: the workflow config's ``train.options`` (+ ``architecture_options``) and
``batch_size`` (episodes per step), e.g. ``config/cpu.yaml``. ``--save`` writes the figures as JSON;
``--compare`` prints them beside a saved JSON (``bench/train_throughput_baseline.json``).
``--side-by-side REF`` runs the code of git ref REF (``git archive REF src`` into a temporary folder,
e.g. ``main``) and this checkout's ``src`` in alternating processes (ABBA order per repeat, same load),
saves the REF figures to ``--save-baseline`` and prints the comparison, with the speed-up per repeat
(new / old in the same repeat: mean ± s.e.).

One torch thread by default (``--threads`` / ``$ALCHEMY_THREADS``): compare code versions with the same
thread count. The paper trained 750k steps x 250 episodes x 200 tokens in ~2 days on one RTX 6000
(~217k tokens/s).
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKENS_PER_EPISODE = 200


def random_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(obs_codes [n, 201, 39], actions [n, 200], reward_codes [n, 200])`` of random valid episodes, uint8."""
    from alchemy_mbrl.env import codec

    rng = np.random.default_rng(seed)
    obs = (rng.random((n, 201, 39)) * codec.NUM_CATEGORIES).astype(np.uint8)
    return obs, rng.integers(0, 40, (n, 200), dtype=np.uint8), rng.integers(0, 5, (n, 200), dtype=np.uint8)


def config_options(path: Path, arch: str) -> tuple[dict[str, Any], int | None]:
    """(``train --config`` keys, batch size) of architecture ``arch`` in a workflow config."""
    import yaml

    train = yaml.safe_load(path.read_text())["train"]
    opts = {**(train.get("options") or {}), **((train.get("architecture_options") or {}).get(arch) or {})}
    return opts, train.get("batch_size")


def measure(arch: str, device_name: str, episodes: int, steps: int, options: dict | None,
            threads: int) -> dict[str, Any]:
    """One repeat in this process: figures of ``steps`` timed steps after one warm-up step."""
    import torch

    from alchemy_mbrl.model import train as train_mod
    from alchemy_mbrl.model.config import lr_factor, resolve_config
    from alchemy_mbrl.model.data import EpisodeArrays, EpisodeSampler
    from alchemy_mbrl.model.world_model import WorldModel

    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    # the CPU settings of train(): this checkout's function, or what older code did inline
    setup = getattr(train_mod, "deterministic_cpu", None)
    if setup is not None:
        setup(device)
    elif device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    m_cfg, t_cfg = resolve_config(arch, options)
    torch.manual_seed(0)
    model = WorldModel(m_cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=t_cfg.lr, betas=tuple(t_cfg.adam_betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t_cfg))
    data = EpisodeArrays(*random_arrays(max(4 * episodes, 64)))
    sampler = EpisodeSampler(data.episodes, 0)
    amp = train_mod.autocast_dtype(device, t_cfg.amp)
    wall, cpu = [], []
    first_loss = float("nan")
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        o, a, r = train_mod.to_device(data.take(np.sort(sampler.next(episodes))), device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model.loss(o, a, r)
        loss.backward()
        loss_value = float(loss.detach())
        opt.step()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first_loss = loss_value
        else:
            wall.append(episodes * TOKENS_PER_EPISODE / (time.perf_counter() - w0))
            cpu.append(episodes * TOKENS_PER_EPISODE / (time.process_time() - c0))
    return {"tokens_per_s": float(np.mean(wall)), "tokens_per_cpu_s": float(np.mean(cpu)), "steps": steps,
            "first_loss": first_loss, "torch": torch.__version__, "threads": torch.get_num_threads()}


def run_worker(src: Path, arch: str, device: str, episodes: int, steps: int, options: dict | None,
               threads: int) -> dict[str, Any]:
    """:func:`measure` in a fresh process that imports ``alchemy_mbrl`` from ``src``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--arch", arch, "--device", device,
           "--episodes", str(episodes), "--steps", str(steps), "--threads", str(threads),
           "--options", json.dumps(options or {})]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads or os.environ.get("OMP_NUM_THREADS", ""))}
    if not threads:
        env.pop("OMP_NUM_THREADS")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def git_archive_src(ref: str, dest: Path) -> str:
    """Extract ``src/`` of git ref ``ref`` into ``dest``; return the commit hash."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def git_describe_worktree() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                           text=True).stdout.strip()
    return out + ("+uncommitted src changes" if dirty else "")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± s.e. over repeats (each repeat's mean over its steps)."""
    out: dict[str, Any] = {"n": len(runs), "first_loss": runs[0]["first_loss"],
                           "first_losses": sorted({r["first_loss"] for r in runs})}
    for key in ("tokens_per_s", "tokens_per_cpu_s"):
        x = np.array([r[key] for r in runs])
        out[key] = float(x.mean())
        out[key + "_se"] = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
        out[key + "_runs"] = [float(v) for v in x]
    return out


def fmt(mean: float, se: float) -> str:
    return f"{mean:,.0f} ± {se:,.0f}" if np.isfinite(se) else f"{mean:,.0f}"


def print_table(results: dict[str, Any]) -> None:
    print("| architecture | device | episodes/step | tokens/s (wall, mean ± s.e.) | tokens per CPU-s (mean ± s.e.) "
          "| n repeats x steps | first-step loss | days for 750k x 250 episodes (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, r in results["rows"].items():
        arch, dev = key.split("@")
        days = 750_000 * 250 * 200 / r["tokens_per_s"] / 86400
        print(f"| {arch} | {dev} | {results['episodes'][dev]} | {fmt(r['tokens_per_s'], r['tokens_per_s_se'])} | "
              f"{fmt(r['tokens_per_cpu_s'], r['tokens_per_cpu_s_se'])} | {r['n']} x {results['steps']} | "
              f"{r['first_loss']:.6f} | {days:,.1f} |")


def print_comparison(base: dict[str, Any], new: dict[str, Any], loss_rtol: float = 1e-5) -> bool:
    """The comparison table; True when every first-step loss agrees within ``loss_rtol`` (relative)."""
    paired = base.get("paired_with") == new.get("run_id") and new.get("run_id") is not None
    print(f"baseline: {base.get('code', '?')} ({base.get('date', '?')}, load {base.get('load', '?')})")
    print(f"new:      {new.get('code', '?')} ({new.get('date', '?')}, load {new.get('load', '?')})")
    print("| architecture | old tokens/s (wall) | new tokens/s (wall) | old tokens/CPU-s | new tokens/CPU-s | "
          f"speed-up (CPU-s{', per repeat' if paired else ''}) | n | old first-step loss | new first-step loss | |Δ loss| |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for key, r in new["rows"].items():
        if key not in base["rows"]:
            continue
        b = base["rows"][key]
        if paired:
            ratio = np.array(r["tokens_per_cpu_s_runs"]) / np.array(b["tokens_per_cpu_s_runs"])
            se = ratio.std(ddof=1) / np.sqrt(len(ratio)) if len(ratio) > 1 else float("nan")
            speed = f"{ratio.mean():.2f} ± {se:.2f}x" if np.isfinite(se) else f"{ratio.mean():.2f}x"
        else:
            speed = f"{r['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}x"
        dl = abs(r["first_loss"] - b["first_loss"])
        same = dl <= loss_rtol * abs(b["first_loss"])
        ok &= same
        arch = key.split("@")[0] + ("" if key.endswith("@cpu") else f" ({key.split('@')[1]})")
        print(f"| {arch} | {fmt(b['tokens_per_s'], b['tokens_per_s_se'])} | {fmt(r['tokens_per_s'], r['tokens_per_s_se'])} | "
              f"{fmt(b['tokens_per_cpu_s'], b['tokens_per_cpu_s_se'])} | {fmt(r['tokens_per_cpu_s'], r['tokens_per_cpu_s_se'])} | "
              f"{speed} | {b['n']} / {r['n']} | {b['first_loss']:.6f} | {r['first_loss']:.6f} | {dl:.1e}{'' if same else ' DIFFERENT'} |")
    return ok


def load_text() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="workflow config: train.options and train.batch_size (e.g. config/cpu.yaml)")
    ap.add_argument("--episodes", type=int, default=None, help="episodes per step on CPU (default: the config's batch_size, else 8)")
    ap.add_argument("--gpu-episodes", type=int, default=250)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per repeat (after one warm-up step)")
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per architecture (n of the mean ± s.e.)")
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda when available)")
    ap.add_argument("--arch", nargs="*", default=None)
    ap.add_argument("--options", type=json.loads, default=None,
                    help="JSON mapping of `train --config` keys applied to every architecture (after --config's)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ALCHEMY_THREADS", 1)),
                    help="torch CPU threads (default 1, or $ALCHEMY_THREADS; 0 = torch's choice)")
    ap.add_argument("--save", type=Path, help="write this run's figures (JSON)")
    ap.add_argument("--compare", type=Path, help="print this run beside a saved JSON (the baseline)")
    ap.add_argument("--side-by-side", metavar="GIT_REF", help="also run src/ of this git ref, alternating processes")
    ap.add_argument("--save-baseline", type=Path, help="with --side-by-side: write the ref's figures here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(measure(args.arch[0], args.device, args.episodes, args.steps, args.options or None,
                                 args.threads)))
        return

    from alchemy_mbrl.model.config import ARCHITECTURES

    archs = args.arch or list(ARCHITECTURES)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices:
        import torch

        devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    plan = []  # (arch, device, episodes, options)
    episodes_of = {}
    for dev in devices:
        for arch in archs:
            opts, batch = config_options(args.config, arch) if args.config else ({}, None)
            opts = {**opts, **(args.options or {})}
            eps = (args.episodes or batch or 8) if dev == "cpu" else args.gpu_episodes
            episodes_of[dev] = eps
            plan.append((arch, dev, eps, opts))
    versions = {"new": ROOT / "src"}
    tmp = None
    base_commit = None
    if args.side_by_side:
        tmp = tempfile.TemporaryDirectory(prefix="train-throughput-")
        base_commit = git_archive_src(args.side_by_side, Path(tmp.name))
        versions["old"] = Path(tmp.name) / "src"
    loads = [load_text()]
    runs: dict[str, dict[str, list]] = {v: {} for v in versions}
    order = list(versions)
    for rep in range(args.repeats):
        for arch, dev, eps, opts in plan:
            seq = order if rep % 2 == 0 else order[::-1]  # ABBA: neither version always runs first
            for v in seq:
                r = run_worker(versions[v], arch, dev, eps, args.steps, opts, args.threads)
                runs[v].setdefault(f"{arch}@{dev}", []).append(r)
                print(f"# repeat {rep + 1}/{args.repeats} {v:3s} {arch:16s} {dev}: {r['tokens_per_s']:,.0f} tokens/s, "
                      f"{r['tokens_per_cpu_s']:,.0f} tokens/CPU-s, first loss {r['first_loss']:.6f}", file=sys.stderr,
                      flush=True)
        loads.append(load_text())
    run_id = f"{time.time():.0f}-{os.getpid()}"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "load": f"1/5/15-min load averages {loads[0]} (start), {loads[-1]} (end)",
            "episodes": episodes_of, "steps": args.steps, "repeats": args.repeats, "threads": args.threads,
            "config": str(args.config) if args.config else None, "options": args.options,
            "machine": f"{os.cpu_count()} CPUs"}
    results = {v: {**meta, "rows": {k: summarise(x) for k, x in runs[v].items()}} for v in versions}
    results["new"].update(code=f"this checkout ({git_describe_worktree()})", run_id=run_id)
    first = next(iter(next(iter(runs["new"].values()))))
    print(f"torch {first['torch']}, {first['threads']} CPU thread(s); {meta['load']}")
    if "old" in results:
        results["old"].update(code=f"git {args.side_by_side} ({base_commit})", paired_with=run_id)
        if args.save_baseline:
            args.save_baseline.write_text(json.dumps(results["old"], indent=1) + "\n")
        print("\nSide by side (alternating processes):")
        same = print_comparison(results["old"], results["new"])
        print("first-step losses " + ("equal within 1e-5 (relative)" if same else "DIFFER"))
        tmp.cleanup()
    else:
        print_table(results["new"])
    if args.save:
        args.save.write_text(json.dumps(results["new"], indent=1) + "\n")
    if args.compare:
        print(f"\nAgainst {args.compare}:")
        print_comparison(json.loads(args.compare.read_text()), results["new"])


if __name__ == "__main__":
    main()
