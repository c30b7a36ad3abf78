"""What a search will run: its options read once into typed objects, checked, its data loaded.

`resolve_job(args)` is the one reader of `search.run`'s parsed options; nothing past it sees the
Namespace. A continued study keeps the settings it was made with: an option left out takes the
recorded value, a different one is refused (`take_recorded`, the one rule for every recorded
option, the density search's fold options included).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training import LabeledImages, locate_cifar10, resolve_precision, train_val_split

from ._errors import UsageError
from ._seeds import SeedOptions, SeedPlan, resolve_seeds
from ._space import Space, get_space
from ._study import (
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_VAL_SIZE,
    DENSITY_ATTR,
    STUDIES_DIR,
    StudyLocation,
    StudyRecord,
    load_study,
    locate_study,
    recorded_attrs,
    study_exists,
)
from ._version import project_version

DEFAULT_FOLDS = 5  # Fast AutoAugment's K
DEFAULT_DRAWS = 5  # Fast AutoAugment's eval_tta: one draw per sub-policy
# Restarts of a trial whose worker died: a lost node or a killed process, not a pattern.
DEFAULT_MAX_FAILURES = 2


class SettingsConflict(UsageError):
    """An option that contradicts what the study being continued was made with."""


def conflict(made: str, option: str, was: Any, given: Any) -> SettingsConflict:
    """The one refusal of an option that differs from what a study recorded; `made` says what
    was made with it ("study 'x' was made", "study 'x''s fold models were made")."""
    return SettingsConflict(
        f"{made} with {option} {was}, not {given}; leave {option} out to continue it, or pass "
        "--study NEW_NAME for a new study"
    )


def take_recorded(
    made: str, option: str, given: Any, recorded: dict[str, Any], key: str, default: Any
) -> Any:
    """The one rule for an option a study records: given, else recorded, else `default`; a
    given value other than the recorded one is refused (the study's trials would no longer be
    comparable)."""
    if key not in recorded:
        return given if given is not None else default
    if given is None or given == recorded[key]:
        return recorded[key]
    was = recorded[key]
    shown = {None: "the space's own model" if option == "--model" else "all"}.get(was, was)
    raise conflict(made, option, shown, given)


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
    # A policy space's child, as StudyRecord.child_recipe (and its name); None: the space's
    # `to_config` as it is (not a policy space, or a study made before the child was recorded).
    child: dict[str, Any] | None = None
    child_name: str | None = None


# (option, study attribute, StudySettings field) of the settings a continued study keeps. The
# sampler may change: it only chooses what to try next.
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
    made = f"study {study_name!r} was made"
    values = {
        field: take_recorded(made, option, getattr(args, field), recorded, key, defaults[field])
        for option, key, field in _RECORDED
    }
    sampler = args.sampler or recorded.get("sampler") or DEFAULT_SAMPLER
    child_name, child = _resolve_child(args.child_recipe, space, made, recorded)
    return StudySettings(sampler=sampler, child=child, child_name=child_name, **values)


def _resolve_child(
    given: str | None, space: Space, made: str, recorded: dict[str, Any]
) -> tuple[str | None, dict[str, Any] | None]:
    """The study's child (name, config): --child-recipe, else the recorded one, else the
    space's first for a new study; a study made before children were recorded keeps its
    space's `to_config` (None). A given child other than the recorded one is refused."""
    from ._recipe import child_recipe

    name, child = None, None
    if given is not None:
        try:
            name, child = child_recipe(space, given)
        except ValueError as exc:
            raise UsageError(f"invalid --child-recipe: {exc}") from None
    if recorded:  # a continued study
        was = recorded.get("child_recipe")
        if given is None or child == was:
            return recorded.get("child_recipe_name"), was
        shown = recorded.get("child_recipe_name") or "the space's original child"
        raise conflict(made, "--child-recipe", shown, given)
    if given is None and space.children:
        return child_recipe(space, next(iter(space.children)))
    return name, child


