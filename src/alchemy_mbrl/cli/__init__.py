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
import os
import sys

from alchemy_mbrl import __version__

COMMAND_MODULES: list[str] = [
    "alchemy_mbrl.cli.env",
    "alchemy_mbrl.cli.data",
    "alchemy_mbrl.cli.evaluate",
    "alchemy_mbrl.cli.episodes",
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


def default_threads() -> int:
    """Intra-op threads per process: ``$ALCHEMY_THREADS``, else ``$OMP_NUM_THREADS``, else 1.

    One thread per process is the default because PyTorch's own default (one per core) collapses
    10-20x when other jobs load the machine (issue 14); run chunks as parallel processes instead.
    """
    for var in ("ALCHEMY_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _limit_threads() -> None:
    n = default_threads()
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch / OpenMP when first imported
    if "torch" in sys.modules:  # already imported (e.g. in-process callers): set it directly
        sys.modules["torch"].set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    _limit_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line (the outputs it created are already removed), no traceback
        print(f"alchemy-mbrl {args.command}: error: interrupted (Ctrl-C); the outputs it had begun are removed", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:  # clear message, no traceback, for bad input
        print(f"alchemy-mbrl {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001
        # an input this package did not foresee: still one line naming the inputs, never a traceback
        # ($ALCHEMY_TRACEBACK=1 re-raises it, for a bug report)
        if os.environ.get("ALCHEMY_TRACEBACK"):
            raise
        files = " ".join(str(p) for p in _input_paths(args))
        print(f"alchemy-mbrl {args.command}: error: unexpected {type(exc).__name__} ({_one_line(exc)}) while "
              f"reading {files or 'the arguments'}; set ALCHEMY_TRACEBACK=1 for the traceback", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split("\n")[:1]) if len(text.splitlines()) > 1 else text


def _input_paths(args: argparse.Namespace) -> list[str]:
    """The arguments of a command that name existing files (for a message about an unforeseen error)."""
    found: list[str] = []
    for key, value in sorted(vars(args).items()):
        if key in ("func", "out", "out_dir", "summary", "history", "json", "state_out"):
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (str, os.PathLike)):
                text = str(v).split("=", 1)[-1]
                if os.path.exists(text):
                    found.append(text)
    return found
