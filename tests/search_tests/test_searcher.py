"""The searcher's decisions and records, on Optuna's in-memory storage: seconds, no Ray cluster.

`TruthfulOptunaSearch` is driven the way Tune drives it (suggest, results, completion); the
study it writes is read back. `FlakyStorage` is Optuna's real in-memory storage whose writes
fail a given number of times, as a database that drops connections or fills its disk does.
"""

from __future__ import annotations

import io
import os
import socket
import time

import optuna
import pytest
from ray.tune.experiment import Trial

from search import _study
from search._resume import (
    CHECKPOINT_REFUSED,
    RESUMED_FROM_EPOCH,
    resumed_trials,
    waiting_retries,
    withdraw_waiting_retries,
)
from search._samplers import SAMPLER_FACTORIES, SAMPLERS, make_sampler
from search._searcher import (
    EPOCH,
    METRIC,
    PruningASHA,
    TrialOutcome,
    TruthfulOptunaSearch,
    decide,
    error_summary,
    exception_line,
)
from search._space import PROGRESS_WORDS
from search._study import (
    RUN_ATTR_PREFIX,
    STALE_AFTER,
    Heartbeat,
    count_claimed,
    count_finished,
    fail_interrupted_trials,
    running_trials,
    sampler_seed,
)

States = optuna.trial.TrialState
MAX_EPOCHS = 3
optuna.logging.set_verbosity(optuna.logging.WARNING)


