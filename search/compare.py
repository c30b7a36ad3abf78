"""Compare policies or recipes over seeds on one split:
`python -m search.compare --policies none,cifar10,trivialaugment,randaugment:2,9 --seeds 3`.

One recipe (a study's trial, a config.json, or search.train's options) is trained under each
policy of --policies; or each recipe of --recipes is trained as it is. Every run, once per seed,
trains on the same training images and is tested once on the test split; the runs of one seed
share the initial weights, so the difference to the first entry is paired. Prints a table (test
accuracy mean, sd and 95 % interval, the paired difference to the first entry with its interval)
and a one-line verdict, and writes into --out: compare.jsonl (one line per finished run, so the
same command with the same --out resumes where it stopped), compare.md (the table) and
compare.html (plotly, self-contained: each seed's runs, the means with their intervals). A run
whose loss becomes NaN or infinite is logged as diverged and the comparison goes on; its entry is
shown with it and not ranked.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import (
    TrainConfig,
    atomic_write_text,
    check_free_space,
    check_output_dir,
    check_output_file,
    effective_precision,
)

from ._artifacts import read_train_config
from ._compare import (
    LOG,
    NO_POLICY,
    REPORT,
    TABLE,
    CompareData,
    CompareEntry,
    CompareLog,
    RunHooks,
    RunRecord,
    comparison_identity,
    planned_runs,
    policy_entries,
    read_compare_data,
    split_entries,
    train_runs,
)
from ._compare_figures import write_compare_report
from ._compare_stats import markdown_table, summarize, verdict
from ._console import (
    EPOCH_HEADER,
    USAGE_ERRORS,
    HelpFormatter,
    add_data_options,
    add_study_options,
    as_usage_errors,
    error_exit,
    format_epoch,
    nonnegative_int,
    open_study_from_args,
    path_option,
    policy_option,
    positive_int,
    seed_value,
)
from ._errors import UsageError
from ._recipe import RECIPES, check_model, pick_trial, recipe_config, trial_config
from ._study import DEFAULT_VAL_SIZE, StudyRecord
from .train import add_train_options, config_from_args, option_changes

MAX_SEEDS = 10_000  # a count far beyond any comparison is a typo (and would never end)
# What the outputs take besides the log's lines: the HTML page (plotly.js inline, about 5 MB)
# and the table, with a margin.
_OUTPUT_BYTES = 16 << 20


def policy_list(text: str) -> list[str]:
    """An argparse type: policies, comma-separated ('none' for none), each a built-in policy or a
    policy JSON that loads; a whole number continues the entry before it (randaugment:2,9)."""
    try:
        names = split_entries(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    for name in names:
        if name != NO_POLICY:
            policy_option(name)
    return names


def recipe_list(text: str) -> list[str]:
    """An argparse type: recipes, comma-separated (each read when the command resolves)."""
    try:
        return split_entries(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed_list(text: str) -> tuple[int, ...]:
    """An argparse type: a count K (seeds 0..K-1), or the seeds themselves, comma-separated."""
    if "," not in text:
        try:
            count = positive_int(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seeds >= 1, or seeds separated by commas, got {text!r}"
            ) from None
        if count > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"expected at most {MAX_SEEDS} seeds, got {count}")
        return tuple(range(count))
    seeds = tuple(seed_value(part.strip()) for part in text.split(",") if part.strip())
    if len(set(seeds)) != len(seeds) or not seeds:
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.compare",
        description="Train one recipe under several policies (or several recipes), once per "
        "seed, on one split; test each run once; print and write the comparison. The training "
        "options given replace those values of the recipe (of every recipe, with --recipes); "
        "the defaults shown are TrainConfig's. No weights are kept.",
        formatter_class=HelpFormatter,
    )
    _add_entry_options(parser.add_argument_group("what is compared (one of)"))
    _add_base_options(
        parser.add_argument_group(
            "the recipe the policies go into (one of; default: --recipe default)"
        )
    )
    _add_run_options(parser.add_argument_group("seeds, split and output"))
    add_data_options(parser, no_val=True, val_size_default=(None, "5000, or the study's own"))
    parser.add_argument(
        "--test-size",
        type=positive_int,
        default=None,
        help="quick checks only: test on a stratified part of the test split (default: all)",
    )
    add_train_options(parser, seed=False, policy=False)
    return parser


def _add_entry_options(group: argparse._ArgumentGroup) -> None:
    axis = group.add_mutually_exclusive_group(required=True)
    axis.add_argument(
        "--policies",
        type=policy_list,
        metavar="LIST",
        help="policies, comma-separated, the first the baseline: none (no policy), a built-in "
        "one (cifar10, trivialaugment, randaugment, randaugment:N,M) or a policy JSON file, "
        "e.g. none,cifar10,randaugment:2,9,policy.json",
    )
    axis.add_argument(
        "--recipes",
        type=recipe_list,
        metavar="LIST",
        help="whole recipes, comma-separated, the first the baseline: "
        f"{', '.join(RECIPES)}, SPACE:RECIPE (a space's seed recipe, e.g. cnn_reg:sgd_cosine) "
        "or a config.json (search.train --save, search.retrain)",
    )


def _add_base_options(group: argparse._ArgumentGroup) -> None:
    add_study_options(group, required=False)
    group.add_argument(
        "--trial",
        type=nonnegative_int,
        default=None,
        help="with --study: the trial, at the space's full length unless --epochs, in the "
        "study's precision unless --precision (default: the best complete trial)",
    )
    group.add_argument(
        "--config",
        type=path_option,
        default=None,
        help="a config.json written by search.train --save or search.retrain",
    )
    group.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="a built-in recipe, as search.train's (default: default)",
    )


def _add_run_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--seeds",
        type=seed_list,
        default=(0, 1, 2),
        metavar="K|LIST",
        help="K: training seeds 0..K-1, or the seeds, comma-separated (default: 3)",
    )
    group.add_argument(
        "--split-seed",
        type=seed_value,
        default=None,
        help="draws the validation split and --train-size, as search.run's --seed (default: "
        "0, or the study's own)",
    )
    group.add_argument(
        "--out",
        type=path_option,
        default=None,
        help="output folder; one holding this comparison's compare.jsonl is resumed (default: "
        "STUDIES_DIR/compare-TIME, STUDIES_DIR/STUDY/compare-TIME with --study)",
    )


@dataclass(frozen=True)
class Base:
    """What the entries start from: the recipe the policies go into (None with --recipes)."""

    config: TrainConfig | None
    words: str  # what it is, for the record
    identity: dict[str, Any]  # what a resumed log must have been made from
    val_size: int
    split_seed: int
    study: str | None  # the study's name with --study


@dataclass(frozen=True)
class CompareJob:
    """A comparison, resolved and checked before anything is written."""

    axis: str  # "policies" or "recipes"
    entries: list[CompareEntry]
    seeds: tuple[int, ...]
    base: Base
    device: torch.device
    out: Path
    data: CompareData
    data_source: str
    log: CompareLog


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    job = None
    try:
        job = resolve_compare(args)
        print_plan(job)
        run_comparison(job)
        finish(job)
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None
    except KeyboardInterrupt:
        where = f"; the same command with --out {job.out} continues from its log" if job else ""
        print(f"\ninterrupted{where}")
        raise SystemExit(130) from None


def resolve_compare(args: argparse.Namespace) -> CompareJob:
    """Everything that can be wrong, checked before anything is written: the recipe and the
    entries (models, precisions, policies), the output folder, the data and a log to resume."""
    with as_usage_errors(ValueError, OSError):
        base = _resolve_base(args)
        entries = _entries(args, base)
        _check_entries(entries, args.device, base.val_size)
        out = _output_folder(args, base.study)
        data, write_caches = read_compare_data(
            args.data,
            train_size=args.train_size,
            val_size=base.val_size,
            split_seed=base.split_seed,
            test_size=args.test_size,
        )
        axis = "policies" if args.policies is not None else "recipes"
        identity = comparison_identity(axis, base.identity, data, base.split_seed)
        log = CompareLog.open(out / LOG, identity)
        log.check_runs(entries)
    write_caches()  # only now: a refused command writes no cache
    return CompareJob(
        axis, entries, args.seeds, base, args.device, out, data, data.train.source, log
    )


def _resolve_base(args: argparse.Namespace) -> Base:
    """The recipe of the comparison from --study, --config or --recipe (at most one), with the
    training options given; with --recipes, none (each recipe is its own)."""
    given = [
        option
        for option, value in (
            ("--study", args.study),
            ("--config", args.config),
            ("--recipe", args.recipe),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(
            f"{' and '.join(given)} each name the recipe; expected one of --study, --config "
            "or --recipe"
        )
    if args.trial is not None and args.study is None:
        raise UsageError("--trial names a trial of --study; expected --study with it")
    val_size = args.val_size if args.val_size is not None else DEFAULT_VAL_SIZE
    split_seed = args.split_seed if args.split_seed is not None else 0
    if args.recipes is not None:
        if given:
            raise UsageError(
                f"--recipes compares whole recipes, so {given[0]} has no place; drop it (the "
                "training options given apply to every recipe)"
            )
        changes = option_changes(args, TrainConfig())
        return Base(None, "each recipe as it is", {"options": changes}, val_size, split_seed, None)
    if args.study is not None:
        return _study_base(args)
    if args.config is not None:
        config, words = read_train_config(args.config), f"config {args.config}"
    else:
        name = args.recipe or "default"
        config, words = RECIPES[name], f"recipe {name!r}"
    config = config_from_args(args, config)
    return Base(config, words, _identity(config), val_size, split_seed, None)


def _study_base(args: argparse.Namespace) -> Base:
    """The trial of --study (--trial, else the best) as a retrain runs it, with the options
    given; the study's own validation split unless --val-size or --split-seed say otherwise."""
    study, _, _ = open_study_from_args(args)
    trial = pick_trial(study, args.trial)
    record = StudyRecord.of(study)
    config = config_from_args(args, trial_config(record, trial))
    return Base(
        config,
        f"trial #{trial.number} of study {study.study_name!r}",
        _identity(config),
        args.val_size if args.val_size is not None else record.val_size,
        args.split_seed if args.split_seed is not None else record.seed,
        study.study_name,
    )


