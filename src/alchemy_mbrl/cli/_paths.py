"""The paths each command reads and writes, for :func:`alchemy_mbrl.io.command_outputs` (checked before
any work: inputs are regular files, no output replaces an input, outputs can be written)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def manifest_inputs(manifest: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """A dataset manifest and the shards it lists, as ``(path, what)`` (best effort: a bad manifest is
    left to its reader, which names the problem)."""
    if manifest is None:
        return []
    m = Path(manifest)
    out = [(m, "manifest")]
    try:
        if m.is_file() and m.stat().st_size < 64 * 2**20:
            for e in json.loads(m.read_text(encoding="utf-8"))["shards"]:
                p = m.parent / str(e["path"])
                if p.exists():
                    out.append((p, f"shard of {m}"))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def spec_paths(specs: list[str] | None) -> list[str]:
    """The file paths of ``NAME=PATH`` report arguments (a spec without ``=`` is left to its parser)."""
    return [s.split("=", 1)[1] for s in specs or [] if "=" in s]


def prefixed(prefix: str | os.PathLike[str], suffixes: tuple[str, ...]) -> list[str]:
    """The files a ``--out PREFIX`` writes."""
    return [f"{prefix}{s}" for s in suffixes]
