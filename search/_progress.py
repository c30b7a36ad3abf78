"""A live view of a search in the terminal, through a Ray Tune callback, plus error capture."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from ._searcher import METRIC, TruthfulOptunaSearch

# The last line of a Python traceback: "SomeError: message".
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt)[\w]*)(:.*)?$")
_PID = re.compile(r"^\s*pid: (\d+)\s*$", re.MULTILINE)


def error_summary(text: str) -> str:
    """The exception line of a Ray error report (the last 'XError: ...' line), else its tail."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line) and not line.startswith(("ray.exceptions.", "Failure #")):
            return line[:500]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line[:500]
    return (lines[-1] if lines else "the trial failed without a message")[:500]


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


class SearchProgress(Callback):
    """Prints one line per trial event with running counts and the best result so far;
    with `verbose`, one line per epoch too. Feeds trial errors to the searcher."""

    def __init__(
        self,
        searcher: TruthfulOptunaSearch,
        target: int,
        already: int,
        max_epochs: int,
        verbose: bool = False,
        stream: TextIO = sys.stdout,
    ) -> None:
        self.searcher = searcher
        self.target = target
        self.done = already
        self.max_epochs = max_epochs
        self.verbose = verbose
        self.stream = stream
        self.start = time.monotonic()
        self.running = 0

    def _number(self, trial: Trial) -> str:
        ot_trial = self.searcher._ot_trials.get(trial.trial_id)
        return f"#{ot_trial.number}" if ot_trial is not None else trial.trial_id

    def _best(self) -> str:
        try:
            best = self.searcher.study.best_trial
            return f"best {100 * best.value:.2f}% (#{best.number})"
        except ValueError:
            return "no complete trial yet"

    def _say(self, message: str) -> None:
        elapsed = time.monotonic() - self.start
        print(
            f"[{elapsed:7.1f}s] {message}  | {self.running} running, {self.done}/{self.target} "
            f"done, {self._best()}",
            file=self.stream,
            flush=True,
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.running += 1
        self._say(f"trial {self._number(trial)} started")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any
    ) -> None:
        if self.verbose and METRIC in result:
            self._say(
                f"trial {self._number(trial)} epoch {result['training_iteration']}/"
                f"{self.max_epochs} val {100 * result[METRIC]:.2f}%"
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        result = trial.last_result or {}
        epochs = result.get("training_iteration", 0)
        value = result.get(METRIC)
        shown = f"val {100 * value:.2f}%" if value is not None else "no result"
        if result.get("finished"):
            state = "COMPLETE"
        elif trial.trial_id in self.searcher._scheduler.pruned_trial_ids:
            state = "PRUNED"
        else:
            state = "FAIL (interrupted)"
        self._say(f"trial {self._number(trial)} {state} after {epochs} epochs, {shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        message = trial_error_message(trial)
        self.searcher.record_error(trial.trial_id, message)
        self._say(f"trial {self._number(trial)} FAIL: {message}")
