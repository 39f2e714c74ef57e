"""``alchemy-mbrl gpu-check``: every CUDA code path of the paper-scale run, in minutes, with one table.

On one GPU (defaults: the original architecture at Table 3's sizes and batch of 250 episodes) it

1. generates a small dataset (``train_episodes`` + ``val_episodes`` uniform-policy episodes);
2. trains ``steps`` steps with bf16 autocast: ``alchemy-mbrl train`` in its own process, killed
   (SIGKILL) once it has written a checkpoint; deletes what Snakemake deletes of a failed job
   (``train_log.csv``, ``model.pt``), and resumes on the device (checkpoint load to the CPU, RNG
   restore, lock of the killed process taken over); the log must come back complete;
3. checks the GRUs (observation head of the trained model; backbone of a ``gru_backbone`` model of
   the same sizes) under the training autocast: autocast off inside them, float32 in and out and
   float32 gradients; and checks masked attention over a K/V cache (the planner's path) against
   the uncached pass;
4. evaluates the same weights in float32 and with autocast (``model-eval`` vs ``model-eval --amp``)
   and compares the entropies;
5. runs ``alchemy-mbrl model-eval`` itself (a separate process, float32);
6. plays ``planner_steps`` real steps of ``planner_batch`` episodes with the tree search over the
   learned simulator (``planner_budget`` expansions per step);

and reports training tokens/s and ms per step, learned-planner expansions/s, peak GPU memory, the
bf16-vs-fp32 entropy difference and pass/fail of each check. With ``device="cpu"`` and small sizes
the same lines run in the test suite (CPU autocast in bf16 runs the same model code as CUDA
autocast; see ``docs/model.md``, "CUDA-only code paths").
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alchemy_mbrl.env.constants import EPISODE_STEPS
from alchemy_mbrl.io import write_json, write_text
from alchemy_mbrl.stats import mean_sem

#: Quantities of the table, in order: (key, label).
MEASURES: tuple[tuple[str, str], ...] = (
    ("device", "device"),
    ("train_tokens_per_s", "training tokens/s (mean ± s.e. over log intervals)"),
    ("train_ms_per_step", "training ms/step"),
    ("planner_expansions_per_s", "learned-planner expansions/s"),
    ("peak_memory_train_gib", "peak GPU memory, training (GiB)"),
    ("peak_memory_planner_gib", "peak GPU memory, planner (GiB)"),
    ("entropy_fp32", "validation entropy, float32 (nats/step)"),
    ("entropy_amp", "validation entropy, autocast (nats/step)"),
    ("entropy_diff", "bf16-vs-fp32 entropy difference, abs(autocast - float32) (nats/step)"),
)


@dataclasses.dataclass
class GpuCheckOptions:
    """Sizes of the check. Defaults: the paper's original model and batch, about 5 minutes on one GPU."""

    device: str | None = None  # None = cuda (an error when no GPU is visible)
    work_dir: str | Path | None = None  # None = a temporary directory, removed afterwards
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # model/training keys (train --config)
    steps: int = 300
    batch_size: int = 250
    train_episodes: int = 2000
    val_episodes: int = 250
    planner_batch: int = 256
    planner_budget: int = 100
    planner_steps: int = 4
    amp_tolerance: float = 0.05  # nats/step allowed between the autocast and the float32 entropy
    seed: int = 0


#: Training tokens per second of the paper-size original model on one CPU thread (bench/train_throughput.py
#: since the training-speed change: 2,817 ± 190, docs/model.md "CPU training throughput"), rounded; used to
#: refuse, before any work, a CPU check that would train for hours.
CPU_TOKENS_PER_S = 2800
#: The longest training a check may plan on a CPU at the paper's model size.
CPU_TRAIN_LIMIT_S = 600
#: Sizes that run the whole check on a CPU in about a minute (the test suite's).
CPU_SIZES = ("--steps 6 --batch-size 4 --train-episodes 16 --val-episodes 8 --planner-batch 4 --planner-budget 4 "
             "--planner-steps 2")


