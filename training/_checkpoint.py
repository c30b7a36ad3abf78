"""When a run saves its checkpoint: `CheckpointPolicy`, a pure rule of the epoch and two clocks.

A save after every epoch (the default) costs little for a small model and a slow epoch, and a
large share of the run for a large model and a fast one (a Shake-Shake state of tens of MB after
every few-second GPU epoch). The policy saves every `every` epochs, skips a due save while saving
costs more than `budget` of the training time, and saves anyway once `max_interval` seconds have
passed without one, so an interrupted run loses at most about that much training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import _check


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which epochs of a run `training.train` saves its checkpoint after (see `due`)."""

    every: int = 1  # save every `every` epochs; 0 = never save
    # Seconds of training: a save is made at the end of an epoch once this long has passed since
    # the last save, even when not due by `every`.
    max_interval: float | None = None
    # A save due by `every` is skipped while the time spent saving would exceed this share of the
    # training time (the last save's duration against the time since it); None = never skip.
    budget: float | None = None
    # Whether the run's last epoch (config.epochs) may be saved too, by the rules above; False:
    # never (a finished run is not resumed), not even past max_interval.
    at_end: bool = True

    def __post_init__(self) -> None:
        _check(
            isinstance(self.every, int) and not isinstance(self.every, bool) and self.every >= 0,
            "every",
            self.every,
            "an integer >= 0 (0 = never save)",
        )
        _check(
            self.max_interval is None
            or (_finite_number(self.max_interval) and self.max_interval > 0),
            "max_interval",
            self.max_interval,
            "a finite number of seconds > 0, or None",
        )
        _check(
            self.budget is None or (_finite_number(self.budget) and 0 < self.budget <= 1),
            "budget",
            self.budget,
            "a share of the training time in (0, 1], or None",
        )
        _check(isinstance(self.at_end, bool), "at_end", self.at_end, "true or false")

    def due(self, epoch: int, last_epoch: int, since_save: float, last_save_cost: float) -> bool:
        """Whether to save after `epoch` (1-based) of a run of `last_epoch` epochs.

        `since_save`: seconds since the last save ended (or since training started);
        `last_save_cost`: seconds the last save took (0.0 before any)."""
        if self.every == 0 or (epoch == last_epoch and not self.at_end):
            return False
        if self.max_interval is not None and since_save >= self.max_interval:
            return True
        if epoch % self.every != 0:
            return False
        return self.budget is None or last_save_cost <= self.budget * since_save


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
