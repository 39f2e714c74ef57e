"""Configuration of the world model and of its training (the paper's Table 3 as defaults).

One YAML file holds optional overrides of any key of :class:`ModelConfig` or
:class:`TrainConfig` (flat, or nested under ``model:`` / ``training:``). Unknown keys are
rejected with a ``ValueError`` naming the key. The architecture (``--arch``) is applied first,
then the file, so a file can still override e.g. ``gru_hidden`` of an ablation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: Backbones: the causal Transformer encoder of the paper, or the GRU of the ablation.
BACKBONES = ("transformer", "gru")
#: Observation heads: MLP -> GRU over dimensions + final linear layer (paper), MLP -> independent
#: per-dimension linear layers (ablation "without the GRU head"), MLP -> GRU only (ablation
#: "without the final linear layer").
OBS_HEADS = ("gru_linear", "independent", "gru_only")


@dataclass
class ModelConfig:
    """Architecture hyperparameters (Table 3 of the paper, and Table 2 for the ablations)."""

    arch: str = "original"
    backbone: str = "transformer"
    obs_head: str = "gru_linear"
    d_model: int = 256  # input/output width of a Transformer layer
    n_heads: int = 4
    n_layers: int = 3
    d_ff: int = 256  # width of the feed-forward layer inside a Transformer layer
    dropout: float = 0.1
    mlp_hidden: int = 512  # hidden width of the reward and observation MLP heads
    obs_context: int = 256  # output width of the observation MLP (input of the GRU head and final linear layer)
    gru_hidden: int = 32  # hidden state of the GRU running over the 39 observation dimensions
    gru_backbone_hidden: int = 512  # ablation: GRU backbone width
    gru_backbone_layers: int = 3  # ablation: GRU backbone depth
    max_len: int = 200  # tokens per episode (positional encoding table length)

    def validate(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.obs_head not in OBS_HEADS:
            raise ValueError(f"obs_head must be one of {OBS_HEADS}, got {self.obs_head!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("d_model", "n_heads", "n_layers", "d_ff", "mlp_hidden", "obs_context", "gru_hidden",
                     "gru_backbone_hidden", "gru_backbone_layers", "max_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclass
class TrainConfig:
    """Training hyperparameters (Table 3) and run controls."""

    steps: int = 750_000  # optimisation steps (paper: ~750k to convergence)
    batch_size: int = 250  # episodes per optimisation step
    micro_batch: int | None = None  # episodes per forward/backward (gradient accumulation); None = batch_size
    lr: float = 1e-4  # Adam learning rate (2e-5 for no_final_linear); the peak of a schedule
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps to lr over the first steps (0 = none)
    lr_schedule: str = "constant"  # after the warm-up: "constant" (the paper's) or "cosine" decay
    lr_min_ratio: float = 0.1  # "cosine": the lr of the last step is lr_min_ratio * lr
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None  # max global gradient norm (the paper does not clip: None)
    seed: int = 0
    device: str | None = None  # None = cuda if available else cpu
    amp: bool | str = True  # bf16 autocast on CUDA (fp16 + GradScaler where bf16 is unsupported), off on CPU;
    # "bf16": bf16 autocast on any device, CPU included (tests and `gpu-check --device cpu`)
    val_every: int = 1000  # steps between validations (0 = only at the end)
    val_episodes: int = 1000  # validation episodes used during training (0 = all)
    checkpoint_every: int = 1000  # steps between checkpoints (a checkpoint is also written at the end)
    log_every: int = 100  # steps between train_log.csv rows
    max_seconds: float | None = None  # wall-clock budget over all (resumed) runs; None = unlimited
    max_train_episodes: int | None = None  # use only the first N training episodes (None = all)
    threads: int | None = None  # torch CPU threads (None = torch default)


#: Learning-rate schedules after the warm-up (``lr_schedule``).
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, train_cfg: TrainConfig) -> float:
    """Multiplier of ``lr`` for optimisation step ``step + 1`` (``step`` = steps already done, from 0).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (the last warm-up step
    reaches ``lr``). Then ``constant``: 1; ``cosine``: from 1 at the first step after the warm-up down to
    ``lr_min_ratio`` at the last step (``steps``), ``r + (1 - r) (1 + cos(pi p)) / 2`` with ``p`` going
    linearly from 0 to 1 (held at ``r`` beyond the last step). A pure function of the step, so a resumed
    run continues the schedule exactly.
    """
    import math

    warm = int(train_cfg.warmup_steps)
    if step < warm:
        return (step + 1) / warm
    if train_cfg.lr_schedule == "constant":
        return 1.0
    r = float(train_cfg.lr_min_ratio)
    span = int(train_cfg.steps) - 1 - warm
    p = 1.0 if span <= 0 else min(1.0, (step - warm) / span)
    return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * p))


#: ``--arch`` names -> overrides of the defaults (Table 2).
ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "original": {"model": {}, "training": {}},
    "gru_backbone": {"model": {"backbone": "gru"}, "training": {}},
    "no_gru_head": {"model": {"obs_head": "independent"}, "training": {}},
    "no_final_linear": {"model": {"obs_head": "gru_only", "gru_hidden": 64}, "training": {"lr": 2e-5}},
}

_MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"arch"}
_TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


def _coerce(cls: type, key: str, value: Any) -> Any:
    """Light type check/conversion of a YAML value for dataclass field ``key``."""
    default = next(f.default for f in fields(cls) if f.name == key)
    if value is None:
        return None
    if key == "amp" and value == "bf16":
        return value
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int) and not isinstance(default, bool) or key in ("micro_batch", "max_train_episodes", "threads"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(float(value)):
                raise TypeError
            if not 0 <= int(value) < _INT_LIMIT.get(key, 2**31):
                raise ValueError(f"config key '{key}' must be an integer in 0..{_INT_LIMIT.get(key, 2**31) - 1}, "
                                 f"got {value!r}")
            return int(value)
        if isinstance(default, float) or key in ("max_seconds", "grad_clip"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                raise TypeError
            return float(value)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise TypeError
            out = tuple(float(v) for v in value if not isinstance(v, bool) and isinstance(v, (int, float)))
            if len(out) != len(default) or not all(map(math.isfinite, out)):
                raise TypeError
            return out
        if isinstance(default, str) or key == "device":
            if not isinstance(value, str):
                raise TypeError
        return value
    except (TypeError, OverflowError):
        raise ValueError(f"config key '{key}' has an invalid value {value!r}") from None


def resolve_config(arch: str, overrides: dict[str, Any] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of architecture ``arch`` with ``overrides`` applied.

    ``overrides`` is flat (``{"steps": 10, "d_model": 64}``) or nested (``{"model": {...},
    "training": {...}}``). Raises ``ValueError`` naming an unknown architecture or key.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    model_kw: dict[str, Any] = {"arch": arch, **ARCHITECTURES[arch]["model"]}
    train_kw: dict[str, Any] = dict(ARCHITECTURES[arch]["training"])
    flat: list[tuple[str | None, str, Any]] = []
    for key, value in (overrides or {}).items():
        if key in ("model", "training") and isinstance(value, dict):
            flat += [(key, k, v) for k, v in value.items()]
        else:
            flat.append((None, key, value))
    for section, key, value in flat:
        if key in _MODEL_KEYS and section in (None, "model"):
            model_kw[key] = _coerce(ModelConfig, key, value)
        elif key in _TRAIN_KEYS and section in (None, "training"):
            train_kw[key] = _coerce(TrainConfig, key, value)
        else:
            where = f" (in section '{section}')" if section else ""
            raise ValueError(
                f"unknown config key '{key}'{where}; model keys: {', '.join(sorted(_MODEL_KEYS))}; "
                f"training keys: {', '.join(sorted(_TRAIN_KEYS))}"
            )
    model_cfg = ModelConfig(**model_kw)
    model_cfg.validate()
    train_cfg = TrainConfig(**train_kw)
    if train_cfg.steps < 1 or train_cfg.batch_size < 1:
        raise ValueError("config keys 'steps' and 'batch_size' must be >= 1")
    if train_cfg.micro_batch is not None and train_cfg.micro_batch < 1:
        raise ValueError(f"config key 'micro_batch' must be >= 1, got {train_cfg.micro_batch}")
    if train_cfg.lr <= 0:
        raise ValueError(f"config key 'lr' must be > 0, got {train_cfg.lr}")
    validate_training(train_cfg)
    validate_schedule(train_cfg)
    return model_cfg, train_cfg


#: Integer keys whose range is wider than a 32-bit size: the seed (torch and numpy take 64 bits).
_INT_LIMIT = {"seed": 2**63}


def validate_training(train_cfg: TrainConfig) -> None:
    """The range of every training key (what the training loop would otherwise misread: a negative
    ``grad_clip`` reverses the gradients, a ``max_seconds`` <= 0 writes an untrained model, a 0
    ``checkpoint_every`` silently means 1). ``ValueError`` naming the key. The workflow config's train
    keys pass through here when it loads (:mod:`alchemy_mbrl.workflow_config`)."""
    t = train_cfg
    if t.grad_clip is not None and not t.grad_clip > 0:
        raise ValueError(f"config key 'grad_clip' must be > 0 (or null: no clipping), got {t.grad_clip}")
    if t.max_seconds is not None and not t.max_seconds > 0:
        raise ValueError(f"config key 'max_seconds' must be > 0 (or null: no time cap), got {t.max_seconds}")
    if not all(0.0 <= b < 1.0 for b in t.adam_betas):
        raise ValueError(f"config key 'adam_betas' must be two numbers in [0, 1), got {list(t.adam_betas)}")
    for key in ("checkpoint_every", "log_every"):
        if getattr(t, key) < 1:
            raise ValueError(f"config key '{key}' must be >= 1, got {getattr(t, key)}")
    for key in ("val_every", "val_episodes", "warmup_steps"):
        if getattr(t, key) is None or getattr(t, key) < 0:
            raise ValueError(f"config key '{key}' must be an integer >= 0, got {getattr(t, key)!r}")
    for key in ("max_train_episodes", "threads"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            raise ValueError(f"config key '{key}' must be >= 1 (or null), got {getattr(t, key)}")
    if not (isinstance(t.amp, bool) or t.amp == "bf16"):
        raise ValueError(f"config key 'amp' must be true, false or \"bf16\", got {t.amp!r}")
    for key in ("steps", "batch_size", "seed", "lr", "lr_min_ratio", "adam_betas", "warmup_steps"):
        if getattr(t, key) is None:
            raise ValueError(f"config key '{key}' must not be null")


def validate_schedule(train_cfg: TrainConfig) -> None:
    """``ValueError`` naming the key for a bad ``lr_schedule``, ``warmup_steps`` or ``lr_min_ratio``."""
    for key in ("warmup_steps", "lr_min_ratio"):
        if getattr(train_cfg, key) is None:
            raise ValueError(f"config key '{key}' must be a number, got null")
    if train_cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"config key 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}, "
                         f"got {train_cfg.lr_schedule!r}")
    if train_cfg.warmup_steps < 0:
        raise ValueError(f"config key 'warmup_steps' must be >= 0, got {train_cfg.warmup_steps}")
    if train_cfg.warmup_steps >= train_cfg.steps and train_cfg.warmup_steps > 0:
        raise ValueError(f"config key 'warmup_steps' ({train_cfg.warmup_steps}) must be smaller than 'steps' "
                         f"({train_cfg.steps})")
    if not 0.0 <= train_cfg.lr_min_ratio <= 1.0:
        raise ValueError(f"config key 'lr_min_ratio' must be in [0, 1], got {train_cfg.lr_min_ratio}")


def load_config_file(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML config file of overrides (an empty file or ``None`` = no overrides)."""
    if path is None:
        return {}
    from alchemy_mbrl.io import read_yaml

    path = Path(path)
    data = read_yaml(path, "config file")  # a regular file; no duplicate key, NaN or 65-bit integer
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys to values")
    return data


def config_to_dict(model_cfg: ModelConfig, train_cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Plain-dict form (for ``config.yaml`` and checkpoints)."""
    out: dict[str, Any] = {"model": dataclasses.asdict(model_cfg)}
    if train_cfg is not None:
        t = dataclasses.asdict(train_cfg)
        t["adam_betas"] = list(t["adam_betas"])
        out["training"] = t
    return out


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    cfg = ModelConfig(**d)
    cfg.validate()
    return cfg


__all__ = [
    "ARCHITECTURES", "BACKBONES", "LR_SCHEDULES", "OBS_HEADS", "ModelConfig", "lr_factor", "validate_schedule", "TrainConfig", "resolve_config",
    "load_config_file", "config_to_dict", "model_config_from_dict", "field",
]
