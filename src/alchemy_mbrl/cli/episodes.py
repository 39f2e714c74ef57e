"""``alchemy-mbrl episodes`` (write a fixed evaluation set of a seed's episodes to an episodes file):
:func:`alchemy_mbrl.evaluate.write_seed_episodes`, format :mod:`alchemy_mbrl.env.episodes`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``episodes``."""
    p = subparsers.add_parser(
        "episodes",
        help="write the episodes of a seed (chemistry and items) to an episodes file for --episodes-file",
        description="Write the chemistry and trial items of episodes 0..N-1 of seed S as an episodes file "
        "(.npz, the arrays of SPEC §11; docs/formats.md). `evaluate --episodes-file FILE --seed S` then plays "
        "exactly the episodes `evaluate --seed S` plays.",
    )
    p.add_argument("--episodes", type=int, required=True, help="number of episodes N")
    p.add_argument("--seed", type=int, default=0, help="global seed of the episodes (as evaluate's --seed)")
    p.add_argument("--out", required=True, help="output episodes file (.npz)")
    p.set_defaults(func=cmd_episodes)


def cmd_episodes(args: argparse.Namespace) -> int:
    from alchemy_mbrl.evaluate import write_seed_episodes
    from alchemy_mbrl.io import command_outputs

    with command_outputs(outputs=[args.out]):
        out = write_seed_episodes(args.out, args.episodes, seed=args.seed)
    print(f"{args.episodes} episodes of seed {args.seed} -> {out}")
    return 0
