"""The one command-line entry point: ``alchemy-mbrl <command>``.

Every workflow step is a sub-command. Each module listed in ``COMMAND_MODULES`` defines
``register(subparsers)``, which adds its sub-commands and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code). Modules are imported only
when the CLI starts, so heavy imports (torch) stay inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alchemy_mbrl import __version__

COMMAND_MODULES: list[str] = [
    "alchemy_mbrl.env.commands",
    "alchemy_mbrl.data.commands",
    "alchemy_mbrl.planner.commands",
    "alchemy_mbrl.model.commands",
    "alchemy_mbrl.bayes_commands",
    "alchemy_mbrl.hpo_commands",
    "alchemy_mbrl.report.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alchemy-mbrl",
        description="Transformers and tree search on symbolic Alchemy (Pinon et al., 2022).",
    )
    parser.add_argument("--version", action="version", version=f"alchemy-mbrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:  # clear message, no traceback, for bad input
        print(f"alchemy-mbrl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
