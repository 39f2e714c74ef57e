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

Comparisons
-----------
Rows that share their items (the same evaluation episodes, the same validation episodes, the same
training seeds) are compared by :func:`paired_difference` (aligned samples) or :func:`paired_on_keys`
(samples keyed by episode or seed, compared on the keys both have), whose s.e. is that of the
per-item differences; :func:`across_seeds` is the mean ± s.e. over training seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RETURN_UNIT = "return per episode"
#: Columns of ``model-eval --episodes-out``: the validation episode's index (its position in the manifest's
#: validation shards, the same for every model of a run) and its entropy and trial-start part, nats per step.
EPISODE_ENTROPY_COLUMNS = ("episode", "entropy_nats_per_step", "trial_start_nats_per_step")
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


def paired_on_keys(x: Any, y: Any) -> MeanSem:
    """Paired difference ``x - y`` over the keys both samples have: ``x`` and ``y`` map a key (an episode's
    ``(seed, episode)``, a validation episode's index, a training seed) to a value (a ``pandas.Series``
    indexed by the keys, or a mapping). ``n`` is the number of shared keys: 0 (mean NaN) when none is
    shared, so that a caller can tell a paired comparison from none. A key given twice is refused."""
    import pandas as pd

    a, b = (v if isinstance(v, pd.Series) else pd.Series(dict(v), dtype="float64") for v in (x, y))
    for name, s in (("first", a), ("second", b)):
        if s.index.has_duplicates:
            dup = s.index[s.index.duplicated()][0]
            raise ValueError(f"a paired difference needs each key once; the {name} sample has {dup!r} twice")
    shared = a.index.intersection(b.index, sort=False)
    return paired_difference(a.loc[shared].to_numpy(dtype=float), b.loc[shared].to_numpy(dtype=float))


