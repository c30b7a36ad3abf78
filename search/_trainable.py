"""The function Ray Tune runs for each trial: a TrainConfig from the space, one `training.train`.

Every epoch is reported with `ray.tune.report`, its number as `epoch` (Tune's own count restarts
when Ray restarts a trial). The last epoch's report waits until the weights are saved, and
carries `finished=True`: only such a trial is COMPLETE in the study. When the weights cannot be
saved (a full disk), the last report carries `save_error` instead, a one-line reason, and no
`finished`; the searcher records such a trial as FAIL without dropping its values. An error the
training raises is the last report's `error` (see `run_trial`).

A trial saves its full training state in its folder (STATE) as `checkpoint_policy` says. Run
again (Ray restarting it after its worker died, or a retry of an interrupted trial: see
search/_resume.py), it continues from the newest checkpoint and first reports the epochs that
checkpoint restored, so the study's row holds each epoch once. `CheckpointSweeper` removes the
checkpoints of trials that ended for good.

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
from functools import partial
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial
from torch import nn

from training import (
    CheckpointError,
    CheckpointPolicy,
    EpochStats,
    LabeledImages,
    OutputError,
    TrainConfig,
    TrainResult,
    device_name,
    train,
)

from ._artifacts import STATE, remove_run, save_run
from ._resume import (
    CHECKPOINT_BUDGET,
    CHECKPOINT_INTERVAL,
    CHECKPOINT_REFUSED,
    RESUME_FROM,
    RESUMED_FROM_EPOCH,
    SEED_TRIAL,
    space_params,
)
from ._searcher import ERROR, METRIC, exception_line
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
    checkpoint_every: int | None = None  # --checkpoint-every; None: the default policy
    # A density space's fold-model record (search/_density.py); None: trials train.
    folds: dict[str, Any] | None = None
    child: dict[str, Any] | None = None  # a policy space's child (StudySettings.child)


def trial_dir(output_dir: str | Path, number: int) -> Path:
    """Where trial `number` keeps its weights and configuration."""
    return Path(output_dir) / "trials" / f"{number:05d}"


def discard_unfinished(output_dir: str | Path, numbers: list[int], *, resume: bool) -> None:
    """Remove the saved weights of trials the study records FAIL (interrupted): a driver
    stopped between a trial's save and its last report would leave them looking complete.
    Their checkpoints stay when they will be resumed (`resume`)."""
    for number in numbers:
        if not resume:
            remove_checkpoints(output_dir, [number])
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
    """Train one configuration; ASHA may stop it at any report.

    An error the training raises (a diverged loss, out of memory, a bad configuration) becomes
    the trial's last report (`error`), not an exception: Ray restarts a trial whose function
    raised as it restarts one whose worker died (up to --max-failures), and only the latter can
    go better a second time.
    """
    report_errors(_train_trial, config, settings, train_set, val_set)


def report_errors(body: Callable[..., None], config: dict[str, Any], *args: Any) -> None:
    """`body(config, *args)`, an exception it raises reported as the trial's last result."""
    try:
        body(config, *args)
        return
    except Exception as exc:  # Ray's stop of a trial is a SystemExit: it passes
        line = exception_line(exc)
    # Reported outside the except block, so the error's frames (and on CUDA their tensors) are
    # freed first; with the metric's key but no value, since Tune refuses a result without the
    # key, and ASHA and the searcher pass over a result without an epoch.
    tune.report({ERROR: line, METRIC: None, "trial_number": int(config["trial_number"])})


def checkpoint_policy(every: int | None) -> CheckpointPolicy:
    """How often a trial saves its state: `--checkpoint-every` epochs (0: never) and at least
    every CHECKPOINT_INTERVAL seconds; by default every epoch whose save costs at most
    CHECKPOINT_BUDGET of the training time. The last epoch is never saved: its weights are."""
    if every is None:
        return CheckpointPolicy(
            every=1, max_interval=CHECKPOINT_INTERVAL, budget=CHECKPOINT_BUDGET, at_end=False
        )
    return CheckpointPolicy(
        every=every, max_interval=CHECKPOINT_INTERVAL if every else None, at_end=False
    )


def trial_train_config(
    space: str, settings: Any, params: dict[str, Any], seed_trial: int
) -> TrainConfig:
    """The run trial `seed_trial`'s `params` stand for in a search of `space` with `settings`
    (TrialSettings, or the job's StudySettings): its epochs, seed, model and precision."""
    return get_space(space).trial_config(
        params,
        epochs=settings.max_epochs,
        seed=settings.seed + seed_trial,
        model=settings.model,
        precision=settings.precision,
        child=settings.child,
    )


def rerun_config(space: str, settings: Any, trial: Any) -> TrainConfig:
    """What a study's finished `trial` (an optuna FrozenTrial) trained, to train it again: a
    retry's seed is that of the trial it continued."""
    seed_trial = int(trial.user_attrs.get(SEED_TRIAL, trial.number))
    return trial_train_config(space, settings, trial.params, seed_trial)


