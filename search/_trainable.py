"""The function Ray Tune runs for each trial: a TrainConfig from the space, one `training.train`.

Every epoch is reported with `ray.tune.report`. The last epoch's report waits until the weights
are saved, and carries `finished=True`: only such a trial is COMPLETE in the study. When the
weights cannot be saved (a full disk), the last report carries `save_error` instead, a one-line
reason, and no `finished`; the searcher records such a trial as FAIL without dropping its values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from torch import nn

from training import EpochStats, LabeledImages, OutputError, TrainConfig, train

from ._artifacts import save_run
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
    precision: str = "auto"  # training.PRECISIONS, the same for every trial of a study
    # A density space's fold-model record (search/_density.py); None: trials train.
    folds: dict[str, Any] | None = None


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
    train_config = get_space(settings.space).trial_config(
        params,
        epochs=settings.max_epochs,
        seed=settings.seed + number,
        model=settings.model,
        precision=settings.precision,
    )
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
    final = {
        **held[-1],
        "wall_time": round(time.perf_counter() - start, 3),
        "device": device_name,
    }
    folder = trial_dir(settings.output_dir, number)
    tune.report(final_report(final, folder, result.model, train_config, number, params))


def final_report(
    metrics: dict[str, Any],
    folder: Path,
    model: nn.Module,
    config: TrainConfig,
    number: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The trial's last report: `metrics` after saving the run in `folder`.

    Saved: with `finished=True` and `checkpoint_path`. Not saved (a full disk, an unwritable
    folder): with `save_error`, one line saying why, so the trial's values still reach the study.
    """
    try:
        weights = save_run(folder, model, config, trial=number, params=params)
    except OutputError as exc:
        return {**metrics, "save_error": str(exc)}
    return {**metrics, "finished": True, "checkpoint_path": str(weights)}
