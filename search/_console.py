"""Terminal output shared by the command lines: the epoch table and the report's test table."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from training import CIFAR10_SHORT_NAMES, EpochStats, EvalResult

EPOCH_HEADER = (
    f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  {'val acc':>7}  "
    f"{'lr':>9}  {'time s':>6}  {'img/s':>8}"
)


def format_epoch(stats: EpochStats, epochs: int | None = None) -> str:
    """One row of the epoch table (accuracies in percent)."""
    epoch = f"{stats.epoch}/{epochs}" if epochs else str(stats.epoch)
    val_loss = f"{stats.val_loss:8.4f}" if stats.val_loss is not None else f"{'-':>8}"
    val_acc = f"{100 * stats.val_accuracy:6.2f}%" if stats.val_accuracy is not None else f"{'-':>7}"
    return (
        f"{epoch:>5}  {stats.train_loss:10.4f}  {100 * stats.train_accuracy:8.2f}%  {val_loss}  "
        f"{val_acc}  {stats.lr:9.2e}  {stats.epoch_time:6.1f}  {stats.images_per_second:8.0f}"
    )


def format_test_report(result: EvalResult, classes: Sequence[str] = CIFAR10_SHORT_NAMES) -> str:
    """The reference report's closing lines: overall test accuracy, then a per-class table."""
    lines = [
        f"Accuracy of the network on the {result.count} test images: "
        f"{100 * result.accuracy:.2f} %",
        "",
        f"{'Class':<8}Accuracy (%)",
    ]
    lines += [
        f"{name:<8}{100 * acc:.2f}"
        for name, acc in zip(classes, result.per_class_accuracy, strict=True)
    ]
    return "\n".join(lines)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error to stderr and exit non-zero (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
