"""Re-evaluate saved weights on the test split: `python -m search.evaluate DIR_OR_WEIGHTS`."""

from __future__ import annotations

import argparse
from pathlib import Path

from training import DataError, evaluate, load_cifar10, resolve_device

from ._artifacts import ArtifactError, load_model
from ._console import HelpFormatter, add_data_options, fail, format_test_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m search.evaluate",
        description="Evaluate saved weights (a retrain folder or a weights.pt with config.json "
        "beside it) on the CIFAR-10 test split.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("target", type=Path, help="retrain folder or weights file")
    add_data_options(parser, train_size=False, val_size=False)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        model, config = load_model(args.target, device)
        test = load_cifar10(args.data, "test")
    except (ArtifactError, DataError, ValueError) as exc:
        fail(str(exc))
    print(f"model: {config.model} from {args.target}")
    print(format_test_report(evaluate(model, test, device=device, tta=config.tta)))


if __name__ == "__main__":
    main()
