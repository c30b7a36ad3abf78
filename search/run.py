"""A hyperparameter search: `python -m search.run --space cnn_reg`.

Ray Tune runs the trials (a local Ray unless --address names a cluster), an Optuna sampler
suggests each configuration, ASHA stops weak trials, and the study database records everything.
Re-running the same command continues the same study; several drivers may share one study
(e.g. on a PostgreSQL server) and stop together at --trials. Ctrl+C stops a search cleanly (exit
130): its unfinished trials are recorded as FAIL (interrupted) and a re-run continues.

A continued study keeps the settings it was made with (split, seed, epochs, model, data): an
option left out takes the recorded value, a different one is refused. A local Ray listens on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training import (
    DataError,
    LabeledImages,
    OutputError,
    check_output_dir,
    load_cifar10,
    resolve_precision,
    train_val_split,
)

from ._console import (
    HelpFormatter,
    add_data_options,
    add_precision_option,
    fail,
    plain_name,
    positive_int,
    seed_value,
)
from ._density import add_options as add_density_options
from ._density import prepare_folds, trial_function
from ._samplers import SAMPLERS
from ._space import Space, available_spaces, get_space
from ._study import (
    STORAGE_ENV,
    STUDIES_DIR,
    StudyError,
    check_sqlite_writable,
    count_claimed,
    count_finished,
    default_storage_url,
    fail_interrupted_trials,
    is_storage_error,
    new_run_id,
    open_storage,
    redact,
    storage_error_line,
)
from ._version import project_version

# The exit status of a search stopped with Ctrl+C, as shells report a process ended by SIGINT.
INTERRUPTED_EXIT = 130
CONTINUE_HINT = "run the same command again to continue the study"
# Defaults of the options a continued study takes from its record when they are left out.
DEFAULT_VAL_SIZE = 5000
DEFAULT_SEED = 0
DEFAULT_SAMPLER = "tpe"
# Ray's switch for a node address of 127.0.0.1 (see _start_ray).
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Search a space with Ray Tune + Optuna + ASHA; results go to an Optuna study.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--space", required=True, help="search space: " + ", ".join(available_spaces())
    )
    parser.add_argument(
        "--study", default=None, type=plain_name, help="study name (default: the space name)"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help=f"SQLAlchemy URL of the study database (default: ${STORAGE_ENV}, "
        "else sqlite:///studies/STUDY.db); for a password use "
        f"${STORAGE_ENV} or PGPASSWORD rather than the command line",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=64,
        help="trials the study should hold when done (a re-run continues)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=None,
        help="epochs of a trial that ASHA never stops (default: the study's, else the space's)",
    )
    parser.add_argument(
        "--grace-period",
        type=positive_int,
        default=None,
        help="epochs every trial gets before ASHA may stop it (default: the space's, at most "
        "--max-epochs)",
    )
    parser.add_argument(
        "--reduction-factor",
        type=positive_int,
        default=None,
        help="ASHA keeps 1/this of the trials at each rung (default: the space's)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="replace the space's model, e.g. the child model of a policy "
        "search (default: the study's, else the space's)",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help=f"Optuna sampler (default: the study's, else {DEFAULT_SAMPLER})",
    )
    add_precision_option(parser, "the study's, else auto; every trial uses it")
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPU share of a trial, e.g. 0.25 = four trials per GPU; each trial's GPU memory is "
        "capped at its share (default with a GPU: the space's, "
        + ", ".join(f"{s.name} {s.gpu_share:g}" for s in available_spaces().values())
        + "; without: 0 = CPU)",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=positive_int,
        default=None,
        help="CPU cores per trial (default: 1 on CPU; cores/trials per GPU on GPU)",
    )
    add_data_options(
        parser,
        device=False,
        train_size_default="the study's, else the space's, else all",
        # None: a continued study's own split size, else DEFAULT_VAL_SIZE (resolve_settings).
        val_size_default=(None, f"the study's, else {DEFAULT_VAL_SIZE}"),
    )
    parser.add_argument(
        "--seed",
        type=seed_value,
        default=None,
        help="fixes the split and each trial's seed (seed+number); each driver's sampler "
        f"seed mixes it with the driver's run id (default: the study's, else {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster address to join (default: start a local Ray)"
    )
    parser.add_argument(
        "--studies-dir",
        "--out",
        dest="studies_dir",
        type=Path,
        default=STUDIES_DIR,
        help="folder for study databases and outputs",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per trial epoch")
    add_density_options(parser)  # --folds, --fold-epochs, --draws (search/_density.py)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except KeyboardInterrupt:  # Ctrl+C outside Tune's own handling (or a second one)
        print(f"\nstopped (Ctrl+C); {CONTINUE_HINT}", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None


@dataclass(frozen=True)
class StudySettings:
    """What decides how a study's trials are scored: every driver of one study uses the same."""

    max_epochs: int
    train_size: int | None  # None: all the training images left after the validation split
    val_size: int
    seed: int  # the split's seed; trial n trains with seed + n
    model: str | None  # replaces the space's model; None: the space's own
    # training.PRECISIONS as given ("auto" stays "auto": each trial resolves it on its own
    # device, with training.effective_precision, as the retrain does)
    precision: str
    sampler: str


