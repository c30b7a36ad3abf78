"""Trials a new study runs first: its space's general recipes (seeds), and the best trials of an
earlier study of the same space (a warm start).

Both are Optuna's enqueued trials: WAITING, with every parameter fixed, which the searcher's
sampler takes first, oldest first, and ASHA then treats as any trial. Each carries the `source`
user attribute (`SOURCE_ATTR`: "seed:report", "warm-start:small#12"), which the progress lines
show. They are queued once, by the driver that creates the study, before Ray starts; a study
being continued gets none (what it was seeded with is still in it).

The order: the warm start's trials first, best first (they were measured on this space, at
another scale), then the space's recipes, leaving out one whose parameters are already queued;
no more in all than --trials. Everything is read and checked while the command is resolved
(`resolve_seeds`), so a refused warm start writes nothing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import UsageError
from ._space import Space
from ._study import (
    SOURCE_ATTR,
    StudyError,
    StudyRecord,
    load_existing_study,
    open_storage,
    redact,
    resolve_storage_url,
    sqlite_path,
)

SEED_PREFIX = "seed:"
WARM_START_PREFIX = "warm-start:"
DEFAULT_WARM_START_TOP = 3
# The study attribute that says which study (and storage, redacted) a study was warm-started from.
WARM_START_ATTR = "warm_start"


@dataclass(frozen=True)
class SeedOptions:
    """`search.run`'s options of the trials a new study runs first."""

    seed_trials: bool  # the space's recipes (--no-seed-trials: False)
    warm_start: str | None  # STUDY or STUDY@STORAGE (--warm-start)
    warm_start_top: int | None  # how many of its best trials (--warm-start-top; None: default)


@dataclass(frozen=True)
class QueuedTrial:
    """A trial queued when a study is made: its parameters and where they come from."""

    params: dict[str, Any]
    source: str  # "seed:NAME" or "warm-start:STUDY#N"


@dataclass(frozen=True)
class SeedPlan:
    """What a new study is seeded with, checked; empty for a study being continued."""

    trials: tuple[QueuedTrial, ...] = ()
    warm_start: dict[str, Any] | None = None  # the WARM_START_ATTR record, when warm-started
    note: str | None = None  # said once when the search starts (a warm start not applied)


def shown_source(source: str) -> str:
    """A trial's `source` as a progress line shows it: "seed: report", "warm-start: small#12"."""
    kind, _, name = source.partition(":")
    return f"{kind}: {name}" if name else source


