"""The function Ray Tune runs for each trial: a TrainConfig from the space, one `training.train`.

Every epoch is reported with `ray.tune.report`. The last epoch's report waits until the weights
are saved, and carries `finished=True`: only such a trial is COMPLETE in the study.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from training import EpochStats, LabeledImages, train

from ._space import get_space


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one search shares (no storage URL: it may hold a password)."""

    space: str
    max_epochs: int
    seed: int
    output_dir: str  # absolute; trial folders go under output_dir/trials/
    cpus_per_trial: int
    model: str | None = None  # replaces the space's model (e.g. a policy search's child)


def trial_dir(output_dir: str | Path, number: int) -> Path:
    """Where trial `number` keeps its weights and configuration."""
    return Path(output_dir) / "trials" / f"{number:05d}"


def run_trial(
    config: dict[str, Any],
    *,
    settings: TrialSettings,
    train_set: LabeledImages,
    val_set: LabeledImages,
) -> None:
    """Train one configuration; ASHA may stop it at any report."""
    number = int(config["trial_number"])
    params = {k: v for k, v in config.items() if k != "trial_number"}
    train_config = (
        get_space(settings.space)
        .to_config(params)
        .replace(epochs=settings.max_epochs, seed=settings.seed + number)
    )
    if settings.model and settings.model != train_config.model:
        # The space's model arguments (e.g. cnn_reg's dropout) belong to its own model.
        train_config = train_config.replace(model=settings.model, model_kwargs={})
    torch.set_num_threads(max(1, settings.cpus_per_trial))
    use_cuda = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    device_name = torch.cuda.get_device_name(device) if use_cuda else "cpu"
    held: list[dict[str, Any]] = []
    start = time.perf_counter()

    def on_epoch_end(stats: EpochStats) -> None:
        metrics = {
            "val_accuracy": stats.val_accuracy,
            "val_loss": stats.val_loss,
            "train_loss": stats.train_loss,
            "train_accuracy": stats.train_accuracy,
            "lr": stats.lr,
            "epoch_time": stats.epoch_time,
            "images_per_second": stats.images_per_second,
            "trial_number": number,
            # Cumulative, so a trial that ASHA stops still leaves its training time behind.
            "trial_time": round(time.perf_counter() - start, 3),
        }
        if stats.epoch < train_config.epochs:
            tune.report(metrics)
        else:
            held.append(metrics)

    result = train(train_config, train_set, val_set, device=device, on_epoch_end=on_epoch_end)
    folder = trial_dir(settings.output_dir, number)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.pt"
    torch.save(result.model.state_dict(), weights.with_suffix(".tmp"))
    os.replace(weights.with_suffix(".tmp"), weights)
    (folder / "config.json").write_text(json.dumps(train_config.to_dict(), indent=2) + "\n")
    tune.report(
        {
            **held[-1],
            "finished": True,
            "checkpoint_path": str(weights),
            "wall_time": round(time.perf_counter() - start, 3),
            "device": device_name,
        }
    )
