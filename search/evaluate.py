"""Re-evaluate saved weights on the test split: `python -m search.evaluate DIR_OR_WEIGHTS`.

The test runs in the precision the model trained in (config.json records it), unless
`--precision` says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training import (
    TrainConfig,
    effective_precision,
    evaluate,
    load_cifar10,
)

from ._artifacts import load_model, trained_precision
from ._console import (
    USAGE_ERRORS,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    as_usage_errors,
    error_exit,
    format_test_report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.evaluate",
        description="Evaluate saved weights (a retrain folder or a weights.pt with config.json "
        "beside it) on the CIFAR-10 test split.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("target", type=Path, help="retrain folder or weights file")
    add_data_options(parser, train_size=False, val_size=False)
    add_precision_option(parser, "the one the model trained in")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        with as_usage_errors(ValueError):
            device = args.device
            model, config = load_model(args.target, device)
            precision = _precision(args.precision, args.target, config, device)
            test = load_cifar10(args.data, "test")
        print(f"model: {config.model} from {args.target}, precision {precision}")
        tested = evaluate(model, test, device=device, tta=config.tta, precision=precision)
        print(format_test_report(tested))
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None


def _precision(asked: str | None, target: Path, config: TrainConfig, device: torch.device) -> str:
    """What the test runs in: `asked` (--precision), else the precision the model at `target`
    trained in; ValueError when this device cannot run it."""
    if asked:
        return effective_precision(asked, device)
    trained = trained_precision(target, config)
    try:
        return effective_precision(trained, device)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (the model trained in {trained}: --precision tests it in another)"
        ) from None


if __name__ == "__main__":
    main()
