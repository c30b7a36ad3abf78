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
from pathlib import Path

from training import (
    CIFAR10_SHORT_NAMES,
    DataError,
    NonFiniteLossError,
    atomic_write_json,
    check_output_dir,
    effective_precision,
    evaluate,
    load_cifar10,
    resolve_device,
    train,
    train_val_split,
)

from ._artifacts import save_run
from ._console import (
    EPOCH_HEADER,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    add_study_options,
    fail,
    format_epoch,
    format_test_report,
    open_study_from_args,
    seed_value,
)
from ._space import get_space
from ._study import (
    StudyError,
    check_sqlite_writable,
    redact,
)
from ._version import project_version

STATE = "state.pt"  # the last epoch's full training state, for --resume; removed when done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.retrain",
        description="Retrain a study's best (or chosen) trial to full length and test it once.",
        formatter_class=HelpFormatter,
    )
    add_study_options(parser)
    parser.add_argument(
        "--trial",
        type=int,
        default=None,
        help="trial number to retrain (default: the best complete trial)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (default: the space's full length, 125 for cnn_reg)",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="replace the trial's AutoAugment policy: 'cifar10' or a JSON file",
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
        type=int,
        default=None,
        help="early stopping on validation loss (default: off)",
    )
    parser.add_argument(
        "--out",
        type=Path,
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


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        fail(f"--epochs {args.epochs} is invalid; expected a whole number >= 1")
    study, _, url = open_study_from_args(args)
    try:
        trial = _pick_trial(study, args.trial)
        space = get_space(study.user_attrs.get("space", args.study))
        seed = (
            args.seed
            if args.seed is not None
            else (int(study.user_attrs.get("seed", 0)) + trial.number)
        )
        config = space.trial_config(
            trial.params,
            epochs=args.epochs or space.full_epochs,
            seed=seed,
            model=study.user_attrs.get("model_override"),
            precision=args.precision or study.user_attrs.get("precision", "auto"),
        ).replace(
            **({"policy": args.policy} if args.policy else {}),
            **({"patience": args.patience} if args.patience else {}),
        )
        if config.policy:
            from training import resolve_policy

            resolve_policy(config.policy)  # a bad policy file fails here, before any output
        if config.patience and args.full_train:
            raise ValueError("--patience needs the validation split; drop --full-train")
        device = resolve_device(args.device)
        # "auto" resolved as the search's trials resolve it; a precision this device lacks
        # fails here, in one line.
        precision = effective_precision(config.precision, device)
        out = _output_folder(args, study.study_name)
        # The test accuracy is recorded in the study at the very end.
        check_sqlite_writable(url, "--storage" if args.storage else "--studies-dir")
        data = load_cifar10(args.data, "train")
        test = load_cifar10(args.data, "test")
        val_size = int(study.user_attrs.get("val_size", 5000))
        split_seed = int(study.user_attrs.get("seed", 0))
        if args.full_train:
            train_set, val_set = train_val_split(data, 0, split_seed, args.train_size)
            val_set = None
        else:
            train_set, val_set = train_val_split(data, val_size, split_seed, args.train_size)
    except (StudyError, DataError, ValueError, OSError) as exc:
        fail(str(exc))

    out.mkdir(parents=True, exist_ok=True)
    milestones = config.milestone_epochs() if config.schedule == "multistep" else "-"
    print(
        f"retraining trial #{trial.number} of study {study.study_name!r} "
        f"(search validation accuracy {_pct(trial.value)}) for {config.epochs} epochs on "
        f"{len(train_set)} images, milestones at epochs {milestones}, device {device}, precision "
        f"{precision}"
    )
    print(f"output: {out}")
    if args.resume:
        print(f"resuming from the last epoch saved in {out / STATE}")
    print(EPOCH_HEADER, flush=True)
    show_bar = sys.stdout.isatty()

    def bar(done: int, total: int) -> None:
        if show_bar and (done % 20 == 0 or done == total):
            filled = int(30 * done / total)
            print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", flush=True)

    def epoch_line(stats) -> None:
        print(("\r" if show_bar else "") + format_epoch(stats, config.epochs), flush=True)

    started = time.perf_counter()
    try:
        result = train(
            config,
            train_set,
            val_set,
            device=device,
            on_epoch_end=epoch_line,
            on_batch_end=bar if show_bar else None,
            checkpoint_path=out / STATE,
            resume=args.resume,
        )
    except NonFiniteLossError as exc:
        fail(f"training diverged: {exc}; the partial state stays in {out}", code=1)
    except ValueError as exc:  # a --resume state that is not a checkpoint of ours
        fail(str(exc))
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command plus --resume (state in {out})")
        raise SystemExit(130) from None
    wall = time.perf_counter() - started
    tested = evaluate(result.model, test, device=device, tta=config.tta, precision=result.precision)
    print(format_test_report(tested))

    vals = [s for s in result.history if s.val_accuracy is not None]
    metrics = {
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
        if args.full_train
        else f"held out ({len(val_set)} images, the study's split)",
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "wall_time": wall,
        "device": _device_name(device),
        "precision": result.precision,  # what ran; train_config.precision is what was asked
        "seed": config.seed,
        "study": study.study_name,
        "trial": trial.number,
        "search_val_accuracy": trial.value,
        "project_version": project_version(),
        "history": [vars(s) for s in result.history],
    }
    from ._retrain_figures import write_retrain_report

    try:
        save_run(
            out,
            result.model,
            config,
            study=study.study_name,
            trial=trial.number,
            storage=redact(url),
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
        fail(f"{exc}; the last epoch's training state stays in {out / STATE}", code=1)
    (out / STATE).unlink(missing_ok=True)
    summary = {
        "trial": trial.number,
        "test_accuracy": tested.accuracy,
        "dir": str(out),
        "epochs": len(result.history),
        "search_val_accuracy": trial.value,
    }
    study.set_user_attr("retrain", summary)
    study.set_user_attr(f"retrain:{trial.number}", summary)
    print(
        f"wrote {out}/ (weights.pt, config.json, metrics.json, report.html); recorded the test "
        f"accuracy in study {study.study_name!r}"
    )


def _pick_trial(study, number: int | None):
    import optuna

    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise StudyError(
                f"study {study.study_name!r} has no completed trial to retrain; run or continue "
                "the search first, or name a trial with --trial"
            )
        return study.best_trial
    matches = [t for t in trials if t.number == number]
    if not matches:
        raise StudyError(
            f"study {study.study_name!r} has no trial #{number}; expected 0..{len(trials) - 1}"
        )
    if not matches[0].params:
        raise StudyError(f"trial #{number} has no parameters to retrain")
    return matches[0]


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


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


if __name__ == "__main__":
    main()
