"""CLI sub-commands ``train`` and ``model-eval`` (torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ARCH_NAMES = ("original", "gru_backbone", "no_gru_head", "no_final_linear")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the world model (resumes from DIR/checkpoint.pt if present)")
    p.add_argument("--config", default=None, help="YAML file of overrides of model/training keys (docs/model.md)")
    p.add_argument("--data", required=True, help="dataset manifest (JSON)")
    p.add_argument("--arch", default="original", help=f"one of {', '.join(ARCH_NAMES)}")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--micro-batch", type=int, default=None, help="episodes per forward/backward (gradient accumulation)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--stop-after", type=int, default=None, help="debug: stop after N steps as if killed (checkpoint only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser("model-eval", help="validation entropy of a trained world model, split into parts")
    e.add_argument("--model", required=True, help="model directory written by `train`")
    e.add_argument("--data", required=True, help="dataset manifest (its validation shards are used)")
    e.add_argument("--out", required=True, help="output JSON file")
    e.add_argument("--max-episodes", type=int, default=None, help="use at most N validation episodes")
    e.add_argument("--batch-episodes", type=int, default=50, help="episodes per forward pass")
    e.add_argument("--device", default=None)
    e.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (faster, less exact; default float32)")
    e.set_defaults(func=run_model_eval)


def run_train(args: argparse.Namespace) -> int:
    from alchemy_mbrl.model.config import load_config_file, resolve_config

    if not Path(args.data).exists():
        raise FileNotFoundError(f"{args.data}: manifest does not exist")
    overrides = load_config_file(args.config)
    if args.micro_batch is not None:
        overrides = {**overrides, "micro_batch": args.micro_batch}
    if args.device is not None:
        overrides = {**overrides, "device": args.device}
    model_cfg, train_cfg = resolve_config(args.arch, overrides)

    from alchemy_mbrl.model.train import train

    res = train(model_cfg, train_cfg, args.data, args.out, stop_after=args.stop_after, progress=not args.no_progress)
    state = "finished" if res["finished"] else "stopped (resume by re-running the same command)"
    print(f"train {model_cfg.arch}: {state} at step {res['step']}, val_loss {res['val_loss']:.4f} nats/step, "
          f"{res['seconds']:.1f} s -> {args.out}")
    return 0


def run_model_eval(args: argparse.Namespace) -> int:
    from alchemy_mbrl.model.evaluate import evaluate_model, format_result
    from alchemy_mbrl.model.train import load_model

    if not Path(args.data).exists():
        raise FileNotFoundError(f"{args.data}: manifest does not exist")
    if args.max_episodes is not None and args.max_episodes < 2:
        raise ValueError("--max-episodes must be >= 2 (the standard error needs two episodes)")
    model = load_model(args.model, args.device)
    res = evaluate_model(model, args.data, args.max_episodes, args.batch_episodes, amp=args.amp)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out)
    print(format_result(res))
    return 0
