"""Bayesian optimisation of the tree-search hyperparameters (paper, Appendix A / Table 4).

The paper tunes the temperature ``T``, the exploration constants ``C1`` and ``C2`` and the
stochastic branching factor ``K`` with scikit-optimize (Head et al., 2020) at 1,250
expansions per step. Here the optimisation runs as a fixed number of *rounds* so that it
fits a static workflow DAG:

1. ``ask``: load the optimizer state of the previous round (or build a fresh one), ask for
   ``P`` points at once with the constant-liar strategy (``cl_min``) and write one planner
   parameter file per point (the ``--params`` format of ``docs/formats.md``);
2. each point is evaluated by its own ``evaluate`` job on its own episodes;
3. ``tell``: give the optimizer the negated mean returns (skopt minimises) and save the state.

Every round leaves a state file behind, so an interrupted optimisation resumes from the last
finished round, and the whole procedure is a pure function of the seed and the scores.

The state file is JSON, not a pickle (a pickle runs code when loaded): the search space, the
optimizer's options and seed, and every round's asked points and told objectives. Loading it
rebuilds the optimizer by replaying the rounds (ask, then tell) from the seed, which reproduces the
original optimizer exactly; the last round is asked again, and a replay that does not give the stored
points (an edited file, or another scikit-optimize) is refused. The workflow keeps the names ``asked.pkl``/``state.pkl``.
The surrogate is a Gaussian process (``base_estimator="GP"``); the objective is
``-mean return``, so the optimiser maximises the score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alchemy_mbrl import stats
from alchemy_mbrl.io import write_json

#: Hyperparameters searched, in the order of the optimizer's dimensions.
PARAM_NAMES: tuple[str, ...] = ("temperature", "c1", "c2", "k")
STATE_VERSION = 2
STATE_FORMAT = "alchemy-mbrl hpo state"
#: A state file is small (a few kB per round); a larger one is refused before it is read.
MAX_STATE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the search (inclusive); ``k`` is an integer, the others are reals.

    ``log_scale`` lists the real parameters searched on a log scale (``log-uniform`` prior).
    ``gamma`` is fixed (not optimised) and copied into every parameter file.
    """

    temperature: tuple[float, float]
    c1: tuple[float, float]
    c2: tuple[float, float]
    k: tuple[int, int]
    gamma: float = 0.99
    log_scale: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"hpo search space: {name} needs finite bounds, got [{lo}, {hi}]")
            if name in ("temperature", "c1") and lo < 0:
                raise ValueError(f"hpo search space: {name} needs low >= 0 (the planner rejects a negative {name}), got {lo}")
            if name == "c2" and lo <= 0:
                raise ValueError(f"hpo search space: c2 needs low > 0 (the planner rejects c2 <= 0), got {lo}")
            if not lo < hi:
                raise ValueError(f"hpo search space: {name} needs low < high, got [{lo}, {hi}]")
            if name != "k" and lo <= 0 and name in self.log_scale:
                raise ValueError(f"hpo search space: {name} on a log scale needs low > 0, got {lo}")
        if int(self.k[0]) != self.k[0] or int(self.k[1]) != self.k[1] or self.k[0] < 1:
            raise ValueError(f"hpo search space: k needs integer bounds >= 1, got {list(self.k)}")
        unknown = set(self.log_scale) - {"temperature", "c1", "c2"}
        if unknown:
            raise ValueError(f"hpo search space: log_scale names unknown parameters {sorted(unknown)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"hpo search space: gamma must lie in (0, 1], got {self.gamma}")

    def dimensions(self) -> list[Any]:
        """scikit-optimize dimensions in ``PARAM_NAMES`` order."""
        from skopt.space import Integer, Real

        dims: list[Any] = []
        for name in ("temperature", "c1", "c2"):
            lo, hi = getattr(self, name)
            prior = "log-uniform" if name in self.log_scale else "uniform"
            dims.append(Real(float(lo), float(hi), prior=prior, name=name))
        dims.append(Integer(int(self.k[0]), int(self.k[1]), name="k"))
        return dims

    def to_params(self, x: list[Any]) -> dict[str, float | int]:
        """A point of the optimizer as a planner parameter dict (``docs/formats.md``)."""
        return {
            "temperature": float(x[0]),
            "c1": float(x[1]),
            "c2": float(x[2]),
            "k": int(x[3]),
            "gamma": float(self.gamma),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchSpace":
        """From the workflow config's ``hpo.space`` mapping (plus optional ``gamma``, ``log_scale``)."""
        missing = [n for n in PARAM_NAMES if n not in d]
        if missing:
            raise ValueError(f"hpo search space: missing {missing}")
        for name in PARAM_NAMES:
            b = d[name]
            if not isinstance(b, (list, tuple)) or len(b) != 2 or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) for v in b):
                raise ValueError(f"hpo search space: {name} needs two numbers [low, high], got {b!r}")
            if name == "k" and not all(isinstance(v, int) for v in b):
                raise ValueError(f"hpo search space: k needs integer bounds, got {b!r}")
        return cls(
            temperature=(float(d["temperature"][0]), float(d["temperature"][1])),
            c1=(float(d["c1"][0]), float(d["c1"][1])),
            c2=(float(d["c2"][0]), float(d["c2"][1])),
            k=(int(d["k"][0]), int(d["k"][1])),
            gamma=float(d.get("gamma", 0.99)),
            log_scale=tuple(d.get("log_scale", ())),
        )


