"""Every mean ± standard error of the package: one convention, one formatter, one entropy record.

Convention
----------
The standard error of the mean is ``s / sqrt(n)`` with ``s`` the sample standard deviation
(``ddof = 1``). With fewer than two values it is undefined, and it is **NaN** (never 0, which
would claim a certainty one sample cannot give); JSON files store it as ``null``
(:func:`alchemy_mbrl.io.write_json`) and :func:`read_summary` reads it back as NaN. The mean of
no values is NaN as well.

Formatting
----------
:func:`format_mean_sem` prints ``mean ± s.e. (n=N)``: at least ``digits`` decimals, more when
needed to show the first significant figure of the standard error (``1.2882 ± 0.0004``, not
``1.288 ± 0.000``); a missing standard error prints as ``mean (n=1, no s.e.)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RETURN_UNIT = "return per episode"
ENTROPY_UNIT = "nats per step"


@dataclass(frozen=True)
class MeanSem:
    """Mean, standard error of the mean, number of values and sample s.d. (ddof = 1)."""

    mean: float
    sem: float
    n: int
    std: float

    def __str__(self) -> str:
        return format_mean_sem(self.mean, self.sem, self.n)


def mean_sem(values: Any) -> MeanSem:
    """Mean ± standard error of ``values`` (NaN standard error when there are fewer than two)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    return MeanSem(mean, std / math.sqrt(n) if n > 1 else math.nan, n, std)


def paired_difference(x: Any, y: Any) -> MeanSem:
    """Mean ± standard error of the per-item differences ``x - y`` of two equally long, aligned samples
    (the same episodes or validation items in the same order): the paired comparison, whose standard error
    is that of the differences, not sqrt(s.e.(x)^2 + s.e.(y)^2)."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a paired difference needs samples of equal length, got {a.size} and {b.size}")
    return mean_sem(a - b)


def is_number(x: Any) -> bool:
    """True for a finite-or-infinite real number (not None, pandas NA or NaN)."""
    if x is None:
        return False
    try:
        return not math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def as_float(x: Any) -> float:
    """``float(x)``, with None (JSON ``null``) read as NaN."""
    return math.nan if x is None else float(x)


def format_mean_sem(mean: Any, sem: Any = None, n: Any = None, digits: int = 1, unit: str = "") -> str:
    """``mean ± s.e. (n=N)`` (see the module's docstring); an em dash when there is no mean."""
    if not is_number(mean):
        return "—"
    if is_number(sem) and 0 < float(sem) < 1:
        digits = min(max(digits, -math.floor(math.log10(float(sem)))), 6)
    text = f"{float(mean):.{digits}f}"
    if is_number(sem):
        text += f" ± {float(sem):.{digits}f}"
    if unit:
        text += f" {unit}"
    if is_number(n):
        text += f" (n={int(n):,})" if is_number(sem) or int(n) != 1 else " (n=1, no s.e.)"
    return text


def returns_summary(returns: Any) -> dict[str, Any]:
    """The summary record of per-episode returns: ``mean``, ``sem``, ``n``, ``std``, ``unit``."""
    s = mean_sem(returns)
    return {"mean": s.mean, "sem": s.sem, "n": s.n, "std": s.std, "unit": RETURN_UNIT}


def format_summary(summary: dict[str, Any]) -> str:
    """A returns summary (:func:`returns_summary` or a summary JSON) as ``mean ± s.e. (n=N)``."""
    return format_mean_sem(summary["mean"], summary.get("sem"), summary.get("n"))


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``ValueError``/``FileNotFoundError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return obj


def read_summary(path: str | Path) -> dict[str, Any]:
    """A ``merge-returns`` summary JSON: needs ``mean``, ``sem`` and ``n``; ``sem`` null -> NaN."""
    s = read_json_object(path)
    for key in ("mean", "sem", "n"):
        if key not in s:
            raise ValueError(f"{path}: returns summary lacks '{key}' (see docs/formats.md)")
    try:
        s["mean"], s["sem"], s["n"] = as_float(s["mean"]), as_float(s["sem"]), int(s["n"])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'mean', 'sem' and 'n' must be numbers") from None
    return s


def entropy_record(
    model: str, total_nats: np.ndarray, trial_start_nats: np.ndarray, steps: int, trial_start_floor: float | None = None
) -> dict[str, Any]:
    """The record of ``model-eval`` and ``bayes-entropy`` (docs/formats.md, "Model evaluation").

    ``total_nats [N]`` and ``trial_start_nats [N]`` are per-episode sums of the transition
    cross-entropies (all ``steps`` transitions, and those landing on a trial's first
    observation). The entropy is per step, mean ± s.e. over episodes; the trial-start and
    chemistry parts are both normalised by the total number of transitions, so they add up to it.
    """
    total = np.asarray(total_nats, dtype=np.float64)
    start = np.asarray(trial_start_nats, dtype=np.float64)
    n_ep = int(total.size)
    if n_ep == 0:
        raise ValueError("no episodes to score")
    per_step = mean_sem(total / steps)
    record: dict[str, Any] = {
        "model": model,
        "entropy_nats_per_step": per_step.mean,
        "entropy_sem": per_step.sem,
        "trial_start_nats_per_step": float(start.sum() / (n_ep * steps)),
        "chemistry_nats_per_step": float((total - start).sum() / (n_ep * steps)),
    }
    if trial_start_floor is not None:
        record["trial_start_floor_nats_per_step"] = float(trial_start_floor)
    record.update({"n_transitions": n_ep * steps, "n_episodes": n_ep, "unit": ENTROPY_UNIT})
    return record


def format_entropy(record: dict[str, Any]) -> str:
    """One line: ``entropy: m ± s nats/step (n episodes) | trial-start part | chemistry part``."""
    floor = record.get("trial_start_floor_nats_per_step")
    floor_text = f" (floor {floor:.4f})" if floor is not None else ""
    return (
        f"entropy: {format_mean_sem(record['entropy_nats_per_step'], record.get('entropy_sem'), digits=4)}"
        f" nats/step ({record['n_episodes']} episodes)"
        f" | trial-start part {record['trial_start_nats_per_step']:.4f}{floor_text}"
        f" | chemistry part {record['chemistry_nats_per_step']:.4f}"
    )
