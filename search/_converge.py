"""Whether more trials pay: where a study's best trial was found, and Optuna's Terminator.

The Terminator (`optuna.terminator`; Makarova et al. 2022, "Automatic termination for
hyperparameter optimization") stops a search once the room left for improvement is below the
statistical error of the objective. The room left is `RegretBoundEvaluator`'s upper bound on the
regret of the best trial: a Gaussian process is fitted to the top half (at least 20) of the
COMPLETE trials' parameters and values, and the bound is the largest upper confidence bound over
the space minus the largest lower confidence bound among those trials. The rule is
`Terminator.should_terminate`'s: judged once `MIN_TRIALS` trials are COMPLETE, converged when the
bound is below the error. It is applied here to the evaluators' numbers rather than through the
class, so the summary and the report can show them.

The error: Optuna's default (`CrossValidationErrorEvaluator`) is the spread of a trial's
cross-validation scores, which our trials do not have: each is scored once, on one validation
split. The error of that score is the standard error of an accuracy measured on the split's n
images, sqrt(p (1 - p) / n) for the best trial's accuracy p (a binomial proportion; 0.59 points
for 77 % on 5,000 images): two configurations closer than this cannot be told apart on the split.

PRUNED trials carry no value, so the Terminator, like the sampler, sees only COMPLETE ones.
`optuna.terminator` is deprecated since Optuna 4.9 and due to be removed in 6.0; without it
`terminator_missing` says so, the summary and report leave the estimate out, and
`--stop-when-converged` is refused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._study import density_record

MIN_TRIALS = 20  # optuna.terminator's DEFAULT_MIN_N_TRIALS: COMPLETE trials before it judges
GP_SEED = 0  # RegretBoundEvaluator samples the space at random: one seed, the same bound each time


def terminator_missing() -> str | None:
    """Why Optuna's Terminator cannot be used here (None: it can)."""
    try:
        from optuna.terminator import RegretBoundEvaluator  # noqa: F401
    except ImportError as exc:
        import optuna

        return f"Optuna {optuna.__version__} has no optuna.terminator ({exc})"
    return None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class BestFound:
    """Where the best trial stands among the finished (COMPLETE or PRUNED) trials, by number."""

    number: int  # the best trial's number
    position: int  # its place among the finished trials, 1 = the first
    finished: int

    @property
    def since(self) -> int:
        """Finished trials after the best one: none of them improved on it."""
        return self.finished - self.position

    def line(self) -> str:
        """`best found at trial #12 (the 9th of 40 finished); the last 31 did not improve it`."""
        head = (
            f"best found at trial #{self.number} (the {_ordinal(self.position)} of "
            f"{self.finished} finished)"
        )
        if not self.since:
            return f"{head}; it is the latest: the search was still improving"
        return f"{head}; the last {self.since} did not improve it"


def _finished(trials: Sequence[Any]) -> list[Any]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sorted((t for t in trials if t.state in states), key=lambda t: t.number)


def _complete(trials: Sequence[Any]) -> list[Any]:
    import optuna

    done = optuna.trial.TrialState.COMPLETE
    return sorted((t for t in trials if t.state == done), key=lambda t: t.number)


def best_found(trials: Sequence[Any], maximize: bool = True) -> BestFound | None:
    """Where the best COMPLETE trial (the first of equal ones) was found; None without one."""
    finished = _finished(trials)
    complete = [t for t in finished if t.values is not None]
    if not complete:
        return None
    sign = 1 if maximize else -1
    best = max(complete, key=lambda t: (sign * t.value, -t.number))
    return BestFound(best.number, finished.index(best) + 1, len(finished))


def best_so_far(trials: Sequence[Any], maximize: bool = True) -> list[tuple[int, float]]:
    """(trial number, best value up to it) at each COMPLETE trial, by number."""
    points: list[tuple[int, float]] = []
    best: float | None = None
    for trial in _complete(trials):
        if best is None or (trial.value > best if maximize else trial.value < best):
            best = trial.value
        points.append((trial.number, best))
    return points


