"""The one command-line entry point: ``alchemy-mbrl <command>``.

Every workflow step is a sub-command, and every sub-command lives in this package: one module
per command group, each defining ``register(subparsers)`` that adds its sub-commands and sets
``func`` to a ``cmd_<name>(args) -> exit code`` handler. Handlers parse nothing themselves and
validate nothing: they call one library function (which checks its inputs and raises
``ValueError``/``OSError`` with a message naming the culprit), write its result and print.
Modules are imported when the CLI starts, but heavy imports (torch) stay inside the handlers.

Exit codes: 0 success, 1 a check that ran and failed (e.g. a trace mismatch), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alchemy_mbrl import __version__

COMMAND_MODULES: list[str] = [
    "alchemy_mbrl.cli.env",
    "alchemy_mbrl.cli.data",
    "alchemy_mbrl.cli.evaluate",
    "alchemy_mbrl.cli.model",
    "alchemy_mbrl.cli.gpu_check",
    "alchemy_mbrl.cli.bayes",
    "alchemy_mbrl.cli.hpo",
    "alchemy_mbrl.cli.report",
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
