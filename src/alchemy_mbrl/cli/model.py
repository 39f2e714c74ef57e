"""``alchemy-mbrl train`` and ``model-eval``: :mod:`alchemy_mbrl.model` (torch is imported only when they run)."""

from __future__ import annotations

import argparse

from alchemy_mbrl.model.config import ARCHITECTURES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the world model (resumes from DIR/checkpoint.pt if present)")
    p.add_argument("--config", default=None, help="YAML file of overrides of model/training keys (docs/model.md)")
    p.add_argument("--data", required=True, help="dataset manifest (JSON)")
    p.add_argument("--arch", default="original", help=f"one of {', '.join(ARCHITECTURES)}")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--micro-batch", type=int, default=None, help="episodes per forward/backward (gradient accumulation)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--stop-after", type=int, default=None, help="debug: stop after N steps as if killed (checkpoint only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("model-eval", help="validation entropy of a trained world model, split into parts")
    e.add_argument("--model", required=True, help="model directory written by `train`")
    e.add_argument("--data", required=True, help="dataset manifest (its validation shards are used)")
    e.add_argument("--out", required=True, help="output JSON file")
    e.add_argument("--episodes-out", default=None, metavar="CSV",
                   help="also write each validation episode's entropy (columns episode, entropy_nats_per_step, "
                   "trial_start_nats_per_step): Table 2 pairs models on the same episodes with it")
    e.add_argument("--max-episodes", type=int, default=None, help="use at most N validation episodes")
    e.add_argument("--batch-episodes", type=int, default=50, help="episodes per forward pass")
    e.add_argument("--device", default=None)
    e.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (faster, less exact; default float32)")
    e.set_defaults(func=cmd_model_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from alchemy_mbrl.cli._paths import manifest_inputs
    from alchemy_mbrl.io import command_outputs
    from alchemy_mbrl.model.checkpoint import CHECKPOINT_FILE, MODEL_FILE
    from alchemy_mbrl.model.train import train_from_cli

    # a failed first run removes the directory it created, unless it holds progress a re-run resumes
    with command_outputs(inputs=[(args.config, "config file"), *manifest_inputs(args.data)], output_dirs=[args.out],
                         keep_if=(CHECKPOINT_FILE, MODEL_FILE)):
        res = train_from_cli(args.arch, args.data, args.out, config_file=args.config, micro_batch=args.micro_batch,
                             device=args.device, stop_after=args.stop_after, progress=not args.no_progress)
    state = "finished" if res["finished"] else "stopped (resume by re-running the same command)"
    print(f"train {args.arch}: {state} at step {res['step']}, val_loss {res['val_loss']:.4f} nats/step, "
          f"{res['seconds']:.1f} s -> {args.out}")
    return 0


def cmd_model_eval(args: argparse.Namespace) -> int:
    from alchemy_mbrl.io import write_json
    from alchemy_mbrl.model.evaluate import evaluate_model_dir
    from alchemy_mbrl.stats import format_entropy
    from alchemy_mbrl.cli._paths import manifest_inputs
    from alchemy_mbrl.io import command_outputs

    outputs = [args.out, *([args.episodes_out] if args.episodes_out else [])]
    with command_outputs(inputs=manifest_inputs(args.data), input_dirs=[args.model], outputs=outputs):
        res = evaluate_model_dir(args.model, args.data, args.max_episodes, args.batch_episodes, device=args.device,
                                 amp=args.amp, episodes_out=args.episodes_out)
        write_json(args.out, res)
    print(format_entropy(res))
    return 0
