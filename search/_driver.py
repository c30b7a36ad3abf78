"""One driver's search on Ray: `run_search(job)` as a few named steps.

Open the study (seeding a new one with its queued trials), mark what an interrupted run left
RUNNING, train or reuse a density search's fold models, start Ray, then make the scheduler, the
searcher, the trainable and the tuner, and fit. Ctrl+C stops a search cleanly: its unfinished
trials are recorded as FAIL (interrupted) and a re-run continues. A local Ray listens on
127.0.0.1 only.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._density import prepare_folds, trial_function
from ._errors import UsageError
from ._job import SearchJob
from ._resume import waiting_retries, withdraw_waiting_retries
from ._seeds import enqueue_seeds, shown_source
from ._study import (
    SOURCE_ATTR,
    count_finished,
    fail_interrupted_trials,
    is_storage_error,
    new_run_id,
    opened_study,
    redact,
    storage_error_line,
)

# Ray's switch for a node address of 127.0.0.1 (see _start_ray).
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class SearchOutcome:
    """How a driver's search ended."""

    stopped: bool = False  # Ctrl+C
    error: str | None = None  # why it ended early and what to do (the command then exits 1)
    unrecorded: tuple = ()  # TrialOutcomes of COMPLETE trials the study could not be told
    resumed: tuple = ()  # TrialOutcomes of retries and of trials continued from a checkpoint
    converged: Any = None  # the Terminator's Estimate that stopped a --stop-when-converged search


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
    trials that fit. Raises UsageError for a GPU share on a cluster without GPUs, or more CPUs
    a trial than the cluster has.
    """
    if gpus_per_trial is None:
        gpus_per_trial = space_share if cluster_gpus else 0.0
    if gpus_per_trial > 0 and cluster_gpus == 0:
        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial} asks for a GPU but the Ray cluster has none; "
            "use --gpus-per-trial 0"
        )
    if cpus_per_trial and cpus_per_trial > cluster_cpus:  # Tune would wait for ever
        raise UsageError(
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


def run_search(job: SearchJob) -> SearchOutcome:
    """Run the trials the study still lacks on Ray; the study records them. A study this driver
    creates is seeded first (search/_seeds.py)."""
    with opened_study(
        job.location, job.record, on_create=lambda study: enqueue_seeds(study, job.seeds)
    ) as study:
        _say_seeds(study, job)
        already = _start_counting(study, job)
        _say_child(job)
        remaining = job.trials - already
        if remaining <= 0:
            return SearchOutcome()
        folds = prepare_folds(
            study,
            job.folds,
            space=job.space,
            settings=job.settings,
            train_set=job.train_set,
            output_dir=job.output_dir,
        )
        return _run_on_ray(job, already, remaining, folds)


def _say_seeds(study: Any, job: SearchJob) -> None:
    """Say which queued trials the study runs first (seeds, a warm start) and the seed note."""
    import optuna

    if job.seeds.note:
        print(job.seeds.note)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    queued = [t for t in waiting if SOURCE_ATTR in t.user_attrs]
    if queued:
        print(
            f"{len(queued)} queued trial(s) run first: "
            + ", ".join(f"#{t.number} ({shown_source(t.user_attrs[SOURCE_ATTR])})" for t in queued)
        )


def _start_counting(study: Any, job: SearchJob) -> int:
    """Mark FAIL what an interrupted run left RUNNING, say where the study stands; the trials
    that count towards --trials."""
    resume = job.resume.resume_trials
    try:
        interrupted = fail_interrupted_trials(study, resume=resume)
        if not resume:
            withdraw_waiting_retries(study)
        already = count_finished(study)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise UsageError(
            f"cannot write to the study database {redact(job.location.url)}: "
            f"{storage_error_line(exc)}; free space there (or reach the server) and run the "
            "same command again",
            code=1,
        ) from None
    if interrupted:
        from ._trainable import discard_unfinished  # imports Ray: only when needed

        discard_unfinished(job.output_dir, interrupted, resume=resume)
        print(
            f"marked {len(interrupted)} trial(s) left RUNNING by an interrupted run as "
            "FAIL: " + ", ".join(f"#{n}" for n in interrupted)
        )
    retries = waiting_retries(study)
    if retries:
        print(
            f"{len(retries)} interrupted trial(s) run again first, from their last checkpoints: "
            + ", ".join(f"#{n} as #{m}" for m, n in retries)
        )
    print(
        f"study {job.study_name!r} in {redact(job.location.url)}: {already} trial(s) done, "
        f"{max(job.trials - already, 0)} to run (target {job.trials}); train "
        f"{len(job.train_set)}, val {len(job.val_set)} images from {job.record.data_source}",
        flush=True,
    )
    return already


def _say_child(job: SearchJob) -> None:
    """Say which child a policy study's trials lay their policy over."""
    child = job.settings.child
    if child is None:
        return
    kwargs = ", ".join(f"{k} {v}" for k, v in child["model_kwargs"].items())
    print(
        f"child recipe {job.settings.child_name!r}: {job.settings.model or child['model']}"
        + (f" ({kwargs})" if kwargs and not job.settings.model else "")
        + f", {child['optimizer']} lr {child['lr']}, {child['schedule']}, crop padding "
        f"{child['crop_padding']}, Cutout {child['cutout']}; each trial's policy goes on it"
    )