@dataclass
class HPOState:
    """Everything an interrupted optimisation needs: the optimizer and the history so far."""

    space: SearchSpace
    optimizer: Any  # skopt.Optimizer
    seed: int
    rounds_told: int = 0
    #: the points asked in the current round and not yet told (list of parameter dicts)
    pending: list[dict[str, float | int]] = field(default_factory=list)
    #: one dict per evaluated point: round, point, params, mean, sem, n
    history: list[dict[str, Any]] = field(default_factory=list)
    version: int = STATE_VERSION
    #: the optimizer's options (initial_points, acq_func, acq_optimizer): with ``seed``, they rebuild it
    options: dict[str, Any] = field(default_factory=dict)
    #: every round: ``{"asked": [[x...], ...], "told": [y, ...] or None}`` (the optimizer's own values)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def new_state(
    space: SearchSpace,
    seed: int,
    initial_points: int,
    acq_func: str = "gp_hedge",
    acq_optimizer: str = "sampling",
) -> HPOState:
    """A fresh optimizer: GP surrogate, ``initial_points`` random points before the GP is used.

    ``acq_optimizer="sampling"`` maximises the acquisition over 10,000 random points: in this
    4-dimensional space that is as good as L-BFGS restarts ("lbfgs") and an order of magnitude
    faster, which matters on the small CPU jobs that run ``hpo ask``.
    """
    if isinstance(initial_points, bool) or not isinstance(initial_points, int) or initial_points < 1:
        raise ValueError(f"hpo: initial_points must be an integer >= 1, got {initial_points!r}")
    options = {"initial_points": int(initial_points), "acq_func": str(acq_func), "acq_optimizer": str(acq_optimizer)}
    return HPOState(space=space, optimizer=_optimizer(space, int(seed), options), seed=int(seed), options=options)


def _optimizer(space: SearchSpace, seed: int, options: dict[str, Any]) -> Any:
    from skopt import Optimizer

    try:
        return Optimizer(
            space.dimensions(),
            base_estimator="GP",
            n_initial_points=options["initial_points"],
            acq_func=options["acq_func"],
            acq_optimizer=options["acq_optimizer"],
            random_state=int(seed),
        )
    except ValueError as exc:
        raise ValueError(f"hpo: optimizer options {options}: {exc}") from None


def _space_dict(space: SearchSpace) -> dict[str, Any]:
    return {"temperature": list(space.temperature), "c1": list(space.c1), "c2": list(space.c2), "k": list(space.k),
            "gamma": space.gamma, "log_scale": list(space.log_scale)}


