"""Interrupted trials run again, with the same parameters, from their last checkpoint.

When a trial is interrupted (Ctrl+C, or a driver that was killed), whoever records it FAIL
first queues its retry: a WAITING trial with the same parameters (Optuna's `fixed_params`, as
`enqueue_trial` makes it) and user attributes that link it back (`retry_of`), say which seed it
trains with (`seed_trial`: the first attempt's number, so the run is the same run) and which
trial folders may hold the checkpoint to continue from (`resume_from`, newest first). The
interrupted trial gets `retried_by` before it is told FAIL, so the link goes both ways (Optuna
refuses attributes on a finished trial). The next driver's sampler pops the WAITING trial once
(the database decides, as it does for trial numbers), so two drivers never run one retry.

A killed driver's RUNNING trials are marked by the next driver; if two drivers mark the same
trial at once, the one whose FAIL is refused (the trial is already finished) withdraws the
retry it queued: it is told FAIL "not run" and counts for nothing.
"""

from __future__ import annotations

from typing import Any

RETRY_OF = "retry_of"  # on a retry: the number of the interrupted trial it continues
RETRIED_BY = "retried_by"  # on an interrupted trial: the number of its retry
SEED_TRIAL = "seed_trial"  # the trial number whose seed a retry trains with
RESUME_FROM = "resume_from"  # trial numbers whose folders may hold its checkpoint, newest first
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # epochs restored from a checkpoint (0: none)
CHECKPOINT_REFUSED = "checkpoint_refused"  # why a checkpoint found was not loaded
NOT_RUN_REASON = "not run"  # the fail_reason of a withdrawn retry: it never trained

# A trial saves its state at least this often (seconds of training), and by default at most
# this share of its training time goes into saves (bench/bench_checkpoint.py measures it).
CHECKPOINT_INTERVAL = 300.0
CHECKPOINT_BUDGET = 0.02

# Keys of a trial's Ray config that are not parameters of the space.
CONTROL_KEYS = ("trial_number", SEED_TRIAL, RESUME_FROM)


def space_params(config: dict[str, Any]) -> dict[str, Any]:
    """The space's parameters of a trial's Ray config (without the control keys)."""
    return {k: v for k, v in config.items() if k not in CONTROL_KEYS}


def retry_attrs(trial: Any) -> dict[str, Any]:
    """The user attributes of the retry of interrupted `trial` (a FrozenTrial)."""
    attrs = trial.user_attrs
    return {
        RETRY_OF: trial.number,
        SEED_TRIAL: int(attrs.get(SEED_TRIAL, trial.number)),
        RESUME_FROM: [trial.number, *attrs.get(RESUME_FROM, [])],
    }


def control_config(number: int, user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The control keys of the Ray config of trial `number` (a retry's come from its attributes)."""
    return {
        "trial_number": number,
        SEED_TRIAL: int(user_attrs.get(SEED_TRIAL, number)),
        RESUME_FROM: list(user_attrs.get(RESUME_FROM, [])),
    }


def queue_retry(study: Any, trial: Any) -> int:
    """Queue the retry of interrupted `trial` (still RUNNING) and link the two; the retry's
    storage id.

    Raises optuna's UpdateFinishedTrialError when `trial` was finished meanwhile (another driver
    recorded it first): the retry queued here is then withdrawn.
    """
    import optuna

    storage = study._storage
    template = optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING,
        system_attrs={"fixed_params": dict(trial.params)},
        user_attrs=retry_attrs(trial),
    )
    retry_id = storage.create_new_trial(study._study_id, template_trial=template)
    retry_number = storage.get_trial_number_from_id(retry_id)
    try:
        storage.set_trial_user_attr(trial._trial_id, RETRIED_BY, retry_number)
    except optuna.exceptions.UpdateFinishedTrialError:
        withdraw_retry(study, retry_id, f"trial #{trial.number} was resumed by another driver")
        raise
    return retry_id


def withdraw_retry(study: Any, retry_id: int, why: str) -> None:
    """End a queued retry nobody will run: FAIL "not run: `why`", unless a driver took it."""
    import optuna

    storage = study._storage
    if storage.set_trial_state_values(retry_id, optuna.trial.TrialState.RUNNING):
        storage.set_trial_user_attr(retry_id, "fail_reason", f"{NOT_RUN_REASON}: {why}")
        storage.set_trial_state_values(retry_id, optuna.trial.TrialState.FAIL)


def _queued_retries(study: Any) -> list[Any]:
    """The retries queued and not yet taken by a driver (FrozenTrials)."""
    import optuna

    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return [t for t in waiting if RETRY_OF in t.user_attrs]


def waiting_retries(study: Any) -> list[tuple[int, int]]:
    """(retry, interrupted trial) of every retry queued and not yet taken by a driver."""
    return [(t.number, int(t.user_attrs[RETRY_OF])) for t in _queued_retries(study)]


def withdraw_waiting_retries(study: Any) -> None:
    """End every queued retry without running it (--no-resume-trials)."""
    for trial in _queued_retries(study):
        withdraw_retry(study, trial._trial_id, "--no-resume-trials")


def resumed_trials(trials: list[Any]) -> list[tuple[int, int, int]]:
    """(retry, interrupted trial, epochs restored) of every retry among `trials`."""
    return [
        (t.number, int(t.user_attrs[RETRY_OF]), int(t.user_attrs.get(RESUMED_FROM_EPOCH, 0)))
        for t in trials
        if RETRY_OF in t.user_attrs and t.state.is_finished()
    ]
