"""What a search space is: the parameters a sampler suggests and how they become a TrainConfig.

Spaces are declared in `studies/` (one module each, holding `SPACE = Space(...)`); this module
only defines the type and finds the declarations.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing training (torch) here would slow every command line
    from training import TrainConfig


@dataclass(frozen=True)
class Space:
    """A search space.

    `suggest(trial)` asks an Optuna trial for every parameter (define-by-run, so parameters may
    depend on each other); `to_config(params)` turns the suggested values into a TrainConfig
    whose `epochs` the search and the retrain then set. `full_epochs` is the retrain length.
    """

    name: str
    description: str
    suggest: Callable[[Any], None]
    to_config: Callable[[dict[str, Any]], TrainConfig]
    full_epochs: int
    max_epochs: int = 30  # default search budget per trial
    train_size: int | None = None  # default training subset for search trials; None = all

    def trial_config(
        self,
        params: dict[str, Any],
        *,
        epochs: int | None = None,
        seed: int | None = None,
        model: str | None = None,
    ) -> TrainConfig:
        """The run a trial's `params` stand for: `to_config(params)` with the run's length and
        seed (None keeps the space's), on `model` instead of the space's when one is given.

        A search trial, its retrain and every command that reads a trial back build its run here.
        """
        config = self.to_config(params)
        changes = {
            key: value for key, value in (("epochs", epochs), ("seed", seed)) if value is not None
        }
        if model and model != config.model:
            # The space's model arguments (e.g. cnn_reg's dropout) belong to its own model.
            changes.update(model=model, model_kwargs={})
        return config.replace(**changes) if changes else config


def available_spaces() -> dict[str, Space]:
    """Every `SPACE` declared by a module of the `studies` package, by name."""
    import studies

    spaces: dict[str, Space] = {}
    for module in pkgutil.iter_modules(studies.__path__):
        if module.name.startswith("_"):
            continue
        space = getattr(importlib.import_module(f"studies.{module.name}"), "SPACE", None)
        if isinstance(space, Space):
            if space.name in spaces:
                raise ValueError(f"space {space.name!r} is declared twice in studies/")
            spaces[space.name] = space
    return dict(sorted(spaces.items()))


def get_space(name: str) -> Space:
    """The space called `name`; an unknown name lists the known ones."""
    spaces = available_spaces()
    if name not in spaces:
        raise ValueError(f"unknown space {name!r}; known spaces: {', '.join(spaces)}")
    return spaces[name]
