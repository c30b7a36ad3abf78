"""One training run from the command line: `python -m search.train --model cnn_reg --epochs 20`.

Prints an epoch table, then evaluates once on the test split in the reference report's format.
`--recipe report` is the reference report's final recipe (125 epochs, Adam, batch 32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import (
    OPTIMIZERS,
    SCHEDULES,
    LabeledImages,
    NonFiniteLossError,
    OutputError,
    TrainConfig,
    TrainResult,
    check_free_space,
    check_output_dir,
    effective_precision,
    evaluate,
    load_cifar10,
    train,
    train_val_split,
)

from ._artifacts import run_bytes, save_run
from ._console import (
    EPOCH_HEADER,
    POLICY_CHOICES,
    USAGE_ERRORS,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    as_usage_errors,
    error_exit,
    finite_float,
    format_epoch,
    format_test_report,
    nonnegative_int,
    path_option,
    policy_option,
    positive_int,
    seed_value,
)
from ._errors import UsageError
from ._recipe import RECIPES, check_model


def floats(text: str) -> tuple[float, ...]:
    """'0.6,0.8' -> (0.6, 0.8), each finite."""
    try:
        return tuple(finite_float(part) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite numbers, got {text!r}"
        ) from None


def add_train_options(
    parser: argparse.ArgumentParser, *, seed: bool = True, policy: bool = True
) -> None:
    """The options of one training run, in groups; every default shown is TrainConfig's.

    `seed=False` and `policy=False` leave out --seed and --policy, for a command that sets them
    per run itself (search.compare). `config_from_args` reads whichever options there are."""
    # The names come from training's tables, so a new optimizer or schedule is offered here too.
    defaults = TrainConfig()
    _add_optimizer_options(parser.add_argument_group("model and optimizer"), defaults)
    _add_schedule_options(parser.add_argument_group("learning-rate schedule"), defaults)
    augment = parser.add_argument_group("regularisation and augmentation")
    _add_augment_options(augment, defaults, policy)
    _add_run_options(parser.add_argument_group("seed, speed and validation"), defaults, seed)


def _add_optimizer_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    g.add_argument("--model", help=f"model name from the registry (default: {d.model})")
    g.add_argument("--epochs", type=positive_int, help=f"epochs to train (default: {d.epochs})")
    g.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {d.batch_size})")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), help=f"default: {d.optimizer}")
    g.add_argument("--lr", type=finite_float, help=f"initial learning rate (default: {d.lr})")
    g.add_argument("--momentum", type=finite_float, help=f"SGD momentum (default: {d.momentum})")
    g.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help=f"Nesterov momentum for SGD (default: {d.nesterov})",
    )
    g.add_argument(
        "--weight-decay",
        type=finite_float,
        help="L2 coefficient for adam and sgd; for adamw the decoupled decay (weights shrink by "
        f"lr x this each step) (default: {d.weight_decay})",
    )


def _add_schedule_options(g: argparse._ArgumentGroup, d: TrainConfig) -> None:
    g.add_argument(
        "--schedule",
        choices=list(SCHEDULES),
        help="learning-rate schedule, per batch after any warmup: multistep = x gamma at each "
        "milestone epoch; cosine = half a cosine down to 0 at the end; constant; onecycle = "
        "the warmup as its rise, then linear down to 0 at the end (needs --warmup) "
        f"(default: {d.schedule})",
    )
    g.add_argument(
        "--warmup",
        type=finite_float,
        metavar="FRACTION",
        help="linear learning-rate warmup over this fraction of the run's steps, per batch, "
        f"for every schedule, e.g. 0.1; 0 = none (default: {d.warmup})",
    )
    g.add_argument(
        "--milestones",
        type=floats,
        help="MultiStepLR milestones as fractions of the run, e.g. 0.6,0.8 = epochs "
        f"75,100 of 125 (default: {','.join(map(str, d.milestones))})",
    )
    g.add_argument("--gamma", type=finite_float, help=f"MultiStepLR factor (default: {d.gamma})")


def _add_augment_options(g: argparse._ArgumentGroup, d: TrainConfig, policy: bool) -> None:
    g.add_argument("--label-smoothing", type=finite_float, help=f"default: {d.label_smoothing}")
    g.add_argument(
        "--dropout",
        type=floats,
        help="cnn_reg dropout after each pool, p1,p2,p3 (default: 0.2,0.3,0.4)",
    )
    g.add_argument(
        "--crop-padding",
        type=nonnegative_int,
        help=f"random-crop padding in pixels, 0 = off (default: {d.crop_padding})",
    )
    g.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help=f"random horizontal flip (default: {d.flip})",
    )
    g.add_argument(
        "--rotation",
        type=finite_float,
        help=f"random rotation, max degrees either way, 0 = off (default: {d.rotation})",
    )
    g.add_argument(
        "--cutout", type=nonnegative_int, help=f"Cutout square side, 0 = off (default: {d.cutout})"
    )
    if policy:
        g.add_argument(
            "--policy",
            type=policy_option,
            help=f"AutoAugment-style policy: {POLICY_CHOICES} (default: none)",
        )
    g.add_argument(
        "--patience",
        type=positive_int,
        help="early stopping on validation loss after this many epochs without "
        "improvement, restoring the best weights (default: off)",
    )


def _add_run_options(g: argparse._ArgumentGroup, d: TrainConfig, seed: bool) -> None:
    if seed:
        g.add_argument(
            "--seed",
            type=seed_value,
            help=f"fixes split, initialisation and augmentation (default: {d.seed})",
        )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help=f"torch.compile the model (default: {d.compile})",
    )
    g.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="flip test-time augmentation in validation: the mean of the logits of each image "
        f"and its mirror (default: {d.tta})",
    )
    add_precision_option(g, d.precision)


def config_from_args(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """`base` with every option the user gave applied."""
    return base.replace(**option_changes(args, base))


def option_changes(args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
    """The TrainConfig fields the options the user gave set, by name. --model naming another
    model than `base`'s leaves `base`'s model arguments behind (they belong to its model, as a
    study's model override does: Space.trial_config); --dropout sets the model's dropout."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            changes[f.name] = value
    kwargs = base.model_kwargs if changes.get("model", base.model) == base.model else {}
    if getattr(args, "dropout", None) is not None:
        kwargs = {**kwargs, "dropout": tuple(args.dropout)}
    if kwargs != base.model_kwargs:
        changes["model_kwargs"] = kwargs
    return changes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.train",
        description="Train one model on CIFAR-10, then evaluate once on the test split. The "
        "training options left out keep the --recipe's values (the defaults shown are "
        "TrainConfig's).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="default",
        help="starting configuration; 'report' is the reference report's final "
        "recipe (cnn_reg, Adam 1e-3, batch 32, 125 epochs, LR x0.5 at epochs "
        "75 and 100, crop+flip+rotation 15)",
    )
    add_data_options(parser, no_val=True)
    parser.add_argument(
        "--no-test", action="store_true", help="skip the final test-split evaluation"
    )
    parser.add_argument(
        "--save",
        type=path_option,
        default=None,
        help="write the final weights (state dict) and config.json to this folder",
    )
    add_train_options(parser)
    return parser


