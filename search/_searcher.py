"""Ray Tune <-> Optuna glue that records what really happened in the study database.

Stock `OptunaSearch` (Ray 2.60) tells Optuna COMPLETE for a trial that ASHA stopped early, with
its last short-budget value, which TPE then ranks against full-budget results; it also never
records the final epoch's intermediate value, a failed trial carries no reason, and a database
error while telling a result loses it. Here:
- ASHA's stop decisions are recorded by `PruningASHA`; such trials are told PRUNED;
- a trial is COMPLETE only when its trainable reported `finished` (its weights are saved);
- a trial that trained but could not save its weights (`save_error`, a full disk) is FAIL
  "not saved: ..." with all its values; it does not count towards --trials, and no new trial is
  asked for after it (the next ones would fail the same way);
- any other end (Ctrl+C, driver shutdown) is FAIL with the reason, so the sampler learns nothing
  false; with `resume_trials`, such a trial gets a retry queued first (search/_resume.py);
- errors are FAIL with the error text: the trainable reports what training raised (`error`),
  `TrialErrorRecorder` brings what Ray says of a worker that died for good;
- a trial Ray restarted, or a retry, reports the epochs its checkpoint restored again: each step
  is recorded once, and `resumed_from_epoch` says how many were restored;
- every write to the study is retried while the database fails; a COMPLETE that still cannot be
  recorded is said loudly (trial, value, weights path) and kept in `unrecorded`;
- with a `target`, no trial is asked for once the study holds that many finished or live trials,
  so several drivers sharing one study stop at --trials together;
- with `stop_when_converged`, no trial is asked for once Optuna's Terminator judges the study
  converged (search/_converge.py); it is judged only when a trial completed since the last
  judgement (a GP fit each time) and no WAITING trial (a retry, an enqueued trial) remains.
All these decisions are made by `decide`; what was decided for a trial is `outcome(trial_id)`.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import optuna
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._converge import MIN_TRIALS, Estimate, estimate, maximizes, scored_images
from ._resume import (
    CHECKPOINT_REFUSED,
    RESUMED_FROM_EPOCH,
    RETRY_OF,
    control_config,
    queue_retry,
)
from ._space import PROGRESS_WORDS, ProgressWords
from ._study import (
    INTERRUPTED_REASON,
    NOT_SAVED_REASON,
    RETRY_DELAYS,
    SOURCE_ATTR,
    count_claimed,
    count_finished,
    is_storage_error,
    storage_error_line,
    write_converged_record,
    write_with_retries,
)

logger = logging.getLogger(__name__)

TrialState = optuna.trial.TrialState
METRIC = "val_accuracy"
# The trainable's own epoch count: Tune's training_iteration restarts when Ray restarts a trial.
EPOCH = "epoch"
SAVE_ERROR = "save_error"  # the trainable's last report carries it when saving failed
ERROR = "error"  # the trainable's last report carries it when training raised


class PruningASHA(ASHAScheduler):
    """ASHA that remembers which trials it stopped before their full budget."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pruned_trial_ids: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and not _ran_to_the_end(result):
            self.pruned_trial_ids.add(trial.trial_id)
        return decision