class SettingsConflict(ValueError):
    """An option that contradicts what the study being continued was made with."""


# (option, study attribute, StudySettings field): a continued study takes the recorded value of
# an option not given; a different value given is refused, since the study's trials would no
# longer be comparable. The sampler may change: it only chooses what to try next.
_RECORDED = (
    ("--max-epochs", "max_epochs", "max_epochs"),
    ("--train-size", "train_size", "train_size"),
    ("--val-size", "val_size", "val_size"),
    ("--seed", "seed", "seed"),
    ("--model", "model_override", "model"),
    ("--precision", "precision", "precision"),
)


def resolve_settings(
    args: argparse.Namespace, space: Space, study_name: str, recorded: dict[str, Any]
) -> StudySettings:
    """The study's settings: given options, else what the study recorded, else the defaults.

    Raises SettingsConflict naming the option, the recorded value and `--study NEW_NAME` when
    a given option differs from what the continued study recorded.
    """
    defaults = {
        "max_epochs": space.max_epochs,
        "train_size": space.train_size,
        "val_size": DEFAULT_VAL_SIZE,
        "seed": DEFAULT_SEED,
        "model": None,
        "precision": "auto",
    }
    values: dict[str, Any] = {}
    for option, key, field in _RECORDED:
        given = getattr(args, field)
        if key not in recorded:
            values[field] = given if given is not None else defaults[field]
        elif given is None or given == recorded[key]:
            values[field] = recorded[key]
        else:
            was = recorded[key]
            shown = {None: "the space's own model" if field == "model" else "all"}.get(was, was)
            raise SettingsConflict(
                f"study {study_name!r} was made with {option} {shown}, not {given}; leave "
                f"{option} out to continue it, or pass --study NEW_NAME for a new study"
            )
    sampler = args.sampler or recorded.get("sampler") or DEFAULT_SAMPLER
    return StudySettings(sampler=sampler, **values)


@dataclass(frozen=True)
class SearchPlan:
    """How a search uses its Ray cluster."""

    concurrent: int  # trials at once
    cpus_per_trial: int
    gpus_per_trial: float


