"""Where a run's configuration comes from: a built-in recipe, a space's seed recipe, a study's
trial, or a saved config.json. `search.train`, `search.retrain` and `search.compare` build theirs
here, so a trial means the same run to every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training import REPORT_RECIPE, TrainConfig, build_model

from ._artifacts import CONFIG, read_train_config
from ._space import Space, available_spaces, get_space
from ._study import StudyError, StudyRecord

# `search.train --recipe`: TrainConfig's defaults, and the reference report's final recipe.
RECIPES = {"default": TrainConfig(), "report": REPORT_RECIPE}


def recipe_config(text: str) -> TrainConfig:
    """The configuration `text` names: a built-in recipe (RECIPES), the path of a config.json, or
    a space's seed recipe as SPACE:RECIPE (e.g. cnn_reg:sgd_cosine, at the length its space's
    `to_config` gives); ValueError (ArtifactError for a file) saying what it expected."""
    if text in RECIPES:
        return RECIPES[text]
    if Path(text).is_file() or text.endswith(".json") or "/" in text:
        return read_train_config(text)
    space_name, sep, name = text.partition(":")
    spaces = available_spaces()
    if not sep or space_name not in spaces:
        raise ValueError(
            f"unknown recipe {text!r}; expected {', '.join(RECIPES)}, SPACE:RECIPE (a space's "
            f"seed recipe, e.g. cnn_reg:sgd_cosine) or the path of a {CONFIG}"
        )
    recipes = {recipe.name: recipe for recipe in spaces[space_name].recipes}
    if name not in recipes:
        raise ValueError(
            f"space {space_name!r} has no recipe {name!r}; expected one of "
            + (", ".join(recipes) or "none (it declares no recipes)")
        )
    return spaces[space_name].trial_config(recipes[name].params)


def child_recipe(space: Space, text: str) -> tuple[str, dict[str, Any]]:
    """The child `text` names for a policy `space` (`search.run --child-recipe`): one of the
    space's children by name, or the path of a config.json; as (its name, its TrainConfig's
    `to_dict()` without a policy, which the trials' replaces). ValueError saying what it
    expected."""
    if not space.children:
        with_children = [s.name for s in available_spaces().values() if s.children]
        raise ValueError(
            f"space {space.name!r} has no child recipe; --child-recipe is for the spaces whose "
            f"trials vary a child's policy: {', '.join(with_children)}"
        )
    if text in space.children:
        config = space.children[text]()
    elif Path(text).is_file() or text.endswith(".json") or "/" in text:
        config = read_train_config(text)
    else:
        raise ValueError(
            f"unknown child recipe {text!r} for space {space.name!r}; expected "
            f"{', '.join(space.children)} or the path of a {CONFIG}"
        )
    check_model(config)
    return text, config.replace(policy=None).to_dict()


def pick_trial(study: Any, number: int | None) -> Any:
    """Trial `number` of `study` (a FrozenTrial with parameters), or its best COMPLETE trial when
    `number` is None; StudyError when there is none."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise StudyError(
                f"study {study.study_name!r} has no completed trial to retrain; run or continue "
                "the search first, or name a trial with --trial"
            )
        return study.best_trial
    matches = [t for t in trials if t.number == number]
    if not matches:
        raise StudyError(
            f"study {study.study_name!r} has no trial #{number}; expected 0..{len(trials) - 1}"
        )
    if not matches[0].params:
        raise StudyError(f"trial #{number} has no parameters to retrain")
    return matches[0]


def trial_config(
    record: StudyRecord,
    trial: Any,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    precision: str | None = None,
) -> TrainConfig:
    """The trial's configuration exactly as it ran, at the space's full length unless `epochs`,
    with its own training seed (study seed + number) unless `seed`, in the study's precision
    unless `precision`: the run a retrain of it trains."""
    space = get_space(record.space)
    return space.trial_config(
        trial.params,
        epochs=epochs or space.full_epochs,
        seed=seed if seed is not None else record.seed + trial.number,
        model=record.model_override,
        precision=precision or record.precision,
        child=record.child_recipe,
    )


def check_model(config: TrainConfig) -> None:
    """Raise ValueError when `config` names no model, or arguments the model does not take."""
    try:
        build_model(config, torch.device("cpu"))
    except TypeError as exc:  # a keyword the model's builder does not take
        raise ValueError(
            f"invalid model_kwargs={config.model_kwargs!r} for model {config.model!r} ({exc})"
        ) from None