@dataclass(frozen=True)
class TrainRun:
    """One run of this command, resolved and checked before anything is printed or trained."""

    config: TrainConfig
    device: torch.device
    precision: str  # what the run trains in (effective_precision of the config's)
    save: Path | None  # the --save folder, checked writable
    train_set: LabeledImages
    val_set: LabeledImages | None  # None: --val-size 0, every image trains
    test: LabeledImages | None  # None: --no-test
    data_source: str


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run = resolve_run(args)
        print_run(run)
        result = train_run(run)
        finish_run(run, result)
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None


def resolve_run(args: argparse.Namespace) -> TrainRun:
    """Everything that can be wrong, checked before anything is printed or trained (each option
    alone by its parser type: finite numbers, whole-number ranges, the device, the policy file):
    the whole configuration (model included), the precision, the output folder, then the data."""
    with as_usage_errors(ValueError, OSError):
        config = config_from_args(args, RECIPES[args.recipe])
        check_model(config)
        device = args.device
        precision = effective_precision(config.precision, device)  # one it lacks: fails now
        save = _check_save(args.save, config)
        data = load_cifar10(args.data, "train")
        test = None if args.no_test else load_cifar10(args.data, "test")
        train_set, val_set = train_val_split(data, args.val_size, config.seed, args.train_size)
    return TrainRun(
        config=config,
        device=device,
        precision=precision,
        save=save,
        train_set=train_set,
        val_set=val_set if args.val_size != 0 else None,
        test=test,
        data_source=data.source,
    )


def print_run(run: TrainRun) -> None:
    """What will run (data, device, precision, configuration), then the epoch table's header."""
    val_count = len(run.val_set) if run.val_set else 0
    print(
        f"data: {run.data_source}  train {len(run.train_set)}  val {val_count}  "
        f"device: {run.device}  precision: {run.precision}"
    )
    print(f"config: {json.dumps(run.config.to_dict())}")
    if run.config.tta and run.val_set is not None:
        print("validation and test: flip TTA (mean logits of each image and its mirror)")
    print(EPOCH_HEADER, flush=True)


def train_run(run: TrainRun) -> TrainResult:
    """Train, printing a row of the epoch table after each epoch."""
    try:
        with as_usage_errors(ValueError, OSError):
            return train(
                run.config,
                run.train_set,
                run.val_set,
                device=run.device,
                on_epoch_end=lambda s: print(format_epoch(s, run.config.epochs), flush=True),
            )
    except NonFiniteLossError as exc:
        raise UsageError(f"training diverged: {exc}; try a lower learning rate", code=1) from None


def finish_run(run: TrainRun, result: TrainResult) -> None:
    """Print how the run ended, save it (--save), then test it (unless --no-test). A save that
    fails (a disk that filled up while training) still lets the model be tested, then fails."""
    print(
        f"best epoch {result.best_epoch}, wall time {result.wall_time:.1f} s"
        + (" (stopped early)" if result.stopped_early else "")
    )
    if result.images_dropped_per_epoch:  # compiled: one batch shape, so one graph
        print(
            "compile: each epoch left out its partial last batch, "
            f"{result.images_dropped_per_epoch} of {len(run.train_set)} images "
            "(other ones each epoch)"
        )
    not_saved = None
    if run.save is not None:
        try:
            save_run(
                run.save,
                result.model,
                run.config,
                precision=result.precision,
                images_dropped_per_epoch=result.images_dropped_per_epoch,
            )
        except OutputError as exc:
            not_saved = exc
    if run.test is not None:
        tested = evaluate(
            result.model,
            run.test,
            device=run.device,
            tta=run.config.tta,
            precision=result.precision,
        )
        print(format_test_report(tested))
    sys.stdout.flush()
    if not_saved is not None:
        raise UsageError(f"{not_saved}; the model was not saved", code=1)


def _check_save(save: Path | None, config: TrainConfig) -> Path | None:
    """The --save folder, checked writable and with room for the run's weights (the run keeps
    no training state), or None."""
    if save is None:
        return None
    folder = check_output_dir(save, "--save")
    check_free_space(folder, run_bytes(config, state=False), "--save", "weights and config.json")
    return folder


if __name__ == "__main__":
    main()