def _plain(x: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (what JSON holds)."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def state_dict(state: HPOState) -> dict[str, Any]:
    """The state as plain JSON values (what :func:`save_state` writes)."""
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "space": _space_dict(state.space),
        "seed": state.seed,
        "options": dict(state.options),
        "rounds": [{"asked": _plain(r["asked"]), "told": _plain(r["told"])} for r in state.rounds],
        "rounds_told": state.rounds_told,
        "pending": _plain(state.pending),
        "history": _plain(state.history),
    }


def save_state(state: HPOState, path: str | Path) -> None:
    """Write ``state`` as JSON atomically (:func:`alchemy_mbrl.io.atomic_write`); never a pickle."""
    from alchemy_mbrl.io import write_text

    write_text(path, json.dumps(state_dict(state), indent=1, allow_nan=False) + "\n")


def _finite_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def load_state(path: str | Path) -> HPOState:
    """Load a state written by :func:`save_state`: parse the JSON, check every field, rebuild the optimizer
    by replaying the rounds. Raises ``ValueError`` naming the file if anything is wrong; runs no code
    from the file (a pickle, e.g. a state of an older version, is refused)."""
    from alchemy_mbrl.io import read_bytes

    path = Path(path)
    raw = read_bytes(path, "HPO state", MAX_STATE_BYTES)
    if raw[:1] == b"\x80":
        raise ValueError(f"{path}: a pickled HPO state (an older version's, or a crafted file) is not loaded: "
                         "pickles can run code; re-run the HPO from round 0")

    def no_constant(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        d = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not an HPO state (not JSON: {exc})") from None
    if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not an HPO state (no 'format': {STATE_FORMAT!r})")
    if d.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: HPO state of version {d.get('version')!r}, this package reads version {STATE_VERSION}")
    try:
        return _state_from_dict(d)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: invalid HPO state: {type(exc).__name__ if isinstance(exc, KeyError) else ''}"
                         f"{exc}") from None


