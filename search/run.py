"""A hyperparameter search: `python -m search.run --space cnn_reg`.

Ray Tune runs the trials (a local Ray unless --address names a cluster), an Optuna sampler
suggests each configuration, ASHA stops weak trials, and the study database records everything.
Re-running the same command continues the same study; several drivers may share one study
(e.g. on a PostgreSQL server) and stop together at --trials. Ctrl+C stops a search cleanly (exit
130): its unfinished trials are recorded as FAIL (interrupted) and a re-run continues, running
each of them again first from its last checkpoint.

A new study runs its space's general recipes first (--no-seed-trials leaves them out) and, with
--warm-start, the best trials of an earlier study of the same space before them (search/_seeds.py).

A continued study keeps the settings it was made with (split, seed, epochs, model, data): an
option left out takes the recorded value, a different one is refused. A local Ray listens on
127.0.0.1 only.

The command reads as the pipeline it runs: parse, `resolve_job` (search/_job.py: the options,
the study's record and the data, checked), `run_search` (search/_driver.py: Ray), and
`print_summary` (search/_summary.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._console import (
    USAGE_ERRORS,
    HelpFormatter,
    add_data_options,
    add_precision_option,
    epoch_count,
    error_exit,
    nonnegative_int,
    plain_name,
    positive_int,
    seed_value,
    study_reference,
)
from ._converge import MIN_TRIALS
from ._driver import run_search
from ._errors import UsageError
from ._job import DEFAULT_DRAWS, DEFAULT_FOLDS, DEFAULT_MAX_FAILURES, resolve_job
from ._resume import CHECKPOINT_BUDGET, CHECKPOINT_INTERVAL
from ._samplers import SAMPLERS
from ._seeds import DEFAULT_WARM_START_TOP
from ._space import available_spaces
from ._study import DEFAULT_SAMPLER, DEFAULT_SEED, DEFAULT_VAL_SIZE, STORAGE_ENV, STUDIES_DIR
from ._summary import CONTINUE_HINT, print_summary

# The exit status of a search stopped with Ctrl+C, as shells report a process ended by SIGINT.
INTERRUPTED_EXIT = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Search a space with Ray Tune + Optuna + ASHA; results go to an Optuna study.",
        formatter_class=HelpFormatter,
    )
    study = parser.add_argument_group("study")
    _add_study_options(study)
    _add_trial_recipe_options(study)
    _add_asha_options(parser.add_argument_group("ASHA"))
    _add_resource_options(parser.add_argument_group("resources"))
    _add_resume_options(parser.add_argument_group("interrupted trials"))
    _add_seed_options(parser.add_argument_group("trials a new study runs first"))
    add_data_options(
        parser.add_argument_group("data"),
        device=False,
        train_size_default="the study's, else the space's, else all",
        # None: a continued study's own split size, else DEFAULT_VAL_SIZE (search/_job.py).
        val_size_default=(None, f"the study's, else {DEFAULT_VAL_SIZE}"),
    )
    _add_density_options(parser.add_argument_group("density (policy spaces)"))
    _add_convergence_options(parser.add_argument_group("convergence"))
    return parser


def _add_study_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--space", required=True, help="search space: " + ", ".join(available_spaces())
    )
    group.add_argument(
        "--study", default=None, type=plain_name, help="study name (default: the space name)"
    )
    group.add_argument(
        "--storage",
        default=None,
        help=f"SQLAlchemy URL of the study database (default: ${STORAGE_ENV}, "
        "else sqlite:///studies/STUDY.db); for a password use "
        f"${STORAGE_ENV} or PGPASSWORD rather than the command line",
    )
    group.add_argument(
        "--trials",
        type=positive_int,
        default=64,
        help="trials the study should hold when done (a re-run continues)",
    )
    group.add_argument(
        "--studies-dir",
        "--out",
        dest="studies_dir",
        type=Path,
        default=STUDIES_DIR,
        help="folder for study databases and outputs",
    )
    group.add_argument("--verbose", action="store_true", help="one line per trial epoch")


def _add_trial_recipe_options(group: argparse._ArgumentGroup) -> None:
    """What each trial trains beyond the sampled values: epochs, model, child, sampler, seed."""
    group.add_argument(
        "--max-epochs",
        type=epoch_count,
        default=None,
        help="epochs of a trial that ASHA never stops (default: the study's, else the space's)",
    )
    group.add_argument(
        "--model",
        default=None,
        help="replace the space's model, e.g. the child model of a policy "
        "search (default: the study's, else the space's)",
    )
    group.add_argument(
        "--child-recipe",
        default=None,
        metavar="NAME|CONFIG",
        help="a policy space's child, the recipe its trials (and retrain, export and compare) "
        "lay their policy over: a name of the space's ("
        + ", ".join(_child_names())
        + ") or a config.json of search.train --save (default: the study's, else the first)",
    )
    group.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help=f"Optuna sampler (default: the study's, else {DEFAULT_SAMPLER})",
    )
    add_precision_option(group, "the study's, else auto; every trial uses it")
    group.add_argument(
        "--seed",
        type=seed_value,
        default=None,
        help="fixes the split and each trial's seed (seed+number); each driver's sampler "
        f"seed mixes it with the driver's run id (default: the study's, else {DEFAULT_SEED})",
    )


def _child_names() -> list[str]:
    """The children the policy spaces declare, each name once, in their order."""
    names = (name for space in available_spaces().values() for name in space.children)
    return list(dict.fromkeys(names))


def _add_asha_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--grace-period",
        type=epoch_count,
        default=None,
        help="epochs every trial gets before ASHA may stop it (default: the space's, at most "
        "--max-epochs)",
    )
    group.add_argument(
        "--reduction-factor",
        type=positive_int,
        default=None,
        help="ASHA keeps 1/this of the trials at each rung (default: the space's)",
    )


def _add_resource_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPU share of a trial, e.g. 0.25 = four trials per GPU; each trial's GPU memory is "
        "capped at its share (default with a GPU: the space's, "
        + ", ".join(f"{s.name} {s.gpu_share:g}" for s in available_spaces().values())
        + "; without: 0 = CPU)",
    )
    group.add_argument(
        "--cpus-per-trial",
        type=positive_int,
        default=None,
        help="CPU cores per trial (default: 1 on CPU; cores/trials per GPU on GPU)",
    )
    group.add_argument(
        "--address", default=None, help="Ray cluster address to join (default: start a local Ray)"
    )


def _add_resume_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--checkpoint-every",
        type=nonnegative_int,
        default=None,
        help="save each trial's training state every N epochs, and at least every "
        f"{CHECKPOINT_INTERVAL / 60:g} minutes, in its folder (removed when the trial ends); "
        "0 = never (default: every epoch whose save costs at most "
        f"{CHECKPOINT_BUDGET * 100:.0f}%% of the training time)",
    )
    group.add_argument(
        "--max-failures",
        type=nonnegative_int,
        default=DEFAULT_MAX_FAILURES,
        help="times Ray restarts a trial whose worker process died (killed, out of host memory, "
        "a lost node), from its last checkpoint; a trial whose training raised is not retried",
    )
    group.add_argument(
        "--no-resume-trials",
        dest="resume_trials",
        action="store_false",
        help="do not run again the trials an interrupted run left (Ctrl+C, a killed driver); "
        "by default each runs again first, from its last checkpoint, with the same parameters",
    )


def _add_seed_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--no-seed-trials",
        dest="seed_trials",
        action="store_false",
        help="do not run the space's general recipes first (by default a new study runs each "
        "first, marked `source` seed:NAME; "
        + "; ".join(
            f"{s.name}: {', '.join(r.name for r in s.recipes)}"
            for s in available_spaces().values()
            if s.recipes
        )
        + ")",
    )
    group.add_argument(
        "--warm-start",
        type=study_reference,
        default=None,
        metavar="STUDY[@STORAGE]",
        help="a new study runs the best COMPLETE trials of this earlier study of the same space "
        "first (before the seed recipes), marked `source` warm-start:STUDY#N; STORAGE defaults "
        "as for --study (--storage, else $SEARCH_STORAGE, else studies/STUDY.db); the study is "
        "only read",
    )
    group.add_argument(
        "--warm-start-top",
        type=positive_int,
        default=None,
        help=f"how many of its best trials --warm-start takes (default: {DEFAULT_WARM_START_TOP})",
    )


def _add_density_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--folds",
        type=int,
        default=None,
        help="fold models K, each trained on K-1 folds of the search subset (default: the "
        f"study's, else {DEFAULT_FOLDS}; at least 2); --max-epochs is then the number of "
        "slices the held-out images are scored in",
    )
    group.add_argument(
        "--fold-epochs",
        type=int,
        default=None,
        help="epochs of each fold model (default: the study's, else the space's)",
    )
    group.add_argument(
        "--draws",
        type=int,
        default=None,
        help="augmented copies of each held-out image, correct if any is (default: the "
        f"study's, else {DEFAULT_DRAWS})",
    )


def _add_convergence_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--stop-when-converged",
        action="store_true",
        help="ask for no more trials once Optuna's Terminator judges the study converged: from "
        f"{MIN_TRIALS} COMPLETE trials on, when its regret bound is below the best trial's "
        "standard error on the validation split (--trials stays the most it runs; WAITING "
        "retries run first)",
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        job = resolve_job(args)
        outcome = run_search(job)
        print_summary(job, outcome)
    except USAGE_ERRORS as exc:
        raise SystemExit(error_exit(exc)) from None
    except KeyboardInterrupt:  # Ctrl+C outside Tune's own handling (or a second one)
        print(f"\nstopped (Ctrl+C); {CONTINUE_HINT}", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    if outcome.stopped:
        raise SystemExit(INTERRUPTED_EXIT)
    if outcome.error:
        raise SystemExit(error_exit(UsageError(outcome.error, code=1)))


if __name__ == "__main__":
    main()
