"""``run_info.json``: the scale of a workflow run as data, written once per config and read by the
tables, the plots and the report (nothing parses a scale back out of a caption).

Keys: ``name``, ``description``, ``train_steps``, ``batch_size``, ``episodes`` (``learned``,
``reference``, ``baselines``, ``ideal_observer``, ``search_oracle``), ``tuned_params`` (whether an HPO
chose the planner's parameters), ``planner`` (the workflow config's ``planner`` mapping: the readings of
Algorithm 1 and the reward scale every planner row played with, ``{}`` = the package's defaults; absent
from files written before it existed), ``commit`` (the checkout's git commit, or null) and ``scale`` (the
one line that starts every caption and plot title, made from the others).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

EPISODE_KEYS = ("learned", "reference", "baselines", "ideal_observer", "search_oracle")


def scale_line(info: dict[str, Any]) -> str:
    """One line naming the config and its key numbers."""
    e = info["episodes"]
    planner = f"planner rows: learned model {e['learned']:,} episodes"
    if e.get("reference"):
        planner += f", perfect models {e['reference']:,} episodes"
    parts = [f"{info['name']} scale: {info['description']}",
             f"training {info['train_steps']:,} steps x {info['batch_size']} episodes", planner]
    if not info["tuned_params"]:
        parts.append("planner parameters: Table 4 (no HPO)")
    if info.get("planner"):
        parts.append("planner readings: " + ", ".join(f"{k}={v}" for k, v in sorted(info["planner"].items())))
    seeds = {row: len(s) for row, s in (info.get("train_seeds") or {}).items() if len(s) > 1}
    if seeds:
        parts.append("training seeds: " + ", ".join(f"{row} {n}" for row, n in seeds.items()))
    if info.get("controls"):
        parts.append("controls: " + ", ".join(sorted(info["controls"])))
    parts.append(f"baselines {e['baselines']:,} episodes")
    parts.append(f"ideal observer {e['ideal_observer']:,}, search oracle {e['search_oracle']:,} episodes")
    return "; ".join(parts)


def checkout_commit() -> str | None:
    """The git commit of the checkout this package runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def make_run_info(name: str, description: str, train_steps: int, batch_size: int, episodes: dict[str, int],
                  tuned_params: bool, planner: dict[str, Any] | None = None,
                  train_seeds: dict[str, list[int]] | None = None,
                  controls: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a run (module docstring), with this checkout's commit and the scale line. ``planner``:
    the settings of the workflow config's ``planner`` mapping (``None`` or ``{}``: the package's defaults)."""
    missing = [k for k in EPISODE_KEYS if k not in episodes]
    if missing:
        raise ValueError(f"run-info: episodes of {', '.join(missing)} missing")
    for key, value in (("train_steps", train_steps), ("batch_size", batch_size), *episodes.items()):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"run-info: {key} must be an integer >= 0, got {value!r}")
    info: dict[str, Any] = {"name": name, "description": description, "train_steps": train_steps,
                            "batch_size": batch_size, "episodes": {k: episodes[k] for k in EPISODE_KEYS},
                            "tuned_params": bool(tuned_params), "planner": dict(sorted((planner or {}).items())),
                            "train_seeds": {k: list(v) for k, v in (train_seeds or {}).items()},
                            "controls": dict(controls or {}), "commit": checkout_commit()}
    info["scale"] = scale_line(info)
    return info


def read_run_info(path: str | Path) -> dict[str, Any]:
    """Read a ``run_info.json`` (``ValueError`` naming the file and the key when it is not one)."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a run_info.json ({exc})") from None
    for key in ("name", "description", "train_steps", "batch_size", "episodes", "tuned_params", "scale"):
        if not isinstance(info, dict) or key not in info:
            raise ValueError(f"{path}: run_info.json without {key!r}")
    return info