def _ran_to_the_end(result: dict | None) -> bool:
    """Whether the trainable's last report came: saved (`finished`), not saved (`save_error`),
    or an error."""
    return bool(result) and bool(
        result.get("finished") or result.get(SAVE_ERROR) or result.get(ERROR)
    )


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended, as decided and recorded by the searcher."""

    number: int
    state: TrialState
    epochs: int  # epochs it reported
    value: float | None  # its last validation accuracy, when it reported one
    reason: str | None = None  # why it failed (its `fail_reason`)
    checkpoint_path: str | None = None
    recorded: bool = True  # False: the study database could not be told
    retry_of: int | None = None  # the interrupted trial this one continued
    resumed_from: int = 0  # epochs restored from a checkpoint

    def describe(self, words: ProgressWords = PROGRESS_WORDS["train"]) -> str:
        """`COMPLETE after 3 epochs, val 41.20%`, `FAIL (interrupted) after 1 epochs, ...`, or
        for an error `FAIL: <message>`: a progress line's account of the trial, its steps and
        value named by `words` (a density trial's are slices and a score)."""
        if self.state == TrialState.FAIL and not str(self.reason).startswith(
            (INTERRUPTED_REASON, NOT_SAVED_REASON)
        ):
            text = f"FAIL: {self.reason}"
        else:
            shown = (
                f"{words.value} {100 * self.value:.2f}%" if self.value is not None else "no result"
            )
            state = self.state.name
            if self.state == TrialState.FAIL:
                state = (
                    f"FAIL ({self.reason})"
                    if self.reason.startswith(NOT_SAVED_REASON)
                    else "FAIL (interrupted)"
                )
            text = f"{state} after {self.epochs} {words.steps}, {shown}"
        if self.retry_of is not None:
            text += f" (retry of #{self.retry_of}, {self.resumed_from} {words.steps} restored)"
        elif self.resumed_from:
            text += f" (restarted, {self.resumed_from} {words.steps} restored)"
        return text if self.recorded else text + " [NOT RECORDED in the study]"


def decide(result: dict | None, pruned: bool, stopping: bool) -> tuple[TrialState, str | None]:
    """A trial's final state and fail reason from its last result (None: it never reported),
    whether ASHA stopped it early, and whether the search was stopped with Ctrl+C."""
    if result and result.get("finished"):
        return TrialState.COMPLETE, None
    if result and result.get(SAVE_ERROR):
        return TrialState.FAIL, f"{NOT_SAVED_REASON}: {result[SAVE_ERROR]}"
    if result and result.get(ERROR):
        return TrialState.FAIL, str(result[ERROR])
    if pruned:
        return TrialState.PRUNED, None
    why = "the search was stopped (Ctrl+C)" if stopping else "the search ended"
    return TrialState.FAIL, f"{INTERRUPTED_REASON}: {why} before it finished"


class TruthfulOptunaSearch(OptunaSearch):
    """`OptunaSearch` whose study holds true trial states, all intermediate values and reasons.

    `trial_attrs` are set as user attributes on every trial it asks for (e.g. the run id and the
    sampler seed). `target` is the study's --trials: once the study holds that many (see
    `count_claimed`), the search asks for no more, whichever driver ran them. Database writes
    are tried again after each of `retry_delays` seconds; `stream` gets the loud warnings.
    """

    def __init__(
        self,
        *args: Any,
        scheduler: PruningASHA,
        trial_attrs: dict[str, Any] | None = None,
        target: int | None = None,
        resume_trials: bool = False,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        stream: TextIO | None = None,
        stop_when_converged: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._stop_when_converged = stop_when_converged
        self._judged_complete = 0  # COMPLETE trials at the last convergence judgement
        self.converged: Estimate | None = None  # the estimate that stopped the search
        self._resume_trials = resume_trials
        self._resume_attrs: dict[str, dict[str, Any]] = {}  # recorded resume attributes per trial
        self._scheduler = scheduler
        self._trial_attrs = dict(trial_attrs or {})
        self._target = target
        self._retry_delays = tuple(retry_delays)
        self._stream = stream
        self._reported_steps: dict[str, set[int]] = {}
        self._pending_errors: dict[str, dict | None] = {}
        self._outcomes: dict[str, TrialOutcome] = {}
        self._sources: dict[str, str] = {}  # where queued trials come from (search/_seeds.py)
        self.stopping = False  # set by the driver on Ctrl+C: unfinished trials are interrupted
        self.save_error: tuple[int, str] | None = None  # the first trial that could not save
        self.storage_error: str | None = None  # the database failed even after the retries
        self.unrecorded: list[TrialOutcome] = []  # COMPLETE trials the study could not be told

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    # -- what the driver and the progress printer read ----------------------------------------

    def number(self, trial_id: str) -> int | None:
        """The Optuna number of Tune trial `trial_id`, once asked for."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial.number if ot_trial is not None else None

    def source(self, trial_id: str) -> str | None:
        """Where trial `trial_id` comes from when its study was seeded with it ("seed:report",
        "warm-start:small#12"); None for a sampled trial."""
        return self._sources.get(trial_id)

    def outcome(self, trial_id: str) -> TrialOutcome | None:
        """How trial `trial_id` ended, once the searcher decided it."""
        return self._outcomes.get(trial_id)

    def outcomes(self) -> list[TrialOutcome]:
        """Every trial this searcher ended, in the order it ended them."""
        return list(self._outcomes.values())

    # -- Tune's searcher interface --------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.save_error or self.storage_error:
            return Searcher.FINISHED  # the next trials would fail the same way
        if self._target is not None and self._target_reached():
            return Searcher.FINISHED
        if self._stop_when_converged and self._converged():
            return Searcher.FINISHED
        try:
            config = super().suggest(trial_id)
            if config is None:
                return None
            ot_trial = self._ot_trials[trial_id]
            for key, value in {**self._trial_attrs, "ray_trial_id": trial_id}.items():
                self._write(lambda k=key, v=value: ot_trial.set_user_attr(k, v))
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            # An asked trial stays in _ot_trials: `fail_unfinished` tries to end it.
            self._storage_failed(exc, "asking for a new trial")
            return Searcher.FINISHED
        attrs = ot_trial.user_attrs
        if SOURCE_ATTR in attrs:
            self._sources[trial_id] = str(attrs[SOURCE_ATTR])
        # The trainable needs the Optuna number (it names the trial's folder and seeds the run)
        # and, for a retry, the seed and checkpoints of the trial it continues.
        return {**config, **control_config(ot_trial.number, attrs)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if error:
            # The error text arrives through `record_error` (a Tune callback runs after this).
            self._pending_errors[trial_id] = result
            return
        if result:
            self._report(trial_id, result)
        state, reason = decide(result, trial_id in self._scheduler.pruned_trial_ids, self.stopping)
        if state == TrialState.FAIL and result and result.get(SAVE_ERROR) and not self.save_error:
            self.save_error = (self._ot_trials[trial_id].number, str(result[SAVE_ERROR]))
        self._finish(trial_id, state, reason, result)

    def record_error(self, trial_id: str, message: str) -> None:
        """Tell a trial that raised as FAIL, with `message` as its `fail_reason`."""
        if trial_id not in self._pending_errors or trial_id in self._completed_trials:
            return
        result = self._pending_errors.pop(trial_id)
        self._finish(trial_id, TrialState.FAIL, message, result)

    def fail_unfinished(self) -> list[int]:
        """Tell FAIL (interrupted) every trial asked for but never told; returns the numbers of
        those the study really recorded.

        Tune stops the live trials of an interrupted run without telling the searcher, so after
        `fit` these would stay RUNNING in the study.
        """
        failed = []
        for trial_id in list(self._ot_trials):
            if trial_id in self._completed_trials or trial_id in self._pending_errors:
                continue
            _, reason = decide(None, pruned=False, stopping=self.stopping)
            if self._resume_trials:
                self._queue_retry(trial_id)
            outcome = self._finish(trial_id, TrialState.FAIL, reason, None)
            if outcome.recorded:
                failed.append(outcome.number)
        return failed

    def _queue_retry(self, trial_id: str) -> None:
        ot_trial = self._ot_trials[trial_id]
        try:
            frozen = self._write(lambda: self._ot_study._storage.get_trial(ot_trial._trial_id))
            self._write(lambda: queue_retry(self._ot_study, frozen))
        except Exception as exc:  # the trial is still recorded FAIL; a re-run starts it anew
            self._storage_failed(exc, f"queuing the retry of trial #{ot_trial.number}")

    def flush_errors(self) -> None:
        """Fail any errored trial whose message never arrived (called when the search ends)."""
        for trial_id in list(self._pending_errors):
            self.record_error(trial_id, "error: the trial's worker failed (no message recorded)")

    # -- recording ------------------------------------------------------------------------------

    def _finish(
        self, trial_id: str, state: TrialState, reason: str | None, result: dict | None
    ) -> TrialOutcome:
        """Record how the trial got on and tell the study its final state; never raises."""
        ot_trial = self._ot_trials[trial_id]
        steps = self._reported_steps.get(trial_id)
        if result and EPOCH in result:
            epochs = int(result[EPOCH])
        else:
            epochs = max(steps) if steps else 0
        value = _finite(result.get(METRIC)) if result else None
        resumed = int(self._resume_attrs.get(trial_id, {}).get(RESUMED_FROM_EPOCH, 0))
        attrs = _final_attrs(state, reason, result, epochs, resumed)
        recorded = True
        try:
            for key, attr in attrs.items():
                self._write(lambda k=key, v=attr: ot_trial.set_user_attr(k, v))
            told = value if state == TrialState.COMPLETE else None
            self._write(
                lambda: self._ot_study.tell(ot_trial, told, state=state, skip_if_finished=True)
            )
        except Exception as exc:  # a failing database must not end the whole search
            recorded = False
            self._storage_failed(exc, f"recording trial #{ot_trial.number} as {state.name}")
        self._completed_trials.add(trial_id)
        outcome = TrialOutcome(
            number=ot_trial.number,
            state=state,
            epochs=epochs,
            value=value,
            reason=reason,
            checkpoint_path=attrs.get("checkpoint_path"),
            recorded=recorded,
            retry_of=ot_trial.user_attrs.get(RETRY_OF),
            resumed_from=resumed,
        )
        self._outcomes[trial_id] = outcome
        if not recorded and state == TrialState.COMPLETE:
            self.unrecorded.append(outcome)
            self._say(
                f"ERROR: trial #{outcome.number} COMPLETE (validation accuracy "
                f"{value!r}, weights {outcome.checkpoint_path}) could NOT be recorded in the "
                f"study: {self.storage_error}"
            )
        return outcome

    def _write(self, write: Callable[[], Any]) -> Any:
        """A study write, retried while the database fails (once the database has failed for
        good, tried once: every write would otherwise wait the whole backoff)."""
        return write_with_retries(write, () if self.storage_error else self._retry_delays)

    def _storage_failed(self, exc: BaseException, doing: str) -> None:
        line = storage_error_line(exc)
        if self.storage_error is None:
            self._say(f"warning: the study database failed {doing}: {line}")
        self.storage_error = line

    def _say(self, message: str) -> None:
        print(message, file=self._stream or sys.stderr, flush=True)

    def _target_reached(self) -> bool:
        try:
            return count_claimed(self.study, self._trial_attrs.get("run_id")) >= self._target
        except Exception as exc:  # a storage hiccup: go on, the study will say what ran
            logger.warning("could not count the study's trials: %s", exc)
            return False

    def _converged(self) -> bool:
        """Whether Optuna's Terminator judges the study converged; judged again only when a trial
        completed since, and only once no WAITING trial is left (they run first)."""
        if self.converged is not None:
            return True
        try:
            trials = self.study.get_trials(deepcopy=False)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if waiting or complete < MIN_TRIALS or complete == self._judged_complete:
                return False
            self._judged_complete = complete
            judged = estimate(trials, scored_images(self.study), maximizes(self.study))
        except Exception as exc:  # a storage hiccup or a GP that cannot be fitted: go on
            logger.warning("could not judge whether the search converged: %s", exc)
            return False
        if not judged.converged:
            return False
        self.converged = judged
        print(f"converged: {judged.line()}; no new trials are asked for", flush=True)
        record = {**judged.to_attrs(), "finished": count_finished(self.study)}
        record["run_id"] = self._trial_attrs.get("run_id")
        try:
            self._write(lambda: write_converged_record(self.study, record))
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self._storage_failed(exc, "recording that the search converged")
        return True

    def _report(self, trial_id: str, result: dict) -> None:
        """Record the epoch's validation accuracy once per step, the last epoch included."""
        if METRIC not in result or EPOCH not in result or trial_id not in self._ot_trials:
            return
        self._record_resume(trial_id, result)
        step = int(result[EPOCH])
        seen = self._reported_steps.setdefault(trial_id, set())
        value = _finite(result[METRIC])
        if step in seen or value is None:
            return
        seen.add(step)
        ot_trial = self._ot_trials[trial_id]
        try:
            self._write(lambda: ot_trial.report(value, step))
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self._storage_failed(exc, f"recording epoch {step} of trial #{ot_trial.number}")

    def _record_resume(self, trial_id: str, result: dict) -> None:
        """The trial's resume attributes (epochs restored, a refused checkpoint) when a report
        brings new ones."""
        recorded = self._resume_attrs.setdefault(trial_id, {})
        ot_trial = self._ot_trials[trial_id]
        for key in (RESUMED_FROM_EPOCH, CHECKPOINT_REFUSED):
            value = result.get(key)
            if value and recorded.get(key) != value:
                recorded[key] = value
                try:
                    self._write(lambda k=key, v=value: ot_trial.set_user_attr(k, v))
                except Exception as exc:
                    if not is_storage_error(exc):
                        raise
                    self._storage_failed(exc, f"recording trial #{ot_trial.number}'s {key}")

    # The stock save() pickles the storage object, database URL and password included, into
    # Ray's experiment folder. The study database is the record we resume from, so save nothing.
    def save(self, checkpoint_path: str) -> None:
        return None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the tuner (searcher included) into tuner.pkl; the storage object inside
        # would carry the database URL, password included. Nothing restores from that pickle.
        state = self.__dict__.copy()
        for key in ("_storage", "_ot_study", "_ot_trials", "_stream"):
            state[key] = None
        return state

    def restore(self, checkpoint_path: str) -> None:
        raise RuntimeError("resume a search by re-running it: the study database is the record")


def _final_attrs(
    state: TrialState, reason: str | None, result: dict | None, epochs: int, resumed: int
) -> dict[str, Any]:
    """The user attributes a trial gets when it ends in `state` after `epochs` (`resumed` of
    them restored from a checkpoint)."""
    attrs: dict[str, Any] = {"epochs_run": epochs}
    if resumed:
        attrs["epochs_trained"] = max(epochs - resumed, 0)
    if result and "trial_time" in result:
        attrs["trial_time"] = result["trial_time"]
    if state == TrialState.COMPLETE:
        kept = ("wall_time", "device", "precision", "checkpoint_path")
        attrs.update({k: result[k] for k in kept if k in result})
    elif state == TrialState.PRUNED:
        attrs["pruned_by"] = "ASHA"
    if reason:
        attrs["fail_reason"] = reason
    return attrs


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# The last line of a Python traceback: "SomeError: message".
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt)[\w]*)(:.*)?$")
_OUT_OF_MEMORY = re.compile(r"^[\w.]*OutOfMemoryError\b")
_PID = re.compile(r"^\s*pid: (\d+)\s*$", re.MULTILINE)


