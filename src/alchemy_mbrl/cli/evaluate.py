"""``alchemy-mbrl evaluate`` (play episodes with a policy), ``baseline`` (its alias for the baselines)
and ``merge-returns`` (merge chunk CSVs): :mod:`alchemy_mbrl.evaluate`."""

from __future__ import annotations

import argparse
import sys

from alchemy_mbrl.evaluate import POLICIES
from alchemy_mbrl.simulators import SIMULATORS


def _episode_args(p: argparse.ArgumentParser, default_batch: str) -> None:
    p.add_argument("--episodes", type=int, default=None,
                   help="total episodes of the evaluation (all chunks); with --episodes-file, its first N rows "
                   "(default there: all rows)")
    p.add_argument("--episodes-file", default=None, metavar="FILE.npz",
                   help="play the episodes stored in FILE (chemistry and items, SPEC §11 arrays; docs/formats.md): "
                   "episode i = row i. Write one with `alchemy-mbrl episodes`")
    p.add_argument("--seed", type=int, default=0,
                   help="global seed: episode i is the same episode (chemistry, items) for every policy with this "
                   "seed; with --episodes-file it seeds only the policy's random choices")
    p.add_argument("--chunk", default="0/1", help="i/n: evaluate chunk i (0-based) of n (default 0/1 = all)")
    p.add_argument("--batch", type=int, default=None, help=f"episodes played in lockstep (default: {default_batch}); "
                   "does not change the results")
    p.add_argument("--out", required=True, help="output CSV of per-episode returns (docs/formats.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate``, ``baseline`` and ``merge-returns``."""
    p = subparsers.add_parser(
        "evaluate",
        help="play episodes with a policy (planner or baseline), write per-episode returns (CSV)",
        description="Play real episodes B at a time with a policy (the planner: Algorithm 1 over a simulator at "
        "every step; or a baseline) and write one row per episode (docs/formats.md). Chunks i/n (0 <= i < n) "
        "cover disjoint episodes; merge them with merge-returns.",
    )
    p.add_argument("--policy", choices=POLICIES, default="planner", help="the policy to evaluate (default: planner)")
    p.add_argument("--simulator", choices=SIMULATORS, default=None, help="model the planner searches with (planner only)")
    p.add_argument("--model", default=None, help="trained model directory (needed by --simulator learned)")
    p.add_argument("--device", default=None, help="torch device for the learned simulator (default: cuda if available)")
    p.add_argument("--budget", type=int, default=None, help="expansions per real step, e.g. 100, 500, 1250 (planner only)")
    p.add_argument("--params", default=None, help="planner hyperparameters JSON {temperature,c1,c2,k,gamma"
                   "[,reward_scale,q_normalisation,readings]}; missing keys: the defaults (planner only; docs/formats.md)")
    p.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                   help="one planner parameter or reading over --params, e.g. --param expansion_unit=sample "
                   "(repeatable; docs/planner.md, 'Readings')")
    _episode_args(p, "64 for the planner, 4096 for baselines")
    p.set_defaults(func=cmd_evaluate)

    b = subparsers.add_parser("baseline", help="alias of `evaluate --policy POLICY` for the baselines")
    b.add_argument("--policy", required=True, choices=[p for p in POLICIES if p != "planner"])
    _episode_args(b, "4096")
    b.set_defaults(func=cmd_evaluate, simulator=None, model=None, device=None, budget=None, params=None, param=None)

    m = subparsers.add_parser(
        "merge-returns",
        help="merge per-episode return CSVs of chunks, print and write mean ± s.e.",
        description="Concatenate chunk CSVs (sorted by episode; no duplicate or missing episode allowed), "
        "print 'mean ± standard error (n)' and optionally write a summary JSON.",
    )
    m.add_argument("inputs", nargs="+", help="returns CSVs of the chunks")
    m.add_argument("--out", required=True, help="merged CSV")
    m.add_argument("--summary", default=None, help="summary JSON (mean, sem, n, std, policy, simulator, budget)")
    m.set_defaults(func=cmd_merge_returns)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from alchemy_mbrl.io import command_outputs

    with command_outputs(inputs=[(args.episodes_file, "episodes file"), (args.params, "--params file")],
                         input_dirs=[args.model], outputs=[args.out]):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from alchemy_mbrl.evaluate import (
        EpisodeSource,
        evaluate_policy,
        make_policy,
        parse_chunk,
        write_returns,
    )
    from alchemy_mbrl.stats import format_summary, returns_summary

    chunk = parse_chunk(args.chunk)
    source = EpisodeSource(args.seed, args.episodes_file)  # reads and checks the file before any work
    episodes = source.count(args.episodes)
    policy = make_policy(args.policy, simulator=args.simulator, budget=args.budget, params=args.params,
                         model_dir=args.model, device=args.device, settings=args.param)
    df = evaluate_policy(policy, episodes, seed=source, chunk=chunk, batch_size=args.batch,
                         progress=not args.no_progress)
    write_returns(df, args.out)
    what = args.policy if policy.budget is None else f"{policy.simulator} planner, budget {policy.budget}"
    if args.episodes_file is not None:
        what += f", {episodes} episodes of {args.episodes_file}"
    if len(df):
        print(f"{what}, chunk {args.chunk}: {format_summary(returns_summary(df['return']))} -> {args.out}")
    else:
        print(f"chunk {args.chunk} of {episodes} episodes is empty -> {args.out}", file=sys.stderr)
    return 0


def cmd_merge_returns(args: argparse.Namespace) -> int:
    from alchemy_mbrl.evaluate import merge_returns
    from alchemy_mbrl.io import command_outputs
    from alchemy_mbrl.stats import format_summary

    with command_outputs(inputs=args.inputs, outputs=[args.out, args.summary]):
        print(format_summary(merge_returns(args.inputs, args.out, args.summary)))
    return 0
