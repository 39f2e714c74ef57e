"""``alchemy-mbrl gpu-check``: the paper-scale CUDA paths in one command (:mod:`alchemy_mbrl.gpu_check`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gpu-check",
        help="train/resume/evaluate/plan at paper size on one GPU for a few minutes; print one table",
        description="Trains the original architecture at Table 3's sizes and batch for a few hundred steps with "
        "bf16 autocast, kills it (SIGKILL) and resumes it on the device, checks the GRUs' dtypes under autocast, compares "
        "the float32 and autocast validation entropies, runs model-eval and the learned planner at B=256, and prints "
        "one table (tokens/s, ms/step, expansions/s, peak GPU memory, entropy difference, pass/fail per check). "
        "Exit status 1 when a check fails. About 5 minutes on one GPU (8 at most); with --device cpu and small "
        "sizes it is part of the test suite.",
    )
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda)")
    p.add_argument("--work-dir", default=None, help="keep the data, model and gpu_check.json here (default: a temporary directory)")
    p.add_argument("--config", default=None, help="YAML of flat model/training overrides (default: Table 3 sizes)")
    p.add_argument("--steps", type=int, default=300, help="training steps (a first process is killed after its first checkpoint, then training resumes)")
    p.add_argument("--batch-size", type=int, default=250, help="episodes per training step (Table 3: 250)")
    p.add_argument("--train-episodes", type=int, default=2000, help="generated training episodes")
    p.add_argument("--val-episodes", type=int, default=250, help="generated validation episodes (also evaluated)")
    p.add_argument("--planner-batch", type=int, default=256, help="episodes planned in lockstep")
    p.add_argument("--planner-budget", type=int, default=100, help="expansions per real step")
    p.add_argument("--planner-steps", type=int, default=4, help="real steps played (the first is a warm-up)")
    p.add_argument("--amp-tolerance", type=float, default=0.05, help="max |autocast - float32| entropy, nats/step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result (measures, checks) to this JSON file")
    p.set_defaults(func=cmd_gpu_check)


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from alchemy_mbrl.gpu_check import GpuCheckOptions, format_table, run_gpu_check
    from alchemy_mbrl.io import write_json
    from alchemy_mbrl.model.config import load_config_file

    from alchemy_mbrl.io import check_paths

    check_paths(inputs=[(args.config, "config file")], outputs=[args.json], output_dirs=[args.work_dir])
    opts = GpuCheckOptions(
        device=args.device, work_dir=args.work_dir, overrides=load_config_file(args.config), steps=args.steps,
        batch_size=args.batch_size, train_episodes=args.train_episodes, val_episodes=args.val_episodes,
        planner_batch=args.planner_batch, planner_budget=args.planner_budget, planner_steps=args.planner_steps,
        amp_tolerance=args.amp_tolerance, seed=args.seed,
    )
    res = run_gpu_check(opts)
    if args.json:
        write_json(args.json, res)
    print(format_table(res))
    return 0 if res["passed"] else 1
