"""What a search prints when it ends: the study's state, its best trial, and the commands that
take it further, ready to paste."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ._converge import best_found, estimate_line, maximizes
from ._driver import SearchOutcome
from ._job import SearchJob
from ._study import (
    STORAGE_ENV,
    StudyError,
    count_claimed,
    count_finished,
    is_storage_error,
    open_storage,
    storage_error_line,
)

CONTINUE_HINT = "run the same command again to continue the study"


def print_summary(job: SearchJob, outcome: SearchOutcome) -> None:
    """What the study holds now, the best trial, and the commands that take it further.
    `job.space` is the study's own: a study recorded with another space was refused before."""
    _print_unrecorded(job, outcome)
    study = _reload(job)
    if study is None:
        return
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    counts = ", ".join(
        f"{states.count(s)} {s}"
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
        if states.count(s)
    )
    print(f"\nstudy {job.study_name!r}: {len(states)} trials ({counts})")
    _print_resumed(job, outcome)
    _print_progress(study, job, outcome)
    try:
        best = study.best_trial
    except ValueError:
        print("no trial completed: nothing to retrain yet")
        return
    _print_best(best, job)
    _print_convergence(study)
    sys.stdout.flush()


def _print_unrecorded(job: SearchJob, outcome: SearchOutcome) -> None:
    for lost in outcome.unrecorded:
        print(
            f"NOT RECORDED: trial #{lost.number} COMPLETE, {job.space.words.value_long} "
            f"{100 * (lost.value or 0):.2f}%, weights {lost.checkpoint_path}: the study "
            "database could not be told",
            file=sys.stderr,
        )


def _reload(job: SearchJob) -> Any:
    """The study as the database holds it now; None (said why) when it cannot be read."""
    import optuna

    try:
        return optuna.load_study(study_name=job.study_name, storage=open_storage(job.location.url))
    except Exception as exc:
        if not (is_storage_error(exc) or isinstance(exc, StudyError)):
            raise
        print(f"\nstudy {job.study_name!r}: cannot be read now ({storage_error_line(exc)})")
        return None


def _print_progress(study: Any, job: SearchJob, outcome: SearchOutcome) -> None:
    if outcome.stopped:
        print(f"stopped (Ctrl+C); {CONTINUE_HINT}")
    elif outcome.converged is not None:
        print(
            f"stopped as converged after {count_finished(study)} of --trials {job.trials} "
            f"finished: {outcome.converged.line()}; run again without --stop-when-converged "
            "for the rest"
        )
    elif count_finished(study) < job.trials:
        if count_claimed(study) >= job.trials:
            print(
                "other drivers sharing this study are running its last trials; it reaches "
                "--trials when they finish"
            )
        elif not outcome.error:
            print(f"the search stopped before reaching --trials; {CONTINUE_HINT}")


def _print_convergence(study: Any) -> None:
    """Where the best trial was found and, from Optuna's Terminator, whether more trials pay."""
    found = best_found(study.get_trials(deepcopy=False), maximizes(study))
    if found is not None:
        print(found.line())
    try:
        line = estimate_line(study)
    except Exception as exc:  # a GP that cannot be fitted costs the line, not the summary
        reason = (str(exc).strip().splitlines() or [""])[0]
        line = f"Optuna's Terminator: no estimate ({type(exc).__name__}: {reason})"
    if line:
        print(line)


def _print_resumed(job: SearchJob, outcome: SearchOutcome) -> None:
    """The trials this run continued: retries of interrupted ones, and trials Ray restarted."""
    steps = job.space.words.steps
    retries = [o for o in outcome.resumed if o.retry_of is not None]
    restarted = [o for o in outcome.resumed if o.retry_of is None]
    if retries:
        print(
            f"resumed {len(retries)} interrupted trial(s): "
            + ", ".join(
                f"#{o.retry_of} as #{o.number} ({o.resumed_from} {steps} restored)" for o in retries
            )
        )
    if restarted:
        print(
            f"restarted {len(restarted)} trial(s) whose worker died: "
            + ", ".join(f"#{o.number} ({o.resumed_from} {steps} restored)" for o in restarted)
        )


def _print_best(best: Any, job: SearchJob) -> None:
    space, name = job.space, job.study_name
    print(
        f"best trial: #{best.number}, {space.words.value_long} {100 * best.value:.2f}% after "
        f"{best.user_attrs.get('epochs_run', '?')} {space.words.steps}"
    )
    print("configuration: " + json.dumps(best.params, sort_keys=True))
    print(f"checkpoint: {best.user_attrs.get('checkpoint_path', '-')}")
    studies_dir = job.location.studies_dir if job.custom_studies_dir else None
    where, note = where_options(job.storage_option, studies_dir)
    if note:
        print(note)
    if isinstance(space.trial_config(best.params).policy, tuple):
        export = ["python", "-m", "search.export_policy", "--study", name]
        print("export the best policies: " + _command(export + ["-o", "policy.json"], where))
    else:
        retrain = ["python", "-m", "search.retrain", "--study", name, "--trial", str(best.number)]
        data = ["--data", job.data_option] if job.data_option else []
        print("retrain it to full length: " + _command(retrain, where, data))
    report = ["python", "-m", "search.report", "--study", name]
    print(f"look at the study: {_command(report, where)}  (or search.dashboard)")


def where_options(storage: str | None, studies_dir: Path | None) -> tuple[list[str], str | None]:
    """The options by which the other commands find the study (`--storage` as given, the
    `--studies-dir` when not the default one), as shell words (already quoted), and a line to
    print before the commands when they need something set first.

    A URL with a password is never printed (redacted, it would not work when pasted): the
    commands read it from $SEARCH_STORAGE instead.
    """
    from sqlalchemy.engine import make_url

    where, note = [], None
    if storage:
        try:
            has_password = bool(make_url(storage).password)
        except Exception:
            has_password = False
        if has_password:
            where += ["--storage", f'"${STORAGE_ENV}"']
            if os.environ.get(STORAGE_ENV) != storage:
                note = (
                    f"(set {STORAGE_ENV} to the --storage URL, password included, before "
                    "running these; better still, pass it that way rather than on the command "
                    "line)"
                )
        else:
            where += ["--storage", shlex.quote(storage)]
    if studies_dir is not None:
        where += ["--studies-dir", shlex.quote(str(studies_dir))]
    return where, note


def _command(words: list[str], where: list[str], tail: list[str] = ()) -> str:
    """A command line to paste: `words` and `tail` quoted, `where` as given (already quoted)."""
    return " ".join([shlex.join(words), *where, *([shlex.join(tail)] if tail else [])])