def _identity(config: TrainConfig) -> dict[str, Any]:
    """The base recipe as a log records it: each run sets the seed, each entry the policy."""
    return {"config": config.replace(seed=0, policy=None).to_dict()}


def _entries(args: argparse.Namespace, base: Base) -> list[CompareEntry]:
    if base.config is not None:
        return policy_entries(base.config, args.policies)
    return [
        CompareEntry(name, config_from_args(args, recipe_config(name))) for name in args.recipes
    ]


def _check_entries(entries: Sequence[CompareEntry], device: torch.device, val_size: int) -> None:
    """ValueError for an entry whose model cannot be built, whose precision this device lacks,
    whose policy does not load, or that stops early without a validation split."""
    for entry in entries:
        check_model(entry.config)
        effective_precision(entry.config.precision, device)
        entry.policy_record()
        if entry.config.patience and not val_size:
            raise ValueError(
                f"{entry.name} stops early (patience {entry.config.patience}), which needs a "
                "validation split; expected --val-size > 0"
            )


def _output_folder(args: argparse.Namespace, study: str | None) -> Path:
    """--out (a new folder, or one holding a comparison log to resume), else a new timestamped
    one; every file it will hold checked writable, and room for them, before any data loads."""
    if args.out is None:
        parent = args.studies_dir / study if study else args.studies_dir
        out = check_output_dir(parent / time.strftime("compare-%Y%m%d-%H%M%S"), "--studies-dir")
    else:
        out = check_output_dir(args.out, "--out")
        if out.is_dir() and any(out.iterdir()) and not (out / LOG).exists():
            raise ValueError(
                f"output folder {args.out} is not empty and holds no {LOG} to resume; choose "
                "another --out"
            )
    for name in (LOG, TABLE, REPORT):
        check_output_file(out / name, "--out")
    check_free_space(out, _OUTPUT_BYTES, "--out", "the log, the table and the report")
    return out


