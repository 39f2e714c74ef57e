"""Files of a model directory: the training checkpoint, the final weights, and loading them.

    checkpoint.pt    model, optimiser, GradScaler, torch RNG and data-order state (resume)
    model.pt         final weights + model config (what the planner and ``model-eval`` load)

Both are written through :func:`alchemy_mbrl.io.atomic_write`, so an interrupted save never
leaves a partial file under either name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from alchemy_mbrl import __version__
from alchemy_mbrl.io import atomic_write
from alchemy_mbrl.model.config import ModelConfig, model_config_from_dict
from alchemy_mbrl.model.world_model import WorldModel

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def resolve_device(name: str | None) -> torch.device:
    """``cuda`` when available for ``None``/``"auto"``, else the named device (checked)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, every tensor on the CPU; ``ValueError`` naming the file if it cannot be read.

    Always loaded to the CPU, whatever the training device: ``load_state_dict`` of the model and of
    the optimiser move the tensors to the parameters' device, and the RNG states must stay CPU
    ``ByteTensor``s (``torch.set_rng_state`` raises ``TypeError`` on a CUDA tensor).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or corrupt file
        raise ValueError(f"{path}: cannot read checkpoint ({exc}); delete it to restart") from exc


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch CPU RNG state, and the CUDA one when training on CUDA (for the checkpoint)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state`; the states are moved to the CPU first, wherever they were mapped."""
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].to("cpu", torch.uint8), device)


def save_model(path: str | Path, model_cfg: ModelConfig, model: WorldModel, step: int, val_loss: float) -> None:
    """Write the final weights (``model.pt``) with the model config, the step and the validation loss."""
    save(
        {"config": dataclasses.asdict(model_cfg), "state_dict": model.state_dict(), "step": step,
         "val_loss": val_loss, "package_version": __version__},
        path,
    )


def load_model(model_dir: str | Path, device: str | torch.device | None = None) -> WorldModel:
    """The trained :class:`WorldModel` of a model directory (``model.pt``), in eval mode."""
    path = Path(model_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model (run `alchemy-mbrl train --out {model_dir}` to completion)")
    dev = resolve_device(None if device is None else str(device))
    blob = torch.load(path, map_location=dev, weights_only=False)
    model = WorldModel(model_config_from_dict(blob["config"])).to(dev)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model
