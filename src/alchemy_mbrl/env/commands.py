"""CLI: ``alchemy-mbrl env replay`` and ``alchemy-mbrl baseline``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_TRACES = os.environ.get("ALCHEMY_TRACES", "../shared/alchemy/golden/traces.npz")


def register(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("env", help="environment utilities (replay reference traces)")
    env_sub = env.add_subparsers(dest="env_command", metavar="SUBCOMMAND")
    env_sub.required = True
    rp = env_sub.add_parser("replay", help="replay recorded episodes and check them bit for bit")
    rp.add_argument("--traces", default=DEFAULT_TRACES, help="trace file (SPEC §11 format); default $ALCHEMY_TRACES or %(default)s")
    rp.set_defaults(func=_replay)

    bl = sub.add_parser("baseline", help="play a baseline policy and write per-episode returns")
    bl.add_argument("--policy", required=True, choices=["random-heuristic", "uniform"])
    bl.add_argument("--episodes", type=int, required=True)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument("--batch", type=int, default=4096, help="episodes stepped together (does not change results)")
    bl.add_argument("--out", type=Path, required=True, help="CSV of per-episode returns (docs/formats.md)")
    bl.add_argument("--no-progress", action="store_true")
    bl.set_defaults(func=_baseline)


def _replay(args: argparse.Namespace) -> int:
    from alchemy_mbrl.env.replay import load_traces, replay_traces

    report = replay_traces(load_traces(args.traces))
    print(f"{report.matched}/{report.episodes} episodes match exactly (observations, rewards, discounts, step types)")
    if report.first_divergence is not None:
        print(f"first divergence: {report.first_divergence}")
        print(f"mismatched episodes: {report.mismatched_episodes[:20]}{' ...' if len(report.mismatched_episodes) > 20 else ''}")
        return 1
    return 0


def _baseline(args: argparse.Namespace) -> int:
    import pandas as pd

    from alchemy_mbrl.env.baselines import format_mean_sem, run_baseline

    res = run_baseline(args.policy, args.episodes, args.seed, batch_size=args.batch, progress=not args.no_progress)
    df = pd.DataFrame(
        {
            "episode": res.episodes,
            "seed": args.seed,
            "return": res.returns,
            "policy": args.policy,
            "simulator": "",
            "budget": "",
            "seconds": res.seconds,
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, args.out)
    print(f"{args.policy}: return {format_mean_sem(res.returns, 'per episode')}")
    return 0