@dataclass(frozen=True)
class AshaOptions:
    grace_period: int  # epochs every trial gets before ASHA may stop it
    reduction_factor: int  # ASHA keeps 1/this of the trials at each rung


@dataclass(frozen=True)
class ResourceOptions:
    address: str | None  # a Ray cluster to join; None: a local Ray
    gpus_per_trial: float | None  # None: the space's share with a GPU, else 0
    cpus_per_trial: int | None  # None: by the plan (search/_driver.py plan_search)


@dataclass(frozen=True)
class ResumeOptions:
    """What becomes of trials that are interrupted (search/_resume.py)."""

    checkpoint_every: int | None  # epochs between a trial's checkpoints; 0: none; None: default
    max_failures: int  # restarts of a trial whose worker died, within one run
    resume_trials: bool  # run again first what an interrupted run left


@dataclass(frozen=True)
class FoldOptions:
    """A density search's fold models: given, else the study's record, else the defaults."""

    folds: int
    fold_epochs: int
    draws: int


@dataclass(frozen=True)
class SearchJob:
    """Everything one driver's search needs, checked and loaded; nothing is created yet."""

    space: Space
    location: StudyLocation
    record: StudyRecord  # what a new study records (a continued one keeps its own)
    settings: StudySettings
    asha: AshaOptions
    resources: ResourceOptions
    resume: ResumeOptions
    folds: FoldOptions | None  # None: a space whose trials train
    trials: int  # trials the study should hold when done
    train_set: LabeledImages
    val_set: LabeledImages
    storage_option: str | None  # --storage as given (the summary's pasteable commands)
    custom_studies_dir: bool  # --studies-dir given (the summary's pasteable commands)
    data_option: str | None  # --data as given
    verbose: bool
    seeds: SeedPlan = SeedPlan()  # trials a new study runs first (search/_seeds.py)
    stop_when_converged: bool = False  # ask for no trials once the Terminator says converged

    @property
    def study_name(self) -> str:
        return self.location.name

    @property
    def output_dir(self) -> Path:
        return self.location.output_dir