def error_summary(text: str) -> str:
    """The exception line of a Ray error report (the last 'XError: ...' line), else its tail;
    an out-of-memory error's line starts with "out of memory: "."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line) and not line.startswith(("ray.exceptions.", "Failure #")):
            return _plain(line)
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return _plain(line)
    return (lines[-1] if lines else "the trial failed without a message")[:500]


def _plain(line: str) -> str:
    """`line`, cut to 500 characters; said plainly when it is an out-of-memory error, whose own
    words vary (torch's "CUDA out of memory. Tried to allocate ...", Ray's "Task was killed due
    to the node running low on memory")."""
    if _OUT_OF_MEMORY.match(line):
        line = f"out of memory: {line}"
    return line[:500]


def exception_line(exc: BaseException) -> str:
    """`exc` as the last line of its traceback would say it (see `error_summary`)."""
    return _plain(traceback.format_exception_only(type(exc), exc)[-1].strip())


def trial_error_message(trial: Trial) -> str:
    """Why a trial errored, in one line: the exception line, or that its worker process died."""
    text = ""
    if trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text(errors="replace")
    error = None
    if trial.pickled_error_file and Path(trial.pickled_error_file).exists():
        try:
            from ray import cloudpickle

            error = cloudpickle.loads(Path(trial.pickled_error_file).read_bytes())
        except Exception:  # an unreadable pickle still leaves the text
            pass
    from ray.exceptions import RayActorError

    if isinstance(error, RayActorError):
        # Ray's text for this names no exception and runs to a paragraph of possible causes.
        pid = _PID.search(text)
        return (
            f"worker died: the Ray worker process running the trial"
            f"{f' (pid {pid.group(1)})' if pid else ''} ended unexpectedly (killed, out of "
            f"memory or crashed; {type(error).__name__})"
        )
    return error_summary(text)


class TrialErrorRecorder(Callback):
    """Brings a failed trial's error text to the searcher, which records it as the reason.

    Tune tells the searcher of an error before its error file is read, and only callbacks see
    the trial; put this one before any callback that prints the outcome.
    """

    def __init__(self, searcher: TruthfulOptunaSearch) -> None:
        self.searcher = searcher

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.searcher.record_error(trial.trial_id, trial_error_message(trial))
