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

Temporary files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (``mkstemp``) and renamed onto
the destination, so a symbolic link planted at an output path is replaced, never written through;
lock files are opened with ``O_NOFOLLOW``. The module also owns the checks a command runs on its
paths before any work (:func:`check_paths`, :func:`command_outputs`: inputs are regular files, no
output replaces an input, outputs can be written, and what a failed command created is removed) and
the bounded reading of input files (:func:`read_text`, :func:`read_yaml`). ``docs/bad-input.md``
lists the guarantees.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text", "write_json", "write_csv", "live_temporary_files", "exclusive_lock",
           "LockHeldError", "check_input", "read_bytes", "read_text", "check_paths", "command_outputs",
           "DEFAULT_MAX_INPUT_BYTES", "read_yaml", "value_errors"]

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
    if dest.exists() and not dest.is_symlink() and not dest.is_file():
        raise ValueError(f"{dest}: exists and is not a regular file (a FIFO, socket or device); "
                         "an output must be a file path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _install_sigterm_handler()
    # mkstemp opens with O_CREAT | O_EXCL | O_NOFOLLOW: never an existing file, never through a link
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    finally:
        os.close(fd)
    tmp = Path(name)
    with _LOCK:
        _LIVE.add(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException as exc:
        full = _is_disk_full(exc, dest)  # before the unlink frees the space
        with contextlib.suppress(OSError):
            tmp.unlink()
        if full:
            full = OSError(f"no space left on device: {dest}")
            full.errno = errno.ENOSPC
            raise full from exc
        raise
    finally:
        with _LOCK:
            _LIVE.discard(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_disk_full(exc: BaseException, dest: Path) -> bool:
    """Whether ``exc`` is a failed write to a full file system (``ENOSPC``).

    Writers that are not Python's own (torch's zip writer, HDF5) report a full disk as a
    ``RuntimeError`` whose text may carry the errno (HDF5) or not (torch: "unexpected pos",
    "iostream error"); those are recognised by that text, or by the file system having less
    than 1 MiB free when the write failed.
    """
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    if "No space left on device" in text or "errno = 28" in text:
        return True
    try:
        st = os.statvfs(dest.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)  # under 1 MiB free: the write ran out of space


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
    try:
        # O_NOFOLLOW: a symlink planted at the lock's path is refused, never followed (it could point
        # at a file of the user's, which the PID written below would replace)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{lock}: lock file is a symbolic link; remove it and re-run") from None
        raise OSError(exc.errno, f"{lock}: cannot create the lock file ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{lock}: lock file is not a regular file; remove it and re-run")
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


# --- inputs and outputs of a command: checked before any work -------------------------------------------

#: Largest input file read whole into memory (JSON, YAML, CSV, parameter files): 256 MiB unless a caller
#: says otherwise (``$ALCHEMY_MAX_INPUT_BYTES`` overrides it).
DEFAULT_MAX_INPUT_BYTES = 256 * 2**20


def _max_bytes(max_bytes: int | None) -> int | None:
    env = os.environ.get("ALCHEMY_MAX_INPUT_BYTES", "").strip()
    if env.isdigit():
        return int(env)
    return max_bytes


def check_input(path: str | os.PathLike[str], what: str = "input", *, directory: bool = False,
                max_bytes: int | None = None) -> Path:
    """``path`` as a ``Path`` if it is an existing regular file (or a directory, with ``directory=True``).

    Refused at once, with a ``ValueError``/``FileNotFoundError`` naming the path: a missing path, a FIFO, a
    socket or a device (reading one would block forever or never end), a directory where a file is expected
    and the reverse, and a file larger than ``max_bytes``. Links are followed (a link to a regular file is
    a regular file); only ``stat`` is called, nothing is opened.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: {what} does not exist") from None
    except OSError as exc:
        raise OSError(exc.errno, f"{p}: {what} cannot be read ({exc.strerror})") from None
    if directory:
        if not stat.S_ISDIR(st.st_mode):
            raise ValueError(f"{p}: {what} must be a directory")
        return p
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{p}: {what} is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ValueError(f"{p}: {what} is {kind}, expected a regular file")
    limit = _max_bytes(max_bytes)
    if limit is not None and st.st_size > limit:
        raise ValueError(f"{p}: {what} is {st.st_size:,} bytes, more than the {limit:,} this input may have")
    return p


def read_bytes(path: str | os.PathLike[str], what: str = "input", max_bytes: int | None = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (:func:`check_input`), read without blocking."""
    p = check_input(path, what, max_bytes=max_bytes)
    # O_NONBLOCK: a file swapped for a FIFO after the check still cannot block the open
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{p}: {what} is not a regular file")
        limit = _max_bytes(max_bytes)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise ValueError(f"{p}: {what} is more than the {limit:,} bytes this input may have")
        return data
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], what: str = "input", max_bytes: int | None = DEFAULT_MAX_INPUT_BYTES) -> str:
    """UTF-8 text of a regular file (:func:`read_bytes`); ``ValueError`` naming the file if it is not UTF-8."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _resolved(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: through links (realpath) or hard links (samefile)."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(p: Path, directory: Path) -> bool:
    rp, rd = _resolved(p), _resolved(directory)
    return rp == rd or rd in rp.parents


def _check_writable(out: Path, *, directory: bool) -> None:
    """``out`` can be created: not an existing file of the other kind, its nearest existing ancestor a
    writable directory (so a read-only or missing place fails before the work, not after it)."""
    if out.is_symlink() and directory:
        raise ValueError(f"{out}: output directory is a symbolic link; name the directory itself")
    if out.exists():
        if directory and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory (an output directory is expected)")
        if not directory and out.is_dir():
            raise IsADirectoryError(f"{out}: is a directory, expected a file path")
        if not directory and not out.is_symlink() and not out.is_file():
            # a FIFO, socket or device: renaming the output onto it would remove it (e.g. /dev/null)
            raise ValueError(f"{out}: exists and is not a regular file (a FIFO, socket or device); "
                             "an output must be a file path")
    anc = out if (directory and out.is_dir()) else out.parent
    while not anc.exists():
        if anc.is_symlink():  # a dangling link on the way
            raise ValueError(f"{out}: {anc} is a broken symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{out}: cannot be created, {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{out}: cannot write here ({anc} is not writable)")
    try:  # what access() cannot see (root on a read-only export, ACLs, quotas at zero): create a file and remove it
        fd, probe = tempfile.mkstemp(dir=anc, prefix=".alchemy-write-check.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, f"{out}: cannot write here ({anc}: {exc.strerror})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _labelled(items: Iterable[Any], default: str) -> list[tuple[Path, str]]:
    out = []
    for item in items:
        path, what = item if isinstance(item, tuple) else (item, default)
        if path is not None:
            out.append((Path(path), what))
    return out


def check_paths(
    inputs: Iterable[Any] = (),
    outputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    input_dirs: Iterable[str | os.PathLike[str] | None] = (),
    output_dirs: Iterable[str | os.PathLike[str] | None] = (),
    max_bytes: int | None = None,
) -> None:
    """The checks every command runs on its paths before any work (``None`` entries are skipped).

    * every input file is a regular file (:func:`check_input`), every existing input directory a
      directory (a missing one is left to its reader, which says what it should hold); an input may
      be given as ``(path, what)``, and ``what`` names it in the message (e.g. ``"--config file"``);
    * no output file is (through symbolic or hard links) one of the inputs, lies inside an input
      directory, or is named twice; no output directory is an input directory, holds an input or lies
      inside an input directory;
    * every output can be written: its place is a writable directory, it is not a directory where a
      file is written (or the reverse).
    """
    labelled = _labelled(inputs, "input file")
    ins = [p for p, _ in labelled]
    in_dirs = [p for p, _ in _labelled(input_dirs, "")]
    outs = [Path(p) for p in outputs if p is not None]
    out_dirs = [Path(p) for p in output_dirs if p is not None]
    for p, what in labelled:
        check_input(p, what, max_bytes=max_bytes)
    for d in in_dirs:
        if os.path.lexists(d):
            check_input(d, "input directory", directory=True)
    seen: list[Path] = []
    for out in outs:
        for p in ins:
            if _same(out, p):
                raise ValueError(f"{out}: output is the input {p}; write the output elsewhere")
        for d in in_dirs:
            if _inside(out, d):
                raise ValueError(f"{out}: output lies inside the input directory {d}; write it elsewhere")
        for other in seen:
            if _same(out, other):
                raise ValueError(f"{out}: named as two outputs ({other}); give each output its own path")
        seen.append(out)
        _check_writable(out, directory=False)
    for out in out_dirs:
        for d in in_dirs:
            if _inside(out, d) or _inside(d, out):
                raise ValueError(f"{out}: output directory overlaps the input directory {d}; use another directory")
        for p in ins:
            if _inside(p, out):  # the command's files there could replace it
                raise ValueError(f"{out}: output directory holds the input {p}; use another directory")
        _check_writable(out, directory=True)


@contextlib.contextmanager
def command_outputs(
    inputs: Iterable[Any] = (),
    outputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    input_dirs: Iterable[str | os.PathLike[str] | None] = (),
    output_dirs: Iterable[str | os.PathLike[str] | None] = (),
    keep_if: Iterable[str] = (),
    max_bytes: int | None = None,
) -> Iterator[None]:
    """:func:`check_paths` before the block; on failure of the block, remove what it created.

    Removed on any exception (``KeyboardInterrupt`` included): each output file that did not exist
    before, and each output directory that did not exist before, unless it holds one of the files
    named in ``keep_if`` (progress that a re-run resumes, e.g. ``checkpoint.pt``). Parent directories
    the block created for its outputs are removed when they are left empty.
    """
    inputs, outputs, input_dirs, output_dirs = list(inputs), list(outputs), list(input_dirs), list(output_dirs)
    check_paths(inputs, outputs, input_dirs=input_dirs, output_dirs=output_dirs, max_bytes=max_bytes)
    outs = [Path(p) for p in outputs if p is not None]
    dirs = [Path(p) for p in output_dirs if p is not None]
    new_files = [p for p in outs if not os.path.lexists(p)]
    new_dirs = [d for d in dirs if not os.path.lexists(d)]
    created_parents: list[Path] = []
    for p in [*outs, *dirs]:
        anc = p.parent
        while not os.path.lexists(anc):
            created_parents.append(anc)
            anc = anc.parent
    try:
        yield
    except BaseException:
        import shutil

        for p in new_files:
            with contextlib.suppress(OSError):
                if p.is_file() or p.is_symlink():
                    p.unlink()
        for d in new_dirs:
            if d.is_dir() and not d.is_symlink() and not any((d / k).exists() for k in keep_if):
                shutil.rmtree(d, ignore_errors=True)
        for anc in sorted(set(created_parents), key=lambda a: len(a.parts), reverse=True):
            with contextlib.suppress(OSError):
                anc.rmdir()  # only when empty
        raise


# --- YAML: strict, for every config file a command or the workflow reads --------------------------------

def _strict_loader() -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}",
                                                        key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping (line {seen[key] + 1} and "
                    f"line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def value_errors(obj: Any, key: str = "") -> list[str]:
    """Keys (dotted, ``[i]`` for list items) holding a non-finite number (NaN, infinity) or an integer
    outside the signed 64-bit range: no key of this package's configs can take such a value."""
    errors: list[str] = []
    if isinstance(obj, bool):
        return errors
    if isinstance(obj, float) and not math.isfinite(obj):
        errors.append(f"{key or '(top level)'}: {obj} is not a finite number")
    elif isinstance(obj, int) and not -(2**63) <= obj < 2**63:
        errors.append(f"{key or '(top level)'}: {obj} is outside the 64-bit integer range")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            errors += value_errors(v, f"{key}.{k}" if key else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            errors += value_errors(v, f"{key}[{i}]")
    return errors


def read_yaml(path: str | os.PathLike[str], what: str = "config file",
              max_bytes: int | None = 16 * 2**20) -> Any:
    """A YAML file, strictly: a regular file of bounded size (:func:`read_text`), safe tags only, no key
    twice in a mapping, no NaN/infinity and no integer beyond 64 bits. ``ValueError`` naming the file
    (and the key) otherwise."""
    import yaml

    text = read_text(path, what, max_bytes)
    try:
        data = yaml.load(text, Loader=_strict_loader())  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ValueError(f"{path}: YAML nested too deeply") from None
    problems = value_errors(data)
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems[:5])}")
    return data
