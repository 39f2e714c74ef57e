"""``alchemy-mbrl env replay`` (check the environment on reference traces)."""

from __future__ import annotations

import argparse
import os

DEFAULT_TRACES = os.environ.get("ALCHEMY_TRACES", "../shared/alchemy/golden/traces.npz")


def register(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("env", help="environment utilities (replay reference traces)")
    env_sub = env.add_subparsers(dest="env_command", metavar="SUBCOMMAND")
    env_sub.required = True
    rp = env_sub.add_parser("replay", help="replay recorded episodes and check them bit for bit")
    rp.add_argument("--traces", default=DEFAULT_TRACES, help="trace file (SPEC §11 format); default $ALCHEMY_TRACES or %(default)s")
    rp.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from alchemy_mbrl.env.replay import load_traces, replay_traces
    from alchemy_mbrl.io import check_paths

    check_paths(inputs=[args.traces])
    report = replay_traces(load_traces(args.traces))
    print(f"{report.matched}/{report.episodes} episodes match exactly (observations, rewards, discounts, step types)")
    if report.first_divergence is not None:
        print(f"first divergence: {report.first_divergence}")
        print(f"mismatched episodes: {report.mismatched_episodes[:20]}{' ...' if len(report.mismatched_episodes) > 20 else ''}")
        return 1
    return 0
