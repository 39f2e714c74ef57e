"""Episodes files: the chemistry and trial items of N episodes, in the arrays of SPEC §11.

An episode of the environment is fully determined by its chemistry and the items of its 10
trials (the policy supplies the rest), so a fixed evaluation set is a file of those arrays:

| array | shape | dtype (as written) | meaning |
| --- | --- | --- | --- |
| ``potion_perm`` | [N, 3] | int8 | ``pi`` (SPEC §2.1) |
| ``potion_sign`` | [N, 3] | int8 | ``sigma``, indexed by latent axis, ±1 |
| ``stone_sign`` | [N, 3] | int8 | ``tau``, ±1 |
| ``graph_edges`` | [N, 12] | bool | edge e present (edge order of SPEC §1.2); one of the 109 valid graphs |
| ``stones`` | [N, 10, 3, 3] | int8 | latent coordinates (±1) of stone slot s at the start of trial k |
| ``potions`` | [N, 10, 12] | int8 | latent potion index 0..5 in potion slot p of trial k |

:func:`save_episodes` also writes ``graph_id`` ([N] int16, redundant with ``graph_edges``) and
``format_version`` (int32 scalar, 1), so a file holds exactly the episode part of a reference trace
file (SPEC §11) and every trace file is an episodes file. :func:`load_episodes` reads the six
arrays, checks ``graph_id`` and ``format_version`` when present, and ignores every other array.
Row i of a file is episode i of an evaluation on it (``evaluate --episodes-file``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alchemy_mbrl.env.alchemy import TrialItems
from alchemy_mbrl.env.chemistry import GRAPH_EDGES, VERTEX_COORDS, Chemistry, graph_id_of_edges, graph_key
from alchemy_mbrl.env.constants import NUM_POTIONS, NUM_STONES, NUM_TRIALS
from alchemy_mbrl.io import atomic_write

#: SPEC §11's ``format_version``: the trace format, of which an episodes file is the episode part.
FORMAT_VERSION = 1

#: The arrays an episodes file must hold: name -> (shape after N, dtype written, description).
EPISODE_ARRAYS: dict[str, tuple[tuple[int, ...], str, str]] = {
    "potion_perm": ((3,), "int8", "a permutation of (0, 1, 2)"),
    "potion_sign": ((3,), "int8", "-1 or +1"),
    "stone_sign": ((3,), "int8", "-1 or +1"),
    "graph_edges": ((12,), "bool", "one of the 109 valid edge sets"),
    "stones": ((NUM_TRIALS, NUM_STONES, 3), "int8", "latent coordinates -1 or +1"),
    "potions": ((NUM_TRIALS, NUM_POTIONS), "int8", "latent potion indices 0..5"),
}


def _first(bad: np.ndarray) -> tuple[int, ...]:
    """Index of the first True of ``bad`` (row-major)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))


def _where(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]"


def episodes_from_arrays(arrays: Mapping[str, Any], source: str = "episodes") -> tuple[Chemistry, TrialItems]:
    """The chemistry and trial items of the episodes held in SPEC §11 arrays, checked first.

    ``arrays`` maps names to arrays (e.g. a loaded trace file); only the six episode arrays, and
    ``graph_id`` and ``format_version`` when present, are read. Raises ``ValueError`` starting with
    ``source`` (the file) and naming the array and the first bad index: a missing array, a dtype
    that is not integer (bool or integer for ``graph_edges``), a wrong shape, arrays with different
    numbers of episodes, no episode, or a value out of range.
    """
    missing = [k for k in EPISODE_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"{source}: missing array(s) {', '.join(map(repr, missing))} (an episodes file holds "
                         f"{', '.join(EPISODE_ARRAYS)}: SPEC §11)")
    d = {k: np.asarray(arrays[k]) for k in EPISODE_ARRAYS}
    for name, (tail, dtype, _) in EPISODE_ARRAYS.items():
        a = d[name]
        ok = np.issubdtype(a.dtype, np.integer) or (name == "graph_edges" and a.dtype == bool)
        if not ok:
            raise ValueError(f"{source}: array '{name}' has dtype {a.dtype}, expected "
                             f"{'bool' if dtype == 'bool' else 'integers'} (SPEC §11: {dtype})")
        if a.ndim != 1 + len(tail) or a.shape[1:] != tail:
            raise ValueError(f"{source}: array '{name}' has shape {list(a.shape)}, expected "
                             f"[N, {', '.join(map(str, tail))}] (SPEC §11)")
    sizes = {k: len(a) for k, a in d.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{source}: arrays hold different numbers of episodes: "
                         f"{', '.join(f'{k} {n}' for k, n in sizes.items())}")
    n = sizes["potion_perm"]
    if n == 0:
        raise ValueError(f"{source}: holds no episode (N = 0)")

    perm = d["potion_perm"]
    bad = (np.sort(perm, axis=1) != np.arange(3)).any(axis=1)
    if bad.any():
        e = int(np.argmax(bad))
        raise ValueError(f"{source}: potion_perm[{e}] = {perm[e].tolist()} is not a permutation of (0, 1, 2)")
    for name in ("potion_sign", "stone_sign", "stones"):
        bad = (d[name] != -1) & (d[name] != 1)
        if bad.any():
            i = _first(bad)
            raise ValueError(f"{source}: {_where(name, i)} = {d[name][i].item()}, expected "
                             f"{EPISODE_ARRAYS[name][2]} (episode {i[0]})")
    pot = d["potions"]
    bad = (pot < 0) | (pot > 5)
    if bad.any():
        i = _first(bad)
        raise ValueError(f"{source}: {_where('potions', i)} = {pot[i].item()}, expected latent potion indices 0..5 "
                         f"(episode {i[0]})")
    edges = d["graph_edges"]
    bad = (edges != 0) & (edges != 1)
    if bad.any():
        i = _first(bad)
        raise ValueError(f"{source}: {_where('graph_edges', i)} = {edges[i].item()}, expected 0/1 or bool "
                         f"(episode {i[0]})")
    graph_id = graph_id_of_edges(edges, strict=False)
    bad = graph_id < 0
    if bad.any():
        e = int(np.argmax(bad))
        raise ValueError(f"{source}: graph_edges[{e}] = edge set {graph_key(edges[e])} is not one of the 109 valid "
                         "graphs (SPEC §2.3, Appendix A)")
    if "graph_id" in arrays:
        gid = np.asarray(arrays["graph_id"])
        if gid.shape != (n,) or not np.issubdtype(gid.dtype, np.integer):
            raise ValueError(f"{source}: array 'graph_id' has shape {list(gid.shape)} and dtype {gid.dtype}, "
                             f"expected [{n}] integers (SPEC §11: int16)")
        bad = gid != graph_id
        if bad.any():
            e = int(np.argmax(bad))
            raise ValueError(f"{source}: graph_id[{e}] = {gid[e].item()} but graph_edges[{e}] is graph "
                             f"{int(graph_id[e])}")
    if "format_version" in arrays:
        v = np.asarray(arrays["format_version"])
        if v.shape != () or not np.issubdtype(v.dtype, np.integer) or int(v) != FORMAT_VERSION:
            raise ValueError(f"{source}: format_version is {v.tolist()!r}, expected {FORMAT_VERSION} (SPEC §11)")
    chemistry = Chemistry(perm, d["potion_sign"], d["stone_sign"], graph_id)
    return chemistry, TrialItems.from_coordinates(d["stones"], pot)