def print_plan(job: CompareJob) -> None:
    """What will run: the entries and seeds, the recipe(s), the data, the output, what is done."""
    names = ", ".join(e.name for e in job.entries)
    total = len(job.entries) * len(job.seeds)
    print(
        f"comparing {len(job.entries)} {job.axis} ({names}; the first is the baseline) over "
        f"{len(job.seeds)} seed(s) ({_seed_words(job.seeds)}): {total} runs"
    )
    if job.base.config is not None:
        print(f"recipe: {job.base.words}: {json.dumps(job.base.identity['config'])}")
    else:
        for entry in job.entries:
            print(f"recipe {entry.name}: {json.dumps(entry.config.to_dict())}")
    precisions = sorted({effective_precision(e.config.precision, job.device) for e in job.entries})
    data = job.data
    print(
        f"data: {job.data_source}  train {len(data.train)}  "
        f"val {len(data.val) if data.val else 0}  test {len(data.test)}  split seed "
        f"{job.base.split_seed}  device: {job.device}  precision: {', '.join(precisions)}"
    )
    print(f"output: {job.out} ({LOG}, {TABLE}, {REPORT})")
    done = len(job.log.runs(job.entries, job.seeds))
    if done:
        print(f"resuming: {done} of {total} runs are in {job.out / LOG}; {total - done} to train")
    print(flush=True)


