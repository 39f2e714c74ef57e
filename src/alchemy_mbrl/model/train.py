"""Training loop of the world model: Adam, gradient accumulation, AMP, checkpoint + exact resume.

``train(...)`` writes into the model directory:

    config.yaml      the resolved configuration (model + training)
    train_log.csv    step, epoch, train_loss, val_loss, learning_rate, seconds, tokens_per_s
    checkpoint.pt    model, optimiser, learning-rate schedule, GradScaler, torch RNG and data-order state, the log rows so far
                     and the last validation loss (model/checkpoint.py)
    model.pt         final weights + model config (written when the step or time budget is reached)
    .train.lock      held while a trainer runs (a second trainer of the directory fails at once)

Re-running the same command after an interruption resumes from ``checkpoint.pt``; on CPU the final
weights equal those of an uninterrupted run bit for bit (``tests/test_model_train.py``). The log is
restored from the checkpoint, so it survives the deletion of ``train_log.csv`` (Snakemake deletes the
declared outputs of a failed job), and ``model.pt`` always carries a finite validation loss.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alchemy_mbrl import __version__
from alchemy_mbrl.model.config import (
    ModelConfig,
    TrainConfig,
    config_to_dict,
    load_config_file,
    lr_factor,
    resolve_config,
)
from alchemy_mbrl.model.data import EpisodeArrays, EpisodeSampler, load_split
from alchemy_mbrl.env.constants import EPISODE_STEPS
from alchemy_mbrl.io import exclusive_lock, write_csv, write_text
from alchemy_mbrl.model.checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    load_checkpoint,
    resolve_device,
    restore_rng,
    rng_state,
    save,
    safe_load,
    save_model,
)
from alchemy_mbrl.model.world_model import WorldModel

LOG_COLUMNS = ("step", "epoch", "train_loss", "val_loss", "learning_rate", "seconds", "tokens_per_s")
LOG_FILE = "train_log.csv"
#: Held (``flock``) by the process training a model directory; see :func:`alchemy_mbrl.io.exclusive_lock`.
LOCK_FILE = ".train.lock"
#: Everything ``train`` writes in a model directory (anything else there makes it refuse the directory).
MODEL_DIR_FILES = frozenset({"config.yaml", LOG_FILE, CHECKPOINT_FILE, MODEL_FILE, LOCK_FILE})


def autocast_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device`` (``None`` = no autocast).

    ``True``: bf16 on CUDA where supported, else fp16 (with a GradScaler); no autocast on CPU.
    ``"bf16"``: bf16 on any device: CPU autocast runs the same model code as CUDA autocast, which is how
    the tests and ``gpu-check --device cpu`` exercise the mixed-precision path without a GPU.
    """
    if amp == "bf16":
        return torch.bfloat16
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def deterministic_cpu(device: torch.device) -> None:
    """On the CPU: deterministic algorithms (exact resume), without NaN-filling every new tensor.

    ``torch.use_deterministic_algorithms(True)`` also fills the memory of every ``torch.empty`` with NaN
    (``torch.utils.deterministic.fill_uninitialized_memory``), a guard against kernels that read memory
    they never wrote. No computation here does (every result is written before it is read; a NaN would
    show in the loss), so the fill is pure memory traffic: 0.2-0.6 GB per training step at the CPU
    scale (measured, ``docs/model.md``); it is turned off. The algorithms, hence every result, are
    unchanged (tested: the same weights bit for bit after training steps with and without the fill).
    """
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False


def to_device(batch: EpisodeArrays, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    nb = device.type == "cuda"
    return (
        torch.from_numpy(batch.obs_codes).to(device, non_blocking=nb),
        torch.from_numpy(batch.actions).to(device, non_blocking=nb),
        torch.from_numpy(batch.reward_codes).to(device, non_blocking=nb),
    )


@torch.no_grad()
def mean_loss(model: WorldModel, data: EpisodeArrays, batch_episodes: int, device: torch.device,
              amp_dtype: torch.dtype | None) -> float:
    """Mean over all transitions of ``data`` of the summed cross-entropy (nats per step), eval mode."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for lo in range(0, data.episodes, batch_episodes):
        o, a, r = to_device(data.take(slice(lo, lo + batch_episodes)), device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            rn, on = model.token_losses(o, a, r)
        total += float((rn + on.sum(-1)).double().sum())
        n += rn.numel()
    model.train(was_training)
    return total / n


#: Training keys that must not change when resuming (they change what the weights are), with the value
#: a checkpoint written before the key existed stands for.
_RESUME_FIXED = {"batch_size": None, "lr": None, "seed": None, "adam_betas": None, "grad_clip": None,
                 "max_train_episodes": None, "warmup_steps": 0, "lr_schedule": "constant", "lr_min_ratio": 0.1}


def _check_resumable(ckpt: dict[str, Any], model_cfg: ModelConfig, train_cfg: TrainConfig, path: Path) -> None:
    if ckpt["config"]["model"] != dataclasses.asdict(model_cfg):
        raise ValueError(f"{path} was written with a different model config; use another --out or delete it")
    old = ckpt["config"]["training"]
    new = config_to_dict(model_cfg, train_cfg)["training"]
    fixed = dict(_RESUME_FIXED)
    if new.get("lr_schedule") == "cosine":
        fixed["steps"] = None  # the cosine decay ends at the last step: its values depend on `steps`
    for key, default in fixed.items():
        if old.get(key, default) != new.get(key):
            raise ValueError(f"{path} was written with {key}={old.get(key, default)!r}, this run has "
                             f"{key}={new.get(key)!r}; use another --out or delete the checkpoint")


def _read_log(path: Path, upto_step: int) -> list[dict[str, str]]:
    """Rows of an existing log up to ``upto_step`` (checkpoints written before the log was kept in them)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto_step]


