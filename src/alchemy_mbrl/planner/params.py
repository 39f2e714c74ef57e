"""Hyperparameters of the tree search (paper, Table 4), loadable from JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path


Q_NORMALISATIONS = ("none", "minmax")
#: The package's reading before the calibration of docs/results-planner.md (2026-12-06): Q in units of
#: the largest reward and ties to the lowest action index. The CPU-scale run (docs/results-cpu.md) used
#: it; ``--params config/planner/previous-reading.json`` (or these ``--param`` settings) restores it.
PREVIOUS_READING: dict[str, float | str] = {"reward_scale": 1.0 / 15.0, "tie_break": "lowest"}

#: The readings of Algorithm 1 that the paper leaves open (docs/planner.md, "Readings"): each
#: option's allowed values, the first being the default (today's reading).
READINGS: dict[str, tuple[str, ...]] = {
    # Q of an action never tried at the node: a zero return (normalised like any Q under min-max),
    # the bottom of the range (MuZero's pseudocode: 0 after normalisation; the tree's lowest Q
    # without it), or the node's own mean value over its visits (mctx's parent-value reading).
    "unvisited_q": ("zero", "bottom", "parent"),
    # ties of the selection's argmax: uniformly at random among the tied actions (the default,
    # chosen by the calibration of docs/results-planner.md), the lowest action index (np.argmax;
    # action 0 is the no-op), the highest (Python's max over (score, action) tuples in MuZero's
    # pseudocode); or "untried": every untried action first, in random order, then the formula.
    "tie_break": ("random", "lowest", "highest", "untried"),
    # what the budget counts: selection-expansion-backup iterations, or each of the K model
    # samples (budget // K iterations).
    "expansion_unit": ("iteration", "sample"),
    # the reward backed up at the levels above the new chance node: the chance node's weighted
    # mean (lower variance), or the reward of the branch the selection took (Algorithm 1's
    # "chance node, r <- parent of decision node and associated reward").
    "backup_reward": ("chance_mean", "branch"),
    # where gamma applies: at every step, or only across trial boundaries.
    "discount": ("step", "trial"),
    # the visit count N of the exploration term sqrt(N)/(1+N(a)) (C1 + log((C2+1+N)/C2)): the sum
    # of the node's action counts (Algorithm 1), or the node's own visit count (MuZero: one more
    # than the sum below the root, the visit that created the node).
    "exploration_count": ("sum", "node"),
}


@dataclass(frozen=True)
class PlannerParams:
    """Hyperparameters of Algorithm 1; defaults are the paper's Table 4.

    Attributes:
        temperature: T in ``N_root(a)^(1/T)``; ``0`` means argmax of the visit counts.
        c1: C1, the constant part of the exploration weight.
        c2: C2, the scale of the slowly growing (logarithmic) part of the exploration weight.
        k: K, the number of outcomes sampled at every expansion (the stochastic branching factor).
        gamma: discount factor used in the backup.
        reward_scale: the tree's rewards (and so its Q values) are the simulator's rewards times
            this factor: the unit of Q, which the paper does not give. The default 1/5, with random
            ties, is the reading whose exact-Bayes planner reproduces the paper's 100- and 500-expansion
            scores (docs/results-planner.md); with raw rewards, ``reward_scale = 1``, the search barely
            improves with budget (docs/planner.md). It changes nothing but the balance between Q and
            the exploration term.
        q_normalisation: ``"none"`` (Algorithm 1 as printed) or ``"minmax"`` (MuZero's
            normalisation of Q by the range of Q backed up so far in the tree).
        unvisited_q, tie_break, expansion_unit, backup_reward, discount, exploration_count: the
            readings of :data:`READINGS` (defaults first); docs/planner.md explains each.
    """

    temperature: float = 0.55
    c1: float = 0.57
    c2: float = 16.15
    k: int = 3
    gamma: float = 0.99
    reward_scale: float = 0.2
    q_normalisation: str = "none"
    unvisited_q: str = "zero"
    tie_break: str = "random"
    expansion_unit: str = "iteration"
    backup_reward: str = "chance_mean"
    discount: str = "step"
    exploration_count: str = "sum"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "q_normalisation" or f.name in READINGS:
                if not isinstance(v, str):
                    raise ValueError(f"planner parameter {f.name} must be a string, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"planner parameter {f.name} must be a number, got {v!r}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (math.isfinite(self.c1) and self.c1 >= 0):
            raise ValueError(f"c1 must be a finite number >= 0, got {self.c1}")
        if not (math.isfinite(self.c2) and self.c2 > 0):
            raise ValueError(f"c2 must be > 0, got {self.c2}")
        if not math.isfinite(self.k) or int(self.k) != self.k or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k}")
        if not (0.0 <= self.gamma <= 1.0):
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not (math.isfinite(self.reward_scale) and self.reward_scale > 0):
            raise ValueError(f"reward_scale must be a finite number > 0, got {self.reward_scale}")
        if self.q_normalisation not in Q_NORMALISATIONS:
            raise ValueError(f"q_normalisation must be one of {Q_NORMALISATIONS}, got {self.q_normalisation!r}")
        for name, allowed in READINGS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        object.__setattr__(self, "k", int(self.k))

    def iterations(self, budget: int) -> int:
        """Selection-expansion-backup iterations of a search of ``budget`` expansions (:data:`READINGS`'
        ``expansion_unit``: ``budget`` itself, or ``budget // K`` model samples' worth, at least 1)."""
        return int(budget) if self.expansion_unit == "iteration" else max(1, int(budget) // self.k)

    def nondefault_readings(self) -> dict[str, str]:
        """The readings of :data:`READINGS` that differ from the default (for messages and labels)."""
        return {name: getattr(self, name) for name, allowed in READINGS.items() if getattr(self, name) != allowed[0]}

    @classmethod
    def from_dict(cls, data: dict) -> "PlannerParams":
        """Build from a dict with (a subset of) the field names (``temperature, c1, c2, k, gamma``, the
        reward scale, the Q normalisation and the readings)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown planner parameter(s) {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "PlannerParams":
        """Read ``{"temperature", "c1", "c2", "k", "gamma"}`` (missing keys take Table 4's values)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a JSON object of planner parameters")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None

    def with_settings(self, settings: list[str] | tuple[str, ...]) -> "PlannerParams":
        """A copy with ``KEY=VALUE`` settings applied (``--param`` on the command line): numbers for the
        numeric fields, names for ``q_normalisation`` and the readings; each error names the setting."""
        data = self.to_dict()
        types = {f.name: f.type for f in fields(self)}
        for item in settings:
            key, sep, raw = str(item).partition("=")
            key = key.strip()
            if not sep or key not in types:
                raise ValueError(f"--param {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
            if types[key] in ("str", str):
                data[key] = raw.strip()
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"--param {item!r}: {key} must be a number") from None
            data[key] = int(value) if types[key] in ("int", int) and value.is_integer() else value
        try:
            return PlannerParams(**data)
        except ValueError as exc:
            raise ValueError(f"--param: {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)
