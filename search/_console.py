"""Terminal output shared by the command lines: the epoch table and the report's test table."""

from __future__ import annotations

import argparse
import errno
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from training import (
    CIFAR10_SHORT_NAMES,
    DATA_ENV,
    PRECISIONS,
    DataError,
    EpochStats,
    EvalResult,
    OutputError,
)

from ._errors import UsageError

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
    """The reference report's closing lines: overall test accuracy, then a per-class table.

    The accuracy line says "(flip TTA)" when the model was tested with flip test-time
    augmentation, so a number is never compared with another without knowing which it is."""
    lines = [
        f"Accuracy of the network on the {result.count} test images: {100 * result.accuracy:.2f} %"
        + (" (flip TTA)" if result.tta else ""),
        "",
        f"{'Class':<8}Accuracy (%)",
    ]
    lines += [
        f"{name:<8}{100 * acc:.2f}"
        for name, acc in zip(classes, result.per_class_accuracy, strict=True)
    ]
    return "\n".join(lines)


# What a command's `main` reports in one line (the library's own errors, raised deep in a
# call); anything else is a bug and keeps its traceback.
USAGE_ERRORS = (UsageError, DataError, OutputError)


def error_exit(exc: Exception) -> int:
    """Print `exc` as the command's one-line error; the exit status to end with: a
    `UsageError`'s code, 1 for a full disk (the input was fine; the machine lacks room), else 2."""
    print(f"error: {exc}", file=sys.stderr)
    if isinstance(exc, UsageError):
        return exc.code
    return 1 if getattr(exc, "errno", None) == errno.ENOSPC else 2


@contextmanager
def as_usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Raise a plain `kinds` error from the block (a library's ValueError, a failed OSError) as a
    UsageError with the same message, exit status 2; the library's own USAGE_ERRORS pass as
    they are. For the spots where a command takes such an error as the user's mistake."""
    try:
        yield
    except USAGE_ERRORS:
        raise
    except kinds as exc:
        raise UsageError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _whole_number(text, minimum=1)


def epoch_count(text: str) -> int:
    """An argparse type: a number of epochs, a whole number in [1, training.MAX_EPOCHS]."""
    from training._config import MAX_EPOCHS

    value = _whole_number(text, minimum=1)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_EPOCHS} epochs, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole_number(text, minimum=0)


def seed_value(text: str) -> int:
    """An argparse type: a seed, a whole number in [0, 2**63) (what torch's generators take)."""
    from training._config import SEED_LIMIT

    value = _whole_number(text, minimum=0)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a whole number below 2**63, got {value}")
    return value


def plain_name(text: str) -> str:
    """An argparse type: a name that becomes one file or folder name (a study's `NAME.db` and
    `NAME/`), so it cannot reach outside the folder it is put in."""
    if (
        not text
        or len(text) > 200
        or text.startswith(".")
        or any(c in text for c in "/\\\0")
        or not text.isprintable()
    ):
        raise argparse.ArgumentTypeError(
            f"invalid name {text!r}; expected a plain name (no '/', '\\', NUL or leading '.', "
            "at most 200 printable characters)"
        )
    return text


def study_reference(text: str) -> str:
    """An argparse type: STUDY or STUDY@STORAGE (a study of another storage), STUDY a plain name;
    split at the first "@", as a storage URL may hold one itself."""
    name, at, storage = text.partition("@")
    plain_name(name)
    if at and not storage:
        raise argparse.ArgumentTypeError(
            f"invalid study {text!r}; expected STUDY or STUDY@STORAGE (a storage URL after '@')"
        )
    return text


def finite_float(text: str) -> float:
    """An argparse type: a number that is finite (no inf or nan, which no range check stops:
    every comparison with nan is false)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def path_option(text: str) -> Path:
    """An argparse type: a path that is not empty (Path('') would be the working folder)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return Path(text)