def _last_val_loss(rows: list[dict[str, Any]]) -> float:
    for row in reversed(rows):
        if str(row.get("val_loss", "")) != "":
            return float(row["val_loss"])
    return float("nan")


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume training) a world model; return a summary dict.

    ``stop_after``: debug/testing: stop once this many steps are done, after writing a checkpoint, as if
    the job had been killed (no ``model.pt``). The step budget (``steps``) and the wall-clock budget
    (``max_seconds``, summed over resumed runs) end training normally, writing ``model.pt``.
    Raises :class:`~alchemy_mbrl.io.LockHeldError` (naming the directory and the other process) when
    another live process is training the same directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory (--out names the model directory)")
    if out.is_dir():
        # train replaces its own files only: a directory holding anything else is not a model directory
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name not in MODEL_DIR_FILES and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if foreign:
            raise ValueError(f"{out}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which "
                             "`train` did not write; --out must name a new directory or a model directory")
    device = resolve_device(train_cfg.device)
    if train_cfg.threads:
        torch.set_num_threads(int(train_cfg.threads))
    amp_dtype = autocast_dtype(device, train_cfg.amp)
    deterministic_cpu(device)

    from alchemy_mbrl.data.shards import sha256_of

    train_data = load_split(manifest, "train", train_cfg.max_train_episodes)
    val_data = load_split(manifest, "validation", train_cfg.val_episodes or None)
    manifest_sha = sha256_of(manifest)  # recorded in the checkpoint: resuming on other data is refused
    micro = min(train_cfg.micro_batch or train_cfg.batch_size, train_cfg.batch_size)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good
    with exclusive_lock(out / LOCK_FILE, f"model directory {out}"):
        return _train(model_cfg, train_cfg, out, device, amp_dtype, train_data, val_data, micro,
                      stop_after=stop_after, progress=progress, manifest=(Path(manifest), manifest_sha))