def _refuse_cpu_at_gpu_sizes(opts: GpuCheckOptions) -> None:
    """Refuse at once a check off a GPU whose paper-size training would outlast :data:`CPU_TRAIN_LIMIT_S`."""
    device = opts.device or "cuda"
    if device.startswith("cuda") or opts.overrides:
        return
    seconds = opts.steps * opts.batch_size * EPISODE_STEPS / CPU_TOKENS_PER_S
    if seconds > CPU_TRAIN_LIMIT_S:
        raise ValueError(
            f"gpu-check: on {device} the paper-size model trains about {CPU_TOKENS_PER_S:,} tokens/s, so --steps "
            f"{opts.steps} x --batch-size {opts.batch_size} would take about {seconds / 3600:.1f} h; pass small sizes, "
            f"e.g. {CPU_SIZES} (about a minute)")


def _gib(nbytes: int) -> float:
    return nbytes / 2**30


class _StepClock:
    """A ``progress`` object for :func:`alchemy_mbrl.evaluate.play_episodes`: the time of each real step."""

    def __init__(self) -> None:
        self.times = [time.perf_counter()]

    def update(self, _n: int) -> None:
        self.times.append(time.perf_counter())


def _command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``alchemy-mbrl ARGV`` as its own process: the argument list and the environment (this package first)."""
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return [sys.executable, "-m", "alchemy_mbrl.cli", *argv], env


def _run_command(argv: list[str]) -> int:
    """Run ``alchemy-mbrl ARGV`` (the command a user runs; its output is discarded, the table reports it)."""
    cmd, env = _command(argv)
    return subprocess.run(cmd, env=env, capture_output=True, check=False).returncode


def _train_and_kill(config: Path, manifest: Path, model_dir: Path, stop_after: int, timeout: float = 300) -> tuple[int | None, int]:
    """``alchemy-mbrl train`` in its own process, SIGKILLed as soon as its first checkpoint exists.

    ``--stop-after`` bounds it in case it outruns the kill. Returns ``(signal or None, checkpoint step)``.
    """
    from alchemy_mbrl.model.checkpoint import CHECKPOINT_FILE, load_checkpoint

    cmd, env = _command(["train", "--config", str(config), "--data", str(manifest), "--arch", "original",
                         "--out", str(model_dir), "--no-progress", "--stop-after", str(stop_after)])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not (model_dir / CHECKPOINT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    if not (model_dir / CHECKPOINT_FILE).exists():
        raise RuntimeError(f"gpu-check: the training process wrote no checkpoint: {err.decode(errors='replace')[-2000:]}")
    killed = -proc.returncode if proc.returncode < 0 else None
    return killed, int(load_checkpoint(model_dir / CHECKPOINT_FILE)["step"])


def gru_dtype_check(model: torch.nn.Module, batch: tuple[torch.Tensor, ...], amp_dtype: torch.dtype) -> tuple[bool, str]:
    """One training step's forward and backward under autocast; every ``nn.GRU`` must see autocast off,
    receive and return float32, and get float32 gradients. ``(passed, detail)``."""
    device_type = next(model.parameters()).device.type
    calls: list[dict[str, Any]] = []
    handles = []

    def pre(mod: torch.nn.Module, args: tuple) -> None:
        calls.append({"autocast": torch.is_autocast_enabled(device_type),
                      "dtypes": {a.dtype for a in args if isinstance(a, torch.Tensor)}})

    def post(mod: torch.nn.Module, args: tuple, out: tuple) -> None:
        calls[-1]["dtypes"] |= {out[0].dtype, out[1].dtype}

    grus = [m for m in model.modules() if isinstance(m, torch.nn.GRU)]
    for m in grus:
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        with torch.autocast(device_type, dtype=amp_dtype):
            loss = model.loss(*batch)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    grad_dtypes = {p.grad.dtype for m in grus for p in m.parameters() if p.grad is not None}
    ok = (len(calls) == len(grus) > 0 and not any(c["autocast"] for c in calls)
          and all(c["dtypes"] == {torch.float32} for c in calls) and grad_dtypes == {torch.float32}
          and bool(torch.isfinite(loss.detach())))
    seen = sorted({str(d).replace("torch.", "") for c in calls for d in c["dtypes"]} | {str(d).replace("torch.", "") for d in grad_dtypes})
    detail = (f"{len(grus)} GRU(s), autocast inside: {any(c['autocast'] for c in calls)}, "
              f"dtypes in/out/grad: {', '.join(seen) or 'none'}")
    model.zero_grad(set_to_none=True)
    return ok, detail


@torch.no_grad()
def kv_cache_check(model: torch.nn.Module, data: Any, t0: int = 12, depth: int = 6, rows: int = 8) -> tuple[bool, str]:
    """Masked attention over a K/V cache (the learned planner's path) equals the uncached pass.

    Rows of one batch attend over ``root cache (t0 tokens) ++ a padded path`` of different depths
    (0..depth, a bool mask) with explicit positions, as ``LearnedSimulator.expand`` does; their
    features must equal those of encoding each row's whole history at once. ``(passed, detail)``.
    """
    from alchemy_mbrl.model.world_model import KVCache, episode_inputs

    dev = next(model.parameters()).device
    b, t = min(rows, data.episodes), t0 + depth + 1
    o, p, a = episode_inputs(data.obs_codes[:b, : t + 1], data.actions[:b, :t], data.reward_codes[:b, :t], dev)
    model.eval()
    full, _ = model.encode(o, p, a)
    _, root = model.encode(o[:, :t0], p[:, :t0], a[:, :t0])
    _, path = model.encode(o[:, t0 : t0 + depth], p[:, t0 : t0 + depth], a[:, t0 : t0 + depth], past=root)
    r = torch.arange(b, device=dev)
    d = r % (depth + 1)  # path depth of each row
    past = root.append(KVCache(path.k, path.v, mask=torch.arange(depth, device=dev)[None, :] < d[:, None]))
    i = (t0 + d)[:, None]
    f, _ = model.encode(o[r[:, None], i], p[r[:, None], i], a[r[:, None], i], past=past, positions=i)
    ref = full[r, t0 + d]
    err = float((f[:, 0] - ref).abs().max() / ref.abs().max().clamp(min=1.0))
    return err <= 1e-3, f"{b} rows, path depths 0..{depth}: max relative difference {err:.1e} (tolerance 1e-3)"


def run_gpu_check(opts: GpuCheckOptions) -> dict[str, Any]:
    """Run every check (module docstring); return ``{"measures": {...}, "checks": [...], "passed": bool}``."""
    _refuse_cpu_at_gpu_sizes(opts)
    if opts.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="alchemy-gpu-check-") as tmp:
            return _run(opts, Path(tmp))
    return _run(opts, Path(opts.work_dir))


def _run(opts: GpuCheckOptions, work: Path) -> dict[str, Any]:
    from alchemy_mbrl.data.shards import write_manifest, write_shard
    from alchemy_mbrl.evaluate import make_policy, play_episodes
    from alchemy_mbrl.model.checkpoint import MODEL_FILE, load_model, resolve_device
    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.model.data import load_split
    from alchemy_mbrl.model.evaluate import evaluate_model
    from alchemy_mbrl.model.train import LOG_FILE, autocast_dtype, to_device, train
    from alchemy_mbrl.model.world_model import WorldModel

    for name in ("steps", "batch_size", "train_episodes", "planner_batch", "planner_budget"):
        if getattr(opts, name) < 1:
            raise ValueError(f"gpu-check: {name} must be >= 1, got {getattr(opts, name)}")
    if opts.steps < 2 or opts.val_episodes < 2 or opts.planner_steps < 2:
        raise ValueError("gpu-check: steps, val_episodes and planner_steps must be >= 2")
    if (work / "model").exists():
        raise ValueError(f"gpu-check: {work / 'model'} exists (an earlier check?); give an empty or new --work-dir")
    dev = resolve_device(opts.device or "cuda")
    on_cuda = dev.type == "cuda"
    amp: bool | str = True if on_cuda else "bf16"  # the real CUDA setting; bf16 CPU autocast off a GPU
    checks: list[dict[str, Any]] = []
    measures: dict[str, Any] = {"device": torch.cuda.get_device_name(dev) if on_cuda else str(dev)}

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})

    # 1. data
    data = work / "data"
    shards = [write_shard(data / f"shard-{i}.h5", shard=i, num_shards=2, episodes=n, seed=opts.seed, progress=False)
              for i, n in enumerate((opts.train_episodes, opts.val_episodes))]
    manifest = data / "manifest.json"
    write_manifest(manifest, shards, validation=1)

    # 2. train with autocast in its own process, kill it, lose the declared outputs, resume on the device
    log_every = max(1, opts.steps // 20)
    overrides = {**opts.overrides, "steps": opts.steps, "batch_size": opts.batch_size, "device": str(dev), "amp": amp,
                 "val_every": 0, "val_episodes": opts.val_episodes, "checkpoint_every": max(1, opts.steps // 4),
                 "log_every": log_every, "seed": opts.seed, "max_seconds": None}
    model_cfg, train_cfg = resolve_config("original", overrides)
    amp_dtype = autocast_dtype(dev, amp)
    model_dir = work / "model"
    config = work / "train.yaml"
    write_text(config, yaml.safe_dump(overrides, sort_keys=False))
    killed, resumed_from = _train_and_kill(config, manifest, model_dir, stop_after=opts.steps - 1)
    for name in (LOG_FILE, MODEL_FILE):  # what Snakemake deletes of a failed job (declared outputs)
        (model_dir / name).unlink(missing_ok=True)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    res = train(model_cfg, train_cfg, manifest, model_dir, progress=False)
    import pandas as pd

    log = pd.read_csv(model_dir / LOG_FILE)
    steps = log["step"].tolist()
    complete = (steps == sorted(set(steps)) and set(range(log_every, opts.steps + 1, log_every)) <= set(steps)
                and steps[-1] == opts.steps)
    check("train: bf16 autocast, kill + resume on the device",
          resumed_from < opts.steps and res["finished"] and res["step"] == opts.steps and complete
          and math.isfinite(res["val_loss"]),
          f"{'killed (signal ' + str(killed) + ')' if killed else 'stopped'} with a checkpoint at step {resumed_from}, "
          f"resumed to {res['step']}; log {len(steps)} rows, complete: {complete}; val_loss {res['val_loss']:.4f}; "
          f"autocast {str(amp_dtype).replace('torch.', '')}")
    measures["peak_memory_train_gib"] = _gib(torch.cuda.max_memory_allocated(dev)) if on_cuda else None
    # throughput: the log intervals of the resumed run, without its first (warm-up) and the validating ones
    steady = log[(log["step"] > resumed_from + log_every) & log["val_loss"].isna()]["tokens_per_s"].to_numpy(float)
    tps = mean_sem(steady if len(steady) else log["tokens_per_s"].to_numpy(float))
    measures["train_tokens_per_s"] = {"mean": tps.mean, "sem": tps.sem, "n": tps.n}
    measures["train_ms_per_step"] = 1000 * opts.batch_size * EPISODE_STEPS / tps.mean

    # 3. GRU dtypes under the training autocast: the trained model's head, a GRU-backbone model's backbone
    model = load_model(model_dir, dev)
    val = load_split(manifest, "validation", None)
    batch = to_device(val.take(slice(0, min(8, opts.batch_size))), dev)
    ok_head, detail_head = gru_dtype_check(model, batch, amp_dtype or torch.bfloat16)
    torch.manual_seed(opts.seed)
    sizes = {k: v for k, v in opts.overrides.items()
             if k in dataclasses.asdict(model_cfg) and k not in ("backbone", "obs_head", "gru_hidden")}
    gru_cfg, _ = resolve_config("gru_backbone", sizes)
    ok_bb, detail_bb = gru_dtype_check(WorldModel(gru_cfg).to(dev), batch, amp_dtype or torch.bfloat16)
    check("GRUs float32 under autocast (observation head)", ok_head, detail_head)
    check("GRUs float32 under autocast (gru_backbone)", ok_bb, detail_bb)
    check("K/V cache with masked attention = uncached", *kv_cache_check(model, val))

    # 4. + 5. the same weights in float32 and with autocast; model-eval itself
    model.eval()
    fp32 = evaluate_model(model, manifest, batch_episodes=50, amp=False)
    amped = evaluate_model(model, manifest, batch_episodes=50, amp=amp)
    diff = abs(amped["entropy_nats_per_step"] - fp32["entropy_nats_per_step"])
    measures.update(entropy_fp32=fp32["entropy_nats_per_step"], entropy_amp=amped["entropy_nats_per_step"],
                    entropy_diff=diff)
    check("model-eval --amp agrees with float32", diff <= opts.amp_tolerance,
          f"abs({amped['entropy_nats_per_step']:.4f} - {fp32['entropy_nats_per_step']:.4f}) = {diff:.2e} "
          f"(tolerance {opts.amp_tolerance})")
    eval_json = work / "model_eval.json"
    rc = _run_command(["model-eval", "--model", str(model_dir), "--data", str(manifest), "--out", str(eval_json),
                       "--device", str(dev)])
    cli_entropy = json.loads(eval_json.read_text())["entropy_nats_per_step"] if rc == 0 else math.nan
    check("model-eval (CLI, float32) runs and matches", rc == 0 and abs(cli_entropy - fp32["entropy_nats_per_step"]) <= 1e-3,
          f"exit {rc}, entropy {cli_entropy:.4f}")

    # 6. the learned planner, B searches in lockstep, a few real steps
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    policy = make_policy("planner", simulator="learned", budget=opts.planner_budget, model_dir=model_dir, device=str(dev))
    clock = _StepClock()
    played = play_episodes(policy, opts.seed, np.arange(opts.planner_batch), progress=clock, steps=opts.planner_steps)
    step_s = np.diff(clock.times)[1:]  # the first real step warms up (allocation, kernels)
    measures["planner_expansions_per_s"] = opts.planner_batch * opts.planner_budget * len(step_s) / float(step_s.sum())
    measures["peak_memory_planner_gib"] = _gib(torch.cuda.max_memory_allocated(dev)) if on_cuda else None
    acts = played.actions[:, : opts.planner_steps]
    check(f"learned planner, B={opts.planner_batch}, {opts.planner_budget} expansions x {opts.planner_steps} steps",
          bool(np.isfinite(played.returns).all() and acts.min() >= 0 and acts.max() < 40),
          f"{opts.planner_steps} real steps in {played.seconds:.1f} s")

    result = {"measures": measures, "checks": checks, "passed": all(c["passed"] for c in checks),
              "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "work_dir"},
              "torch": torch.__version__}
    write_json(work / "gpu_check.json", result)
    return result


def _fmt(key: str, value: Any) -> str:
    from alchemy_mbrl.stats import format_mean_sem

    if value is None:
        return "n/a (not on a GPU)"
    if isinstance(value, dict):
        return format_mean_sem(value["mean"], value["sem"], value["n"], digits=0)
    if isinstance(value, str):
        return value
    if key == "entropy_diff":
        return f"{value:.2e}"
    if key.startswith("entropy") or key.endswith("gib"):
        return f"{value:.4f}" if key.startswith("entropy") else f"{value:.2f}"
    return f"{value:,.1f}"


def format_table(result: dict[str, Any]) -> str:
    """The check's one table (Markdown): the measurements, then each check with PASS/FAIL."""
    lines = ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {label} | {_fmt(key, result['measures'].get(key))} |" for key, label in MEASURES]
    lines += [f"| check: {c['check']} | {'PASS' if c['passed'] else 'FAIL'}: {c['detail']} |" for c in result["checks"]]
    lines.append(f"| **all checks** | **{'PASS' if result['passed'] else 'FAIL'}** |")
    return "\n".join(lines)