class FlakyStorage(optuna.storages.InMemoryStorage):
    """In-memory storage whose next `failures` writes raise StorageInternalError (as RDBStorage
    does for a database error); `failures=-1` fails every write from then on."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.failed_writes = 0

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1 if self.failures > 0 else 0
            self.failed_writes += 1
            raise optuna.exceptions.StorageInternalError("database or disk is full")

    def set_trial_user_attr(self, *args, **kwargs):
        self._maybe_fail()
        return super().set_trial_user_attr(*args, **kwargs)

    def set_trial_state_values(self, *args, **kwargs):
        self._maybe_fail()
        return super().set_trial_state_values(*args, **kwargs)

    def set_trial_intermediate_value(self, *args, **kwargs):
        self._maybe_fail()
        return super().set_trial_intermediate_value(*args, **kwargs)

    def set_study_user_attr(self, *args, **kwargs):
        self._maybe_fail()
        return super().set_study_user_attr(*args, **kwargs)


def space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])


def make_searcher(
    storage=None, *, run_id="run-a", target=None, seed=0, sampler="random", resume=False
):
    storage = storage if storage is not None else optuna.storages.InMemoryStorage()
    scheduler = PruningASHA(
        metric=METRIC,
        mode="max",
        time_attr=EPOCH,
        max_t=MAX_EPOCHS,
        grace_period=1,
        reduction_factor=2,
    )
    searcher = TruthfulOptunaSearch(
        space=space,
        metric=METRIC,
        mode="max",
        study_name="s",
        storage=storage,
        sampler=make_sampler(sampler, sampler_seed(seed, run_id)),
        scheduler=scheduler,
        trial_attrs={"run_id": run_id},
        target=target,
        resume_trials=resume,
        retry_delays=(0.0, 0.0, 0.0),
        stream=io.StringIO(),
    )
    return searcher, scheduler


def epoch(step: int, value: float = 0.5, **extra) -> dict:
    return {METRIC: value, EPOCH: step, "trial_time": 0.1 * step, **extra}


def run_epochs(searcher, trial_id: str, epochs: int) -> None:
    for step in range(1, epochs + 1):
        searcher.on_trial_result(trial_id, epoch(step, 0.1 * step))


def finished(step: int = MAX_EPOCHS, value: float = 0.3) -> dict:
    return epoch(step, value, finished=True, checkpoint_path="/w/weights.pt", device="cpu")


def only_trial(searcher) -> optuna.trial.FrozenTrial:
    (trial,) = searcher.study.get_trials()
    return trial


# -- decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "pruned", "stopping", "state", "reason"),
    [
        ({"finished": True}, False, False, States.COMPLETE, None),
        ({"finished": True}, True, True, States.COMPLETE, None),  # its weights are saved
        ({"save_error": "disk full"}, False, False, States.FAIL, "not saved: disk full"),
        ({}, True, False, States.PRUNED, None),
        ({"error": "ValueError: bad"}, False, False, States.FAIL, "ValueError: bad"),
        (None, False, False, States.FAIL, "interrupted: the search ended before it finished"),
        (
            None,
            False,
            True,
            States.FAIL,
            "interrupted: the search was stopped (Ctrl+C) before it finished",
        ),
    ],
)
def test_decide(result, pruned, stopping, state, reason):
    assert decide(result, pruned, stopping) == (state, reason)


def test_finished_trial_is_complete_with_every_epoch():
    searcher, _ = make_searcher()
    config = searcher.suggest("a")
    assert config["trial_number"] == 0 and config["seed_trial"] == 0
    assert set(config) == {"lr", "batch_size", "trial_number", "seed_trial", "resume_from"}
    run_epochs(searcher, "a", MAX_EPOCHS - 1)
    searcher.on_trial_complete("a", finished())
    trial = only_trial(searcher)
    assert trial.state == States.COMPLETE and trial.value == 0.3
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}  # the last epoch included
    assert trial.user_attrs["epochs_run"] == MAX_EPOCHS
    assert trial.user_attrs["checkpoint_path"] == "/w/weights.pt"
    assert trial.user_attrs["run_id"] == "run-a" and trial.user_attrs["ray_trial_id"] == "a"
    assert searcher.outcome("a") == TrialOutcome(
        0, States.COMPLETE, MAX_EPOCHS, 0.3, checkpoint_path="/w/weights.pt"
    )
    assert searcher.outcome("a").describe() == "COMPLETE after 3 epochs, val 30.00%"
    density = PROGRESS_WORDS["density"]
    assert searcher.outcome("a").describe(density) == "COMPLETE after 3 slices, score 30.00%"


def test_trial_asha_stopped_early_is_pruned_not_complete():
    searcher, scheduler = make_searcher()
    searcher.suggest("a")
    trial = Trial("stub", stub=True, trial_id="a")
    scheduler.on_trial_add(None, trial)
    searcher.on_trial_result("a", epoch(1, 0.1))
    # A rung decision by ASHA itself: a trial below the rung's cutoff is stopped at step 2.
    for other in ("b", "c", "d"):
        peer = Trial("stub", stub=True, trial_id=other)
        scheduler.on_trial_add(None, peer)
        scheduler.on_trial_result(None, peer, epoch(1, 0.9))
    assert scheduler.on_trial_result(None, trial, epoch(1, 0.1)) == "STOP"
    searcher.on_trial_complete("a", epoch(1, 0.1))
    stored = only_trial(searcher)
    assert stored.state == States.PRUNED and stored.user_attrs["pruned_by"] == "ASHA"
    assert stored.user_attrs["epochs_run"] == 1 and stored.intermediate_values == {1: 0.1}
    assert count_finished(searcher.study) == 1


def test_errored_trial_is_fail_with_its_message():
    searcher, _ = make_searcher()
    searcher.suggest("a")
    run_epochs(searcher, "a", 1)
    searcher.on_trial_complete("a", error=True)
    assert only_trial(searcher).state == States.RUNNING  # the message comes next
    searcher.record_error("a", "NonFiniteLossError: loss is nan")
    trial = only_trial(searcher)
    assert trial.state == States.FAIL
    assert trial.user_attrs["fail_reason"] == "NonFiniteLossError: loss is nan"
    assert trial.user_attrs["epochs_run"] == 1 and trial.intermediate_values == {1: 0.1}
    assert searcher.outcome("a").describe() == "FAIL: NonFiniteLossError: loss is nan"
    assert count_finished(searcher.study) == 1  # its configuration was tried


# The end of a Ray error file for a trial whose training raised (as Ray 2.60 writes it).
RAY_ERROR = """Failure # 1 (occurred at 2026-12-01_21-00-00)
ray::ImplicitFunc.train() (pid=4242, ip=127.0.0.1, actor_id=abc, repr=run_trial)
  File "/site/ray/tune/trainable/trainable.py", line 331, in train
    raise skipped from exception_cause(skipped)
  File "/repo/training/_trainer.py", line 240, in train
    on_epoch_end(run.history[-1])
{line}
"""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0",
            "out of memory: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
            "2.00 GiB. GPU 0",
        ),
        (
            "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on "
            "memory.",
            "out of memory: ray.exceptions.OutOfMemoryError: Task was killed due to the node "
            "running low on memory.",
        ),
        (
            "training._trainer.NonFiniteLossError: training loss became nan at epoch 1",
            "training._trainer.NonFiniteLossError: training loss became nan at epoch 1",
        ),
    ],
)
def test_error_reason_is_the_exception_line_and_says_out_of_memory_plainly(line, reason):
    assert error_summary(RAY_ERROR.format(line=line)) == reason


def test_unfinished_trials_become_interrupted_with_their_epochs():
    searcher, _ = make_searcher()
    searcher.suggest("a")
    searcher.suggest("b")
    run_epochs(searcher, "a", 2)
    searcher.on_trial_complete("b", finished())
    searcher.stopping = True
    assert searcher.fail_unfinished() == [0]
    trial = searcher.study.get_trials()[0]
    assert trial.state == States.FAIL and trial.user_attrs["epochs_run"] == 2
    assert trial.user_attrs["fail_reason"].startswith("interrupted: the search was stopped")
    assert count_finished(searcher.study) == 1  # interrupted trials run again


def test_trial_that_could_not_save_keeps_its_values_and_stops_the_search():
    searcher, scheduler = make_searcher(target=5)
    searcher.suggest("a")
    run_epochs(searcher, "a", MAX_EPOCHS - 1)
    last = epoch(MAX_EPOCHS, 0.3, save_error="disk full: no space left on device writing /w")
    # ASHA stops it at its full budget; it is not an early stop.
    stub = Trial("stub", stub=True, trial_id="a")
    scheduler.on_trial_add(None, stub)
    scheduler.on_trial_result(None, stub, last)
    assert "a" not in scheduler.pruned_trial_ids
    searcher.on_trial_complete("a", last)
    trial = only_trial(searcher)
    assert trial.state == States.FAIL
    assert trial.user_attrs["fail_reason"] == (
        "not saved: disk full: no space left on device writing /w"
    )
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    assert trial.user_attrs["epochs_run"] == MAX_EPOCHS
    # It does not count towards --trials: a re-run after freeing space runs it again.
    assert count_finished(searcher.study) == 0
    assert searcher.save_error == (0, "disk full: no space left on device writing /w")
    assert searcher.suggest("b") == "FINISHED"  # the next trials would fail the same way
    assert len(searcher.study.get_trials()) == 1


# -- storage failures --------------------------------------------------------------------------


def test_complete_survives_a_database_that_fails_a_few_times():
    storage = FlakyStorage()
    searcher, _ = make_searcher(storage)
    searcher.suggest("a")
    run_epochs(searcher, "a", MAX_EPOCHS - 1)
    storage.failures = 3  # fewer than the tries
    searcher.on_trial_complete("a", finished())
    assert storage.failed_writes == 3
    trial = only_trial(searcher)
    assert trial.state == States.COMPLETE and trial.value == 0.3
    assert trial.user_attrs["checkpoint_path"] == "/w/weights.pt"
    assert searcher.unrecorded == [] and searcher.storage_error is None


def test_complete_that_cannot_be_recorded_is_said_loudly():
    storage = FlakyStorage()
    searcher, _ = make_searcher(storage)
    searcher.suggest("a")
    searcher.suggest("b")
    run_epochs(searcher, "a", MAX_EPOCHS - 1)
    storage.failures = -1  # the database is gone for good
    searcher.on_trial_complete("a", finished(value=0.375))
    assert only_trial_state(searcher, 0) == States.RUNNING
    (lost,) = searcher.unrecorded
    assert (lost.number, lost.value, lost.checkpoint_path) == (0, 0.375, "/w/weights.pt")
    said = searcher._stream.getvalue()
    assert "trial #0 COMPLETE" in said and "0.375" in said and "/w/weights.pt" in said
    assert "could NOT be recorded" in said and "database or disk is full" in said
    assert searcher.suggest("c") == "FINISHED"
    # The summary never claims a write that failed.
    assert searcher.fail_unfinished() == []
    assert only_trial_state(searcher, 1) == States.RUNNING


def only_trial_state(searcher, number: int):
    return searcher.study.get_trials()[number].state


def test_heartbeat_retries_then_warns_when_beats_keep_failing():
    storage = FlakyStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    stream = io.StringIO()
    beat = Heartbeat(study, "run-a", interval=3600, delays=(0.0,), warn_after=0.0, stream=stream)
    with beat:
        storage.failures = 1  # retried: no warning
        assert beat.beat() and stream.getvalue() == ""
        storage.failures = -1
        assert not beat.beat()
        assert "heartbeat could not be written" in stream.getvalue()
        assert "may mark its running trials FAIL" in stream.getvalue()
        storage.failures = 0
        assert beat.beat() and not beat.warned
    assert study.user_attrs[RUN_ATTR_PREFIX + "run-a"]["status"] == "finished"


# -- liveness and counting ---------------------------------------------------------------------


def test_liveness_count_claimed_and_interrupted_trials():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    host, now = socket.gethostname(), time.time()
    runs = {
        "live": {"status": "running", "heartbeat": now, "pid": os.getpid(), "host": host},
        "killed": {"status": "running", "heartbeat": now, "pid": 2**22 + 7, "host": host},
        "stale": {"status": "running", "heartbeat": now - STALE_AFTER - 1, "host": "elsewhere"},
        "remote": {"status": "running", "heartbeat": now, "host": "elsewhere"},
        "done": {"status": "finished", "heartbeat": now, "pid": os.getpid(), "host": host},
    }
    for run_id, run in runs.items():
        study.set_user_attr(RUN_ATTR_PREFIX + run_id, run)
    numbers = {}
    for run_id in runs:
        trial = study.ask()
        trial.set_user_attr("run_id", run_id)
        trial.report(0.2, 1)
        trial.report(0.3, 2)
        numbers[run_id] = trial.number
    study.tell(study.ask(), 0.5)  # one COMPLETE

    scan = running_trials(study)
    assert sorted(t.number for t in scan.live) == [numbers["live"], numbers["remote"]]
    assert set(scan.dead_runs) == {"killed", "stale"}
    assert count_claimed(study) == 3
    assert count_claimed(study, own_run_id="done") == 4  # the caller counts its own

    failed = fail_interrupted_trials(study)
    assert sorted(failed) == sorted(numbers[r] for r in ("killed", "stale", "done"))
    for trial in study.get_trials():
        if trial.number in failed:
            assert trial.state == States.FAIL and trial.user_attrs["epochs_run"] == 2
            assert trial.user_attrs["fail_reason"].startswith("interrupted")
    assert study.user_attrs[RUN_ATTR_PREFIX + "killed"]["status"] == "dead"
    assert study.user_attrs[RUN_ATTR_PREFIX + "stale"]["status"] == "dead"
    assert study.user_attrs[RUN_ATTR_PREFIX + "live"]["status"] == "running"
    assert count_finished(study) == 1  # interrupted trials do not count


def test_searcher_asks_for_no_trial_beyond_the_target():
    searcher, _ = make_searcher(target=2)
    assert searcher.suggest("a") != "FINISHED"
    assert searcher.suggest("b") != "FINISHED"  # a live trial of this driver counts
    assert searcher.suggest("c") == "FINISHED"
    searcher.on_trial_complete("a", finished())
    assert searcher.suggest("d") == "FINISHED"


# -- samplers ----------------------------------------------------------------------------------


def test_drivers_sharing_a_study_draw_different_configurations():
    storage = optuna.storages.InMemoryStorage()
    first, _ = make_searcher(storage, run_id="host-1-aaaaaa", seed=0, sampler="tpe")
    second, _ = make_searcher(storage, run_id="host-2-bbbbbb", seed=0, sampler="tpe")
    drawn = []
    for i in range(3):
        for searcher in (first, second):
            config = searcher.suggest(f"{searcher._trial_attrs['run_id']}-{i}")
            drawn.append((config["lr"], config["batch_size"]))
    assert len(set(drawn)) == len(drawn), drawn
    assert sampler_seed(0, "a") != sampler_seed(0, "b")
    assert sampler_seed(0, "a") == sampler_seed(0, "a")


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_in_the_table_is_seeded(name):
    assert set(SAMPLER_FACTORIES) == set(SAMPLERS)
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(name, 7))
        draws.append([study.ask().suggest_float("x", 0, 1) for _ in range(3)])
    assert draws[0] == draws[1]


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'nope'; expected one of tpe"):
        make_sampler("nope", 0)


# -- errors the trainable reports, resumed and restarted trials ---------------------------------


def test_an_error_the_trainable_reports_is_fail_with_its_line():
    searcher, _ = make_searcher()
    searcher.suggest("a")
    run_epochs(searcher, "a", 1)
    try:
        raise torch_oom("CUDA out of memory. Tried to allocate 2.00 GiB")
    except Exception as exc:
        line = exception_line(exc)
    assert line.startswith("out of memory: ") and "Tried to allocate 2.00 GiB" in line
    searcher.on_trial_complete("a", {"error": line, "trial_number": 0})
    trial = only_trial(searcher)
    assert trial.state == States.FAIL and trial.user_attrs["fail_reason"] == line
    assert trial.user_attrs["epochs_run"] == 1 and trial.intermediate_values == {1: 0.1}
    assert searcher.outcome("a").describe() == f"FAIL: {line}"


def torch_oom(message: str) -> Exception:
    import torch

    return torch.OutOfMemoryError(message)


def test_ctrl_c_queues_a_retry_that_continues_the_trial_with_its_seed():
    storage = optuna.storages.InMemoryStorage()
    first, _ = make_searcher(storage, resume=True)
    params = {k: v for k, v in first.suggest("a").items() if k in ("lr", "batch_size")}
    run_epochs(first, "a", 2)
    first.stopping = True
    assert first.fail_unfinished() == [0]
    interrupted, retry = first.study.get_trials()
    assert interrupted.state == States.FAIL and interrupted.user_attrs["retried_by"] == 1
    assert retry.state == States.WAITING and retry.user_attrs["retry_of"] == 0
    assert waiting_retries(first.study) == [(1, 0)]
    assert count_finished(first.study) == 0

    second, _ = make_searcher(storage, run_id="run-b", resume=True)
    config = second.suggest("b")
    assert config["trial_number"] == 1 and config["seed_trial"] == 0
    assert config["resume_from"] == [0]
    assert {k: config[k] for k in params} == params  # the same configuration
    # The trainable replays the two epochs its checkpoint restored, then trains the third.
    for step in (1, 2):
        second.on_trial_result("b", epoch(step, 0.1 * step, **{RESUMED_FROM_EPOCH: 2}))
    second.on_trial_complete("b", finished(value=0.3) | {RESUMED_FROM_EPOCH: 2})
    trial = second.study.get_trials()[1]
    assert trial.state == States.COMPLETE and trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    assert trial.user_attrs[RESUMED_FROM_EPOCH] == 2 and trial.user_attrs["epochs_trained"] == 1
    assert second.outcome("b").describe() == (
        "COMPLETE after 3 epochs, val 30.00% (retry of #0, 2 epochs restored)"
    )
    assert resumed_trials(second.study.get_trials()) == [(1, 0, 2)]
    assert count_finished(second.study) == 1  # the interrupted row counts for nothing


def test_a_retry_interrupted_again_continues_from_the_newest_checkpoint():
    storage = optuna.storages.InMemoryStorage()
    for run_id, trial_id in (("run-a", "a"), ("run-b", "b")):
        searcher, _ = make_searcher(storage, run_id=run_id, resume=True)
        searcher.suggest(trial_id)
        searcher.stopping = True
        searcher.fail_unfinished()
    third, _ = make_searcher(storage, run_id="run-c", resume=True)
    config = third.suggest("c")
    assert config["trial_number"] == 2 and config["seed_trial"] == 0
    assert config["resume_from"] == [1, 0]  # the newest checkpoint first


def test_a_restarted_trial_records_each_epoch_once():
    # Ray restarts a trial whose worker died: the same trial, which replays its checkpoint.
    searcher, _ = make_searcher()
    searcher.suggest("a")
    run_epochs(searcher, "a", 2)
    searcher.on_trial_result("a", epoch(1, 0.1, **{RESUMED_FROM_EPOCH: 1}))
    searcher.on_trial_result("a", epoch(2, 0.25, **{RESUMED_FROM_EPOCH: 1}))  # retrained
    searcher.on_trial_complete("a", finished(value=0.3) | {RESUMED_FROM_EPOCH: 1})
    trial = only_trial(searcher)
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}  # the first report stays
    assert trial.user_attrs[RESUMED_FROM_EPOCH] == 1
    assert "(restarted, 1 epochs restored)" in searcher.outcome("a").describe()


def test_a_refused_checkpoint_is_recorded_with_why():
    searcher, _ = make_searcher()
    searcher.suggest("a")
    why = "cannot resume from /t/state.pt (from another configuration)"
    searcher.on_trial_result("a", epoch(1, 0.1, **{CHECKPOINT_REFUSED: why}))
    assert only_trial(searcher).user_attrs[CHECKPOINT_REFUSED] == why


def test_no_retry_is_queued_without_resume_and_queued_ones_can_be_withdrawn():
    storage = optuna.storages.InMemoryStorage()
    searcher, _ = make_searcher(storage)
    searcher.suggest("a")
    searcher.stopping = True
    searcher.fail_unfinished()
    assert len(searcher.study.get_trials()) == 1  # none queued

    resuming, _ = make_searcher(storage, run_id="run-b", resume=True)
    resuming.suggest("b")
    resuming.stopping = True
    resuming.fail_unfinished()
    withdraw_waiting_retries(resuming.study)  # what --no-resume-trials does with it
    withdrawn = resuming.study.get_trials()[-1]
    assert withdrawn.state == States.FAIL and withdrawn.user_attrs["retry_of"] == 1
    assert withdrawn.user_attrs["fail_reason"] == "not run: --no-resume-trials"
    assert count_finished(resuming.study) == 0 and not waiting_retries(resuming.study)


def test_a_killed_drivers_trial_is_retried_once_even_when_two_drivers_mark_it():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    trial.set_user_attr("run_id", "killed")
    trial.report(0.2, 1)
    stale = study.get_trials()[0]  # what a second driver read before the first marked it
    assert fail_interrupted_trials(study, resume=True) == [0]
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _study._fail_orphan(study, stale, resume=True)
    interrupted, retry, withdrawn = study.get_trials()
    assert interrupted.state == States.FAIL and interrupted.user_attrs["retried_by"] == 1
    assert retry.state == States.WAITING
    assert retry.system_attrs["fixed_params"] == interrupted.params
    assert withdrawn.state == States.FAIL and withdrawn.user_attrs["fail_reason"] == (
        "not run: trial #0 was resumed by another driver"
    )
    assert waiting_retries(study) == [(1, 0)] and count_finished(study) == 0