def load_episodes(path: str | Path) -> tuple[Chemistry, TrialItems]:
    """Read and check an episodes file (or a SPEC §11 trace file): ``(chemistry, items)`` of its N episodes.

    Raises ``FileNotFoundError`` or ``ValueError`` naming the file (and the array and the first bad
    index, see :func:`episodes_from_arrays`) before returning anything.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: episodes file does not exist")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, expected an episodes file (.npz)")
    wanted = (*EPISODE_ARRAYS, "graph_id", "format_version")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the episodes file: {exc.strerror or exc}") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # every .npz is a zip archive
        raise ValueError(f"{p}: not an .npz episodes file (not a zip archive; expected the arrays of SPEC §11 "
                         "as written by numpy.savez)")
    try:
        f = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (np.load raises anything from ValueError to BadZipFile)
        raise ValueError(f"{p}: not an .npz episodes file ({type(exc).__name__}: {exc})") from None
    try:
        with f:
            arrays = {k: f[k] for k in wanted if k in f.files}
    except Exception as exc:  # noqa: BLE001  (a corrupt member, an object array, ...)
        raise ValueError(f"{p}: not a readable .npz episodes file ({type(exc).__name__}: {exc})") from None
    return episodes_from_arrays(arrays, str(p))


def episode_arrays(chemistry: Chemistry, items: TrialItems) -> dict[str, np.ndarray]:
    """The arrays of an episodes file (SPEC §11 dtypes and shapes) for ``chemistry`` and ``items``."""
    if not isinstance(chemistry, Chemistry) or not isinstance(items, TrialItems):
        raise ValueError(f"expected a Chemistry and TrialItems, got {type(chemistry).__name__} and "
                         f"{type(items).__name__}")
    n = len(chemistry.graph_id)
    if len(items.stones) != n:
        raise ValueError(f"chemistry holds {n} episodes but items hold {len(items.stones)}")
    if n == 0:
        raise ValueError("no episode to save (N = 0)")
    return {
        "potion_perm": chemistry.potion_perm.astype(np.int8),
        "potion_sign": chemistry.potion_sign.astype(np.int8),
        "stone_sign": chemistry.stone_sign.astype(np.int8),
        "graph_edges": GRAPH_EDGES[chemistry.graph_id.astype(np.int64)].astype(bool),
        "graph_id": chemistry.graph_id.astype(np.int16),
        "stones": VERTEX_COORDS[items.stones.astype(np.int64)].astype(np.int8),
        "potions": items.potions.astype(np.int8),
        "format_version": np.int32(FORMAT_VERSION),
    }


def save_episodes(path: str | Path, chemistry: Chemistry, items: TrialItems) -> Path:
    """Write an episodes file (``np.savez_compressed``) atomically; returns its path.

    Written through :func:`alchemy_mbrl.io.atomic_write` into an open file, so the name is exactly
    ``path`` (``savez`` would append ``.npz`` to a bare temporary name).
    """
    arrays = episode_arrays(chemistry, items)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)