def split_error(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on `images` images, sqrt(p (1 - p) / n)."""
    p = min(max(float(accuracy), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / max(images, 1))


def scored_images(study: Any) -> int:
    """The images a trial's value is measured on: a density search's held-out images (its whole
    search subset, over the folds), else the validation split."""
    from ._study import StudyRecord

    density = density_record(study) or {}
    if density.get("train_size"):
        return int(density["train_size"])
    return StudyRecord.of(study).val_size


@dataclass(frozen=True)
class Estimate:
    """The Terminator's view of a study after its COMPLETE trial #`number`."""

    number: int  # the last COMPLETE trial it saw
    complete: int  # COMPLETE trials it saw
    regret_bound: float  # RegretBoundEvaluator's bound, in the objective's units
    error: float  # the best trial's standard error on the split (`split_error`)

    @property
    def judged(self) -> bool:
        """Whether enough trials are COMPLETE for the Terminator to judge."""
        return self.complete >= MIN_TRIALS

    @property
    def converged(self) -> bool:
        """Terminator.should_terminate's rule: judged, and the bound below the error."""
        return self.judged and self.regret_bound < self.error

    def line(self) -> str:
        """The estimate in one line, accuracies in percentage points."""
        verdict = "are unlikely to help" if self.converged else "may still help"
        return (
            f"Optuna's Terminator: more trials {verdict} (regret bound "
            f"{100 * self.regret_bound:.2f}% {'<' if self.regret_bound < self.error else '>='} "
            f"error {100 * self.error:.2f}%, from {self.complete} COMPLETE trials)"
        )

    def to_attrs(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "complete": self.complete,
            "regret_bound": self.regret_bound,
            "error": self.error,
        }


def estimate(trials: Sequence[Any], images: int, maximize: bool = True) -> Estimate:
    """The Terminator's regret bound and the split's error over the COMPLETE `trials` (at least
    one; a search space they all share). Raises ValueError when the bound cannot be computed."""
    import optuna
    from optuna.terminator import RegretBoundEvaluator

    complete = _complete(trials)
    if not complete:
        raise ValueError("no COMPLETE trial: nothing to estimate")
    direction = (
        optuna.study.StudyDirection.MAXIMIZE if maximize else optuna.study.StudyDirection.MINIMIZE
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, FutureWarning (deprecated module)
        bound = RegretBoundEvaluator(seed=GP_SEED).evaluate(complete, direction)
    best = (
        max(complete, key=lambda t: t.value) if maximize else min(complete, key=lambda t: t.value)
    )
    return Estimate(
        complete[-1].number, len(complete), float(bound), split_error(best.value, images)
    )


def estimates(
    trials: Sequence[Any], images: int, maximize: bool = True, first: int = 2
) -> list[Estimate]:
    """The estimate after each COMPLETE trial, by number, from the `first`-th on (one fit each,
    about 0.15 s on a CPU)."""
    complete = _complete(trials)
    return [
        estimate(complete[:count], images, maximize) for count in range(first, len(complete) + 1)
    ]


def estimate_line(study: Any) -> str | None:
    """The Terminator's estimate of `study` in one line, for the summary; None without
    optuna.terminator or a COMPLETE trial. Below MIN_TRIALS it only says so (no fit)."""
    complete = _complete(study.get_trials(deepcopy=False))
    if terminator_missing() or not complete:
        return None
    if len(complete) < MIN_TRIALS:
        return (
            f"Optuna's Terminator judges from {MIN_TRIALS} COMPLETE trials; the study has "
            f"{len(complete)}"
        )
    return estimate(complete, scored_images(study), maximizes(study)).line()


def maximizes(study: Any) -> bool:
    """Whether `study` maximizes its objective."""
    import optuna

    return study.direction == optuna.study.StudyDirection.MAXIMIZE