def _state_from_dict(d: dict[str, Any]) -> HPOState:
    space = SearchSpace.from_dict(d["space"])
    seed, options = d["seed"], d["options"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"'seed' must be an integer in [0, 2^32), got {seed!r}")
    if not isinstance(options, dict) or set(options) != {"initial_points", "acq_func", "acq_optimizer"}:
        raise ValueError(f"'options' must hold initial_points, acq_func and acq_optimizer, got {options!r}")
    if not isinstance(options["acq_func"], str) or options["acq_optimizer"] not in ("sampling", "lbfgs"):
        raise ValueError(f"'options': unknown acquisition settings {options!r}")
    state = new_state(space, seed, options["initial_points"], options["acq_func"], options["acq_optimizer"])
    rounds = d["rounds"]
    if not isinstance(rounds, list):
        raise ValueError("'rounds' must be a list")
    for r, rnd in enumerate(rounds):
        asked, told = rnd["asked"], rnd["told"]
        if not isinstance(asked, list) or not asked or not all(
                isinstance(x, list) and len(x) == len(PARAM_NAMES) and all(map(_finite_number, x)) for x in asked):
            raise ValueError(f"rounds[{r}].asked must be a non-empty list of {len(PARAM_NAMES)}-number points")
        if told is not None and (not isinstance(told, list) or len(told) != len(asked)
                                 or not all(map(_finite_number, told))):
            raise ValueError(f"rounds[{r}].told must be null or {len(asked)} finite numbers")
        if told is None and r != len(rounds) - 1:
            raise ValueError(f"rounds[{r}] was never told, but later rounds exist")
        if r < len(rounds) - 1:
            # An earlier round: what ask(n, "cl_min") changes in the optimizer is one draw of its generator
            # (the seed of the copy that asks with lies; skopt 0.10, Optimizer.ask), so draw it and take
            # the stored points. The last round is asked for real and compared with the file, which checks
            # the whole replay (the points depend on every earlier draw and score).
            state.optimizer.rng.randint(0, np.iinfo(np.int32).max)
            xs = asked
        else:
            xs = state.optimizer.ask(n_points=len(asked), strategy="cl_min")
            if _plain(xs) != asked:
                raise ValueError(f"rounds[{r}].asked differs from the points the optimizer asks when replayed "
                                 "(an edited file, or written with another scikit-optimize)")
        state.rounds.append({"asked": asked, "told": None})
        if told is not None:
            state.optimizer.tell(xs, told)
            state.rounds[-1]["told"] = told
    state.rounds_told = sum(r["told"] is not None for r in state.rounds)
    if d["rounds_told"] != state.rounds_told:
        raise ValueError(f"'rounds_told' is {d['rounds_told']!r} but {state.rounds_told} rounds were told")
    last = state.rounds[-1] if state.rounds else None
    state.pending = [space.to_params(x) for x in last["asked"]] if last and last["told"] is None else []
    if _plain(d["pending"]) != state.pending:
        raise ValueError("'pending' differs from the last round's untold points")
    history = d["history"]
    if not isinstance(history, list) or len(history) != sum(len(r["asked"]) for r in state.rounds if r["told"]):
        raise ValueError("'history' must hold one row per told point")
    expected = _history(state)
    for i, (h, e) in enumerate(zip(history, expected)):
        if not isinstance(h, dict) or any(h.get(k) != v for k, v in e.items()):
            raise ValueError(f"history[{i}] disagrees with the told rounds")
        sem, n = h.get("sem"), h.get("n")
        if not (sem is None or (_finite_number(sem) and sem >= 0)):
            raise ValueError(f"history[{i}].sem must be a number >= 0 or null, got {sem!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"history[{i}].n must be an integer >= 1, got {n!r}")
    state.history = [{**e, "sem": math.nan if h["sem"] is None else float(h["sem"]), "n": h["n"]}
                     for h, e in zip(history, expected)]
    return state


def _history(state: HPOState) -> list[dict[str, Any]]:
    """The history rows' fields that follow from the told rounds (all but ``sem`` and ``n``)."""
    rows: list[dict[str, Any]] = []
    for r, rnd in enumerate(x for x in state.rounds if x["told"] is not None):
        for i, (x, y) in enumerate(zip(rnd["asked"], rnd["told"])):
            rows.append({"trial": len(rows), "round": r, "point": i, **state.space.to_params(x), "mean": -float(y)})
    return rows


def ask(state: HPOState, n_points: int) -> list[dict[str, float | int]]:
    """Ask ``n_points`` points at once (constant liar, ``cl_min``); record them as pending.

    Mutates ``state`` (the optimizer's random generator advances), so save it afterwards:
    the tell of this round must start from the state that produced the points.
    """
    if state.pending:
        raise ValueError("hpo ask: the previous round's points were never told")
    if n_points < 1:
        raise ValueError(f"hpo ask: need at least one point, got {n_points}")
    xs = state.optimizer.ask(n_points=int(n_points), strategy="cl_min")
    state.rounds.append({"asked": _plain(xs), "told": None})
    state.pending = [state.space.to_params(x) for x in xs]
    return list(state.pending)


def read_summary(path: str | Path) -> dict[str, Any]:
    """A ``merge-returns`` summary JSON (needs ``mean``, ``sem`` and ``n``)."""
    summary = stats.read_summary(path)
    if not math.isfinite(float(summary["mean"])):
        raise ValueError(f"{path}: mean return is not finite ({summary['mean']})")
    return summary


def tell(state: HPOState, summaries: list[dict[str, Any]]) -> None:
    """Tell the pending points their scores (objective = ``-mean`` return), in point order."""
    if not state.pending:
        raise ValueError("hpo tell: no pending points (was ask run on this state?)")
    if len(summaries) != len(state.pending):
        raise ValueError(f"hpo tell: {len(state.pending)} points pending but {len(summaries)} results given (--results)")
    xs = [[p[name] for name in PARAM_NAMES] for p in state.pending]
    ys = [-float(s["mean"]) for s in summaries]
    if not all(math.isfinite(y) for y in ys):
        raise ValueError(f"hpo tell: mean returns must be finite, got {[-y for y in ys]}")
    state.optimizer.tell(xs, ys)
    if state.rounds and state.rounds[-1]["told"] is None:
        state.rounds[-1]["told"] = ys
    for i, (params, s) in enumerate(zip(state.pending, summaries)):
        state.history.append(
            {
                "trial": len(state.history),
                "round": state.rounds_told,
                "point": i,
                **params,
                "mean": float(s["mean"]),
                "sem": float(s["sem"]),
                "n": int(s["n"]),
            }
        )
    state.pending = []
    state.rounds_told += 1


def best(state: HPOState) -> dict[str, Any]:
    """The evaluated point with the highest mean return, with its score (mean ± s.e., n)."""
    if not state.history:
        raise ValueError("hpo best: no evaluated points")
    top = max(state.history, key=lambda h: (h["mean"], -h["trial"]))
    params = {name: top[name] for name in (*PARAM_NAMES, "gamma")}
    return {
        **params,
        "score": {"mean": top["mean"], "sem": top["sem"], "n": top["n"], "unit": stats.RETURN_UNIT},
        "trial": top["trial"],
        "round": top["round"],
        "point": top["point"],
        "trials": len(state.history),
        "rounds": state.rounds_told,
    }


def history_rows(state: HPOState) -> list[dict[str, Any]]:
    """History with the running best score (for the convergence plot)."""
    rows: list[dict[str, Any]] = []
    best_so_far = -np.inf
    best_sem = float("nan")
    for h in state.history:
        if h["mean"] > best_so_far:
            best_so_far, best_sem = h["mean"], h["sem"]
        rows.append({**h, "best_mean": float(best_so_far), "best_sem": float(best_sem)})
    return rows


HISTORY_COLUMNS: tuple[str, ...] = (
    "trial", "round", "point", "temperature", "c1", "c2", "k", "gamma", "mean", "sem", "n", "best_mean", "best_sem",
)


def ask_round(
    round: int,
    state_in: str | Path,
    points: int,
    out_dir: str | Path,
    *,
    bounds: dict[str, Any] | None = None,
    gamma: float = 0.99,
    log_scale: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    initial_points: int = 10,
    acq_func: str = "gp_hedge",
    acq_optimizer: str = "sampling",
) -> list[dict[str, Any]]:
    """``hpo ask``: load round ``round - 1``'s state (or start round 0 when ``state_in`` is ``"none"``),
    ask ``points`` points and write ``OUT_DIR/point-<p>.json``, ``points.json`` and ``asked.pkl``."""
    if str(state_in) == "none":
        bounds = bounds or {}
        missing = [f"--{n}" for n in PARAM_NAMES if bounds.get(n) is None]
        if missing:
            raise ValueError(f"a fresh optimisation (--state-in none) needs {' '.join(missing)}")
        if round != 0:
            raise ValueError(f"--state-in none starts round 0, but --round is {round}")
        space = SearchSpace.from_dict({**bounds, "gamma": gamma, "log_scale": list(log_scale)})
        state = new_state(space, seed=seed, initial_points=initial_points, acq_func=acq_func,
                          acq_optimizer=acq_optimizer)
    else:
        state = load_state(state_in)
        if state.rounds_told != round:
            raise ValueError(f"{state_in} holds {state.rounds_told} finished rounds, so it cannot start round {round}")
    try:
        asked = ask(state, points)
    except ValueError as exc:
        raise ValueError(f"{state_in}: {exc}" if str(state_in) != "none" else str(exc)) from None
    out = Path(out_dir)
    for p, params in enumerate(asked):
        write_json(out / f"point-{p}.json", params)
    write_json(out / "points.json", {"round": round, "points": asked})
    save_state(state, out / "asked.pkl")
    return asked
