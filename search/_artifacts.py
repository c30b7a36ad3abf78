"""Saved runs: weights (a plain state dict) beside the config.json that rebuilds the network.

Every command that saves a model (`search.train --save`, each search trial, `search.retrain`)
writes it through `save_run`, in one schema, and `load_model` reads it back:

    weights.pt   the model's state dict
    config.json  {"train_config": TrainConfig.to_dict(), "precision": what ran (fp32, bf16 or
                  fp16; train_config's "auto" resolved), ...what the writer adds (trial, params)}
"""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import create_model
from training import (
    OutputError,
    TrainConfig,
    atomic_write,
    atomic_write_json,
    build_model,
    new_folder,
)

from ._errors import UsageError

WEIGHTS = "weights.pt"
CONFIG = "config.json"
# A run's full training state (search.retrain --resume, a search trial's checkpoint); removed
# when the run is done.
STATE = "state.pt"
TRAIN_CONFIG = "train_config"  # the key of config.json that holds the TrainConfig
PRECISION = "precision"  # the key of config.json that holds the precision the run trained in


class ArtifactError(UsageError):
    """Saved weights that cannot be used; the message names the file and what was expected."""


def save_run(
    folder: str | Path,
    model: nn.Module,
    config: TrainConfig,
    *,
    precision: str | None = None,
    **extra: Any,
) -> Path:
    """Write `model`'s weights and `config` (plus the JSON-able `extra`) into `folder`;
    `precision` is the one it trained in (`TrainResult.precision`), recorded when given.

    Each file is written atomically, weights first, so a folder with a config.json holds a
    complete run. Returns the weights' path. Any failure raises `OutputError` with a one-line
    message (errno ENOSPC for a full disk) and leaves neither file nor temp file behind.
    """
    folder = Path(folder)
    weights = folder / WEIGHTS
    recorded = {TRAIN_CONFIG: config.to_dict(), **({PRECISION: precision} if precision else {})}
    try:
        with new_folder(folder):  # a folder made here goes again when a write fails
            atomic_write(weights, lambda tmp: torch.save(model.state_dict(), tmp))
            try:
                atomic_write_json(folder / CONFIG, {**recorded, **extra})
            except BaseException:  # weights without their config.json: a run nobody can load
                weights.unlink(missing_ok=True)
                raise
    except (OSError, RuntimeError) as exc:  # torch.save reports write errors as RuntimeError
        if isinstance(exc, OutputError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO
        raise OutputError(
            code, f"cannot save the run in {folder}: {reason.strip().splitlines()[0]}"
        ) from exc
    return weights


# Room a run needs on top of its weights: the training state (weights again, an optimizer's one
# or two moments, generators) and the small files, with a margin.
_STATE_COPIES = 3
_MARGIN_BYTES = 16 << 20


def run_bytes(config: TrainConfig, *, state: bool = True) -> int:
    """About what a run of `config` writes: its weights, its training state (unless `state` is
    false: a run that keeps none) and a margin."""
    with torch.device("meta"):  # the shapes only: nothing is allocated or initialised
        model = create_model(config.model, **config.model_kwargs)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return (1 + (_STATE_COPIES if state else 0)) * weights + _MARGIN_BYTES


def remove_run(folder: str | Path) -> None:
    """Remove a saved run's weights and config.json (and the folder when nothing else is
    left): what a trial the study records as unfinished must not leave looking complete."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # absent, or it holds something else (a training state to resume from)


def load_model(target: str | Path, device: torch.device) -> tuple[nn.Module, TrainConfig]:
    """The model saved at `target` (a folder, or a weights file with config.json beside it)."""
    weights, config_path = _paths(target)
    if not weights.is_file():
        raise ArtifactError(f"no weights at {weights}; expected a retrain folder or a weights.pt")
    if not config_path.is_file():
        raise ArtifactError(
            f"no {CONFIG} beside {weights}; expected the configuration this project saves with "
            "its weights"
        )
    config = read_train_config(config_path)
    try:
        model = build_model(config, device)
    except (ValueError, TypeError) as exc:  # e.g. a model keyword the model does not take
        raise ArtifactError(f"{config_path} names a model we cannot build ({exc})") from None
    try:
        # weights_only: a checkpoint is data, never code to run. Its refusal of a pickle warns
        # in several lines first; the error line below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"cannot load {weights} as a state dict ({type(exc).__name__}); expected weights "
            "saved by this project"
        ) from None
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


# A config.json is a few kilobytes; a file far larger is not one.
_MAX_CONFIG_BYTES = 1 << 20


def read_train_config(path: str | Path) -> TrainConfig:
    """The TrainConfig of a config.json that `save_run` wrote (`search.train --save`, a retrain,
    a trial); ArtifactError naming the file for one that is missing or not such a file."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"no file {path}; expected a {CONFIG} written by search.train --save or search.retrain"
        )
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes; a config.json is a few kilobytes")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get(TRAIN_CONFIG), dict):
            raise ValueError(f"no {TRAIN_CONFIG!r} object")
        return TrainConfig.from_dict(raw[TRAIN_CONFIG])
    except (ValueError, TypeError, RecursionError, OSError) as exc:  # JSON and UTF-8 errors too
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ArtifactError(f"{path} is not a configuration of ours ({reason})") from None


def trained_precision(target: str | Path, config: TrainConfig) -> str:
    """The precision the run saved at `target` trained in (`config`: what `load_model` gave):
    what config.json records as run, else, for a run saved without it, what `config` asks."""
    recorded = json.loads(_paths(target)[1].read_text()).get(PRECISION)
    return recorded if isinstance(recorded, str) else config.precision


def _paths(target: str | Path) -> tuple[Path, Path]:
    """The weights file and config.json of the saved run at `target`."""
    target = Path(target)
    weights = target / WEIGHTS if target.is_dir() else target
    return weights, weights.parent / CONFIG
