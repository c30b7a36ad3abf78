"""`CheckpointPolicy`: which epochs a run saves after (a pure rule), and its checks. The
trainer's use of it (files written, exact resume) is in test_trainer.py."""

from __future__ import annotations

import math

import pytest

from training import CheckpointPolicy

EVERY_2 = CheckpointPolicy(every=2)
SEARCH = CheckpointPolicy(every=1, max_interval=300.0, budget=0.02, at_end=False)


@pytest.mark.parametrize(
    ("policy", "epoch", "last", "since", "cost", "due"),
    [
        # The default: every epoch, the last included, whatever the clocks say.
        (CheckpointPolicy(), 1, 5, 0.0, 0.0, True),
        (CheckpointPolicy(), 5, 5, 0.0, 100.0, True),
        # every == 0: never, not even past max_interval or at the end.
        (CheckpointPolicy(every=0, max_interval=1.0), 3, 5, 1e6, 0.0, False),
        (CheckpointPolicy(every=0), 5, 5, 0.0, 0.0, False),
        # every 2: epochs 2, 4, ...; not 1, 3.
        (EVERY_2, 1, 9, 10.0, 0.0, False),
        (EVERY_2, 2, 9, 10.0, 0.0, True),
        (EVERY_2, 3, 9, 10.0, 0.0, False),
        (EVERY_2, 4, 9, 10.0, 0.0, True),
        # at_end=True does not add a save the epoch is not due for.
        (EVERY_2, 9, 9, 10.0, 0.0, False),
        # max_interval: due once that long has passed, even off `every`; not a moment before.
        (CheckpointPolicy(every=5, max_interval=300.0), 3, 9, 300.0, 0.0, True),
        (CheckpointPolicy(every=5, max_interval=300.0), 3, 9, 299.9, 0.0, False),
        # budget 2 %: a 1 s save is skipped until 50 s have passed since it.
        (SEARCH, 2, 9, 49.0, 1.0, False),
        (SEARCH, 2, 9, 50.0, 1.0, True),
        (SEARCH, 1, 9, 0.5, 0.0, True),  # before any save: nothing to skip for
        # max_interval overrides the budget: a run is never left unsaved longer than that.
        (SEARCH, 7, 9, 300.0, 100.0, True),
        # at_end=False: the last epoch never, not even past max_interval.
        (SEARCH, 9, 9, 1e6, 0.0, False),
        (SEARCH, 8, 9, 1e6, 0.0, True),
    ],
)
def test_due(policy, epoch, last, since, cost, due):
    assert policy.due(epoch, last, since, cost) is due


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"every": -1}, r"invalid every=-1; expected an integer >= 0 \(0 = never save\)"),
        ({"every": 1.5}, r"invalid every=1\.5; expected an integer"),
        ({"every": True}, r"invalid every=True; expected an integer"),
        ({"max_interval": 0.0}, r"invalid max_interval=0\.0; expected a finite number of "),
        ({"max_interval": -5}, r"invalid max_interval=-5; expected a finite"),
        ({"max_interval": math.inf}, r"invalid max_interval=inf; expected a finite"),
        ({"max_interval": math.nan}, r"invalid max_interval=nan; expected a finite"),
        ({"max_interval": "300"}, r"invalid max_interval='300'; expected a finite"),
        ({"budget": 0}, r"invalid budget=0; expected a share of the training time in \(0, 1\]"),
        ({"budget": 1.5}, r"invalid budget=1\.5; expected a share"),
        ({"budget": math.nan}, r"invalid budget=nan; expected a share"),
        ({"at_end": "no"}, r"invalid at_end='no'; expected true or false"),
    ],
)
def test_policy_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        CheckpointPolicy(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"every": 0},
        {"max_interval": 0.5},
        {"max_interval": 60},
        {"budget": 1},
        {"budget": 1e-3},
    ],
)
def test_policy_accepts_the_edges(changes):
    policy = CheckpointPolicy(**changes)
    assert all(getattr(policy, name) == value for name, value in changes.items())
