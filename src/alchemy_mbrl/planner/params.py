"""Hyperparameters of the tree search (paper, Table 4), loadable from JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path


Q_NORMALISATIONS = ("none", "minmax")


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
            this factor. The default 1/15 measures rewards in units of the largest reward (+15), the
            scale on which Table 4's C1 and C2 make sense (see docs/planner.md: with raw rewards,
            ``reward_scale = 1``, the search barely improves with budget). It changes nothing
            but the balance between Q and the exploration term.
        q_normalisation: ``"none"`` (Algorithm 1 as printed) or ``"minmax"`` (MuZero's
            normalisation of Q by the range seen in the tree; unvisited actions score 0).
    """

    temperature: float = 0.55
    c1: float = 0.57
    c2: float = 16.15
    k: int = 3
    gamma: float = 0.99
    reward_scale: float = 1.0 / 15.0
    q_normalisation: str = "none"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "q_normalisation":
                if not isinstance(v, str):
                    raise ValueError(f"planner parameter q_normalisation must be a string, got {v!r}")
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
        object.__setattr__(self, "k", int(self.k))

    @classmethod
    def from_dict(cls, data: dict) -> "PlannerParams":
        """Build from a dict with (a subset of) the keys ``temperature, c1, c2, k, gamma``."""
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

    def to_dict(self) -> dict:
        return asdict(self)
