"""A comparison: one recipe trained under several policies (or several whole recipes), over seeds,
all on one split, each run tested once on the test split.

A run is (entry, seed): the entry's configuration with `seed` as its training seed (initial
weights, batch order, augmentation draws). Every run trains on the same training images and is
tested on the same test images, and the runs of one seed start from the same weights wherever
the entries share a model, so the difference of two entries at one seed is a paired one: it
leaves out most of what varies from seed to seed (search/_compare_stats.py).

`train_runs` trains what is not done yet; `CompareLog` is `search.compare`'s record of finished
runs (compare.jsonl), by which an interrupted comparison resumes; the benchmarks keep their own
logs and call `train_runs` alike. A run whose loss became NaN or infinite is an outcome like any
other: recorded as diverged (no test accuracy), and the runs after it go on. Importing this module
loads neither torch nor Optuna.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import UsageError

if TYPE_CHECKING:  # torch only when a comparison runs
    import torch

    from training import EpochStats, LabeledImages, TrainConfig

LOG = "compare.jsonl"
TABLE = "compare.md"
REPORT = "compare.html"
NO_POLICY = "none"  # the entry of --policies that trains without a policy
LOG_FORMAT = 1  # the header's "format": a log of another format is not read as this one


@dataclass(frozen=True)
class CompareEntry:
    """One thing compared: a name (a table row) and the configuration it trains; each run
    replaces the configuration's seed."""

    name: str
    config: TrainConfig

    def run_config(self, seed: int) -> TrainConfig:
        return self.config.replace(seed=seed)

    def policy_record(self) -> Any:
        """The policy this entry trains with, as JSON (None: none): what a logged run is matched
        on beside its configuration, so a run of a policy file counts only while the file holds
        the same policy."""
        from augment import policy_to_json
        from training import resolve_policy

        policy = resolve_policy(self.config.policy)
        return None if policy is None else policy_to_json(policy)


def split_entries(text: str) -> list[str]:
    """'none,cifar10,randaugment:2,9' -> ['none', 'cifar10', 'randaugment:2,9']: a token that
    is a whole number continues the entry before it (randaugment:N,M holds a comma); ValueError
    for an empty list or an entry named twice."""
    entries: list[str] = []
    for token in (part.strip() for part in text.split(",")):
        if token.isdigit() and entries:
            entries[-1] += f",{token}"
        elif token:
            entries.append(token)
    if not entries:
        raise ValueError(f"expected a comma-separated list, got {text!r}")
    twice = sorted({name for name in entries if entries.count(name) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} named twice; expected each entry once")
    return entries


def policy_entries(base: TrainConfig, policies: Sequence[str]) -> list[CompareEntry]:
    """`base` under each policy ('none': without one), the first the baseline."""
    return [
        CompareEntry(name, base.replace(policy=None if name == NO_POLICY else name))
        for name in policies
    ]


@dataclass(frozen=True)
class CompareData:
    """The images every run of a comparison shares; `val` None: no validation pass."""

    train: LabeledImages
    val: LabeledImages | None
    test: LabeledImages

    def identity(self, split_seed: int) -> dict[str, Any]:
        """What makes two comparisons' data the same: each split's size and fingerprint."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return {
            "split_seed": split_seed,
            **{
                name: None if part is None else [len(part), part.fingerprint()]
                for name, part in parts.items()
            },
        }


def read_compare_data(
    root: str | Path | None,
    *,
    train_size: int | None,
    val_size: int,
    split_seed: int,
    test_size: int | None,
) -> tuple[CompareData, Callable[[], None]]:
    """The comparison's split: `val_size` validation images drawn with `split_seed` (as a
    search's --seed draws them), `train_size` of the rest (None: all), and `test_size` of the
    test split (None: all; a stratified part, for quick checks). Also the call that caches the
    decoded images, for once the comparison is accepted: a refused command writes nothing.
    ValueError (DataError) for data that is missing or sizes out of range."""
    from training import locate_cifar10, stratified_split, train_val_split

    files = [locate_cifar10(root, split) for split in ("train", "test")]
    images = [split.read() for split in files]
    train, val = train_val_split(images[0], val_size, split_seed, train_size)
    test = images[1]
    if test_size is not None and test_size != len(test):
        if not 0 < test_size < len(test):
            raise ValueError(
                f"invalid test_size={test_size}; expected 1..{len(test)} (the test split)"
            )
        test = test.subset(stratified_split(test.labels, test_size, 0)[1])

    def write_caches() -> None:
        for split, data in zip(files, images, strict=True):
            split.write_cache(data)

    return CompareData(train, val if val_size else None, test), write_caches


@dataclass(frozen=True)
class RunRecord:
    """One finished run: what it scored (accuracies 0..1), and what it was."""

    entry: str
    seed: int
    test_accuracy: float | None  # None when the run diverged
    val_accuracy: float | None  # of the weights tested; None without validation or diverged
    seconds: float  # training and testing
    epochs_trained: int  # fewer than the config's when early stopping (or divergence) ended it
    config: dict[str, Any]  # TrainConfig.to_dict() of the run, its seed included
    policy: Any  # CompareEntry.policy_record()
    precision: str  # what ran (the config's "auto" resolved)
    machine: str  # training.machine_name
    torch: str
    diverged: str | None = None  # why training stopped (its loss became NaN or infinite)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        """The record of a logged row; ValueError for one that is not a run's."""
        names = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is MISSING]
        if not isinstance(row, dict) or any(name not in row for name in required):
            raise ValueError("not a run's record")
        return cls(**{name: row[name] for name in names if name in row})

    def outcome(self) -> str:
        """'test 65.10 %' or 'diverged (train loss became nan at epoch 2)', for progress lines."""
        if self.test_accuracy is None:
            return f"diverged ({self.diverged})"
        return f"test {100 * self.test_accuracy:.2f} %"

    def matches(self, entry: CompareEntry) -> bool:
        """Whether this run is `entry`'s at its seed: the same configuration and policy."""
        planned = {"config": entry.run_config(self.seed).to_dict(), "policy": entry.policy_record()}
        return _plain(planned) == _plain({"config": self.config, "policy": self.policy})


