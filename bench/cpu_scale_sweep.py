"""Choosing the world model's width and learning rate for a CPU budget (issue 16, docs/results-cpu.md).

    PYTHONPATH=src python bench/cpu_scale_sweep.py measure [--out bench/cpu_sweep]
    PYTHONPATH=src python bench/cpu_scale_sweep.py sweep --tokens 1200000 [--out bench/cpu_sweep]
    PYTHONPATH=src python bench/cpu_scale_sweep.py report [--out bench/cpu_sweep]

Everything runs through the ``alchemy-mbrl`` CLI, one job at a time, one torch thread each
(``ALCHEMY_THREADS=1`` and ``threads: 1``):

* data (once, reused): ``generate`` of ``--train-shards`` shards of ``--shard-episodes`` uniform-random
  episodes plus one held-out shard of ``--val-episodes`` episodes, and ``data manifest``;
* ``measure``: a few training steps of each width (tokens/s from ``train_log.csv``, first step dropped),
  written to ``measure.csv``, and the token budget that fits ``--minutes`` for the whole sweep;
* ``sweep``: for every width x lr, ``train`` the ORIGINAL architecture (paper shape, Table 3: 3 layers,
  4 heads, d_ff = d_model, observation MLP 2 d_model -> d_model, GRU head 32; only the width and the lr
  change) for the same number of tokens (``steps x batch_size x 200``) with a linear warm-up
  (``--warmup-frac`` of the steps) and a cosine decay, validating on the first ``--curve-episodes``
  held-out episodes ``--curve-points`` times; then ``model-eval`` on all held-out episodes. Each run
  resumes if interrupted (the trainer's checkpoint) and is skipped once its evaluation exists;
* ``report`` (also at the end of ``sweep``): ``sweep.csv`` (one row per setting), ``curves.csv``
  (validation entropy vs tokens) and ``sweep.png`` (one line per setting, the exact Bayes floor drawn).

Every file is written through :mod:`alchemy_mbrl.io`'s atomic writers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alchemy_mbrl.env.constants import EPISODE_STEPS
from alchemy_mbrl.io import atomic_write, write_csv, write_json, write_text

#: Exact Bayes-optimal predictor's validation entropy (nats/step), docs/bayes.md: the floor of Table 2.
BAYES_FLOOR = 1.288
SEED = 16


def width_options(d_model: int) -> dict[str, int]:
    """The paper's shape (Table 3 at d_model 256) at another width: what is 256 there scales with
    d_model, what is 512 with 2 d_model; depth, heads and the observation GRU head stay."""
    return {"d_model": d_model, "d_ff": d_model, "obs_context": d_model, "mlp_hidden": 2 * d_model,
            "gru_backbone_hidden": 2 * d_model, "n_heads": 4, "n_layers": 3}


def cli() -> list[str]:
    return [sys.executable, "-m", "alchemy_mbrl.cli"]


def env() -> dict[str, str]:
    e = dict(os.environ, ALCHEMY_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def run(args: list[str], log: Path) -> float:
    """Run one CLI command (output to ``log``); its wall time in seconds. Raises on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cli() + args, stdout=f, stderr=subprocess.STDOUT, env=env()).returncode
    if rc:
        raise SystemExit(f"failed ({rc}): alchemy-mbrl {' '.join(args)}; see {log}")
    return time.perf_counter() - t0


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_data(out: Path, a: argparse.Namespace) -> Path:
    manifest = out / "data" / "manifest.json"
    if manifest.exists():
        return manifest
    n = a.train_shards + 1
    shards = []
    t0 = time.perf_counter()
    for i in range(n):
        path = out / "data" / f"shard-{i:04d}.h5"
        eps = a.shard_episodes if i < a.train_shards else a.val_episodes
        if not path.exists():
            run(["generate", "--shard", str(i), "--num-shards", str(n), "--episodes", str(eps), "--seed", str(SEED),
                 "--out", str(path), "--no-progress"], out / "logs" / f"generate-{i}.log")
        shards.append(str(path))
    run(["data", "manifest", *shards, "--validation", "1", "--out", str(manifest)], out / "logs" / "manifest.log")
    print(f"data: {a.train_shards} x {a.shard_episodes} training + {a.val_episodes} held-out episodes "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return manifest


def train_config(d_model: int, lr: float, steps: int, a: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    every = max(1, steps // a.curve_points)
    return {**width_options(d_model), "lr": lr, "steps": steps, "batch_size": a.batch_size,
            "warmup_steps": max(0, round(a.warmup_frac * steps)) if steps > 1 else 0, "lr_schedule": "cosine",
            "lr_min_ratio": a.lr_min_ratio, "seed": 0, "threads": 1, "device": "cpu", "val_every": every,
            "val_episodes": a.curve_episodes, "checkpoint_every": every, "log_every": every, **extra}


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def measure(out: Path, manifest: Path, a: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for w in a.widths:
        d = out / "measure" / f"d{w}"
        cfg = train_config(w, 1e-3, a.measure_steps, a, val_every=0, val_episodes=2, log_every=1,
                           checkpoint_every=a.measure_steps, warmup_steps=0)
        write_text(d.with_suffix(".yaml"), json.dumps(cfg))
        if not (d / "model.pt").exists():
            run(["train", "--config", str(d.with_suffix(".yaml")), "--data", str(manifest), "--arch", "original",
                 "--out", str(d), "--no-progress"], out / "logs" / f"measure-d{w}.log")
        log = read_log(d / "train_log.csv")
        rates = sorted(float(r["tokens_per_s"]) for r in log[1:-1])  # first step warms up, last one validates
        rate = rates[len(rates) // 2]
        import torch

        from alchemy_mbrl.model.config import resolve_config
        from alchemy_mbrl.model.world_model import WorldModel

        params = sum(p.numel() for p in WorldModel(resolve_config("original", width_options(w))[0]).parameters())
        rows.append({"d_model": w, "params": params, "tokens_per_s": f"{rate:.0f}", "steps_timed": len(rates),
                     "batch_size": a.batch_size, "load_avg": load_avg()})
        print(f"d_model {w}: {params:,} parameters, {rate:,.0f} tokens/s (median of {len(rates)} steps)", flush=True)
        del torch
    write_csv(out / "measure.csv", list(rows[0]), rows)
    per_token = sum(len(a.lrs) / float(r["tokens_per_s"]) for r in rows)
    budget = a.minutes * 60 * 0.85 / per_token  # ~15 % for validation and evaluation
    print(f"a sweep of {len(a.widths)} widths x {len(a.lrs)} lrs in {a.minutes} min: about {budget:,.0f} tokens "
          f"per setting ({budget / (a.batch_size * EPISODE_STEPS):,.0f} steps of {a.batch_size} episodes)", flush=True)
    return rows


def sweep(out: Path, manifest: Path, a: argparse.Namespace) -> None:
    steps = max(1, round(a.tokens / (a.batch_size * EPISODE_STEPS)))
    status_path = out / "runs.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    for w in a.widths:
        for lr in a.lrs:
            name = f"d{w}-lr{lr:g}"
            d = out / "runs" / name
            res = out / "eval" / f"{name}.json"
            if res.exists() and name in status:
                continue
            cfg = train_config(w, lr, steps, a)
            write_text(out / "runs" / f"{name}.yaml", json.dumps(cfg))
            print(f"{time.strftime('%H:%M:%S')} {name}: {steps} steps x {a.batch_size} episodes "
                  f"= {steps * a.batch_size * EPISODE_STEPS:,} tokens (load {load_avg()})", flush=True)
            load0 = load_avg()
            t_train = run(["train", "--config", str(out / "runs" / f"{name}.yaml"), "--data", str(manifest),
                           "--arch", "original", "--out", str(d), "--no-progress"], out / "logs" / f"train-{name}.log")
            t_eval = run(["model-eval", "--model", str(d), "--data", str(manifest), "--device", "cpu",
                          "--out", str(res)], out / "logs" / f"eval-{name}.log")
            status[name] = {"d_model": w, "lr": lr, "steps": steps, "train_wall_s": round(t_train, 1),
                            "eval_wall_s": round(t_eval, 1), "load_avg_start": load0, "load_avg_end": load_avg()}
            write_json(status_path, status)
            r = json.loads(res.read_text())
            print(f"{time.strftime('%H:%M:%S')} {name}: entropy {r['entropy_nats_per_step']:.3f} ± "
                  f"{r['entropy_sem']:.3f} nats/step, train {t_train:.0f} s, eval {t_eval:.0f} s", flush=True)
    report(out, a)


def report(out: Path, a: argparse.Namespace) -> None:
    status = json.loads((out / "runs.json").read_text())
    rate = {}
    if (out / "measure.csv").exists():
        rate = {int(r["d_model"]): r["tokens_per_s"] for r in read_log(out / "measure.csv")}
    rows, curves = [], []
    for name, s in status.items():
        r = json.loads((out / "eval" / f"{name}.json").read_text())
        log = read_log(out / "runs" / name / "train_log.csv")
        cfg = json.loads((out / "runs" / f"{name}.yaml").read_text())
        tokens_per_step = cfg["batch_size"] * EPISODE_STEPS
        train_s = float(log[-1]["seconds"])
        for row in log:
            if row["val_loss"]:
                curves.append({"setting": name, "d_model": s["d_model"], "lr": s["lr"], "step": row["step"],
                               "tokens": int(row["step"]) * tokens_per_step, "val_entropy": row["val_loss"],
                               "learning_rate": row["learning_rate"]})
        rows.append({
            "setting": name, "d_model": s["d_model"], "lr": s["lr"], "steps": s["steps"], "batch_size": cfg["batch_size"],
            "tokens": s["steps"] * tokens_per_step, "warmup_steps": cfg["warmup_steps"],
            "entropy": f"{r['entropy_nats_per_step']:.4f}", "entropy_sem": f"{r['entropy_sem']:.4f}",
            "trial_start": f"{r['trial_start_nats_per_step']:.4f}", "chemistry": f"{r['chemistry_nats_per_step']:.4f}",
            "eval_episodes": r["n_episodes"], "train_seconds": f"{train_s:.0f}",
            "train_tokens_per_s": f"{s['steps'] * tokens_per_step / train_s:.0f}",
            "measured_tokens_per_s": rate.get(s["d_model"], ""),
            "train_wall_s": s["train_wall_s"], "eval_wall_s": s["eval_wall_s"],
            "load_avg_start": s["load_avg_start"], "load_avg_end": s["load_avg_end"],
        })
    write_csv(out / "sweep.csv", list(rows[0]), rows)
    write_csv(out / "curves.csv", list(curves[0]), curves)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        pts = [(c["tokens"], float(c["val_entropy"])) for c in curves if c["setting"] == row["setting"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                ls="-" if float(row["lr"]) >= 1e-3 else "--",
                label=f"d_model {row['d_model']}, lr {float(row['lr']):g}: {float(row['entropy']):.3f}")
    ax.axhline(BAYES_FLOOR, color="k", lw=1, ls=":", label=f"exact Bayes floor {BAYES_FLOOR}")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens (steps x batch x 200)")
    ax.set_ylabel("validation entropy (nats/step)")
    ax.set_title("original architecture, fixed token budget, warm-up + cosine (1 CPU thread)")
    ax.legend(fontsize=8, title="setting: final entropy (all held-out episodes)", title_fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_write(out / "sweep.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'sweep.csv'}, {out / 'curves.csv'}, {out / 'sweep.png'}")
    for row in sorted(rows, key=lambda r: float(r["entropy"])):
        print(f"  {row['setting']}: {row['entropy']} ± {row['entropy_sem']} (trial start {row['trial_start']}, "
              f"chemistry {row['chemistry']}), {row['train_tokens_per_s']} tokens/s, train {row['train_wall_s']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("measure", "sweep", "report"))
    ap.add_argument("--out", type=Path, default=Path("bench/cpu_sweep"))
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=float, help="sweep: training tokens per setting (steps x batch x 200)")
    ap.add_argument("--warmup-frac", type=float, default=0.05)
    ap.add_argument("--lr-min-ratio", type=float, default=0.1)
    ap.add_argument("--curve-points", type=int, default=8, help="validations during training")
    ap.add_argument("--curve-episodes", type=int, default=100, help="held-out episodes of each validation")
    ap.add_argument("--train-shards", type=int, default=3)
    ap.add_argument("--shard-episodes", type=int, default=8000)
    ap.add_argument("--val-episodes", type=int, default=500, help="held-out episodes (model-eval uses all)")
    ap.add_argument("--measure-steps", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=60, help="measure: the sweep's time budget")
    a = ap.parse_args()
    if a.command == "report":
        report(a.out, a)
        return
    manifest = make_data(a.out, a)
    if a.command == "measure":
        measure(a.out, manifest, a)
    else:
        if not a.tokens:
            ap.error("sweep needs --tokens (run `measure` first for a budget)")
        sweep(a.out, manifest, a)


if __name__ == "__main__":
    main()
