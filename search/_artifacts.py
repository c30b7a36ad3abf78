"""Saved models: weights (a plain state dict) beside the config.json that rebuilds the network."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import TrainConfig, build_model

WEIGHTS = "weights.pt"
CONFIG = "config.json"


class ArtifactError(ValueError):
    """Saved weights that cannot be used; the message names the file and what was expected."""


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def save_weights(model: nn.Module, folder: Path) -> Path:
    """The model's state dict as `folder/weights.pt`, written atomically."""
    path = folder / WEIGHTS
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def load_model(target: str | Path, device: torch.device) -> tuple[nn.Module, TrainConfig]:
    """The model saved at `target` (a folder, or a weights file with config.json beside it)."""
    target = Path(target)
    weights = target / WEIGHTS if target.is_dir() else target
    config_path = weights.parent / CONFIG
    if not weights.is_file():
        raise ArtifactError(f"no weights at {weights}; expected a retrain folder or a weights.pt")
    if not config_path.is_file():
        raise ArtifactError(
            f"no {CONFIG} beside {weights}; expected the configuration this project saves with "
            "its weights"
        )
    try:
        raw = json.loads(config_path.read_text())
        config = TrainConfig.from_dict(raw.get("train_config", raw))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{config_path} is not a configuration of ours ({exc})") from None
    try:
        # weights_only: a checkpoint is data, never code to run.
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"cannot load {weights} as a state dict ({type(exc).__name__}); expected weights "
            "saved by this project"
        ) from None
    model = build_model(config, device)
    if not isinstance(state, dict):
        raise ArtifactError(f"{weights} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtifactError(
            f"weights in {weights} do not fit model {config.model!r} ({first})"
        ) from None
    return model, config
