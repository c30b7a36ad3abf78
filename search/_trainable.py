"""The function Ray Tune runs for each trial: a TrainConfig from the space, one `training.train`.

Every epoch is reported with `ray.tune.report`. The last epoch's report waits until the weights
are saved, and carries `finished=True`: only such a trial is COMPLETE in the study. When the
weights cannot be saved (a full disk), the last report carries `save_error` instead, a one-line
reason, and no `finished`; the searcher records such a trial as FAIL without dropping its values.

On CUDA each trial caps its process's memory at its GPU share (`TrialSettings.gpus_per_trial`,
less a reserve for its CUDA context: `memory_fraction`), so a trial that outgrows its share gets
its own out-of-memory error instead of pushing a neighbour on the same GPU out of memory.

Test hook: with `SEARCH_INJECT_OOM_TRIAL=N` in the environment of the search (Ray's workers
inherit it), trial number N runs out of memory inside `training.train` at the end of its first
epoch, as a trial that outgrew its share would: on CUDA it allocates one byte more than its cap,
so the allocator itself raises `torch.cuda.OutOfMemoryError`, on CPU the error is raised. It
exists for the tests and bench/gpu_check.sh, which show such a trial ending FAIL "out of memory"
alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from torch import nn

from training import EpochStats, LabeledImages, OutputError, TrainConfig, device_name, train

from ._artifacts import remove_run, save_run
from ._space import get_space

INJECT_OOM_ENV = "SEARCH_INJECT_OOM_TRIAL"
# Memory a trial's process holds outside its allocator's cap: the CUDA context and the kernels
# loaded into it (a few hundred MB). Reserved, so that the caps and contexts of the trials
# sharing a GPU fit in it together.
CONTEXT_RESERVE = 1 << 30


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one search shares (no storage URL: it may hold a password)."""

    space: str
    max_epochs: int
    seed: int
    output_dir: str  # absolute; trial folders go under output_dir/trials/
    cpus_per_trial: int
    gpus_per_trial: float = 0.0  # each trial's share of one GPU; its memory is capped at it
    model: str | None = None  # replaces the space's model (e.g. a policy search's child)
    precision: str = "auto"  # training.PRECISIONS, the same for every trial of a study
    # A density space's fold-model record (search/_density.py); None: trials train.
    folds: dict[str, Any] | None = None


def trial_dir(output_dir: str | Path, number: int) -> Path:
    """Where trial `number` keeps its weights and configuration."""
    return Path(output_dir) / "trials" / f"{number:05d}"


def discard_unfinished(output_dir: str | Path, numbers: list[int]) -> None:
    """Remove the saved weights of trials the study records FAIL (interrupted): a driver
    stopped between a trial's save and its last report would leave them looking complete."""
    for number in numbers:
        remove_run(trial_dir(output_dir, number))


def memory_fraction(share: float, total_bytes: int) -> float:
    """The part of a GPU of `total_bytes` that a trial with `share` of it may allocate: the share
    less `CONTEXT_RESERVE` (never below half the share); a whole GPU or more: all of it."""
    if share <= 0 or share >= 1:
        return 1.0
    return max(share / 2, share - CONTEXT_RESERVE / total_bytes)


def trial_device(settings: TrialSettings) -> tuple[torch.device, str]:
    """The device a trial runs on and its name, after giving the trial its CPU threads and, on
    CUDA, capping its memory at its share (`memory_fraction`)."""
    torch.set_num_threads(max(1, settings.cpus_per_trial))
    if not (ray.get_gpu_ids() and torch.cuda.is_available()):
        return torch.device("cpu"), "cpu"
    device = torch.device("cuda")
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(
        memory_fraction(settings.gpus_per_trial, total), device
    )
    return device, device_name(device)


def _injected_oom(number: int, device: torch.device, share: float) -> Callable[[EpochStats], None]:
    """The test hook (module docstring): at trial `number`'s first epoch, when asked to, on CUDA
    an allocation of one byte more than the trial's cap (the allocator's own out-of-memory
    error), else a raised `torch.cuda.OutOfMemoryError`."""
    asked = os.environ.get(INJECT_OOM_ENV, "").strip() == str(number)
    hook = f"injected by {INJECT_OOM_ENV}={number}, a test hook"

    def check(stats: EpochStats) -> None:
        if not asked or stats.epoch != 1:
            return
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            cap = int(memory_fraction(share, total) * total)
            torch.empty(cap + 1, dtype=torch.uint8, device=device)  # raises where the cap holds
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory NOT raised by the allocator: {cap + 1} bytes, over the "
                f"trial's cap, were allocated ({hook})"
            )
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 0 bytes ({hook})")

    return check


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
    device, device_name = trial_device(settings)
    inject_oom = _injected_oom(number, device, settings.gpus_per_trial)
    held: list[dict[str, Any]] = []
    start = time.perf_counter()

    def on_epoch_end(stats: EpochStats) -> None:
        inject_oom(stats)
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
        "precision": result.precision,  # what "auto" became on this trial's device
    }
    folder = trial_dir(settings.output_dir, number)
    tune.report(
        final_report(
            final, folder, result.model, train_config, number, params, precision=result.precision
        )
    )


def final_report(
    metrics: dict[str, Any],
    folder: Path,
    model: nn.Module,
    config: TrainConfig,
    number: int,
    params: dict[str, Any],
    *,
    precision: str | None = None,
) -> dict[str, Any]:
    """The trial's last report: `metrics` after saving the run (trained in `precision`) in
    `folder`.

    Saved: with `finished=True` and `checkpoint_path`. Not saved (a full disk, an unwritable
    folder): with `save_error`, one line saying why, so the trial's values still reach the study.
    """
    try:
        weights = save_run(folder, model, config, precision=precision, trial=number, params=params)
    except OutputError as exc:
        return {**metrics, "save_error": str(exc)}
    return {**metrics, "finished": True, "checkpoint_path": str(weights)}
