"""Files of a model directory: the training checkpoint, the final weights, and loading them.

    checkpoint.pt    model, optimiser, GradScaler, torch RNG and data-order state (resume)
    model.pt         final weights + model config (what the planner and ``model-eval`` load)

Both are written through :func:`alchemy_mbrl.io.atomic_write`, so an interrupted save never
leaves a partial file under either name. Both hold only tensors and plain types (dicts, lists,
numbers, strings), and both are read with ``torch.load(..., weights_only=True)``: a crafted file
cannot run code (its pickle may name no function or class), it is refused with one line naming it.
Their bytes are a function of their content: the zip archive inside is always named ``archive``
(``torch.save`` names it after the file, which would be the random temporary name).
"""

from __future__ import annotations

import dataclasses
import io
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
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device {name!r} is not a torch device (use cpu, cuda or cuda:N): {exc}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name!r}: device type {dev.type!r} is not supported (use cpu, cuda or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name!r} requested but MPS is not available")
    return dev


def save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically; the same ``obj`` always gives the same bytes (see the module's docstring)."""
    buf = io.BytesIO()
    torch.save(obj, buf)  # archive name "archive", whatever the file is called
    with atomic_write(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def safe_load(path: str | Path, map_location: Any = "cpu", what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain types only, never code.

    ``path`` must be a regular file (:func:`alchemy_mbrl.io.check_input`); any failure (not a torch file,
    truncated, or a pickle naming a function or class) is a ``ValueError`` of one line naming ``path``.
    """
    from alchemy_mbrl.io import check_input

    check_input(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (UnpicklingError, RuntimeError, EOFError, zipfile errors...)
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Unsupported operand" in str(exc):
            raise ValueError(f"{path}: refused: the {what} holds objects other than tensors and plain values "
                             "(a crafted or foreign file; it was not run)") from None
        raise ValueError(f"{path}: cannot read the {what} ({_first_line(exc)})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, every tensor on the CPU; ``ValueError`` naming the file if it cannot be read.

    Always loaded to the CPU, whatever the training device: ``load_state_dict`` of the model and of
    the optimiser move the tensors to the parameters' device, and the RNG states must stay CPU
    ``ByteTensor``s (``torch.set_rng_state`` raises ``TypeError`` on a CUDA tensor).
    """
    try:
        ckpt = safe_load(path, "cpu", "checkpoint")
    except ValueError as exc:
        raise ValueError(f"{exc}; delete it to restart") from None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "step", "config"} <= set(ckpt):
        raise ValueError(f"{path}: not a training checkpoint written by `alchemy-mbrl train`; delete it to restart")
    return ckpt


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
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected the model file written by `alchemy-mbrl train`")
    dev = resolve_device(None if device is None else str(device))
    try:
        blob = safe_load(path, dev, "model file")
    except ValueError as exc:
        raise ValueError(f"{exc}; not a model file written by `alchemy-mbrl train`") from None
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not a model file written by `alchemy-mbrl train` (no 'config' and 'state_dict'; "
                         "a training checkpoint.pt is not a model.pt)")
    try:
        model = WorldModel(model_config_from_dict(blob["config"])).to(dev)
        model.load_state_dict(blob["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{path}: model file does not match this package's world model: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model.eval()
    return model
