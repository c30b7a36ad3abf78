"""A live view of a search in the terminal, through a Ray Tune callback.

It only prints: how each trial ended is decided and recorded by the searcher
(`TruthfulOptunaSearch.outcome`), error texts reach it through `TrialErrorRecorder`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from ._searcher import METRIC, TruthfulOptunaSearch
from ._seeds import shown_source
from ._space import PROGRESS_WORDS, ProgressWords
from ._study import RERUN_REASONS


class SearchProgress(Callback):
    """Prints one line per trial event with running counts and the best result so far;
    with `verbose`, one line per epoch too."""

    def __init__(
        self,
        searcher: TruthfulOptunaSearch,
        target: int,
        already: int,
        max_epochs: int,
        verbose: bool = False,
        stream: TextIO = sys.stdout,
        words: ProgressWords = PROGRESS_WORDS["train"],
    ) -> None:
        self.searcher = searcher
        self.target = target
        self.done = already
        self.max_epochs = max_epochs
        self.verbose = verbose
        self.stream = stream
        self.words = words
        self.start = time.monotonic()
        self.running = 0

    def _number(self, trial: Trial) -> str:
        number = self.searcher.number(trial.trial_id)
        return f"#{number}" if number is not None else trial.trial_id

    def _best(self) -> str:
        try:
            best = self.searcher.study.best_trial
            return f"best {100 * best.value:.2f}% (#{best.number})"
        except Exception:  # no complete trial, or the database cannot be read right now
            return "no complete trial yet"

    def _say(self, message: str) -> None:
        elapsed = time.monotonic() - self.start
        print(
            f"[{elapsed:7.1f}s] {message}  | {self.running} running, {self.done}/{self.target} "
            f"done, {self._best()}",
            file=self.stream,
            flush=True,
        )

    def _ended(self, trial: Trial) -> None:
        self.running = max(0, self.running - 1)
        outcome = self.searcher.outcome(trial.trial_id)
        if outcome is None:  # the searcher never asked for it
            self._say(f"trial {self._number(trial)} ended")
            return
        if outcome.reason is None or not outcome.reason.startswith(RERUN_REASONS):
            self.done += 1  # counts towards --trials
        self._say(f"trial {self._number(trial)} {outcome.describe(self.words)}")

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.running += 1
        source = self.searcher.source(trial.trial_id)
        shown = f" ({shown_source(source)})" if source else ""
        self._say(f"trial {self._number(trial)} started{shown}")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any
    ) -> None:
        if self.verbose and METRIC in result:
            self._say(
                f"trial {self._number(trial)} {self.words.steps} {result['training_iteration']}/"
                f"{self.max_epochs} {self.words.value} {100 * result[METRIC]:.2f}%"
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._ended(trial)