def _run_on_ray(
    job: SearchJob, already: int, remaining: int, folds: dict[str, Any] | None
) -> SearchOutcome:
    _start_ray(job.resources.address, job.verbose)
    import ray

    from ._study import sampler_seed

    try:
        plan = _plan(job, remaining)
        run_id = new_run_id()
        seed = sampler_seed(job.settings.seed, run_id)
        scheduler = _make_scheduler(job)
        searcher = _make_searcher(job, scheduler, run_id, seed)
        trainable = _make_trainable(job, plan, folds)
        _say_plan(job, plan, remaining)
        tuner = _make_tuner(job, trainable, searcher, scheduler, plan, run_id, remaining, already)
        stopped = _fit(tuner, searcher, run_id, seed, job)
    finally:
        ray.shutdown()
    return SearchOutcome(
        stopped=stopped,
        error=_search_error(searcher, job),
        unrecorded=tuple(searcher.unrecorded),
        resumed=tuple(o for o in searcher.outcomes() if o.retry_of is not None or o.resumed_from),
        converged=searcher.converged,
    )


def _plan(job: SearchJob, remaining: int) -> SearchPlan:
    import ray

    resources = ray.cluster_resources()
    return plan_search(
        cluster_cpus=int(resources.get("CPU", 1)),
        cluster_gpus=float(resources.get("GPU", 0)),
        remaining=remaining,
        gpus_per_trial=job.resources.gpus_per_trial,
        cpus_per_trial=job.resources.cpus_per_trial,
        space_share=job.space.gpu_share,
    )


def _make_scheduler(job: SearchJob) -> Any:
    from ._searcher import EPOCH, METRIC, PruningASHA

    return PruningASHA(
        metric=METRIC,
        mode="max",
        time_attr=EPOCH,
        max_t=job.settings.max_epochs,
        grace_period=job.asha.grace_period,
        reduction_factor=job.asha.reduction_factor,
    )


def _make_searcher(job: SearchJob, scheduler: Any, run_id: str, seed: int) -> Any:
    from ._samplers import make_sampler
    from ._searcher import METRIC, TruthfulOptunaSearch

    return TruthfulOptunaSearch(
        space=job.space.suggest,
        metric=METRIC,
        mode="max",
        study_name=job.study_name,
        storage=job.location.storage,
        sampler=make_sampler(job.settings.sampler, seed),
        scheduler=scheduler,
        trial_attrs={"run_id": run_id, "sampler_seed": seed},
        target=job.trials,
        resume_trials=job.resume.resume_trials,
        stop_when_converged=job.stop_when_converged,
    )


