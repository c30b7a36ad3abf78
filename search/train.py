"""One training run from the command line: `python -m search.train --model cnn_reg --epochs 20`.

Prints an epoch table, then evaluates once on the test split in the reference report's format.
`--recipe report` is the reference report's final recipe (125 epochs, Adam, batch 32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from training import (
    OPTIMIZERS,
    REPORT_RECIPE,
    SCHEDULES,
    DataError,
    NonFiniteLossError,
    OutputError,
    TrainConfig,
    build_model,
    check_output_dir,
    effective_precision,
    evaluate,
    load_cifar10,
    resolve_device,
    resolve_policy,
    train,
    train_val_split,
)

from ._artifacts import save_run
from ._console import (
    EPOCH_HEADER,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    fail,
    format_epoch,
    format_test_report,
    seed_value,
)

RECIPES = {"default": TrainConfig(), "report": REPORT_RECIPE}


def floats(text: str) -> tuple[float, ...]:
    """'0.6,0.8' -> (0.6, 0.8)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of one training run; every default shown is TrainConfig's."""
    # The names come from training's tables, so a new optimizer or schedule is offered here too.
    d = TrainConfig()
    g = parser.add_argument_group("training (defaults: TrainConfig, or the --recipe)")
    g.add_argument("--model", help=f"model name from the registry (default: {d.model})")
    g.add_argument("--epochs", type=int, help=f"epochs to train (default: {d.epochs})")
    g.add_argument("--batch-size", type=int, help=f"batch size (default: {d.batch_size})")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), help=f"default: {d.optimizer}")
    g.add_argument("--lr", type=float, help=f"initial learning rate (default: {d.lr})")
    g.add_argument("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    g.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help=f"Nesterov momentum for SGD (default: {d.nesterov})",
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        help="L2 coefficient for adam and sgd; for adamw the decoupled decay (weights shrink by "
        f"lr x this each step) (default: {d.weight_decay})",
    )
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
        type=float,
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
    g.add_argument("--gamma", type=float, help=f"MultiStepLR factor (default: {d.gamma})")
    g.add_argument("--label-smoothing", type=float, help=f"default: {d.label_smoothing}")
    g.add_argument(
        "--dropout",
        type=floats,
        help="cnn_reg dropout after each pool, p1,p2,p3 (default: 0.2,0.3,0.4)",
    )
    g.add_argument(
        "--crop-padding",
        type=int,
        help=f"random-crop padding in pixels, 0 = off (default: {d.crop_padding})",
    )
    g.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help=f"random horizontal flip (default: {d.flip})",
    )
    g.add_argument(
        "--rotation",
        type=float,
        help=f"random rotation, max degrees either way, 0 = off (default: {d.rotation})",
    )
    g.add_argument("--cutout", type=int, help=f"Cutout square side, 0 = off (default: {d.cutout})")
    g.add_argument(
        "--policy", help="AutoAugment policy: 'cifar10' or a policy JSON file (default: none)"
    )
    g.add_argument(
        "--patience",
        type=int,
        help="early stopping on validation loss after this many epochs without "
        "improvement, restoring the best weights (default: off)",
    )
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
    changes = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            changes[f.name] = value
    if getattr(args, "dropout", None) is not None:
        changes["model_kwargs"] = {**base.model_kwargs, "dropout": tuple(args.dropout)}
    return base.replace(**changes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.train",
        description="Train one model on CIFAR-10, then evaluate once on the test split.",
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
        type=Path,
        default=None,
        help="write the final weights (state dict) and config.json to this folder",
    )
    add_train_options(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Everything that can be wrong is checked before anything is printed or trained: the whole
    # configuration (model included), the device, the output folder, then the data.
    try:
        config = config_from_args(args, RECIPES[args.recipe])
        resolve_policy(config.policy)  # a bad policy file fails here, before any training
        _check_model(config)
        device = resolve_device(args.device)
        precision = effective_precision(config.precision, device)  # one it lacks: fails now
        save = check_output_dir(args.save, "--save") if args.save is not None else None
        data = load_cifar10(args.data, "train")
        test = None if args.no_test else load_cifar10(args.data, "test")
        train_set, val_set = train_val_split(data, args.val_size, config.seed, args.train_size)
        if args.val_size == 0:
            val_set = None
    except (ValueError, DataError, OSError) as exc:
        fail(str(exc))
    print(
        f"data: {data.source}  train {len(train_set)}  val {len(val_set) if val_set else 0}  "
        f"device: {device}  precision: {precision}"
    )
    print(f"config: {json.dumps(config.to_dict())}")
    if config.tta and val_set is not None:
        print("validation and test: flip TTA (mean logits of each image and its mirror)")
    print(EPOCH_HEADER, flush=True)
    try:
        result = train(
            config,
            train_set,
            val_set,
            device=device,
            on_epoch_end=lambda s: print(format_epoch(s, config.epochs), flush=True),
        )
    except NonFiniteLossError as exc:
        fail(f"training diverged: {exc}; try a lower learning rate", code=1)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    print(
        f"best epoch {result.best_epoch}, wall time {result.wall_time:.1f} s"
        + (" (stopped early)" if result.stopped_early else "")
    )
    if result.images_dropped_per_epoch:  # compiled: one batch shape, so one graph
        print(
            "compile: each epoch left out its partial last batch, "
            f"{result.images_dropped_per_epoch} of {len(train_set)} images (other ones each epoch)"
        )
    not_saved = None
    if save is not None:
        try:
            save_run(
                save,
                result.model,
                config,
                precision=result.precision,
                images_dropped_per_epoch=result.images_dropped_per_epoch,
            )
        except OutputError as exc:  # a disk that filled up while training: still test the model
            not_saved = exc
    if test is not None:
        tested = evaluate(
            result.model, test, device=device, tta=config.tta, precision=result.precision
        )
        print(format_test_report(tested))
    sys.stdout.flush()
    if not_saved is not None:
        fail(f"{not_saved}; the model was not saved", code=1)


def _check_model(config: TrainConfig) -> None:
    """Raise ValueError when `config` names no model, or arguments the model does not take."""
    import torch

    try:
        build_model(config, torch.device("cpu"))
    except TypeError as exc:  # a keyword the model's builder does not take
        raise ValueError(
            f"invalid model_kwargs={config.model_kwargs!r} for model {config.model!r} ({exc})"
        ) from None


if __name__ == "__main__":
    main()
