"""Search: Ray Tune trials, Optuna samplers, ASHA and the study database, plus the command lines.

Command lines: `python -m search.train` (one run), `python -m search.run` (a search),
`search.report`, `search.dashboard`. Importing this package loads neither Ray nor Optuna.
"""

from __future__ import annotations

from ._space import Recipe, Space, available_spaces, get_space

__all__ = ["Recipe", "Space", "available_spaces", "get_space"]
