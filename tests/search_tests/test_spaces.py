"""Spaces and samplers, without Ray: each space suggests valid configurations with each sampler."""

from __future__ import annotations

import math

import optuna
import pytest

from search import Space, available_spaces, get_space
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
    study = optuna.create_study()
    study.enqueue_trial({"schedule": "multistep"})  # the report's schedule stays searchable
    trial = study.ask()
    space.suggest(trial)
    config = space.to_config(trial.params)
    assert config.model == "cnn_reg" and len(config.model_kwargs["dropout"]) == 3
    assert config.schedule == "multistep" and len(config.milestones) == 2


def test_cnn_reg_searches_the_crop_padding_and_older_trials_keep_theirs():
    space = get_space("cnn_reg")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    paddings = set()
    for _ in range(40):
        trial = study.ask()
        space.suggest(trial)
        config = space.to_config(trial.params)
        assert config.crop_padding == trial.params["crop_padding"]
        paddings.add(config.crop_padding)
        study.tell(trial, 0.0)
    assert paddings == {0, 1, 2, 3, 4}
    # A trial of a study made before the padding was searched ran with the trainer's 4.
    older = dict(trial.params)
    del older["crop_padding"]
    assert space.to_config(older).crop_padding == 4


def test_each_space_has_a_gpu_share_from_its_model():
    shares = {name: space.gpu_share for name, space in available_spaces().items()}
    assert all(0 < share <= 1 for share in shares.values()), shares
    # cnn_reg and the policy spaces' cnn_reg children: four a GPU; Shake-Shake is unmeasured.
    assert shares["cnn_reg"] == shares["policy"] == shares["policy_child"] == 0.25
    assert shares["shake"] == 1.0


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_gpu_share_outside_one_gpu_is_refused(share):
    space = get_space("cnn_reg")
    with pytest.raises(ValueError, match=rf"invalid gpu_share={share!r} in space 'x'"):
        Space(
            name="x",
            description="",
            suggest=space.suggest,
            to_config=space.to_config,
            full_epochs=1,
            gpu_share=share,
        )


def test_unknown_space_lists_known_ones():
    with pytest.raises(ValueError, match="unknown space 'nope'; known spaces: .*cnn_reg"):
        get_space("nope")


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'sa'; expected one of tpe"):
        make_sampler("sa", 0)


def _categorical_choices(space) -> dict[str, tuple]:
    """Every categorical parameter a space may suggest (conditional ones included), with its
    choices, found by letting a random sampler walk the space."""
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found: dict[str, tuple] = {}
    for _ in range(30):
        trial = study.ask()
        space.suggest(trial)
        for name, dist in trial.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                found[name] = dist.choices
        study.tell(trial, 0.0)
    return found


def _trial_configs(space):
    """One configuration per categorical choice of the space: each choice is enqueued once,
    so every model, preset and policy op the space can produce is built below."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    choices = _categorical_choices(space)
    assert choices, f"space {space.name!r} has no categorical parameter to loop over"
    for name, values in choices.items():
        for value in values:
            study.enqueue_trial({name: value})
    for _ in range(sum(len(values) for values in choices.values())):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, 0.0)
        yield trial.params, space.trial_config(trial.params, epochs=1, seed=0)


@pytest.mark.parametrize("name", sorted(available_spaces()))
def test_every_choice_builds_its_model_and_resolves_its_policy(name):
    import torch

    from training import build_model, resolve_policy

    space = get_space(name)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    built: dict[tuple, int] = {}
    seen: dict[str, set] = {}
    for params, config in _trial_configs(space):
        for key, value in params.items():
            seen.setdefault(key, set()).add(value)
        key = (config.model, tuple(sorted(config.model_kwargs)))  # values need no new build
        if key not in built:
            model = build_model(config, torch.device("cpu")).eval()
            with torch.no_grad():
                logits = model(torch.zeros(2, 3, 32, 32))
            assert logits.shape == (2, 10), config.model
            built[key] = sum(p.numel() for p in model.parameters())
        policy = resolve_policy(config.policy)
        if policy is not None:
            out = policy.apply(images, torch.Generator().manual_seed(0))
            assert out.shape == images.shape and out.dtype == torch.uint8
    for param, values in _categorical_choices(space).items():
        assert seen[param] >= set(values), f"{param}: {set(values) - seen[param]} never tried"


def test_trial_config_sets_length_seed_and_model():
    space = get_space("cnn_reg")
    trial = optuna.create_study().ask()
    space.suggest(trial)
    base = space.to_config(trial.params)
    config = space.trial_config(trial.params, epochs=7, seed=3)
    assert config == base.replace(epochs=7, seed=3)
    assert config.model_kwargs["dropout"]  # the space's own model keeps its arguments
    other = space.trial_config(trial.params, epochs=7, seed=3, model="cnn_basic")
    # Another model drops the space's model arguments (cnn_basic takes no dropout).
    assert other == config.replace(model="cnn_basic", model_kwargs={})
    assert space.trial_config(trial.params, model="cnn_reg") == base


def _cnn_reg_corners():
    """The cnn_reg configurations most likely to blow up in their first steps: the highest
    learning rate of each optimizer at every batch size, with the shortest warmup, per schedule."""
    from studies.cnn_reg import BATCH_SIZES, SCHEDULES

    space = get_space("cnn_reg")
    base = {
        "p1": 0.0, "p2": 0.0, "p3": 0.0, "weight_decay": 1e-6, "warmup": 0.01,
        "milestone1": 0.5, "milestone2": 0.9, "gamma": 0.5, "label_smoothing": 0.0,
        "augment": "crop_flip",
    }  # fmt: skip
    top_rates = {
        "adam": {"adam_lr": 1e-2},
        "adamw": {"adam_lr": 1e-2, "decoupled_weight_decay": 1.0},
        "sgd": {"sgd_lr_per_128": 0.2},
    }
    for optimizer, lr in top_rates.items():
        for batch_size in BATCH_SIZES:
            for schedule in SCHEDULES:
                params = {**base, **lr, "optimizer": optimizer, "batch_size": batch_size,
                          "schedule": schedule}  # fmt: skip
                yield pytest.param(
                    space.trial_config(params, epochs=1, seed=0),
                    id=f"{optimizer}-{batch_size}-{schedule}",
                )


@pytest.mark.slow
@pytest.mark.parametrize("config", list(_cnn_reg_corners()))
def test_cnn_reg_corners_train_without_a_non_finite_loss(config):
    """Every batch size the space offers trains at the top of its learning-rate range (scaled
    by batch size) with the shortest warmup, at every schedule: the first steps' losses are
    finite (train raises NonFiniteLossError otherwise)."""
    import torch

    from training import LabeledImages, TrainConfig, train

    generator = torch.Generator().manual_seed(0)
    n = 2 * config.batch_size  # two steps: the first at the top rate after the shortest warmup
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    data = LabeledImages(images, labels)
    assert isinstance(config, TrainConfig)
    result = train(config.replace(tta=False), data, device="cpu")
    assert math.isfinite(result.history[-1].train_loss)