def across_seeds(per_seed: Any) -> MeanSem:
    """Mean ± standard error over training seeds of a per-seed number (a mapping ``seed -> value``, e.g.
    each seed's validation entropy): ``n`` is the number of seeds, and the s.e. is the spread between
    independently trained models (the per-episode s.e. of one model says nothing about it)."""
    return mean_sem(list(dict(per_seed).values()))


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


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number strict JSON allows")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path`` (a regular file of at most 64 MiB; no NaN/Infinity, which strict JSON
    has not); ``ValueError``/``FileNotFoundError`` naming the file otherwise."""
    from alchemy_mbrl.io import read_text

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    text = read_text(path, "JSON file", 64 * 2**20)
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return obj


def _count(path: Any, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{path}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _real(path: Any, key: str, value: Any, *, nonnegative: bool = False, nullable: bool = False) -> float:
    """A finite number (``null`` -> NaN where ``nullable``), >= 0 where ``nonnegative``."""
    if value is None and nullable:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: '{key}' must be a finite number{' or null' if nullable else ''}, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{path}: '{key}' must be >= 0 (it cannot be negative), got {value!r}")
    return float(value)


def read_summary(path: str | Path) -> dict[str, Any]:
    """A ``merge-returns`` summary JSON: needs ``mean``, ``sem`` and ``n``; ``sem`` null -> NaN.

    Numbers that cannot be true are refused, naming the file and the key: a non-finite mean, a
    negative or non-finite standard error or s.d., a count that is not an integer >= 0, a standard
    error without two episodes."""
    s = read_json_object(path)
    for key in ("mean", "sem", "n"):
        if key not in s:
            raise ValueError(f"{path}: returns summary lacks '{key}' (see docs/formats.md)")
    s["n"] = _count(path, "n", s["n"], 0)
    s["mean"] = _real(path, "mean", s["mean"], nullable=s["n"] == 0)
    s["sem"] = _real(path, "sem", s["sem"], nonnegative=True, nullable=True)
    if "std" in s:
        s["std"] = _real(path, "std", s["std"], nonnegative=True, nullable=True)
    if s["n"] < 2 and not math.isnan(s["sem"]):
        raise ValueError(f"{path}: 'sem' is {s['sem']} with n = {s['n']} (a standard error needs two episodes)")
    return s


def read_entropy_record(path: str | Path) -> dict[str, Any]:
    """A ``model-eval``/``bayes-entropy`` JSON (:func:`entropy_record`), its numbers checked: entropies
    are finite and >= 0 (a cross-entropy of discrete outcomes cannot be negative), the standard error
    >= 0 or null, ``n_episodes`` an integer >= 1. ``ValueError`` naming the file and the key."""
    e = read_json_object(path)
    for key in ("entropy_nats_per_step", "chemistry_nats_per_step"):
        if key not in e:
            raise ValueError(f"{path}: model evaluation lacks '{key}' (see docs/formats.md)")
    for key in ("entropy_nats_per_step", "chemistry_nats_per_step", "trial_start_nats_per_step",
                "trial_start_floor_nats_per_step", "entropy_sem"):
        if key in e:
            e[key] = _real(path, key, e[key], nonnegative=True, nullable=key != "entropy_nats_per_step"
                           and key != "chemistry_nats_per_step")
    for key in ("n_episodes", "n_transitions"):
        if key in e:
            e[key] = _count(path, key, e[key], 1)
    return e


#: Column rules of :func:`read_checked_csv`: (what the column must hold, may it be empty, check).
_CSV_RULES: dict[str, tuple[str, bool, Any]] = {
    "count": ("integers >= 0", False, lambda x: (x >= 0) & (x == np.round(x))),
    "count?": ("empty or integers >= 0", True, lambda x: (x >= 0) & (x == np.round(x))),
    "positive-count?": ("empty or integers >= 1", True, lambda x: (x >= 1) & (x == np.round(x))),
    "real": ("finite numbers", False, lambda x: np.isfinite(x)),
    "real?": ("empty or finite numbers", True, lambda x: np.isfinite(x)),
    "nonneg?": ("empty or finite numbers >= 0", True, lambda x: np.isfinite(x) & (x >= 0)),
}


def read_checked_csv(path: str | Path, what: str, rules: dict[str, str]) -> Any:
    """A CSV that ``report`` reads (a table, a training log, an HPO history) as a DataFrame, each column
    of ``rules`` present and holding what its rule says (:data:`_CSV_RULES`: counts are integers,
    standard errors and entropies are >= 0, numbers are finite). ``ValueError`` naming the file, the
    column and the first bad row."""
    import pandas as pd

    from alchemy_mbrl.io import check_input

    check_input(path, what, max_bytes=1 << 30)
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a {what} CSV ({' '.join(str(exc).split())[:200]})") from None
    for col, rule in rules.items():
        if col not in df.columns:
            raise ValueError(f"{path}: {what} lacks column '{col}' (see docs/formats.md)")
        text, may_be_empty, ok = _CSV_RULES[rule]
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        # empty: no value or NaN (how pandas and the csv module write a missing number)
        empty = raw.isna().to_numpy() | (raw.astype(str).str.strip().str.lower() == "nan").to_numpy()
        with np.errstate(invalid="ignore"):
            good = ok(num) | (empty & may_be_empty)
        bad_rows = np.flatnonzero(~good)
        if bad_rows.size:
            r = int(bad_rows[0])
            raise ValueError(f"{path}: column '{col}' of the {what} must hold {text}; row {r + 1} has {str(raw.iloc[r])!r}")
    return df


def read_episode_entropies(path: str | Path) -> Any:
    """The per-episode entropies of a ``model-eval --episodes-out`` CSV, indexed by validation episode
    (``ValueError`` naming the file when a column is missing, an entropy negative or an episode repeated)."""
    df = read_checked_csv(path, "per-episode entropy", {"episode": "count", "entropy_nats_per_step": "nonneg?"})
    if df["entropy_nats_per_step"].isna().any():
        raise ValueError(f"{path}: column 'entropy_nats_per_step' has an empty value")
    if df["episode"].duplicated().any():
        raise ValueError(f"{path}: episode {int(df['episode'][df['episode'].duplicated()].iloc[0])} appears twice")
    return df.set_index(df["episode"].astype("int64"))["entropy_nats_per_step"].astype("float64")


def check_returns(df: Any, path: str | Path) -> None:
    """The per-episode returns of a returns CSV (``evaluate``'s output, ``merge-returns``' input) hold
    only numbers that can be true: ``episode`` integers >= 0, finite ``return``s, ``budget`` empty or an
    integer >= 1, ``seconds`` empty or finite >= 0. ``ValueError`` naming the file, the column and a row."""
    import pandas as pd

    def bad(col: str, mask: Any, what: str) -> None:
        rows = np.flatnonzero(np.asarray(mask))
        if rows.size:
            raise ValueError(f"{path}: column '{col}' must hold {what}; row {int(rows[0]) + 1} has "
                             f"{df[col].iloc[int(rows[0])]!r}")

    ep = pd.to_numeric(df["episode"], errors="coerce")
    bad("episode", ep.isna() | (ep < 0) | (ep != ep.round()) | (ep >= 2**53), "integers >= 0")
    ret = pd.to_numeric(df["return"], errors="coerce")
    bad("return", ~np.isfinite(ret.to_numpy(dtype=float, na_value=np.nan)), "finite numbers")
    for col, what, minimum, integer in (("budget", "empty or integers >= 1", 1, True),
                                        ("seconds", "empty or finite numbers >= 0", 0, False)):
        if col not in df.columns:
            continue
        text = df[col].astype(str).str.strip()
        given = ~text.isin(["", "nan", "<NA>"])
        num = pd.to_numeric(df[col].where(given), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        invalid = given.to_numpy() & (~np.isfinite(num) | (num < minimum) | ((num != np.round(num)) if integer else False))
        bad(col, invalid, what)


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