@dataclass(frozen=True)
class RunHooks:
    """What `train_runs` tells its caller: a run starts (its number, of how many, the entry and
    the seed), an epoch ends, a run is done (its record: the caller logs it)."""

    start: Callable[[int, int, CompareEntry, int], None] | None = None
    epoch: Callable[[EpochStats], None] | None = None
    done: Callable[[RunRecord], None] | None = None


def planned_runs(
    entries: Sequence[CompareEntry], seeds: Sequence[int], done: Collection[tuple[str, int]]
) -> list[tuple[CompareEntry, int]]:
    """The runs not in `done` ((entry name, seed) pairs), seed by seed: a comparison stopped
    early holds whole seeds, each one a paired difference of every entry."""
    return [(e, s) for s in seeds for e in entries if (e.name, s) not in done]


def train_runs(
    entries: Sequence[CompareEntry],
    seeds: Sequence[int],
    data: CompareData,
    *,
    device: str | torch.device | None = None,
    done: Collection[tuple[str, int]] = (),
    hooks: RunHooks | None = None,
) -> list[RunRecord]:
    """Train and test every run of `entries` x `seeds` that is not in `done`, in the order of
    `planned_runs`; the new records. `hooks.done` gets each record as its run finishes."""
    hooks = hooks or RunHooks()
    todo = planned_runs(entries, seeds, done)
    records = []
    for number, (entry, seed) in enumerate(todo, 1):
        if hooks.start:
            hooks.start(number, len(todo), entry, seed)
        record = train_run(entry, seed, data, device=device, on_epoch=hooks.epoch)
        if hooks.done:
            hooks.done(record)
        records.append(record)
    return records


