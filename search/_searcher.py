"""Ray Tune <-> Optuna glue that records what really happened in the study database.

Stock `OptunaSearch` (Ray 2.60) tells Optuna COMPLETE for a trial that ASHA stopped early, with
its last short-budget value, which TPE then ranks against full-budget results; it also never
records the final epoch's intermediate value, and a failed trial carries no reason. Here:
- ASHA's stop decisions are recorded by `PruningASHA`; such trials are told PRUNED;
- a trial is COMPLETE only when its trainable reported `finished`;
- any other end (Ctrl+C, driver shutdown) is FAIL with the reason, so the sampler learns nothing
  false; errors are FAIL with the error text, recorded before the trial is told;
- with a `target`, no trial is asked for once the study holds that many finished or live trials,
  so several drivers sharing one study stop at --trials together.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._study import count_claimed

logger = logging.getLogger(__name__)

TrialState = optuna.trial.TrialState
METRIC = "val_accuracy"
EPOCH = "training_iteration"


class PruningASHA(ASHAScheduler):
    """ASHA that remembers which trials it stopped before their full budget."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pruned_trial_ids: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and not result.get("finished"):
            self.pruned_trial_ids.add(trial.trial_id)
        return decision


class TruthfulOptunaSearch(OptunaSearch):
    """`OptunaSearch` whose study holds true trial states, all intermediate values and reasons.

    `trial_attrs` are set as user attributes on every trial it asks for (e.g. the run id).
    `target` is the study's --trials: once the study holds that many (see `count_claimed`), the
    search asks for no more, whichever driver ran them.
    """

    def __init__(
        self,
        *args: Any,
        scheduler: PruningASHA,
        trial_attrs: dict[str, Any] | None = None,
        target: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._scheduler = scheduler
        self._trial_attrs = dict(trial_attrs or {})
        self._target = target
        self._reported_steps: dict[str, set[int]] = {}
        self._pending_errors: dict[str, dict | None] = {}
        self.stopping = False  # set by the driver on Ctrl+C: unfinished trials are interrupted

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._target is not None and self._target_reached():
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        for key, value in self._trial_attrs.items():
            ot_trial.set_user_attr(key, value)
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        # The trainable needs the Optuna number: it names the trial's folder and seeds the run.
        return {**config, "trial_number": ot_trial.number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if error:
            # The error text arrives through `record_error` (a Tune callback runs after this).
            self._pending_errors[trial_id] = result
            return
        if result:
            self._report(trial_id, result)
        self._record_run(ot_trial, result)
        if result and result.get("finished"):
            for key in ("wall_time", "device", "checkpoint_path"):
                if key in result:
                    ot_trial.set_user_attr(key, result[key])
            self._tell(trial_id, TrialState.COMPLETE, float(result[METRIC]))
        elif trial_id in self._scheduler.pruned_trial_ids:
            ot_trial.set_user_attr("pruned_by", "ASHA")
            self._tell(trial_id, TrialState.PRUNED)
        else:
            ot_trial.set_user_attr("fail_reason", self._interrupted_reason())
            self._tell(trial_id, TrialState.FAIL)

    def record_error(self, trial_id: str, message: str) -> None:
        """Tell a trial that raised as FAIL, with `message` as its `fail_reason`."""
        if trial_id not in self._pending_errors or trial_id in self._completed_trials:
            return
        result = self._pending_errors.pop(trial_id)
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("fail_reason", message)
        self._record_run(ot_trial, result)
        self._tell(trial_id, TrialState.FAIL)

    def fail_unfinished(self) -> list[int]:
        """Tell FAIL (interrupted) every trial asked for but never told; returns their numbers.

        Tune stops the live trials of an interrupted run without telling the searcher, so after
        `fit` these would stay RUNNING in the study.
        """
        failed = []
        for trial_id, ot_trial in list(self._ot_trials.items()):
            if trial_id in self._completed_trials or trial_id in self._pending_errors:
                continue
            try:
                ot_trial.set_user_attr("fail_reason", self._interrupted_reason())
                steps = self._reported_steps.get(trial_id)
                ot_trial.set_user_attr("epochs_run", max(steps) if steps else 0)
            except Exception as exc:  # the next driver's start marks it FAIL all the same
                logger.warning("could not record why trial %s ended: %s", trial_id, exc)
            self._tell(trial_id, TrialState.FAIL)
            failed.append(ot_trial.number)
        return failed

    def _interrupted_reason(self) -> str:
        why = "the search was stopped (Ctrl+C)" if self.stopping else "the search ended"
        return f"interrupted: {why} before it finished"

    @staticmethod
    def _record_run(ot_trial: Any, result: dict | None) -> None:
        """How far the trial got: epochs run and its cumulative training time, when reported."""
        ot_trial.set_user_attr("epochs_run", int(result.get(EPOCH, 0)) if result else 0)
        if result and "trial_time" in result:
            ot_trial.set_user_attr("trial_time", result["trial_time"])

    def _target_reached(self) -> bool:
        try:
            return count_claimed(self.study, self._trial_attrs.get("run_id")) >= self._target
        except Exception as exc:  # a storage hiccup: go on, the study will say what ran
            logger.warning("could not count the study's trials: %s", exc)
            return False

    def flush_errors(self) -> None:
        """Fail any errored trial whose message never arrived (called when the search ends)."""
        for trial_id in list(self._pending_errors):
            self.record_error(trial_id, "error: the trial's worker failed (no message recorded)")

    def _report(self, trial_id: str, result: dict) -> None:
        """Record the epoch's validation accuracy once per step, the last epoch included."""
        if METRIC not in result or EPOCH not in result:
            return
        step = int(result[EPOCH])
        seen = self._reported_steps.setdefault(trial_id, set())
        value = float(result[METRIC])
        if step in seen or not math.isfinite(value):
            return
        seen.add(step)
        self._ot_trials[trial_id].report(value, step)

    def _tell(self, trial_id: str, state: TrialState, value: float | None = None) -> None:
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except Exception as exc:  # a storage hiccup must not end the whole search
            logger.warning("could not record trial %s as %s: %s", trial_id, state.name, exc)
        self._completed_trials.add(trial_id)

    # The stock save() pickles the storage object, database URL and password included, into
    # Ray's experiment folder. The study database is the record we resume from, so save nothing.
    def save(self, checkpoint_path: str) -> None:
        return None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the tuner (searcher included) into tuner.pkl; the storage object inside
        # would carry the database URL, password included. Nothing restores from that pickle.
        state = self.__dict__.copy()
        for key in ("_storage", "_ot_study", "_ot_trials"):
            state[key] = None
        return state

    def restore(self, checkpoint_path: str) -> None:
        raise RuntimeError("resume a search by re-running it: the study database is the record")
