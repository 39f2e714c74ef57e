"""Where a training step's time goes, per architecture, on the CPU (one thread by default).

    PYTHONPATH=src python bench/train_step_profile.py [--config config/cpu.yaml] [--arch ...] [--processes 1]
        [--repeats 3] [--side-by-side GIT_REF] [--json FILE]

Each part of a step is timed alone, forward + backward, in CPU seconds of the process
(``time.process_time``, steadier than wall time on a shared machine), at the sizes of the config
(``train.options``, ``batch_size`` episodes x 200 tokens): the batch (``EpisodeSampler``, ``take``,
``to_device``), the input encoding, the backbone, the reward head with its loss, the observation head
with its loss (both heads with the model's own loss code, minus the reward head), the Adam step, and
the whole step (sampling, loss, backward, Adam); "other" = whole step minus the parts. A
torch-profiler pass over one whole step adds the shares of three kinds of operator across all parts:
matrix products (``mm``, ``addmm``, ``bmm``), dropout's random numbers (``bernoulli_``) and the NaN
fill of new tensors under deterministic algorithms (``fill_`` inside ``empty``). ``--processes`` fresh
processes per architecture (and code version), each timing ``--repeats`` rounds after a warm-up
round; ms are means over all rounds. ``--side-by-side REF`` profiles git REF's ``src`` too
(alternating processes) and prints both.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import ROOT, config_options, git_archive_src, load_text, random_arrays  # noqa: E402

PARTS = ("batch", "input encoding", "backbone", "reward head + loss", "observation head + loss", "Adam step")
MEASURED = ("batch", "input encoding", "backbone", "reward head + loss", "heads + loss", "Adam step")


def profile_step(arch: str, episodes: int, options: dict, reps: int, threads: int) -> dict[str, Any]:
    """Mean CPU ms of each part over ``reps`` rounds (after one warm-up round), plus profiler shares."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from alchemy_mbrl.model import train as train_mod
    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.model.data import EpisodeArrays, EpisodeSampler
    from alchemy_mbrl.model.world_model import START_REWARD_CODE, WorldModel

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    setup = getattr(train_mod, "deterministic_cpu", None)
    if setup is not None:
        setup(cpu)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    m_cfg, t_cfg = resolve_config(arch, options)
    torch.manual_seed(0)
    model = WorldModel(m_cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=t_cfg.lr, betas=tuple(t_cfg.adam_betas))
    data = EpisodeArrays(*random_arrays(max(4 * episodes, 64)))
    sampler = EpisodeSampler(data.episodes, 0)
    o, a, r = train_mod.to_device(data.take(np.arange(episodes)), cpu)
    b, t = a.shape
    prev_r = torch.cat([torch.full((b, 1), START_REWARD_CODE), r[:, :-1].long()], dim=1)
    with torch.no_grad():
        x0 = model.input_encoding(o[:, :t], prev_r, a)
        feats = model.encode(o[:, :t], prev_r, a)[0].reshape(b * t, -1)

    def batch() -> None:
        train_mod.to_device(data.take(np.sort(sampler.next(episodes))), cpu)

    def input_encoding() -> None:
        model.input_encoding(o[:, :t], prev_r, a).sum().backward()

    def backbone() -> None:
        x = x0.clone().requires_grad_()
        f = model.backbone(x, None, None)[0] if model.is_transformer else model.backbone(x, None)[0]
        f.backward(upstream)  # the loss's own gradient (a made-up one, e.g. ones, can produce slow denormals)

    def reward_head() -> None:
        F.cross_entropy(model.reward_head(feats.requires_grad_()).float(), r.reshape(-1).long()).backward()

    class Stub(torch.nn.Module):  # stands in for the input encoding and the backbone: the loss runs the heads only
        def __init__(self, out: Any) -> None:
            super().__init__()
            self.out = out

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.out()

    def heads() -> None:
        """Reward and observation heads with the loss, as this version's ``token_losses`` computes them."""
        enc, bb = model.input_encoding, model.backbone
        model.input_encoding = Stub(lambda: x0)
        model.backbone = Stub(lambda: (feats.view(b, t, -1).detach().requires_grad_(), None))
        try:
            model.loss(o, a, r).backward()
        finally:
            model.input_encoding, model.backbone = enc, bb

    def adam() -> None:
        opt.step()

    def whole_step() -> None:
        oo, aa, rr = train_mod.to_device(data.take(np.sort(sampler.next(episodes))), cpu)
        opt.zero_grad(set_to_none=True)
        model.loss(oo, aa, rr).backward()
        opt.step()

    feats3 = feats.view(b, t, -1).detach().requires_grad_()
    enc, bb = model.input_encoding, model.backbone
    model.input_encoding, model.backbone = Stub(lambda: x0), Stub(lambda: (feats3, None))
    model.loss(o, a, r).backward()
    model.input_encoding, model.backbone = enc, bb
    upstream = feats3.grad.clone()
    funcs = dict(zip(MEASURED, (batch, input_encoding, backbone, reward_head, heads, adam)))
    funcs["whole step"] = whole_step
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for rep in range(reps + 1):
        for name, f in funcs.items():
            c0 = time.process_time()
            f()
            if rep:
                times[name].append(time.process_time() - c0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        whole_step()
    total = mm = rng = fill = 0.0
    for ev in prof.events():
        total += ev.self_cpu_time_total
        if ev.name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::baddbmm"):
            mm += ev.self_cpu_time_total
        elif ev.name == "aten::bernoulli_":
            rng += ev.self_cpu_time_total
        elif ev.name == "aten::fill_" and ev.cpu_parent is not None and "empty" in ev.cpu_parent.name:
            fill += ev.self_cpu_time_total
    out = {k: 1e3 * float(np.mean(v)) for k, v in times.items()}
    out["observation head + loss"] = out.pop("heads + loss") - out["reward head + loss"]
    out["other"] = out["whole step"] - sum(out[k] for k in PARTS)
    out.update({"share: matrix products": mm / total, "share: dropout random numbers": rng / total,
                "share: NaN fill of new tensors": fill / total})
    return out


def run_worker(src: Path, arch: str, episodes: int, options: dict, reps: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--arch", arch, "--episodes", str(episodes),
           "--repeats", str(reps), "--threads", str(threads), "--options", json.dumps(options)]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "cpu.yaml")
    ap.add_argument("--arch", nargs="*", default=None)
    ap.add_argument("--episodes", type=int, default=None, help="episodes per step (default: the config's batch_size)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per process")
    ap.add_argument("--processes", type=int, default=1, help="fresh processes per architecture and code version")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ALCHEMY_THREADS", 1)))
    ap.add_argument("--options", type=json.loads, default=None)
    ap.add_argument("--side-by-side", metavar="GIT_REF")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(profile_step(args.arch[0], args.episodes, args.options or {}, args.repeats, args.threads)))
        return
    from alchemy_mbrl.model.config import ARCHITECTURES

    versions = {"new": ROOT / "src"}
    tmp = None
    if args.side_by_side:
        tmp = tempfile.TemporaryDirectory(prefix="train-profile-")
        commit = git_archive_src(args.side_by_side, Path(tmp.name))
        versions = {"old": Path(tmp.name) / "src", **versions}
    load0 = load_text()
    rows: dict[str, dict[str, list[dict]]] = {}
    for proc in range(args.processes):
        for arch in args.arch or list(ARCHITECTURES):
            opts, batch = config_options(args.config, arch)
            eps = args.episodes or batch or 16
            order = list(versions) if proc % 2 == 0 else list(versions)[::-1]
            for v in order:
                res = run_worker(versions[v], arch, eps, {**opts, **(args.options or {})}, args.repeats, args.threads)
                rows.setdefault(arch, {}).setdefault(v, []).append(res)
                print(f"# {v} {arch}: whole step {res['whole step']:.0f} CPU-ms", file=sys.stderr, flush=True)
    print(f"CPU ms per training step ({args.config.name}, {eps} episodes x 200 tokens, {args.threads} thread(s), "
          f"mean of {args.processes} process(es) x {args.repeats} rounds); load averages {load0} (start), {load_text()} (end)")
    if args.side_by_side:
        print(f"old = git {args.side_by_side} ({commit}); new = this checkout")
    keys = [*PARTS, "other", "whole step", "share: matrix products", "share: dropout random numbers",
            "share: NaN fill of new tensors"]
    cols = [(arch, v) for arch in rows for v in versions]
    print("| part | " + " | ".join(f"{a}{' ' + v if len(versions) > 1 else ''}" for a, v in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    summary = {}
    for k in keys:
        cells = []
        for arch, v in cols:
            x = float(np.mean([r[k] for r in rows[arch][v]]))
            summary.setdefault(f"{arch}@{v}", {})[k] = x
            cells.append(f"{100 * x:.0f} %" if k.startswith("share") else f"{x:,.0f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