def _make_trainable(job: SearchJob, plan: SearchPlan, folds: dict[str, Any] | None) -> Any:
    from ray import tune

    from ._trainable import TrialSettings

    settings = TrialSettings(
        space=job.space.name,
        max_epochs=job.settings.max_epochs,
        seed=job.settings.seed,
        output_dir=str(job.output_dir),
        cpus_per_trial=plan.cpus_per_trial,
        gpus_per_trial=plan.gpus_per_trial,
        model=job.settings.model,
        precision=job.settings.precision,
        checkpoint_every=job.resume.checkpoint_every,
        folds=folds,
        child=job.settings.child,
    )
    return tune.with_resources(
        tune.with_parameters(
            trial_function(settings),
            settings=settings,
            train_set=job.train_set,
            val_set=job.val_set,
        ),
        {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial},
    )


def _say_plan(job: SearchJob, plan: SearchPlan, remaining: int) -> None:
    print(
        f"running {remaining} trial(s), up to {plan.concurrent} at once, each with "
        f"{plan.cpus_per_trial} CPU and {plan.gpus_per_trial:g} GPU; ASHA grace "
        f"{job.asha.grace_period}, reduction {job.asha.reduction_factor}, max "
        f"{job.settings.max_epochs} {job.space.words.steps}",
        flush=True,
    )


def _make_tuner(
    job: SearchJob,
    trainable: Any,
    searcher: Any,
    scheduler: Any,
    plan: SearchPlan,
    run_id: str,
    remaining: int,
    already: int,
) -> Any:
    from ray import tune

    from ._progress import SearchProgress
    from ._searcher import TrialErrorRecorder
    from ._trainable import CheckpointSweeper

    progress = SearchProgress(
        searcher,
        job.trials,
        already,
        job.settings.max_epochs,
        verbose=job.verbose,
        words=job.space.words,
    )
    try:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=remaining,
                max_concurrent_trials=plan.concurrent,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=run_id,
                storage_path=str(job.output_dir / "ray"),
                verbose=0,
                # The recorder first: the printer prints what the searcher recorded.
                callbacks=[
                    TrialErrorRecorder(searcher),
                    progress,
                    CheckpointSweeper(job.output_dir),
                ],
                failure_config=tune.FailureConfig(max_failures=job.resume.max_failures),
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            ),
        )
    except OSError as exc:  # Tune writes its experiment files (tuner.pkl) here at once
        raise UsageError(_write_failed(job.output_dir / "ray", exc), code=1) from None


def _fit(tuner: Any, searcher: Any, run_id: str, seed: int, job: SearchJob) -> bool:
    """Run the tuner with this driver's heartbeat beating; whether Ctrl+C stopped it."""
    from ._study import Heartbeat

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
                _close_trials(searcher, ctrl_c.stopped, job)
    except Exception as exc:  # the heartbeat's first write: the database fails at once
        if not is_storage_error(exc):
            raise
        raise UsageError(
            f"cannot write to the study database: {storage_error_line(exc)}; free space "
            "there (or reach the server) and run the same command again",
            code=1,
        ) from None
    return ctrl_c.stopped


def _close_trials(searcher: Any, stopped: bool, job: SearchJob) -> None:
    """Record what the searcher still holds: errors, and live trials Tune stopped without
    telling it (an interrupted run)."""
    searcher.stopping = stopped
    searcher.flush_errors()
    failed = searcher.fail_unfinished()
    from ._trainable import discard_unfinished

    discard_unfinished(job.output_dir, failed, resume=job.resume.resume_trials)
    if failed:
        print(
            "marked unfinished trial(s) FAIL (interrupted): "
            + ", ".join(f"#{n}" for n in sorted(failed)),
            flush=True,
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


class _HideTuneResumeAdvice(logging.Filter):
    """Drops Tune's interrupt messages: they advise `Tuner.restore`, but a search continues by
    re-running it, which the summary says."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(
            ("Experiment has been interrupted", "Trials did not complete")
        )


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
