"""What a search space is: the parameters a sampler suggests and how they become a TrainConfig.

Spaces are declared in `studies/` (one module each, holding `SPACE = Space(...)`); this module
only defines the type and finds the declarations.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # importing training (torch) here would slow every command line
    from training import TrainConfig


# The ways a trial can be scored (see `Space.method`).
METHODS = ("train", "density")


class ProgressWords(NamedTuple):
    """What the command lines call a trial's steps and its value, by `Space.method`."""

    steps: str  # "after 3 epochs"
    value: str  # "val 41.20%"
    value_long: str  # "validation accuracy 41.20%"


PROGRESS_WORDS = {
    "train": ProgressWords("epochs", "val", "validation accuracy"),
    # A density trial's steps are slices of the held-out images, its value a density score.
    "density": ProgressWords("slices", "score", "density score"),
}


@dataclass(frozen=True)
class Recipe:
    """A general configuration of a space, written down before any measurement at the search's
    scale (not tuned on its results): a new study runs its space's recipes first
    (search/_seeds.py). `params` gives every parameter the space suggests on its branch, each in
    the space's range; `source` says where the recipe comes from (a paper, a project, a report).
    """

    name: str
    source: str
    params: dict[str, Any]


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
    # How a trial is scored: "train" trains `to_config(params)` and reports each epoch
    # (search/_trainable.py); "density" scores the config's policy by inference only, with fold
    # models trained once per study on `fold_recipe()` (search/_density.py), and `max_epochs`
    # is then the number of slices the held-out images are scored in.
    method: str = "train"
    fold_recipe: Callable[[], TrainConfig] | None = None  # "density": the fold models' run
    # ASHA's defaults for this space's searches: epochs (or slices) every trial gets, and the
    # share 1/reduction_factor kept at each rung. bench/bench_rank.py measures how well early
    # epochs rank a space's configurations, which is what these should follow.
    grace_period: int = 1
    reduction_factor: int = 3
    # The share of one GPU a trial takes by default (`search.run --gpus-per-trial`), and the
    # part of the GPU's memory it may hold (search/_trainable.py caps each trial at it): from the
    # peak memory of the space's model, so that the trials sharing a GPU fit in it together.
    gpu_share: float = 0.25
    # General configurations a new study runs first (`Recipe`; `search.run --no-seed-trials`
    # leaves them out). Not compared: a space is the same space whatever it seeds with.
    recipes: tuple[Recipe, ...] = field(default=(), compare=False)
    # A policy space's children by name: the fixed recipe its trials lay their policy over
    # (`search.run --child-recipe`; a new study takes the first unless told, and records it).
    children: dict[str, Callable[[], TrainConfig]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"invalid method={self.method!r} in space {self.name!r}; expected one of: "
                + ", ".join(METHODS)
            )
        if (self.method == "density") != (self.fold_recipe is not None):
            raise ValueError(
                f"space {self.name!r}: a fold_recipe goes with method 'density', and only with it"
            )
        if not 0 < self.gpu_share <= 1:
            raise ValueError(
                f"invalid gpu_share={self.gpu_share!r} in space {self.name!r}; expected a share "
                "of one GPU in (0, 1]"
            )
        names = [recipe.name for recipe in self.recipes]
        if len(set(names)) != len(names):
            raise ValueError(f"space {self.name!r} declares a recipe name twice: {names}")

    @property
    def words(self) -> ProgressWords:
        """How progress lines and summaries name this space's trial steps and values."""
        return PROGRESS_WORDS[self.method]

    def trial_config(
        self,
        params: dict[str, Any],
        *,
        epochs: int | None = None,
        seed: int | None = None,
        model: str | None = None,
        precision: str | None = None,
        child: dict[str, Any] | None = None,
    ) -> TrainConfig:
        """The run a trial's `params` stand for: `to_config(params)` with the run's length,
        seed and autocast precision (None keeps the space's), on `model` instead of the space's
        when one is given; for a policy space, its policy on `child` (a TrainConfig's
        `to_dict()`, the study's recorded child) when one is given.

        A search trial, its retrain and every command that reads a trial back build its run here.
        """
        if child is not None and not self.children:
            raise ValueError(f"space {self.name!r} has no child to replace")
        config = self.to_config(params)
        if child is not None:
            from training import TrainConfig

            config = TrainConfig.from_dict(child).replace(policy=config.policy)
        changes = {
            key: value
            for key, value in (("epochs", epochs), ("seed", seed), ("precision", precision))
            if value is not None
        }
        if model and model != config.model:
            # The space's model arguments (e.g. cnn_reg's dropout) belong to its own model.
            changes.update(model=model, model_kwargs={})
        return config.replace(**changes) if changes else config

    def changed_parameters(self, recorded: dict[str, Any], walks: int = 64) -> list[str]:
        """Names of `recorded` parameters (name -> Optuna distribution, as a study's trials hold
        them) that this space now suggests incompatibly, e.g. a categorical whose choices changed.

        Optuna refuses to sample such a study (its "dynamic value space" error, mid-search); the
        space is walked `walks` times with a random sampler to meet its conditional parameters.
        """
        import optuna
        from optuna.distributions import check_distribution_compatibility

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        current: dict[str, Any] = {}
        for _ in range(walks):
            trial = study.ask()
            self.suggest(trial)
            current.update(trial.distributions)
            study.tell(trial, 0.0)
        changed = []
        for name, distribution in sorted(recorded.items()):
            if name not in current:
                continue  # a parameter the space no longer asks for is simply not sampled
            try:
                check_distribution_compatibility(distribution, current[name])
            except ValueError:
                changed.append(name)
        return changed

    def changed_in(self, study: Any) -> list[str]:
        """`changed_parameters` of every distribution the trials of `study` (an Optuna study)
        hold: what a continued or warm-starting study's trials were drawn with."""
        recorded: dict[str, Any] = {}
        for trial in study.get_trials(deepcopy=False):
            recorded.update(trial.distributions)
        return self.changed_parameters(recorded) if recorded else []


# The `studies` package installed beside `search` (in the repository, or in site-packages).
_STUDIES_PACKAGE = Path(__file__).resolve().parent.parent / "studies"


def _studies_package() -> ModuleType:
    """Our `studies` package, never a `studies/` folder of the working directory: the default
    --studies-dir makes one there, and Python would import it (as a namespace package) instead."""
    module = sys.modules.get("studies")
    if module is not None and getattr(module, "__file__", None) == str(
        _STUDIES_PACKAGE / "__init__.py"
    ):
        return module
    spec = importlib.util.spec_from_file_location(
        "studies",
        _STUDIES_PACKAGE / "__init__.py",
        submodule_search_locations=[str(_STUDIES_PACKAGE)],
    )
    if spec is None or spec.loader is None:
        raise ValueError(f"the search spaces' package is missing: {_STUDIES_PACKAGE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["studies"] = module
    spec.loader.exec_module(module)
    return module


def available_spaces() -> dict[str, Space]:
    """Every `SPACE` declared by a module of the `studies` package, by name."""
    studies = _studies_package()

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