def plan_search(
    *,
    cluster_cpus: int,
    cluster_gpus: float,
    remaining: int,
    gpus_per_trial: float | None = None,
    cpus_per_trial: int | None = None,
    space_share: float = 0.25,
) -> SearchPlan:
    """The resources of each trial and how many run at once, for a cluster of `cluster_cpus`
    CPUs and `cluster_gpus` GPUs and `remaining` trials to run.

    Without --gpus-per-trial a trial takes the space's share of a GPU (`space_share`,
    `Space.gpu_share`) when there is one, else none; on GPUs the CPUs are shared out among the
    trials that fit. Raises ValueError for a GPU share on a cluster without GPUs, or more CPUs a
    trial than the cluster has.
    """
    if gpus_per_trial is None:
        gpus_per_trial = space_share if cluster_gpus else 0.0
    if gpus_per_trial > 0 and cluster_gpus == 0:
        raise ValueError(
            f"--gpus-per-trial {gpus_per_trial} asks for a GPU but the Ray cluster has none; "
            "use --gpus-per-trial 0"
        )
    if cpus_per_trial and cpus_per_trial > cluster_cpus:  # Tune would wait for ever
        raise ValueError(
            f"--cpus-per-trial {cpus_per_trial} asks for more CPUs than the Ray cluster has "
            f"({cluster_cpus}); expected at most {cluster_cpus}"
        )
    if gpus_per_trial > 0:
        # 1e-9: 1 / 0.1 is 9.999...; a share that divides the GPUs evenly fits that many times.
        concurrent = max(1, int(cluster_gpus / gpus_per_trial + 1e-9))
        cpus_per_trial = cpus_per_trial or max(1, cluster_cpus // concurrent)
    else:
        cpus_per_trial = cpus_per_trial or 1
        concurrent = max(1, cluster_cpus // cpus_per_trial)
    return SearchPlan(min(concurrent, max(remaining, 1)), cpus_per_trial, gpus_per_trial)


def _check_local_gpus(gpus_per_trial: float | None) -> None:
    """Refuse a GPU share this machine cannot give, before the data is read and Ray started."""
    if not gpus_per_trial:
        return
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        fail(
            f"--gpus-per-trial {gpus_per_trial} asks for a GPU but the Ray cluster has none; "
            "use --gpus-per-trial 0"
        )
    if gpus_per_trial > count:
        fail(
            f"--gpus-per-trial {gpus_per_trial} asks for more GPUs than this machine has "
            f"({count}); expected at most {count}"
        )


def _check_local_cpus(cpus_per_trial: int | None) -> None:
    """Refuse more CPUs a trial than the local Ray will have (this machine's cores): Tune would
    wait for them for ever."""
    if cpus_per_trial is None:
        return
    cores = os.cpu_count() or 1
    if cpus_per_trial > cores:
        fail(
            f"--cpus-per-trial {cpus_per_trial} asks for more CPUs than this machine has "
            f"({cores}); expected at most {cores}"
        )


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    try:
        space = get_space(args.space)
    except ValueError as exc:
        fail(str(exc))
    study_name = args.study or space.name
    args.reduction_factor = args.reduction_factor or space.reduction_factor
    if args.reduction_factor < 2:
        fail(f"--reduction-factor {args.reduction_factor} is too small; expected >= 2")
    if args.gpus_per_trial is not None and not (
        0 <= args.gpus_per_trial and math.isfinite(args.gpus_per_trial)
    ):
        fail(f"--gpus-per-trial {args.gpus_per_trial} is invalid; expected a number >= 0")
    if args.model is not None:
        from models import list_models

        if args.model not in list_models():
            fail(f"unknown model {args.model!r}; expected one of: {', '.join(list_models())}")
    if args.address:
        _check_ray_address(args.address)
    else:
        _check_local_gpus(args.gpus_per_trial)
        _check_local_cpus(args.cpus_per_trial)
    # Every place the search writes is checked before anything is read or started.
    try:
        studies_dir = check_output_dir(args.studies_dir, "--studies-dir")
        url = args.storage or os.environ.get(STORAGE_ENV)
        url = url or default_storage_url(study_name, studies_dir)
        check_sqlite_writable(url, "--storage" if args.storage else "--studies-dir")
    except OutputError as exc:
        fail(str(exc))

    # A continued study's recorded settings decide the split, so they are read before the data.
    # Opening an existing database creates nothing; a new SQLite file waits until the data is
    # known good.
    new_paths = _new_sqlite_paths(url)
    storage = None
    recorded: dict[str, Any] = {}
    if not new_paths:
        storage = _open_or_fail(url, [])
        recorded = _recorded_attrs(storage, study_name, url)
    if recorded.get("space") and recorded["space"] != space.name:
        fail(
            f"study {study_name!r} was created with space {recorded['space']!r}, not "
            f"{space.name!r}; pass --study NEW_NAME for a new study"
        )
    try:
        settings = resolve_settings(args, space, study_name, recorded)
    except SettingsConflict as exc:
        fail(str(exc))
    import torch

    if args.address is None:  # a local search: every trial would fail on a device without it
        on_gpu = torch.cuda.is_available() and args.gpus_per_trial != 0
        try:
            resolve_precision(settings.precision, torch.device("cuda" if on_gpu else "cpu"))
        except ValueError as exc:
            fail(str(exc))
    if args.grace_period is None:
        args.grace_period = min(space.grace_period, settings.max_epochs)
    if args.grace_period > settings.max_epochs:
        fail(
            f"--grace-period {args.grace_period} exceeds --max-epochs {settings.max_epochs}; "
            "expected grace period <= max epochs"
        )
    try:
        data = load_cifar10(args.data, "train")
        train_set, val_set = train_val_split(
            data, settings.val_size, settings.seed, settings.train_size
        )
    except (DataError, ValueError) as exc:
        fail(str(exc))
    fingerprint = split_fingerprint(val_set)
    if recorded.get("val_fingerprint", fingerprint) != fingerprint:
        fail(
            f"study {study_name!r} was made with other data ({recorded.get('data_source')}): "
            f"its validation split differs from the one drawn from {data.source}; pass --data "
            "with the study's data to continue it, or --study NEW_NAME for a new study"
        )
    if storage is None:
        storage = _open_or_fail(url, new_paths)

    import optuna

    from ._study import study_exists

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_is_new = not study_exists(storage, study_name)
    if not study_is_new:
        _check_space_unchanged(optuna.load_study(study_name=study_name, storage=storage), space)
    try:
        try:
            study = _open_study(storage, study_name, space.name, settings, data.source, fingerprint)
            interrupted = fail_interrupted_trials(study)
            already = count_finished(study)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            fail(
                f"cannot write to the study database {redact(url)}: {storage_error_line(exc)}; "
                "free space there (or reach the server) and run the same command again",
                code=1,
            )
        if interrupted:
            print(
                f"marked {len(interrupted)} trial(s) left RUNNING by an interrupted run as "
                "FAIL: " + ", ".join(f"#{n}" for n in interrupted)
            )
        remaining = args.trials - already
        print(
            f"study {study_name!r} in {redact(url)}: {already} trial(s) done, "
            f"{max(remaining, 0)} to run (target {args.trials}); train {len(train_set)}, val "
            f"{len(val_set)} images from {data.source}",
            flush=True,
        )
        outcome = SearchOutcome()
        if remaining > 0:
            outcome = _run_search(
                SearchJob(
                    args=args,
                    space=space,
                    settings=settings,
                    study=study,
                    storage=storage,
                    study_name=study_name,
                    output_dir=studies_dir / study_name,
                    train_set=train_set,
                    val_set=val_set,
                    already=already,
                    remaining=remaining,
                )
            )
    except (SystemExit, KeyboardInterrupt):
        # A command that ends before its first trial leaves no empty study or file behind.
        if study_is_new:
            _discard_unused_study(storage, study_name, new_paths)
        raise
    _print_summary(study_name, url, args, space, studies_dir, outcome)
    if outcome.stopped:
        raise SystemExit(INTERRUPTED_EXIT)
    if outcome.error:
        fail(outcome.error, code=1)


def _check_space_unchanged(study: Any, space: Any) -> None:
    """Refuse, in one line, a study whose trials were drawn from another version of the space:
    Optuna cannot sample it (a categorical's choices changed) and would fail mid-search."""
    recorded: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    changed = space.changed_parameters(recorded) if recorded else []
    if changed:
        fail(
            f"study {study.study_name!r} was made with an earlier version of space "
            f"{space.name!r} (parameter(s) {', '.join(changed)} now offer other choices); pass "
            "--study NEW_NAME for a new study"
        )


def split_fingerprint(val_set: LabeledImages) -> str:
    """A short hash of the validation images and labels: equal exactly when trials are scored
    on the same images."""
    return val_set.fingerprint()


def _open_or_fail(url: str, new_paths: list[Path]) -> Any:
    try:
        return open_storage(url)
    except StudyError as exc:
        _remove_paths(new_paths)
        fail(str(exc))


def _recorded_attrs(storage: Any, study_name: str, url: str) -> dict[str, Any]:
    """The user attributes of the study being continued; {} for a new one."""
    import optuna

    from ._study import study_exists

    try:
        if not study_exists(storage, study_name):
            return {}
        return dict(optuna.load_study(study_name=study_name, storage=storage).user_attrs)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        fail(f"cannot read the study database {redact(url)}: {storage_error_line(exc)}")


def _check_ray_address(address: str) -> None:
    """Fail at once on a host:port nobody listens on: ray.init would retry it for minutes."""
    import socket

    if address in ("auto", "local") or "://" in address:
        return  # Ray resolves these itself (a running local cluster, Ray Client)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        fail(
            f"--address {address!r} is malformed; expected HOST:PORT of a Ray head node "
            "(as `ray start --head` prints it) or 'auto'"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        fail(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; expected the "
            "address `ray start --head` printed, with that port open to this machine"
        )


def _new_sqlite_paths(url: str) -> list[Path]:
    """The SQLite file `url` names and the folders above it that do not exist yet, deepest
    first: what opening the storage would create."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return []
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return []
    path = Path(parsed.database).absolute()
    new = []
    while not path.exists() and path != path.parent:
        new.append(path)
        path = path.parent
    return new


def _remove_paths(paths: list[Path]) -> None:
    """Remove files and (empty) folders this command created, deepest first."""
    for path in paths:
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
                Path(f"{path}-journal").unlink(missing_ok=True)
        except OSError:
            pass  # something else was put there meanwhile: not ours to delete


def _discard_unused_study(storage, study_name: str, new_paths: list[Path]) -> None:
    """Delete the study this command created if it holds no trial, and a SQLite file (with its
    folders) this command created if it then holds no study."""
    import optuna

    try:
        names = optuna.study.get_all_study_names(storage)
        if study_name in names:
            study = optuna.load_study(study_name=study_name, storage=storage)
            # Trials, or a driver's heartbeat: someone uses it (another driver may have made
            # it at the same moment as this one).
            if study.get_trials(deepcopy=False) or any(
                key.startswith("run:") for key in study.user_attrs
            ):
                return
            optuna.delete_study(study_name=study_name, storage=storage)
            names.remove(study_name)
        if new_paths and not names:
            storage.engine.dispose()
            _remove_paths(new_paths)
    except Exception:  # best effort: the error being reported matters more
        pass


def _open_study(
    storage: Any,
    study_name: str,
    space_name: str,
    settings: StudySettings,
    source: str,
    fingerprint: str,
) -> Any:
    """Load the study, or create it; record how it was made (a continued study keeps what it
    was first made with: only missing keys are filled)."""
    import optuna

    # Another driver sharing the storage may create it at the same moment.
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True
    )
    for key, value in {
        "space": space_name,
        "data_source": str(source),
        "val_fingerprint": fingerprint,
        "project_version": project_version(),
        "metric": "val_accuracy",
        "max_epochs": settings.max_epochs,
        "val_size": settings.val_size,
        "train_size": settings.train_size,
        "seed": settings.seed,
        "sampler": settings.sampler,
        "model_override": settings.model,
        "precision": settings.precision,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


class _HideTuneResumeAdvice(logging.Filter):
    """Drops Tune's interrupt messages: they advise `Tuner.restore`, but a search continues by
    re-running it, which the summary says."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(
            ("Experiment has been interrupted", "Trials did not complete")
        )


@dataclass(frozen=True)
class SearchJob:
    """Everything one driver's search needs, checked and loaded."""

    args: argparse.Namespace
    space: Space
    settings: StudySettings
    study: Any  # the optuna.Study, already created
    storage: Any
    study_name: str
    output_dir: Path  # absolute: <studies-dir>/<study>
    train_set: LabeledImages
    val_set: LabeledImages
    already: int  # trials the study holds that count towards --trials
    remaining: int  # trials to run


@dataclass(frozen=True)
class SearchOutcome:
    """How a driver's search ended."""

    stopped: bool = False  # Ctrl+C
    error: str | None = None  # why it ended early and what to do (the command then exits 1)
    unrecorded: tuple = ()  # TrialOutcomes of COMPLETE trials the study could not be told


class CtrlC:
    """While entered, notes a Ctrl+C; `stopped` says afterwards whether one came.

    Tune handles Ctrl+C itself: its handler stops the trials, ends `fit` normally and puts back
    the handler it found. Ours is that handler, so finding it in place after `fit` means a
    Ctrl+C came; a second Ctrl+C (or one Tune does not catch) reaches it and raises.
    """

    def __init__(self) -> None:
        self.stopped = False
        self._seen = threading.Event()
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: object) -> None:
        self._seen.set()
        raise KeyboardInterrupt

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
        self.stopped = self._seen.is_set() or (
            tune_catches and signal.getsignal(signal.SIGINT) == self._on_sigint
        )
        signal.signal(signal.SIGINT, self._previous)


