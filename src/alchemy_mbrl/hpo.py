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
The surrogate is a Gaussian process (``base_estimator="GP"``); the objective is
``-mean return``, so the optimiser maximises the score.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alchemy_mbrl import stats
from alchemy_mbrl.io import atomic_write, write_json

#: Hyperparameters searched, in the order of the optimizer's dimensions.
PARAM_NAMES: tuple[str, ...] = ("temperature", "c1", "c2", "k")
STATE_VERSION = 1


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
    from skopt import Optimizer

    if initial_points < 1:
        raise ValueError(f"hpo: initial_points must be >= 1, got {initial_points}")
    opt = Optimizer(
        space.dimensions(),
        base_estimator="GP",
        n_initial_points=initial_points,
        acq_func=acq_func,
        acq_optimizer=acq_optimizer,
        random_state=int(seed),
    )
    return HPOState(space=space, optimizer=opt, seed=int(seed))


def save_state(state: HPOState, path: str | Path) -> None:
    """Pickle ``state`` atomically (:func:`alchemy_mbrl.io.atomic_write`)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(state, f)


def load_state(path: str | Path) -> HPOState:
    """Load a state written by :func:`save_state`; raises ``ValueError`` naming the file if invalid."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: not a readable HPO state ({exc})") from exc
    if not isinstance(state, HPOState) or state.version != STATE_VERSION:
        raise ValueError(f"{path}: not an HPO state of version {STATE_VERSION}")
    return state


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
        raise ValueError(f"hpo tell: {len(state.pending)} points pending but {len(summaries)} results given")
    xs = [[p[name] for name in PARAM_NAMES] for p in state.pending]
    ys = [-float(s["mean"]) for s in summaries]
    state.optimizer.tell(xs, ys)
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
    asked = ask(state, points)
    out = Path(out_dir)
    for p, params in enumerate(asked):
        write_json(out / f"point-{p}.json", params)
    write_json(out / "points.json", {"round": round, "points": asked})
    save_state(state, out / "asked.pkl")
    return asked
