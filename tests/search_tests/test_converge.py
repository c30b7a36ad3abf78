"""Whether more trials pay: where the best was found, Optuna's Terminator, --stop-when-converged.

The searcher is driven by hand, as Tune drives it, on Optuna's in-memory storage with synthetic
values: one study whose trials all score within 0.1 point of each other (converged: the
Terminator's regret bound is far below the split's error) and one whose every trial beats the
last by 2 points (still improving: the bound is far above it). Seconds, no Ray cluster.
"""

from __future__ import annotations

import io
import math
import types

import optuna
import pytest

from search import _converge, _searcher, _summary
from search._converge import MIN_TRIALS, BestFound, best_found, best_so_far, split_error
from search._driver import SearchOutcome
from search._samplers import make_sampler
from search._searcher import EPOCH, METRIC, PruningASHA, TruthfulOptunaSearch
from search._study import CONVERGED_ATTR, count_finished

States = optuna.trial.TrialState
optuna.logging.set_verbosity(optuna.logging.WARNING)


def space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])


def flat(i: int) -> float:
    return 0.60 + 0.001 * math.sin(i)


def rising(i: int) -> float:
    return 0.20 + 0.02 * i


def make_searcher(storage=None, *, stop=True, target=None) -> TruthfulOptunaSearch:
    scheduler = PruningASHA(
        metric=METRIC, mode="max", time_attr=EPOCH, max_t=2, grace_period=1, reduction_factor=2
    )
    return TruthfulOptunaSearch(
        space=space,
        metric=METRIC,
        mode="max",
        study_name="s",
        storage=storage if storage is not None else optuna.storages.InMemoryStorage(),
        sampler=make_sampler("random", 0),
        scheduler=scheduler,
        trial_attrs={"run_id": "run-a"},
        target=target,
        retry_delays=(0.0,),
        stream=io.StringIO(),
        stop_when_converged=stop,
    )


def complete(searcher: TruthfulOptunaSearch, trial_id: str, value: float) -> None:
    searcher.on_trial_result(trial_id, {METRIC: value / 2, EPOCH: 1})
    result = {METRIC: value, EPOCH: 2, "finished": True, "checkpoint_path": "/w/weights.pt"}
    searcher.on_trial_complete(trial_id, result)


def run_until_finished(searcher: TruthfulOptunaSearch, values, most: int) -> int:
    """Ask for trials one at a time and complete each with the next value; how many ran before
    the searcher answered FINISHED (`most` when it never did)."""
    for i in range(most):
        trial_id = f"t{i}"
        if searcher.suggest(trial_id) == "FINISHED":
            return i
        complete(searcher, trial_id, values(i))
    return most


# -- the stop rule ----------------------------------------------------------------------------


def test_a_converged_study_stops_after_the_minimum_and_records_it(capsys):
    searcher = make_searcher()
    ran = run_until_finished(searcher, flat, 40)
    assert ran == MIN_TRIALS  # judged once 20 trials are COMPLETE: converged at once
    estimate = searcher.converged
    assert estimate is not None and estimate.converged
    assert estimate.complete == MIN_TRIALS and estimate.number == MIN_TRIALS - 1
    assert estimate.regret_bound < estimate.error
    # No value of the split is recorded: the error is the default 5,000 images' for the best.
    best = max(flat(i) for i in range(MIN_TRIALS))
    assert estimate.error == pytest.approx(split_error(best, 5000))
    record = searcher.study.user_attrs[CONVERGED_ATTR]
    assert record == {**estimate.to_attrs(), "finished": MIN_TRIALS, "run_id": "run-a"}
    assert (
        "converged: Optuna's Terminator: more trials are unlikely to help"
        in capsys.readouterr().out
    )
    assert searcher.suggest("again") == "FINISHED"  # and stays so


def test_a_study_that_keeps_improving_is_not_stopped():
    searcher = make_searcher()
    assert run_until_finished(searcher, rising, 32) == 32
    assert searcher.converged is None
    assert CONVERGED_ATTR not in searcher.study.user_attrs
    assert len(searcher.study.get_trials(states=(States.COMPLETE,))) == 32


def test_without_the_option_a_converged_study_runs_on():
    searcher = make_searcher(stop=False)
    assert run_until_finished(searcher, flat, MIN_TRIALS + 3) == MIN_TRIALS + 3
    assert searcher.converged is None


def test_judged_only_when_a_trial_completed_since(monkeypatch):
    fits = []
    real = _searcher.estimate

    def counted(*args, **kwargs):
        fits.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_searcher, "estimate", counted)
    searcher = make_searcher()
    run_until_finished(searcher, rising, MIN_TRIALS)
    assert fits == []  # fewer than 20 COMPLETE when each was asked: no fit
    for trial_id in ("a", "b", "c"):  # asked while none completes: one fit, for the first
        assert searcher.suggest(trial_id) != "FINISHED"
    assert len(fits) == 1
    complete(searcher, "a", rising(MIN_TRIALS))
    searcher.suggest("d")
    assert len(fits) == 2