def train_run(
    entry: CompareEntry,
    seed: int,
    data: CompareData,
    *,
    device: str | torch.device | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> RunRecord:
    """One run: `entry` at `seed` trained on `data.train` (validated on `data.val`), then tested
    once on `data.test`, in the precision it trained in and with the flip TTA it validated with.
    A run that diverges is returned as such, untested."""
    from training import NonFiniteLossError, effective_precision, evaluate, resolve_device, train

    device = resolve_device(device)
    config = entry.run_config(seed)
    epochs: list[EpochStats] = []

    def epoch_end(stats: EpochStats) -> None:
        epochs.append(stats)
        if on_epoch:
            on_epoch(stats)

    started = time.perf_counter()
    try:
        result = train(config, data.train, data.val, device=device, on_epoch_end=epoch_end)
    except NonFiniteLossError as exc:
        precision = effective_precision(config.precision, device)
        return _record(entry, config, device, started, len(epochs), precision, diverged=str(exc))
    tested = evaluate(
        result.model, data.test, device=device, tta=config.tta, precision=result.precision
    )
    val = result.best.val_accuracy if config.patience else result.history[-1].val_accuracy
    return _record(
        entry, config, device, started, len(result.history), result.precision, tested.accuracy, val
    )


def _record(
    entry: CompareEntry,
    config: TrainConfig,
    device: torch.device,
    started: float,
    epochs: int,
    precision: str,
    test: float | None = None,
    val: float | None = None,
    diverged: str | None = None,
) -> RunRecord:
    """The record of `entry`'s run of `config` (its seed the run's) that began at `started`."""
    import torch

    from training import machine_name

    return RunRecord(
        entry=entry.name,
        seed=config.seed,
        test_accuracy=test,
        val_accuracy=val,
        seconds=round(time.perf_counter() - started, 1),
        epochs_trained=epochs,
        config=config.to_dict(),
        policy=entry.policy_record(),
        precision=precision,
        machine=machine_name(device),
        torch=torch.__version__,
        diverged=diverged,
    )


def comparison_identity(
    axis: str, base: dict[str, Any], data: CompareData, split_seed: int
) -> dict[str, Any]:
    """What a comparison log is of, so a re-run resumes only the same comparison: the axis
    ("policies" or "recipes"), the base (the recipe the policies go into; for recipes, the
    training options given to every one) and the data (`CompareData.identity`)."""
    return _plain({"axis": axis, "base": base, "data": data.identity(split_seed)})


class CompareLog:
    """compare.jsonl: a header line naming the comparison (its axis, base recipe and data), then
    one line per finished run. Rewritten whole and atomically after each run, so a comparison
    killed at any moment leaves every finished run and never half a line."""

    def __init__(self, path: Path, identity: dict[str, Any], records: list[RunRecord]) -> None:
        self.path = path
        self.identity = identity
        self.records = records

    @classmethod
    def open(cls, path: Path, identity: dict[str, Any]) -> CompareLog:
        """The log at `path` (none yet: an empty one, written by the first `write`); UsageError
        for a file that is not a comparison log, or the log of another comparison."""
        if not path.exists():
            return cls(path, identity, [])
        header, rows = _read_log(path)
        difference = _first_difference(header["comparison"], _plain(identity))
        if difference:
            raise UsageError(
                f"{path} is the log of another comparison ({difference}); expected the same "
                "base recipe, axis, data and split to resume it, or another --out"
            )
        return cls(path, identity, rows)

    def done(self) -> set[tuple[str, int]]:
        return {(r.entry, r.seed) for r in self.records}

    def check_runs(self, entries: Sequence[CompareEntry]) -> None:
        """UsageError when a logged run of one of `entries` trained another configuration or
        policy than that entry's (a policy file edited since, a recipe changed)."""
        by_name = {entry.name: entry for entry in entries}
        for record in self.records:
            entry = by_name.get(record.entry)
            if entry is not None and not record.matches(entry):
                raise UsageError(
                    f"{self.path} holds a run of {record.entry} (seed {record.seed}) that trained "
                    "another configuration or policy than this one; expected the same entries "
                    "to resume, or another --out"
                )

    def runs(self, entries: Sequence[CompareEntry], seeds: Sequence[int]) -> list[RunRecord]:
        """The logged runs of `entries` x `seeds` (the comparison asked for; others stay)."""
        wanted = {(e.name, s) for e in entries for s in seeds}
        return [r for r in self.records if (r.entry, r.seed) in wanted]

    def add(self, record: RunRecord) -> None:
        self.records.append(record)
        self.write()

    def write(self) -> None:
        from training import atomic_write_text

        header = {"format": LOG_FORMAT, "comparison": self.identity}
        lines = [json.dumps(header)] + [json.dumps(r.to_row()) for r in self.records]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _read_log(path: Path) -> tuple[dict[str, Any], list[RunRecord]]:
    """The header and the runs of a comparison log; UsageError naming the line that is not."""
    expected = f"expected a {LOG} written by search.compare, or another --out"
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path} ({exc}); {expected}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            raise UsageError(f"{path} line {number} is not JSON; {expected}") from None
    header = rows[0] if rows else None
    if (
        not isinstance(header, dict)
        or header.get("format") != LOG_FORMAT
        or not isinstance(header.get("comparison"), dict)
    ):
        raise UsageError(f"{path} has no comparison header on its first line; {expected}")
    try:
        return header, [RunRecord.from_row(row) for row in rows[1:]]
    except ValueError:
        raise UsageError(f"{path} holds a line that is not a run's record; {expected}") from None


def _plain(value: Any) -> Any:
    """`value` as JSON reads it back (tuples as lists), for comparing with what a log holds."""
    return json.loads(json.dumps(value))


def _first_difference(logged: Any, here: Any, where: str = "") -> str:
    """Where two JSON values first differ, as 'base.epochs: 1 in the log, 2 here'; '' if equal."""
    if isinstance(logged, dict) and isinstance(here, dict):
        for key in sorted(set(logged) | set(here), key=str):
            inner = _first_difference(logged.get(key), here.get(key), f"{where}{key}.")
            if inner:
                return inner
        return ""
    if logged == here:
        return ""
    shown = [json.dumps(v) if len(json.dumps(v)) <= 40 else "…" for v in (logged, here)]
    return f"{where.rstrip('.') or 'header'}: {shown[0]} in the log, {shown[1]} here"
