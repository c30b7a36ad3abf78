"""Search: Ray Tune trials, Optuna samplers, ASHA and the study database, plus the command lines.

Command lines: `python -m search.train` (one run), `python -m search.run` (a search),
`search.compare` (policies or recipes over seeds), `search.report`, `search.dashboard`.
Importing this package loads neither Ray nor Optuna (nor torch).
"""

from __future__ import annotations

from ._compare import (
    CompareData,
    CompareEntry,
    RunHooks,
    RunRecord,
    read_compare_data,
    train_runs,
)
from ._space import Recipe, Space, available_spaces, get_space

__all__ = [
    "CompareData",
    "CompareEntry",
    "Recipe",
    "RunHooks",
    "RunRecord",
    "Space",
    "available_spaces",
    "get_space",
    "read_compare_data",
    "train_runs",
]
