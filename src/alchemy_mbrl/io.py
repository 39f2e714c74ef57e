"""The one way this package writes a file: atomically, with nothing left behind on failure.

Every output (CSV, JSON, YAML, HDF5 shards, checkpoints, figures, tables) is written to a
temporary file in the destination's directory and renamed onto the final name only when the
write has finished, so a reader never sees a partial file under the final name. The temporary
file is removed

* on any exception raised inside the ``with`` block (including ``KeyboardInterrupt``, i.e.
  SIGINT, and a full disk);
* on SIGTERM (how Snakemake, SLURM and ``kill`` stop a job): a handler, installed while at
  least one write is in progress, removes every live temporary file and then lets the signal
  take its usual course (the previous handler, or termination with the signal's exit status).

Temporary names are ``.<name>.<random>.tmp`` beside the destination (hidden, unique per
write, never matched by Snakemake's outputs).

    with atomic_write("results/x.csv") as tmp:   # tmp: a Path to write to
        df.to_csv(tmp)
    write_json("results/summary.json", {"mean": 1.0})
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text", "write_json", "write_csv", "live_temporary_files", "exclusive_lock",
           "LockHeldError"]

_LIVE: set[Path] = set()
_LOCK = threading.Lock()
_PREVIOUS_SIGTERM: Any = None
_HANDLER_INSTALLED = False


def live_temporary_files() -> frozenset[Path]:
    """Temporary files of writes in progress in this process (for tests and diagnostics)."""
    with _LOCK:
        return frozenset(_LIVE)


def _remove_live() -> None:
    with _LOCK:
        paths = list(_LIVE)
        _LIVE.clear()
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def _on_sigterm(signum: int, frame: Any) -> None:
    _remove_live()
    previous = _PREVIOUS_SIGTERM
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # Default disposition: die of the signal, as if no handler had been installed.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    """Install the cleaning SIGTERM handler once (main thread only; a no-op elsewhere)."""
    global _PREVIOUS_SIGTERM, _HANDLER_INSTALLED
    if _HANDLER_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
        return
    _PREVIOUS_SIGTERM = previous
    _HANDLER_INSTALLED = True


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Creates the parent directory. Raises ``IsADirectoryError`` (before any work) when ``path``
    is an existing directory. On any exception the temporary file is removed and the exception
    propagates; the destination is left untouched.
    """
    dest = Path(path)
    if dest.is_dir():
        raise IsADirectoryError(f"{dest}: is a directory, expected a file path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _install_sigterm_handler()
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    with _LOCK:
        _LIVE.add(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        with _LOCK:
            _LIVE.discard(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_safe(obj: Any) -> Any:
    """Non-finite floats become ``null`` (strict JSON has no NaN); containers are walked."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (NaN and infinities as ``null``) atomically."""
    write_text(path, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows (dicts keyed by ``columns``) as a CSV with a header, atomically."""
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in columns})


class LockHeldError(OSError):
    """Another live process holds the lock (the message names the locked thing and that process)."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` for the block, or fail at once.

    The lock is ``flock`` on the file, so the kernel releases it when its holder dies, however it
    dies: a lock left by a dead process (after ``kill -9``) is taken over. The file records the
    holder's PID and host, which the ``LockHeldError`` of a second process names together with
    ``what`` (e.g. the model directory). The file is left in place (removing it would race with a
    process that has just opened it); it is not an output.
    """
    import fcntl
    import socket

    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            pid = holder[0] if holder else "?"
            host = holder[1] if len(holder) > 1 else "?"
            raise LockHeldError(
                f"{what} is in use by another process (PID {pid} on {host}; lock file {lock}); "
                "wait for it to finish or stop it, then re-run"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