def test_a_waiting_trial_runs_before_the_study_is_judged():
    """A retry of an interrupted trial (or an enqueued one) waits in the study as WAITING: a
    converged search runs it first, then stops."""
    storage = optuna.storages.InMemoryStorage()
    first = make_searcher(storage, stop=False)
    run_until_finished(first, flat, MIN_TRIALS)
    first.study.enqueue_trial({"lr": 0.01, "batch_size": 64})
    (waiting,) = first.study.get_trials(states=(States.WAITING,))
    second = make_searcher(storage)
    assert second.suggest("r") != "FINISHED"  # converged already, but the WAITING trial runs
    assert second.number("r") == waiting.number
    complete(second, "r", flat(MIN_TRIALS))
    assert second.suggest("n") == "FINISHED"
    assert second.converged.complete == MIN_TRIALS + 1


# -- where the best was found, and the summary's lines ---------------------------------------


def hand_study() -> optuna.Study:
    """Trials #0-#6: COMPLETE 0.5, PRUNED, COMPLETE 0.7 (the best), FAIL, PRUNED, COMPLETE 0.7
    (equal, later), then a WAITING one."""
    study = optuna.create_study(direction="maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    rows = [
        (States.COMPLETE, 0.5),
        (States.PRUNED, None),
        (States.COMPLETE, 0.7),
        (States.FAIL, None),
        (States.PRUNED, None),
        (States.COMPLETE, 0.7),
        (States.WAITING, None),
    ]
    for i, (state, value) in enumerate(rows):
        params = {"lr": 10 ** -(1 + i / 3)}
        study.add_trial(
            optuna.trial.create_trial(state=state, value=value, params=params, distributions=dist)
        )
    return study


def test_best_found_counts_finished_trials_by_number():
    study = hand_study()
    found = best_found(study.trials)
    assert found == BestFound(number=2, position=3, finished=5)
    assert found.line() == (
        "best found at trial #2 (the 3rd of 5 finished); the last 2 did not improve it"
    )
    assert best_so_far(study.trials) == [(0, 0.5), (2, 0.7), (5, 0.7)]
    assert BestFound(40, 40, 40).line() == (
        "best found at trial #40 (the 40th of 40 finished); it is the latest: the search was "
        "still improving"
    )
    ordinals = [
        BestFound(0, n, 99).line().split("the ")[1].split(" of")[0]
        for n in (1, 11, 12, 13, 21, 22, 23, 101)
    ]
    assert ordinals == ["1st", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st"]
    minimizing = optuna.create_study(direction="minimize")
    for trial in study.trials:
        minimizing.add_trial(trial)
    assert best_found(minimizing.trials, maximize=False).number == 0


def test_split_error_is_the_binomial_standard_error():
    # 77 % on 5,000 images: 0.595 points, the width below which two trials are a tie.
    assert split_error(0.77, 5000) == pytest.approx(math.sqrt(0.77 * 0.23 / 5000))
    assert 100 * split_error(0.77, 5000) == pytest.approx(0.595, abs=1e-3)
    assert split_error(1.2, 100) == 0.0  # clipped to a proportion


def test_summary_says_where_the_best_was_found_and_that_the_search_converged(capsys):
    searcher = make_searcher()
    run_until_finished(searcher, flat, 40)
    capsys.readouterr()
    study = searcher.study
    _summary._print_convergence(study)
    job = types.SimpleNamespace(trials=64)  # what _print_progress reads of a SearchJob
    _summary._print_progress(study, job, SearchOutcome(converged=searcher.converged))
    lines = capsys.readouterr().out.splitlines()
    assert max(range(MIN_TRIALS), key=flat) == 14  # sin(14) = 0.99, the largest of the 20
    assert lines[0] == (
        "best found at trial #14 (the 15th of 20 finished); the last 5 did not improve it"
    )
    assert lines[1].startswith("Optuna's Terminator: more trials are unlikely to help (regret ")
    assert lines[1].endswith(f"from {MIN_TRIALS} COMPLETE trials)")
    assert lines[2].startswith(
        f"stopped as converged after {count_finished(study)} of --trials 64 finished: "
    )
    assert lines[2].endswith("; run again without --stop-when-converged for the rest")


def test_summary_before_the_terminator_judges(capsys):
    searcher = make_searcher(stop=False)
    run_until_finished(searcher, rising, 5)
    _summary._print_convergence(searcher.study)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "best found at trial #4 (the 5th of 5 finished); it is the latest: the search was "
        "still improving"
    )
    assert (
        lines[1] == f"Optuna's Terminator judges from {MIN_TRIALS} COMPLETE trials; the study has 5"
    )


def test_the_option_is_parsed_and_needs_the_terminator(monkeypatch):
    from search import _job
    from search.run import build_parser

    args = build_parser().parse_args(["--space", "cnn_reg", "--stop-when-converged"])
    assert _job._stop_when_converged(args) is True
    assert build_parser().parse_args(["--space", "cnn_reg"]).stop_when_converged is False
    assert _converge.terminator_missing() is None  # the Optuna this project installs has it