def run_comparison(job: CompareJob) -> None:
    """Train the runs the log lacks, logging each as it finishes."""
    if not job.log.path.exists():
        job.out.mkdir(parents=True, exist_ok=True)
        job.log.write()  # the header: a comparison stopped in its first run still resumes
    todo = planned_runs(job.entries, job.seeds, job.log.done())
    if not todo:
        print(f"all {len(job.entries) * len(job.seeds)} runs are in the log; nothing to train")
        return
    printer = _RunPrinter(job.log.add)
    with as_usage_errors(ValueError, OSError):
        train_runs(
            job.entries,
            job.seeds,
            job.data,
            device=job.device,
            done=job.log.done(),
            hooks=RunHooks(start=printer.start, epoch=printer.epoch, done=printer.done),
        )


class _RunPrinter:
    """The progress of the runs: a heading and the epoch table for each, then its result."""

    def __init__(self, log: Callable[[RunRecord], None]) -> None:
        self.log = log
        self.epochs = 0

    def start(self, number: int, total: int, entry: CompareEntry, seed: int) -> None:
        self.epochs = entry.config.epochs
        print(f"run {number}/{total}: {entry.name}, seed {seed}\n{EPOCH_HEADER}", flush=True)

    def epoch(self, stats: Any) -> None:
        print(format_epoch(stats, self.epochs), flush=True)

    def done(self, record: RunRecord) -> None:
        self.log(record)  # first: the run counts once it is in the log
        val = f", val {100 * record.val_accuracy:.2f} %" if record.val_accuracy is not None else ""
        print(
            f"{record.entry} seed {record.seed}: {record.outcome()}{val}, {record.seconds:.1f} s\n",
            flush=True,
        )


def finish(job: CompareJob) -> None:
    """The table and the verdict, printed and written (compare.md, compare.html)."""
    runs = job.log.runs(job.entries, job.seeds)
    summaries = summarize([e.name for e in job.entries], runs)
    table, line, facts = markdown_table(summaries), verdict(summaries), _facts(job, runs)
    record = "\n".join(f"- {key}: {value}" for key, value in facts)
    print(f"{table}\n\n{record}\n\n{line}")
    title = f"search.compare: {', '.join(e.name for e in job.entries)}"
    atomic_write_text(job.out / TABLE, f"# {title}\n\n{table}\n\n{record}\n\n{line}\n")
    write_compare_report(
        job.out / REPORT, summaries, title=title, facts=facts, table=table, verdict=line
    )
    print(f"wrote {job.out}/ ({LOG}, {TABLE}, {REPORT})")


def _facts(job: CompareJob, runs: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """What the comparison was, for the record below the table and atop the page."""
    data = job.data
    epochs = sorted({e.config.epochs for e in job.entries})
    return [
        ("compared", f"{job.axis}: {', '.join(e.name for e in job.entries)} (baseline first)"),
        ("recipe", job.base.words),
        ("runs", f"{len(runs)} of {len(job.entries) * len(job.seeds)}" + _diverged_words(runs)),
        ("seeds", _seed_words(job.seeds)),
        ("epochs", ", ".join(map(str, epochs))),
        (
            "data",
            f"{len(data.train)} training, {len(data.val) if data.val else 0} validation, "
            f"{len(data.test)} test images of {job.data_source}, split seed "
            f"{job.base.split_seed}",
        ),
        ("precision", ", ".join(sorted({r.precision for r in runs})) or "-"),
        ("machine", ", ".join(sorted({r.machine for r in runs})) or "-"),
        ("intervals", "95 % Student t over seeds; differences paired by seed, in points"),
    ]


def _diverged_words(runs: Sequence[RunRecord]) -> str:
    diverged = sum(r.test_accuracy is None for r in runs)
    return f" ({diverged} diverged: their loss became NaN or infinite)" if diverged else ""


def _seed_words(seeds: Sequence[int]) -> str:
    if list(seeds) == list(range(len(seeds))) and len(seeds) > 2:
        return f"0-{len(seeds) - 1}"
    return ", ".join(map(str, seeds))


if __name__ == "__main__":
    main()
