"""The final retrain: `python -m search.retrain --study cnn_reg`.

Takes the study's best trial (or `--trial N`), its configuration exactly as the trial ran it,
trains it to the space's full length with milestones scaled to that length, evaluates once on the
test split, and writes a folder: weights.pt, config.json, metrics.json, report.html.

Validation: by default the study's validation split stays held out (the same 5,000 images the
search scored on), so the run has validation curves and `--patience` can stop it early;
`--full-train` adds those images to training instead. metrics.json records which.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import (
    CIFAR10_SHORT_NAMES,
    NonFiniteLossError,
    OutputError,
    TrainConfig,
    atomic_write_json,
    check_free_space,
    check_output_dir,
    device_name,
    effective_precision,
    evaluate,
    load_cifar10,
    locate_cifar10,
    resolve_policy,
    train,
    train_val_split,
)

from ._artifacts import STATE, run_bytes, save_run
from ._console import (
    EPOCH_HEADER,
    POLICY_CHOICES,
    USAGE_ERRORS,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    add_study_options,
    epoch_count,
    error_exit,
    format_epoch,
    format_test_report,
    nonnegative_int,
    open_study_from_args,
    path_option,
    policy_option,
    positive_int,
    seed_value,
)
from ._errors import UsageError
from ._recipe import pick_trial, trial_config
from ._study import (
    StudyRecord,
    check_sqlite_writable,
    redact,
    write_retrain_summary,
)
from ._version import project_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.retrain",
        description="Retrain a study's best (or chosen) trial to full length and test it once.",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser)
    parser.add_argument(
        "--trial",
        type=nonnegative_int,
        default=None,
        help="trial number to retrain (default: the best complete trial)",
    )
    parser.add_argument(
        "--epochs",
        type=epoch_count,
        default=None,
        help="epochs (default: the space's full length, 125 for cnn_reg)",
    )
    parser.add_argument(
        "--policy",
        type=policy_option,
        default=None,
        help=f"replace the trial's AutoAugment-style policy: {POLICY_CHOICES} "
        "(default: the trial's own)",
    )
    parser.add_argument(
        "--seed",
        type=seed_value,
        default=None,
        help="training seed (default: the trial's own, study seed + number)",
    )
    add_precision_option(parser, "the study's, else auto")
    parser.add_argument(
        "--full-train",
        action="store_true",
        help="train on all 50,000 training images (the validation split joins)",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="early stopping on validation loss (default: off)",
    )
    parser.add_argument(
        "--out",
        type=path_option,
        default=None,
        help="output folder (default: studies/STUDY/retrain-TIME/)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the last interrupted retrain of this study (or --out)",
    )
    add_data_options(parser, val_size=False, train_size_default="all, for quick checks")
    return parser


@dataclass(frozen=True)
class RetrainJob:
    """What a retrain will run, checked before any output is written or data is read."""

    study: Any  # the optuna.Study
    url: str
    trial: Any  # the FrozenTrial retrained
    config: TrainConfig
    device: torch.device
    precision: str  # what the run trains in ("auto" resolved on this device)
    out: Path
    full_train: bool
    resume: bool


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    job = None
    try:
        job = resolve_retrain(args)
        train_set, val_set, test = _load_data(args, job)
        _say_start(job, train_set)
        result, wall = _train(job, train_set, val_set)
        tested = evaluate(
            result.model, test, device=job.device, tta=job.config.tta, precision=result.precision
        )
        print(format_test_report(tested))
        _write_outputs(job, result, tested, _metrics(job, result, tested, val_set, wall))
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None
    except KeyboardInterrupt:
        where = f" (state in {job.out})" if job else ""
        print(f"\ninterrupted; continue with the same command plus --resume{where}")
        raise SystemExit(130) from None


def resolve_retrain(args: argparse.Namespace) -> RetrainJob:
    """The trial, its configuration at full length, the device and the output folder, each
    checked (UsageError in one line) before anything is written."""
    study, _, url = open_study_from_args(args)
    try:
        trial = pick_trial(study, args.trial)
        config = _trial_config(args, StudyRecord.of(study), trial)
        if config.policy:
            resolve_policy(config.policy)  # a bad policy file fails here, before any output
        if config.patience and args.full_train:
            raise ValueError("--patience needs the validation split; drop --full-train")
        device = args.device
        # "auto" resolved as the search's trials resolve it; a precision this device lacks
        # fails here, in one line.
        precision = effective_precision(config.precision, device)
        out = _output_folder(args, study.study_name)
        check_free_space(out, run_bytes(config), "--out" if args.out else "--studies-dir")
        # The test accuracy is recorded in the study at the very end.
        check_sqlite_writable(url, "--storage" if args.storage else "--studies-dir")
    except OutputError:
        raise  # its own exit status: 1 for a full disk
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return RetrainJob(
        study, url, trial, config, device, precision, out, args.full_train, args.resume
    )


def _trial_config(args: argparse.Namespace, record: StudyRecord, trial: Any) -> TrainConfig:
    """The trial's configuration exactly as it ran, at the space's full length, with the
    options that replace parts of it."""
    return trial_config(
        record, trial, epochs=args.epochs, seed=args.seed, precision=args.precision
    ).replace(
        **({"policy": args.policy} if args.policy else {}),
        **({"patience": args.patience} if args.patience else {}),
    )


def _load_data(args: argparse.Namespace, job: RetrainJob) -> tuple[Any, Any, Any]:
    """(train, validation or None, test): the study's own split, or all training images with
    --full-train."""
    record = StudyRecord.of(job.study)
    try:
        files = locate_cifar10(args.data, "train")
        data = files.read()
        val_size = 0 if job.full_train else record.val_size
        train_set, val_set = train_val_split(data, val_size, record.seed, args.train_size)
        test = load_cifar10(args.data, "test")  # the input is accepted: cached as it is read
    except ValueError as exc:  # DataError included
        raise UsageError(str(exc)) from None
    files.write_cache(data)  # only now: a refused command writes no cache
    return train_set, (None if job.full_train else val_set), test


def _say_start(job: RetrainJob, train_set: Any) -> None:
    job.out.mkdir(parents=True, exist_ok=True)
    config = job.config
    milestones = config.milestone_epochs() if config.schedule == "multistep" else "-"
    print(
        f"retraining trial #{job.trial.number} of study {job.study.study_name!r} "
        f"(search validation accuracy {_pct(job.trial.value)}) for {config.epochs} epochs on "
        f"{len(train_set)} images, milestones at epochs {milestones}, device {job.device}, "
        f"precision {job.precision}"
    )
    print(f"output: {job.out}")
    if job.resume:
        print(f"resuming from the last epoch saved in {job.out / STATE}")
    print(EPOCH_HEADER, flush=True)


def _train(job: RetrainJob, train_set: Any, val_set: Any) -> tuple[Any, float]:
    """The training run with its epoch table (and a batch bar on a terminal); its seconds."""
    show_bar = sys.stdout.isatty()

    def bar(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            filled = int(30 * done / total)
            print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", flush=True)

    def epoch_line(stats) -> None:
        print(("\r" if show_bar else "") + format_epoch(stats, job.config.epochs), flush=True)

    started = time.perf_counter()
    try:
        result = train(
            job.config,
            train_set,
            val_set,
            device=job.device,
            on_epoch_end=epoch_line,
            on_batch_end=bar if show_bar else None,
            checkpoint_path=job.out / STATE,
            resume=job.resume,
        )
    except NonFiniteLossError as exc:
        raise UsageError(
            f"training diverged: {exc}; the partial state stays in {job.out}", 1
        ) from None
    except ValueError as exc:  # a --resume state that is not a checkpoint of ours
        raise UsageError(str(exc)) from None
    return result, time.perf_counter() - started


def _metrics(
    job: RetrainJob, result: Any, tested: Any, val_set: Any, wall: float
) -> dict[str, Any]:
    """metrics.json: the test result, the validation curve's summary and the run's record."""
    vals = [s for s in result.history if s.val_accuracy is not None]
    return {
        "test_accuracy": tested.accuracy,
        "test_loss": tested.loss,
        "test_tta": tested.tta,
        "per_class_accuracy": dict(
            zip(CIFAR10_SHORT_NAMES, tested.per_class_accuracy, strict=True)
        ),
        "confusion_matrix": tested.confusion,
        "best_val_accuracy": max((s.val_accuracy for s in vals), default=None),
        "best_val_loss": min((s.val_loss for s in vals), default=None),
        "final_val_accuracy": vals[-1].val_accuracy if vals else None,
        "final_val_loss": vals[-1].val_loss if vals else None,
        "validation": "joined training (--full-train)"
        if job.full_train
        else f"held out ({len(val_set)} images, the study's split)",
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "wall_time": wall,
        "device": device_name(job.device),
        "precision": result.precision,  # what ran; train_config.precision is what was asked
        "seed": job.config.seed,
        "study": job.study.study_name,
        "trial": job.trial.number,
        "search_val_accuracy": job.trial.value,
        "project_version": project_version(),
        "history": [vars(s) for s in result.history],
    }


def _write_outputs(job: RetrainJob, result: Any, tested: Any, metrics: dict[str, Any]) -> None:
    """The run's folder (weights, configuration, metrics, report), then the study's record of
    the test accuracy; the training state goes last."""
    from ._retrain_figures import write_retrain_report

    study, trial, out = job.study, job.trial, job.out
    try:
        save_run(
            out,
            result.model,
            job.config,
            study=study.study_name,
            trial=trial.number,
            storage=redact(job.url),
            search_val_accuracy=trial.value,
            params=trial.params,
            precision=result.precision,
        )
        atomic_write_json(out / "metrics.json", metrics)
        write_retrain_report(
            out / "report.html",
            metrics,
            title=f"{study.study_name} trial #{trial.number} retrained",
        )
    except OSError as exc:  # a full disk at the very end: say so; the training state stays
        raise UsageError(
            f"{exc}; the last epoch's training state stays in {out / STATE}", 1
        ) from None
    (out / STATE).unlink(missing_ok=True)
    summary = {
        "trial": trial.number,
        "test_accuracy": tested.accuracy,
        "dir": str(out),
        "epochs": len(result.history),
        "search_val_accuracy": trial.value,
    }
    write_retrain_summary(study, trial.number, summary)
    print(
        f"wrote {out}/ (weights.pt, config.json, metrics.json, report.html); recorded the test "
        f"accuracy in study {study.study_name!r}"
    )


def _output_folder(args: argparse.Namespace, study: str) -> Path:
    """`--out`, the folder to resume, or a new timestamped one; checked writable before the data
    loads and the training starts, so a place that cannot be written fails now, in one line,
    rather than after hours of training."""
    base = args.studies_dir / study
    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.resume:
        if args.out is not None:
            if not (args.out / STATE).exists():
                raise ValueError(f"nothing to resume in {args.out}: no {STATE} there")
            return args.out
        candidates = sorted(p for p in base.glob("retrain-*") if (p / STATE).exists())
        if not candidates:
            raise ValueError(f"no interrupted retrain of study {study!r} under {base} to resume")
        return check_output_dir(candidates[-1], "--studies-dir")
    if args.out is not None:
        if args.out.exists() and any(args.out.iterdir()):
            raise ValueError(f"output folder {args.out} is not empty; choose another --out")
        return args.out
    return check_output_dir(base, "--studies-dir") / time.strftime("retrain-%Y%m%d-%H%M%S")


def _pct(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None and math.isfinite(value) else "-"


if __name__ == "__main__":
    main()