def _start_ray(address: str | None, verbose: bool) -> None:
    """Join the cluster at `address`, or start a local Ray that listens on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        import ray

        ray.init(address=address, include_dashboard=False, log_to_driver=verbose)
        return
    # Ray binds its servers (GCS, raylet, workers, driver) to every interface unless the node's
    # address is loopback, and ray.init turns a given 127.0.0.1 into the machine's address.
    # This switch (read by ray._private.services.get_node_ip_address) makes the local node's
    # address 127.0.0.1, so nothing a search starts can be reached from another machine.
    os.environ[LOCAL_ONLY_ENV] = "0"
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before the line above
    ray.init(include_dashboard=False, log_to_driver=verbose, logging_level="WARNING")


class _OneLine(logging.Filter):
    """Shortens a logged error with a traceback to one line ending in the exception; drops
    Tune's failed syncs of its own experiment state, which this project never reads (a search
    continues from the study database), so a full disk is told once, by the search's error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Saving experiment state to storage"):
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage().strip()} {type(exc).__name__}: {exc}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _run_search(job: SearchJob) -> SearchOutcome:
    """Run up to `job.remaining` trials on Ray; the study records them."""
    args, settings = job.args, job.settings
    # Density spaces: train or reuse the study's fold models (None for spaces whose trials train).
    folds = prepare_folds(job)
    _start_ray(args.address, args.verbose)
    import ray
    from ray import tune

    from ._progress import SearchProgress
    from ._samplers import make_sampler
    from ._searcher import METRIC, PruningASHA, TrialErrorRecorder, TruthfulOptunaSearch
    from ._study import Heartbeat, sampler_seed
    from ._trainable import TrialSettings

    try:
        resources = ray.cluster_resources()
        try:
            plan = plan_search(
                cluster_cpus=int(resources.get("CPU", 1)),
                cluster_gpus=float(resources.get("GPU", 0)),
                remaining=job.remaining,
                gpus_per_trial=args.gpus_per_trial,
                cpus_per_trial=args.cpus_per_trial,
                space_share=job.space.gpu_share,
            )
        except ValueError as exc:
            fail(str(exc))
        run_id = new_run_id()
        seed = sampler_seed(settings.seed, run_id)
        scheduler = PruningASHA(
            metric=METRIC,
            mode="max",
            time_attr="training_iteration",
            max_t=settings.max_epochs,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
        )
        searcher = TruthfulOptunaSearch(
            space=job.space.suggest,
            metric=METRIC,
            mode="max",
            study_name=job.study_name,
            storage=job.storage,
            sampler=make_sampler(settings.sampler, seed),
            scheduler=scheduler,
            trial_attrs={"run_id": run_id, "sampler_seed": seed},
            target=args.trials,
        )
        progress = SearchProgress(
            searcher,
            args.trials,
            job.already,
            settings.max_epochs,
            verbose=args.verbose,
            words=job.space.words,
        )
        trial_settings = TrialSettings(
            space=job.space.name,
            max_epochs=settings.max_epochs,
            seed=settings.seed,
            output_dir=str(job.output_dir),
            cpus_per_trial=plan.cpus_per_trial,
            gpus_per_trial=plan.gpus_per_trial,
            model=settings.model,
            precision=settings.precision,
            folds=folds,
        )
        trainable = tune.with_resources(
            tune.with_parameters(
                trial_function(trial_settings),
                settings=trial_settings,
                train_set=job.train_set,
                val_set=job.val_set,
            ),
            {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial},
        )
        print(
            f"running {job.remaining} trial(s), up to {plan.concurrent} at once, each with "
            f"{plan.cpus_per_trial} CPU and {plan.gpus_per_trial:g} GPU; ASHA grace "
            f"{args.grace_period}, reduction {args.reduction_factor}, max "
            f"{settings.max_epochs} {job.space.words.steps}",
            flush=True,
        )
        try:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=job.remaining,
                    max_concurrent_trials=plan.concurrent,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=run_id,
                    storage_path=str(job.output_dir / "ray"),
                    verbose=0,
                    # The recorder first: the printer prints what the searcher recorded.
                    callbacks=[TrialErrorRecorder(searcher), progress],
                    failure_config=tune.FailureConfig(max_failures=0),
                    checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                ),
            )
        except OSError as exc:  # Tune writes its experiment files (tuner.pkl) here at once
            fail(_write_failed(job.output_dir / "ray", exc), code=1)
        logging.getLogger("ray.tune.tune").addFilter(_HideTuneResumeAdvice())
        # A full disk under the studies folder: Tune says so at each save, with a traceback.
        logging.getLogger("ray.tune.execution.experiment_state").addFilter(_OneLine())
        ctrl_c = CtrlC()
        try:
            with Heartbeat(searcher.study, run_id, sampler_seed=seed):
                try:
                    with ctrl_c:
                        tuner.fit()
                finally:
                    searcher.stopping = ctrl_c.stopped
                    searcher.flush_errors()
                    # Tune stops live trials of an interrupted run without telling the searcher.
                    failed = searcher.fail_unfinished()
                    if failed:
                        print(
                            "marked unfinished trial(s) FAIL (interrupted): "
                            + ", ".join(f"#{n}" for n in sorted(failed)),
                            flush=True,
                        )
        except Exception as exc:  # the heartbeat's first write: the database fails at once
            if not is_storage_error(exc):
                raise
            fail(
                f"cannot write to the study database: {storage_error_line(exc)}; free space "
                "there (or reach the server) and run the same command again",
                code=1,
            )
    finally:
        ray.shutdown()
    return SearchOutcome(
        stopped=ctrl_c.stopped,
        error=_search_error(searcher, job),
        unrecorded=tuple(searcher.unrecorded),
    )


