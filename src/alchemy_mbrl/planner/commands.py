"""Sub-commands ``evaluate`` (play episodes with the planner) and ``merge-returns`` (merge chunk CSVs)."""

from __future__ import annotations

import argparse
import sys

from alchemy_mbrl.simulators import SIMULATORS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``merge-returns`` to the ``alchemy-mbrl`` CLI."""
    p = subparsers.add_parser(
        "evaluate",
        help="play episodes with the tree-search planner, write per-episode returns (CSV)",
        description="Play real episodes B at a time, planning every step with Algorithm 1 over a simulator, "
        "and write one row per episode (docs/formats.md). Chunks i/n (0 <= i < n) cover disjoint episodes; "
        "merge them with merge-returns.",
    )
    p.add_argument("--policy", choices=["planner"], default="planner", help="the policy to evaluate (default: planner)")
    p.add_argument("--simulator", choices=SIMULATORS, required=True, help="model the planner searches with")
    p.add_argument("--model", default=None, help="trained model directory (needed by --simulator learned)")
    p.add_argument("--device", default=None, help="torch device for the learned simulator (default: cuda if available)")
    p.add_argument("--budget", type=int, required=True, help="expansions per real step (e.g. 100, 500, 1250)")
    p.add_argument("--episodes", type=int, required=True, help="total episodes of the evaluation (all chunks)")
    p.add_argument("--chunk", default="0/1", help="i/n: evaluate chunk i (0-based) of n (default 0/1 = all)")
    p.add_argument("--seed", type=int, default=0, help="global seed; episode i is the same episode (chemistry, items) as in `baseline` with this seed")
    p.add_argument("--params", default=None, help="planner hyperparameters JSON {temperature,c1,c2,k,gamma[,reward_scale,q_normalisation]}; missing keys: Table 4")
    p.add_argument("--batch", type=int, default=64, help="episodes played in lockstep (searches per batch)")
    p.add_argument("--out", required=True, help="output CSV of per-episode returns")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_evaluate)

    m = subparsers.add_parser(
        "merge-returns",
        help="merge per-episode return CSVs of chunks, print and write mean ± s.e.",
        description="Concatenate chunk CSVs (sorted by episode; no duplicate or missing episode allowed), "
        "print 'mean ± standard error (n)' and optionally write a summary JSON.",
    )
    m.add_argument("inputs", nargs="+", help="returns CSVs of the chunks")
    m.add_argument("--out", required=True, help="merged CSV")
    m.add_argument("--summary", default=None, help="summary JSON (mean, sem, n, std, policy, simulator, budget)")
    m.set_defaults(func=run_merge_returns)


def run_evaluate(args: argparse.Namespace) -> int:
    from alchemy_mbrl.evaluate import evaluate_planner, parse_chunk, summarise, format_summary, write_returns
    from alchemy_mbrl.planner.params import PlannerParams
    from alchemy_mbrl.simulators import make_simulator

    chunk = parse_chunk(args.chunk)
    if args.budget < 1:
        raise ValueError(f"--budget must be >= 1 (expansions per real step), got {args.budget}")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    params = PlannerParams.from_json(args.params) if args.params else PlannerParams()
    simulator = make_simulator(args.simulator, model_dir=args.model, device=args.device)
    df = evaluate_planner(
        simulator, args.budget, args.episodes, seed=args.seed, chunk=chunk, params=params,
        batch_size=args.batch, progress=not args.no_progress,
    )
    write_returns(df, args.out)
    if len(df):
        print(f"{args.simulator} planner, budget {args.budget}, chunk {args.chunk}: "
              f"{format_summary(summarise(df['return'].to_numpy()))} -> {args.out}")
    else:
        print(f"chunk {args.chunk} of {args.episodes} episodes is empty -> {args.out}", file=sys.stderr)
    return 0


def run_merge_returns(args: argparse.Namespace) -> int:
    from alchemy_mbrl.evaluate import format_summary, merge_returns

    s = merge_returns(args.inputs, args.out, args.summary)
    print(format_summary(s))
    return 0