def configuration_problems(space: Space, params: dict[str, Any]) -> list[str]:
    """What keeps `params` from being one complete, in-range configuration of `space`: the space
    suggests from an Optuna trial with `params` fixed, as an enqueued trial is; a value out of
    range or not among the choices, a parameter left to sample and one never asked for are each
    a problem. [] when the trial takes exactly `params`."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    trial = study.ask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            space.suggest(trial)
        except ValueError as exc:  # a categorical value that is not one of the choices
            return [f"a value is not one of its choices ({exc})"]
    problems = [
        str(w.message).rstrip(".") for w in caught if str(w.message).startswith("Fixed parameter")
    ]
    missing = sorted(set(trial.params) - set(params))
    unused = sorted(set(params) - set(trial.params))
    if missing:
        problems.append("no value for " + ", ".join(missing))
    if unused:
        problems.append("not asked for by the space: " + ", ".join(unused))
    return problems


def resolve_seeds(
    options: SeedOptions,
    space: Space,
    *,
    study_name: str,
    study_is_new: bool,
    trials: int,
    storage_option: str | None,
    studies_dir: Path,
) -> SeedPlan:
    """The trials a new study is seeded with, every one checked; UsageError (one line) for a
    warm start that cannot be used. A study being continued gets none."""
    if options.warm_start_top is not None and options.warm_start is None:
        raise UsageError(
            f"invalid --warm-start-top={options.warm_start_top!r} without --warm-start; expected "
            "--warm-start STUDY[@STORAGE] with it, or leave it out"
        )
    if not study_is_new:
        note = None
        if options.warm_start is not None:
            note = (
                f"note: study {study_name!r} exists, so --warm-start is not applied (it seeds "
                "a new study only)"
            )
        return SeedPlan(note=note)
    queued: list[QueuedTrial] = []
    record = None
    if options.warm_start is not None:
        top = options.warm_start_top or DEFAULT_WARM_START_TOP
        queued, record = _warm_start(options.warm_start, top, space, storage_option, studies_dir)
    if options.seed_trials:
        taken = [trial.params for trial in queued]
        queued += [trial for trial in space_seeds(space) if trial.params not in taken]
    return SeedPlan(trials=tuple(queued[:trials]), warm_start=record)


def space_seeds(space: Space) -> list[QueuedTrial]:
    """The space's recipes as queued trials; ValueError for a recipe that is not a complete,
    in-range configuration of its space (a mistake in studies/)."""
    seeds = []
    for recipe in space.recipes:
        problems = configuration_problems(space, recipe.params)
        if problems:
            raise ValueError(
                f"invalid recipe {recipe.name!r} of space {space.name!r}: "
                + "; ".join(problems)
                + "; expected a value in range for every parameter the space suggests"
            )
        seeds.append(QueuedTrial(dict(recipe.params), SEED_PREFIX + recipe.name))
    return seeds


def _warm_start(
    reference: str, top: int, space: Space, storage_option: str | None, studies_dir: Path
) -> tuple[list[QueuedTrial], dict[str, Any]]:
    """The `top` best COMPLETE trials of the study `reference` names (STUDY or STUDY@STORAGE;
    STORAGE defaults to this search's own resolution), read only, and the record of where they
    come from; UsageError when it is missing or not of this space with these parameters."""
    name, _, storage = reference.partition("@")
    url = storage or resolve_storage_url(storage_option, name, studies_dir)
    shown = f"{name}@{redact(storage)}" if storage else name

    def refuse(why: str) -> UsageError:
        return UsageError(f"invalid --warm-start={shown!r}: {why}")

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise refuse(f"no study database at {path}; expected STUDY[@STORAGE] of an earlier study")
    try:
        other = load_existing_study(open_storage(url, must_exist=True), name)
    except StudyError as exc:
        raise refuse(str(exc)) from None
    made_with = StudyRecord.of(other).space
    if made_with != space.name:
        raise refuse(
            f"study {name!r} was made with space {made_with!r}; expected a study of space "
            f"{space.name!r}"
        )
    best = _best_trials(other, top)
    if not best:
        raise refuse(f"study {name!r} holds no COMPLETE trial; expected one to start from")
    _check_parameters(other, best, space, refuse)
    queued = [QueuedTrial(dict(t.params), f"{WARM_START_PREFIX}{name}#{t.number}") for t in best]
    record = {"study": name, "storage": redact(url), "trials": [t.number for t in best]}
    return queued, record


def _best_trials(study: Any, top: int) -> list[Any]:
    """The `top` COMPLETE trials of highest value (the study maximizes), earlier first on ties."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-t.value, t.number))[:top]


def _check_parameters(study: Any, best: list[Any], space: Space, refuse: Any) -> None:
    """Refuse a study whose parameters this space no longer suggests the same way: any of its
    trials' distributions (the check a continued study gets), and each chosen trial's parameters
    as one complete configuration of the space."""
    changed = space.changed_in(study)
    if changed:
        raise refuse(
            f"its parameter(s) {', '.join(changed)} offer other choices than space "
            f"{space.name!r} now does; expected a study of the same version of the space"
        )
    for trial in best:
        problems = configuration_problems(space, trial.params)
        if problems:
            raise refuse(
                f"trial #{trial.number}'s parameters are not a configuration of space "
                f"{space.name!r} ({'; '.join(problems)}); expected the same parameters"
            )


def enqueue_seeds(study: Any, plan: SeedPlan) -> None:
    """Queue the plan's trials in `study` (new, made by this driver), in order, each marked
    with its source; record where a warm start came from."""
    if plan.warm_start is not None:
        study.set_user_attr(WARM_START_ATTR, plan.warm_start)
    for trial in plan.trials:
        study.enqueue_trial(trial.params, user_attrs={SOURCE_ATTR: trial.source})