def _write_failed(folder: Path, exc: OSError) -> str:
    why = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return (
        f"cannot write under {folder}: {why}; free space there (or fix the folder) and run "
        "the same command again"
    )


def _search_error(searcher: Any, job: SearchJob) -> str | None:
    """Why the search ended before its trials were done, and what to do; None when it did not."""
    if searcher.save_error:
        number, message = searcher.save_error
        return (
            f"trial #{number} trained but could not save its weights ({message}); the search "
            f"asked for no new trials after it. Free space under {job.output_dir} and run the "
            "same command again: trials that were not saved run again"
        )
    if searcher.storage_error:
        return (
            f"the study database failed ({searcher.storage_error}); the search asked for no "
            "new trials after it. "
            "Fix the database (free space, reach the server) and run the same command again"
        )
    return None


def _print_summary(
    study_name: str,
    url: str,
    args: argparse.Namespace,
    space: Space,
    studies_dir: Path,
    outcome: SearchOutcome,
) -> None:
    """What the study holds now, the best trial, and the commands that take it further.
    `space` is the study's own: a study recorded with another space was refused before."""
    import optuna

    for lost in outcome.unrecorded:
        print(
            f"NOT RECORDED: trial #{lost.number} COMPLETE, {space.words.value_long} "
            f"{100 * (lost.value or 0):.2f}%, weights {lost.checkpoint_path}: the study "
            "database could not be told",
            file=sys.stderr,
        )
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
    except Exception as exc:
        if not (is_storage_error(exc) or isinstance(exc, StudyError)):
            raise
        print(f"\nstudy {study_name!r}: cannot be read now ({storage_error_line(exc)})")
        return
    states = [t.state.name for t in trials]
    counts = ", ".join(
        f"{states.count(s)} {s}"
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
        if states.count(s)
    )
    print(f"\nstudy {study_name!r}: {len(states)} trials ({counts})")
    if outcome.stopped:
        print(f"stopped (Ctrl+C); {CONTINUE_HINT}")
    elif count_finished(study) < args.trials:
        if count_claimed(study) >= args.trials:
            print(
                "other drivers sharing this study are running its last trials; it reaches "
                "--trials when they finish"
            )
        elif not outcome.error:
            print(f"the search stopped before reaching --trials; {CONTINUE_HINT}")
    try:
        best = study.best_trial
    except ValueError:
        print("no trial completed: nothing to retrain yet")
        return
    print(
        f"best trial: #{best.number}, {space.words.value_long} {100 * best.value:.2f}% after "
        f"{best.user_attrs.get('epochs_run', '?')} {space.words.steps}"
    )
    print("configuration: " + json.dumps(best.params, sort_keys=True))
    print(f"checkpoint: {best.user_attrs.get('checkpoint_path', '-')}")
    where, note = _where_options(args, studies_dir)
    if note:
        print(note)
    if isinstance(space.trial_config(best.params).policy, tuple):
        export = ["python", "-m", "search.export_policy", "--study", study_name]
        print("export the best policies: " + _command(export + ["-o", "policy.json"], where))
    else:
        retrain = ["python", "-m", "search.retrain", "--study", study_name]
        retrain += ["--trial", str(best.number)]
        data = ["--data", args.data] if args.data else []
        print("retrain it to full length: " + _command(retrain, where, data))
    report = ["python", "-m", "search.report", "--study", study_name]
    print(f"look at the study: {_command(report, where)}  (or search.dashboard)")
    sys.stdout.flush()


