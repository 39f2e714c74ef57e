"""The import rule of docs/architecture.md, checked by parsing every module's imports (``ast``).

A module may import only from its own room, from rooms on floors to its left in the data flow
(env -> data -> model | bayes -> planner -> simulators | ideal_observer -> evaluate -> hpo | gpu_check
-> report | workflow_config), or from the leaves (rng, io, stats, the package's ``__init__``); ``cli``
imports everything and is imported by nothing. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "alchemy_mbrl"

#: Floor of each room (a top-level module or sub-package of alchemy_mbrl).
FLOORS: dict[str, int] = {
    "env": 0, "data": 1, "model": 2, "bayes": 2, "planner": 3, "simulators": 4, "ideal_observer": 4,
    "evaluate": 5, "hpo": 6, "gpu_check": 6, "report": 7, "workflow_config": 7, "cli": 99,
}
LEAVES = {"rng", "io", "stats", "__init__"}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, int, str]]:
    """(importing room, imported room, line) for every import of the package inside it."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        here = _room(".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "alchemy_mbrl":
                    # a sub-module, or a name of the package's __init__ (e.g. __version__)
                    targets = [f"alchemy_mbrl.{a.name}" if a.name in FLOORS or a.name in LEAVES else "alchemy_mbrl"
                               for a in node.names]
                elif node.module.startswith("alchemy_mbrl."):
                    targets = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                raise AssertionError(f"{path}:{node.lineno}: relative import (the rule is checked on absolute ones)")
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("alchemy_mbrl.")]
            out += [(here, _room(t), node.lineno, str(path.relative_to(PACKAGE))) for t in targets]
    return out


def test_every_room_has_a_floor() -> None:
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert rooms - LEAVES == set(FLOORS), "add the new room to FLOORS here and to docs/architecture.md"


def test_imports_follow_the_data_flow() -> None:
    bad = []
    for here, there, line, path in _imports():
        if there == here or there in LEAVES or here == "cli":
            continue
        if here in LEAVES:
            bad.append(f"{path}:{line}: leaf {here} imports {there}")
        elif there == "cli" or FLOORS[there] >= FLOORS[here]:
            bad.append(f"{path}:{line}: {here} (floor {FLOORS[here]}) imports {there} (floor {FLOORS.get(there)})")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_the_parser_sees_imports_inside_functions() -> None:
    """evaluate.make_policy imports the ideal observer's agents inside the function: it is seen."""
    assert ("evaluate", "ideal_observer") in {(here, there) for here, there, _, _ in _imports()}