def _train_trial(
    config: dict[str, Any],
    settings: TrialSettings,
    train_set: LabeledImages,
    val_set: LabeledImages,
) -> None:
    number = int(config["trial_number"])
    params = space_params(config)
    # A retry trains with the seed of the trial it continues: the same run.
    train_config = trial_train_config(
        settings.space, settings, params, int(config.get(SEED_TRIAL, number))
    )
    device, device_name = trial_device(settings)
    folder = trial_dir(settings.output_dir, number)
    state = find_checkpoint(folder, config.get(RESUME_FROM, []), settings.output_dir)
    check = _injected_oom(number, device, settings.gpus_per_trial)
    reporter = _EpochReporter(number, train_config.epochs, check)
    result = _train_resuming(train_config, train_set, val_set, device, state, settings, reporter)
    final = {
        **reporter.held[-1],
        "wall_time": round(time.perf_counter() - reporter.start, 3),
        "device": device_name,
        "precision": result.precision,  # what "auto" became on this trial's device
    }
    tune.report(
        final_report(
            final, folder, result.model, train_config, number, params, precision=result.precision
        )
    )


def _train_resuming(
    config: TrainConfig,
    train_set: LabeledImages,
    val_set: LabeledImages,
    device: torch.device,
    state: Path,
    settings: TrialSettings,
    reporter: _EpochReporter,
) -> TrainResult:
    """`train` with its checkpoint at `state`, continuing from it when it exists; one that
    cannot be loaded (corrupt, or of another configuration) is removed and the trial starts
    over, its first report saying why."""
    run = partial(
        train,
        config,
        train_set,
        val_set,
        device=device,
        on_epoch_end=reporter.on_epoch_end,
        checkpoint_path=state,
        checkpoint_policy=checkpoint_policy(settings.checkpoint_every),
    )
    if not state.exists():
        return run()
    try:
        return run(resume=True, on_resume=reporter.on_resume)
    except CheckpointError as exc:
        reporter.refused = str(exc)
        state.unlink(missing_ok=True)
    return run()


class _EpochReporter:
    """Reports each epoch to Tune (the last one is held until the weights are saved); replays
    the epochs a checkpoint restored, so a retry's study row holds every epoch."""

    def __init__(self, number: int, epochs: int, check: Callable[[EpochStats], None]) -> None:
        self.number, self.epochs, self.check = number, epochs, check
        self.start = time.perf_counter()
        self.held: list[dict[str, Any]] = []
        self.restored = 0  # epochs restored from a checkpoint
        self.refused: str | None = None  # why a checkpoint found was not loaded

    def metrics(self, stats: EpochStats) -> dict[str, Any]:
        metrics = {
            "epoch": stats.epoch,
            "val_accuracy": stats.val_accuracy,
            "val_loss": stats.val_loss,
            "train_loss": stats.train_loss,
            "train_accuracy": stats.train_accuracy,
            "lr": stats.lr,
            "epoch_time": stats.epoch_time,
            "images_per_second": stats.images_per_second,
            "trial_number": self.number,
            # Cumulative, so a trial that ASHA stops still leaves its training time behind.
            "trial_time": round(time.perf_counter() - self.start, 3),
            RESUMED_FROM_EPOCH: self.restored,
        }
        if self.refused:
            metrics[CHECKPOINT_REFUSED] = self.refused
        return metrics

    def on_resume(self, history: list[EpochStats]) -> None:
        self.restored = len(history)
        for stats in history:
            tune.report(self.metrics(stats))

    def on_epoch_end(self, stats: EpochStats) -> None:
        self.check(stats)
        if stats.epoch < self.epochs:
            tune.report(self.metrics(stats))
        else:
            self.held.append(self.metrics(stats))


def find_checkpoint(folder: Path, resume_from: list[int], output_dir: str | Path) -> Path:
    """Where trial folder `folder` keeps its checkpoint (STATE), the newest one of the trials it
    continues (`resume_from`, newest first) moved there when it has none of its own yet."""
    state = folder / STATE
    if state.exists():  # its own: Ray restarted it after its worker died
        return state
    for number in resume_from:
        earlier = trial_dir(output_dir, number) / STATE
        if earlier.exists():
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(earlier, state)  # same file system: the trials folder
            return state
    return state


def remove_checkpoints(output_dir: str | Path, numbers: list[int]) -> None:
    """Remove the checkpoints of trials that ended for good (and of those they continued)."""
    for number in numbers:
        folder = trial_dir(output_dir, number)
        (folder / STATE).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass  # absent, or it holds the trial's weights


class CheckpointSweeper(Callback):
    """Removes a trial's checkpoints once Tune ended it for good: completed, stopped by ASHA,
    failed. An interrupted trial keeps its own: its retry continues from it."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = output_dir

    def _sweep(self, trial: Trial) -> None:
        config = trial.config
        if "trial_number" in config:
            numbers = [int(config["trial_number"]), *config.get(RESUME_FROM, [])]
            remove_checkpoints(self.output_dir, numbers)

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._sweep(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._sweep(trial)


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