def _where_options(args: argparse.Namespace, studies_dir: Path) -> tuple[list[str], str | None]:
    """The options by which the other commands find this study, as shell words (already
    quoted), and a line to print before the commands when they need something set first.

    A URL with a password is never printed (redacted, it would not work when pasted): the
    commands read it from $SEARCH_STORAGE instead.
    """
    from sqlalchemy.engine import make_url

    where, note = [], None
    if args.storage:
        try:
            has_password = bool(make_url(args.storage).password)
        except Exception:
            has_password = False
        if has_password:
            where += ["--storage", f'"${STORAGE_ENV}"']
            if os.environ.get(STORAGE_ENV) != args.storage:
                note = (
                    f"(set {STORAGE_ENV} to the --storage URL, password included, before "
                    "running these; better still, pass it that way rather than on the command "
                    "line)"
                )
        else:
            where += ["--storage", shlex.quote(args.storage)]
    if args.studies_dir != STUDIES_DIR:
        where += ["--studies-dir", shlex.quote(str(studies_dir))]
    return where, note


def _command(words: list[str], where: list[str], tail: list[str] = ()) -> str:
    """A command line to paste: `words` and `tail` quoted, `where` as given (already quoted)."""
    return " ".join([shlex.join(words), *where, *([shlex.join(tail)] if tail else [])])


if __name__ == "__main__":
    main()
