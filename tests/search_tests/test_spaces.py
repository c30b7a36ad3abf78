"""Spaces and samplers, without Ray: each space suggests valid configurations with each sampler."""

from __future__ import annotations

import optuna
import pytest

from search import available_spaces, get_space
from search._samplers import SAMPLERS, make_sampler
from training import TrainConfig


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", sorted(available_spaces()))
def test_space_suggests_valid_configs(name, sampler):
    space = get_space(name)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, 0))
    seen = set()
    for _ in range(6):
        trial = study.ask()
        space.suggest(trial)
        config = space.to_config(trial.params)
        assert isinstance(config, TrainConfig)
        seen.add(tuple(sorted(trial.params.items())))
        study.tell(trial, config.lr)
    assert len(seen) == 6, "a sampler that repeats itself is not searching"
    assert space.full_epochs >= 1 and space.max_epochs >= 1


def test_cnn_reg_space_is_the_reference_network():
    space = get_space("cnn_reg")
    assert space.full_epochs == 125  # the reference report trained its final CNN this long
    trial = optuna.create_study().ask()
    space.suggest(trial)
    config = space.to_config(trial.params)
    assert config.model == "cnn_reg" and len(config.model_kwargs["dropout"]) == 3
    assert config.schedule == "multistep" and len(config.milestones) == 2


def test_unknown_space_lists_known_ones():
    with pytest.raises(ValueError, match="unknown space 'nope'; known spaces: .*cnn_reg"):
        get_space("nope")


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'sa'; expected one of tpe"):
        make_sampler("sa", 0)