def device_option(text: str):
    """An argparse type: a torch.device this machine has (`training.resolve_device`: auto,
    cpu, cuda or cuda:N of its GPUs)."""
    from training import resolve_device

    try:
        return resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def policy_option(text: str) -> str:
    """An argparse type: an AutoAugment policy name or a policy JSON file that loads (a file
    too big, not UTF-8, nested too deep or not a policy is refused naming the file)."""
    from augment import load_policy

    try:
        load_policy(text)
    except (ValueError, OSError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _policy_choices() -> str:
    """What --policy takes, for its help: every built-in policy by name, then files."""
    from augment import BUILTIN_POLICIES

    names = ", ".join(BUILTIN_POLICIES)
    return (
        f"a built-in policy ({names}, or randaugment:N,M: N ops at magnitude M) "
        "or a policy JSON file"
    )


POLICY_CHOICES = _policy_choices()


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
    return value


def add_data_options(
    parser: argparse.ArgumentParser,
    *,
    device: bool = True,
    train_size: bool = True,
    val_size: bool = True,
    no_val: bool = False,
    train_size_default: str = "all",
    val_size_default: tuple[int | None, str] = (5000, ""),
) -> None:
    """--data, and as asked --device, --train-size and --val-size, declared alike for every command.

    `no_val` lets --val-size be 0 (no validation split: the run trains on every image);
    `train_size_default` says in the help what a missing --train-size means; `val_size_default`
    is --val-size's default value and, when not empty, what the help says it means.
    """
    parser.add_argument(
        "--data",
        default=None,
        help=f"CIFAR-10 folder, only read (default: ${DATA_ENV}, else ./data, "
        "downloaded there when absent)",
    )
    if train_size:
        parser.add_argument(
            "--train-size",
            type=positive_int,
            default=None,
            help="stratified subset of the training images left after the validation split "
            f"(default: {train_size_default})",
        )
    if val_size:
        parser.add_argument(
            "--val-size",
            type=nonnegative_int if no_val else positive_int,
            default=val_size_default[0],
            help="stratified validation images held out of the training split"
            + (", 0 = none" if no_val else "")
            + (f" (default: {val_size_default[1]})" if val_size_default[1] else ""),
        )
    if device:
        parser.add_argument(
            "--device", type=device_option, default="auto", help="cuda, cuda:N, cpu or auto"
        )


def add_precision_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str
) -> None:
    """`--precision` (training.PRECISIONS, None when not given); `default` says in the help what
    an absent option means for this command."""
    parser.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=None,
        help="autocast: auto = by the hardware: bf16 on GPUs of compute capability 8.0+ and "
        "CPUs with native bf16 (AVX512-BF16 or AMX), fp16 with loss scaling on 7.x GPUs, else "
        f"fp32; bf16 needs native bf16, fp16 a CUDA GPU (default: {default})",
    )


def add_study_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    out_alias: bool = False,
    required: bool = True,
) -> None:
    """--study, --storage and --studies-dir, as every command reading an existing study has them.

    `out_alias` also accepts --out for --studies-dir (where --out names no output folder);
    `required=False` makes --study optional (a command that can start from something else).
    """
    from ._study import STORAGE_ENV, STUDIES_DIR

    parser.add_argument("--study", required=required, type=plain_name, help="study name")
    parser.add_argument(
        "--storage",
        default=None,
        help=f"SQLAlchemy URL of the study database (default: ${STORAGE_ENV}, "
        "else sqlite:///STUDIES_DIR/STUDY.db)",
    )
    names = ["--studies-dir", "--out"] if out_alias else ["--studies-dir"]
    parser.add_argument(
        *names,
        dest="studies_dir",
        type=path_option,
        default=STUDIES_DIR,
        help="folder holding study databases and outputs",
    )


def open_study_from_args(args: argparse.Namespace):
    """(study, storage, URL) for the options of `add_study_options`; a missing database or study
    raises StudyError (nothing is created)."""
    from ._study import load_existing_study, open_storage, resolve_storage_url

    url = resolve_storage_url(args.storage, args.study, args.studies_dir.resolve())
    storage = open_storage(url, must_exist=True)
    return load_existing_study(storage, args.study), storage, url


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: options whose help already says it are left alone."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)