def resolve_job(args: argparse.Namespace) -> SearchJob:
    """Read and check the options, the study's record and the data: what the search will run.

    Every place the search writes is checked before anything is read or started; a continued
    study's recorded settings decide the split, so they are read before the data. Raises
    UsageError (or StudyError, DataError, OutputError) in one line.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(args.space)
    resources = _check_resources(args)
    location = locate_study(args.study or space.name, args.storage, args.studies_dir)
    recorded = recorded_attrs(location)
    _check_same_space(recorded, space, location.name)
    seeds = _seed_plan(args, space, location)
    settings = resolve_settings(args, space, location.name, recorded)
    if resources.address is None:
        _check_local_precision(settings.precision, resources.gpus_per_trial)
    asha = _asha_options(args, space, settings)
    train_set, val_set, cache_data = _load_split(args.data, settings, recorded, location.name)
    if location.storage is not None and study_exists(location.storage, location.name):
        _check_space_unchanged(load_study(location), space)
    folds = _fold_options(args, space, recorded, len(train_set))
    cache_data()
    return SearchJob(
        space=space,
        location=location,
        record=_new_record(space, settings, train_set.source, val_set),
        settings=settings,
        asha=asha,
        resources=resources,
        resume=ResumeOptions(args.checkpoint_every, args.max_failures, args.resume_trials),
        folds=folds,
        trials=args.trials,
        train_set=train_set,
        val_set=val_set,
        storage_option=args.storage,
        custom_studies_dir=args.studies_dir != STUDIES_DIR,
        data_option=args.data,
        verbose=args.verbose,
        seeds=seeds,
        stop_when_converged=_stop_when_converged(args),
    )


def _stop_when_converged(args: argparse.Namespace) -> bool:
    """--stop-when-converged, refused where Optuna has no Terminator (removed in Optuna 6)."""
    from ._converge import terminator_missing

    missing = terminator_missing() if args.stop_when_converged else None
    if missing:
        raise UsageError(
            f"invalid --stop-when-converged: {missing}; expected Optuna 3.2 to 5.x, or leave "
            "the option out"
        )
    return bool(args.stop_when_converged)


def _space(name: str) -> Space:
    try:
        return get_space(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _seed_plan(args: argparse.Namespace, space: Space, location: StudyLocation) -> SeedPlan:
    """What a new study runs first (its space's recipes, a warm start), read and checked now:
    a refused warm start writes nothing."""
    is_new = location.storage is None or not study_exists(location.storage, location.name)
    return resolve_seeds(
        SeedOptions(args.seed_trials, args.warm_start, args.warm_start_top),
        space,
        study_name=location.name,
        study_is_new=is_new,
        trials=args.trials,
        storage_option=args.storage,
        studies_dir=location.studies_dir,
    )


def _check_resources(args: argparse.Namespace) -> ResourceOptions:
    """The options that need no study or data, checked: ASHA's factor, the GPU share, the model,
    and what the Ray cluster (or this machine) can give."""
    reduction = args.reduction_factor
    if reduction is not None and reduction < 2:
        raise UsageError(f"--reduction-factor {reduction} is too small; expected >= 2")
    share = args.gpus_per_trial
    if share is not None and not (share >= 0 and math.isfinite(share)):
        raise UsageError(f"--gpus-per-trial {share} is invalid; expected a number >= 0")
    if args.model is not None:
        from models import list_models

        if args.model not in list_models():
            raise UsageError(
                f"unknown model {args.model!r}; expected one of: {', '.join(list_models())}"
            )
    if args.address:
        _check_ray_address(args.address)
    else:
        _check_local_gpus(share)
        _check_local_cpus(args.cpus_per_trial)
    return ResourceOptions(args.address, share, args.cpus_per_trial)


def _check_ray_address(address: str) -> None:
    """Fail at once on a host:port nobody listens on: ray.init would retry it for minutes."""
    import socket

    if address in ("auto", "local") or "://" in address:
        return  # Ray resolves these itself (a running local cluster, Ray Client)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--address {address!r} is malformed; expected HOST:PORT of a Ray head node "
            "(as `ray start --head` prints it) or 'auto'"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; expected the "
            "address `ray start --head` printed, with that port open to this machine"
        ) from None


def _check_local_gpus(gpus_per_trial: float | None) -> None:
    """Refuse a GPU share this machine cannot give, before the data is read and Ray started."""
    if not gpus_per_trial:
        return
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial} asks for a GPU but the Ray cluster has none; "
            "use --gpus-per-trial 0"
        )
    if gpus_per_trial > count:
        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial} asks for more GPUs than this machine has "
            f"({count}); expected at most {count}"
        )


def _check_local_cpus(cpus_per_trial: int | None) -> None:
    """Refuse more CPUs a trial than the local Ray will have (this machine's cores): Tune would
    wait for them for ever."""
    cores = os.cpu_count() or 1
    if cpus_per_trial is not None and cpus_per_trial > cores:
        raise UsageError(
            f"--cpus-per-trial {cpus_per_trial} asks for more CPUs than this machine has "
            f"({cores}); expected at most {cores}"
        )


def _check_same_space(recorded: dict[str, Any], space: Space, study_name: str) -> None:
    if recorded.get("space") and recorded["space"] != space.name:
        raise UsageError(
            f"study {study_name!r} was created with space {recorded['space']!r}, not "
            f"{space.name!r}; pass --study NEW_NAME for a new study"
        )


def _check_local_precision(precision: str, gpus_per_trial: float | None) -> None:
    """A local search: every trial would fail on a device without the study's precision."""
    import torch

    on_gpu = torch.cuda.is_available() and gpus_per_trial != 0
    try:
        resolve_precision(precision, torch.device("cuda" if on_gpu else "cpu"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _asha_options(args: argparse.Namespace, space: Space, settings: StudySettings) -> AshaOptions:
    grace = args.grace_period
    if grace is None:
        grace = min(space.grace_period, settings.max_epochs)
    if grace > settings.max_epochs:
        raise UsageError(
            f"--grace-period {grace} exceeds --max-epochs {settings.max_epochs}; "
            "expected grace period <= max epochs"
        )
    return AshaOptions(grace, args.reduction_factor or space.reduction_factor)


def _load_split(
    data: str | None, settings: StudySettings, recorded: dict[str, Any], study_name: str
) -> tuple[LabeledImages, LabeledImages, Callable[[], None]]:
    """The study's training and validation split, and the step that caches the decoded images
    (taken once the search's input is all accepted: a refused command writes nothing). A
    continued study's split must be the one it was scored on."""
    try:
        files = locate_cifar10(data, "train")
        images = files.read()
        train_set, val_set = train_val_split(
            images, settings.val_size, settings.seed, settings.train_size
        )
    except ValueError as exc:  # DataError included
        raise UsageError(str(exc)) from None
    fingerprint = val_set.fingerprint()
    if recorded.get("val_fingerprint", fingerprint) != fingerprint:
        raise UsageError(
            f"study {study_name!r} was made with other data ({recorded.get('data_source')}): "
            f"its validation split differs from the one drawn from {images.source}; pass --data "
            "with the study's data to continue it, or --study NEW_NAME for a new study"
        )
    return train_set, val_set, lambda: files.write_cache(images)


def _check_space_unchanged(study: Any, space: Space) -> None:
    """Refuse, in one line, a study whose trials were drawn from another version of the space:
    Optuna cannot sample it (a categorical's choices changed) and would fail mid-search."""
    changed = space.changed_in(study)
    if changed:
        raise UsageError(
            f"study {study.study_name!r} was made with an earlier version of space "
            f"{space.name!r} (parameter(s) {', '.join(changed)} now offer other choices); pass "
            "--study NEW_NAME for a new study"
        )


def _new_record(
    space: Space, settings: StudySettings, source: str, val_set: LabeledImages
) -> StudyRecord:
    return StudyRecord(
        space=space.name,
        max_epochs=settings.max_epochs,
        train_size=settings.train_size,
        val_size=settings.val_size,
        seed=settings.seed,
        sampler=settings.sampler,
        model_override=settings.model,
        precision=settings.precision,
        child_recipe=settings.child,
        child_recipe_name=settings.child_name,
        data_source=source,
        val_fingerprint=val_set.fingerprint(),
        project_version=project_version(),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


# (option, key of the fold-model record, smallest value) of a density search.
_FOLD_OPTIONS = (
    ("--folds", "folds", 2),
    ("--fold-epochs", "fold_epochs", 1),
    ("--draws", "draws", 1),
)


def _fold_options(
    args: argparse.Namespace, space: Space, recorded: dict[str, Any], search_images: int
) -> FoldOptions | None:
    """A density space's fold options (a given option overrides the record: `prepare_folds`
    then refuses a record that differs); None, and no fold option allowed, for other spaces."""
    given = {key: getattr(args, key) for _, key, _ in _FOLD_OPTIONS}
    if space.method != "density":
        for option, key, _ in _FOLD_OPTIONS:
            if given[key] is not None:
                raise UsageError(
                    f"{option} applies only to spaces scored by density matching (policy), not "
                    f"{space.name!r}; leave it out"
                )
        return None
    record = recorded.get(DENSITY_ATTR) or {}
    defaults = {"folds": DEFAULT_FOLDS, "fold_epochs": space.fold_recipe().epochs}
    defaults["draws"] = DEFAULT_DRAWS
    values = {}
    for option, key, minimum in _FOLD_OPTIONS:
        value = given[key] if given[key] is not None else record.get(key, defaults[key])
        if value < minimum:
            raise UsageError(f"invalid {option} {value}; expected a whole number >= {minimum}")
        values[key] = value
    if values["folds"] > search_images:
        raise UsageError(
            f"invalid --folds {values['folds']}; expected at most the {search_images} search images"
        )
    return FoldOptions(**values)