def _train(model_cfg: ModelConfig, train_cfg: TrainConfig, out: Path, device: torch.device,
           amp_dtype: torch.dtype | None, train_data: EpisodeArrays, val_data: EpisodeArrays, micro: int, *,
           stop_after: int | None, progress: bool, manifest: tuple[Path, str] | None = None) -> dict[str, Any]:
    """The training loop of :func:`train`, run while holding the model directory's lock."""
    from tqdm import tqdm

    torch.manual_seed(train_cfg.seed)
    model = WorldModel(model_cfg).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, betas=tuple(train_cfg.adam_betas))
    # lr of step s + 1 = lr * lr_factor(s): warm-up, then constant or cosine (config.lr_factor)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train_cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    sampler = EpisodeSampler(train_data.episodes, train_cfg.seed)
    step, seconds = 0, 0.0
    val_loss = float("nan")
    log_rows: list[dict[str, Any]] = []

    ckpt_path, log_path = out / CHECKPOINT_FILE, out / LOG_FILE
    resolved = config_to_dict(model_cfg, train_cfg)
    resumed = ckpt_path.exists()
    if resumed:
        ckpt = load_checkpoint(ckpt_path)  # on the CPU; load_state_dict moves to the device
        _check_resumable(ckpt, model_cfg, train_cfg, ckpt_path)
        old_sha = ckpt.get("data_manifest_sha256")
        if manifest is not None and old_sha is not None and old_sha != manifest[1]:
            raise ValueError(f"{ckpt_path} was trained on another dataset (manifest SHA-256 {old_sha[:12]}...), "
                             f"not {manifest[0]} ({manifest[1][:12]}...); use another --out or delete the checkpoint")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if "scheduler" in ckpt:
            sched.load_state_dict(ckpt["scheduler"])
        else:  # written before schedules existed: a constant lr (checked above), only the count is needed
            sched.last_epoch = int(ckpt["step"])
        scaler.load_state_dict(ckpt["scaler"])
        sampler.load_state_dict(ckpt["data_order"])
        restore_rng(ckpt["rng"], device)
        step, seconds = int(ckpt["step"]), float(ckpt["seconds"])
        # the log rows up to the checkpoint's step (older checkpoints: from train_log.csv, if still there)
        log_rows = list(ckpt["log"]) if "log" in ckpt else _read_log(log_path, step)
        val_loss = float(ckpt.get("val_loss", _last_val_loss(log_rows)))
    write_text(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    def write_log() -> None:
        write_csv(log_path, LOG_COLUMNS, log_rows)

    def save_checkpoint() -> None:
        save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "data_order": sampler.state_dict(),
                "rng": rng_state(device),
                "step": step,
                "seconds": seconds,
                "log": list(log_rows),
                "val_loss": val_loss,
                "config": resolved,
                "data_manifest_sha256": None if manifest is None else manifest[1],
                "package_version": __version__,
            },
            ckpt_path,
        )

    def time_left() -> bool:
        return train_cfg.max_seconds is None or seconds < train_cfg.max_seconds

    final_path = out / MODEL_FILE
    if (step >= train_cfg.steps or not time_left()) and final_path.exists():
        # already finished: re-running the command is a no-op (it only restores a deleted log)
        if not log_path.exists():
            write_log()
        done = safe_load(final_path, "cpu", "model file")
        return {"step": step, "finished": True, "val_loss": float(done.get("val_loss", float("nan"))), "seconds": seconds}
    if resumed:
        write_log()  # the checkpoint's rows: complete again if deleted, rows after the checkpoint dropped
    bar = tqdm(total=train_cfg.steps, initial=step, unit="step", disable=not progress, desc=f"train {model_cfg.arch}")
    loss_acc, loss_n, tokens_since, t_log = 0.0, 0, 0, time.perf_counter()
    stopped_early = False
    while step < train_cfg.steps and time_left():
        if stop_after is not None and step >= stop_after:
            stopped_early = True
            break
        t0 = time.perf_counter()
        idx = sampler.next(train_cfg.batch_size)
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for lo in range(0, len(idx), micro):
            chunk = np.sort(idx[lo : lo + micro])
            o, a, r = to_device(train_data.take(chunk), device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = model.loss(o, a, r)
            scaler.scale(loss * (len(chunk) / len(idx))).backward()
            step_loss += float(loss.detach()) * len(chunk) / len(idx)
        if train_cfg.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        lr_used = opt.param_groups[0]["lr"]
        scaler.step(opt)
        scaler.update()
        sched.step()
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"training loss became {step_loss} at step {step + 1}")
        step += 1
        seconds += time.perf_counter() - t0
        loss_acc += step_loss
        loss_n += 1
        tokens_since += len(idx) * EPISODE_STEPS
        bar.update(1)
        last = step >= train_cfg.steps or not time_left() or (stop_after is not None and step >= stop_after)
        do_val = last or (train_cfg.val_every > 0 and step % train_cfg.val_every == 0)
        if do_val:
            tv = time.perf_counter()
            val_loss = mean_loss(model, val_data, micro, device, amp_dtype)
            seconds += time.perf_counter() - tv
        if do_val or step % max(1, train_cfg.log_every) == 0 or last:
            now = time.perf_counter()
            log_rows.append({
                "step": step,
                "epoch": f"{sampler.epochs_done:.4f}",
                "train_loss": f"{loss_acc / loss_n:.6f}",
                "val_loss": f"{val_loss:.6f}" if do_val else "",
                "learning_rate": f"{lr_used:.6g}",  # the lr of this row's step
                "seconds": f"{seconds:.2f}",
                "tokens_per_s": f"{tokens_since / max(now - t_log, 1e-9):.1f}",
            })
            bar.set_postfix(loss=f"{loss_acc / loss_n:.3f}", val=f"{val_loss:.3f}")
            loss_acc, loss_n, tokens_since, t_log = 0.0, 0, 0, now
            write_log()
        if last or step % max(1, train_cfg.checkpoint_every) == 0:
            save_checkpoint()
    bar.close()
    if stopped_early or (stop_after is not None and step >= stop_after and step < train_cfg.steps):
        save_checkpoint()
        return {"step": step, "finished": False, "val_loss": val_loss, "seconds": seconds}
    if not math.isfinite(val_loss):
        # no validation in this run or the checkpoint (e.g. resumed at the final step from a checkpoint
        # written before validation losses were kept in it): validate now, model.pt never carries NaN
        val_loss = mean_loss(model, val_data, micro, device, amp_dtype)
    save_checkpoint()
    write_log()
    save_model(final_path, model_cfg, model, step, val_loss)
    return {"step": step, "finished": True, "val_loss": val_loss, "seconds": seconds}



def train_from_cli(
    arch: str,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    micro_batch: int | None = None,
    device: str | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``alchemy-mbrl train``: resolve the configuration (architecture, YAML overrides, options), then :func:`train`."""
    if not Path(manifest).exists():
        raise FileNotFoundError(f"{manifest}: manifest does not exist")
    overrides = load_config_file(config_file)
    if micro_batch is not None:
        overrides = {**overrides, "micro_batch": micro_batch}
    if device is not None:
        overrides = {**overrides, "device": device}
    model_cfg, train_cfg = resolve_config(arch, overrides)
    return train(model_cfg, train_cfg, manifest, out_dir, stop_after=stop_after, progress=progress)
