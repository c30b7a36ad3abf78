"""The training loop on real CIFAR-10 slices, on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from training import (
    LabeledImages,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    train,
    train_val_split,
)


@pytest.fixture(scope="module")
def small_split(cifar_train):
    return train_val_split(cifar_train, 1000, seed=0, train_size=4000)


@pytest.mark.slow
def test_short_run_really_learns(small_split):
    train_set, val_set = small_split
    seen = []
    config = TrainConfig(model="cnn_reg", epochs=2, batch_size=64, lr=2e-3, seed=0)
    result = train(config, train_set, val_set, device="cpu", on_epoch_end=seen.append)
    assert [s.epoch for s in seen] == [1, 2]
    # Chance is 10 %; two epochs on 4,000 real images get well above it.
    assert seen[-1].val_accuracy > 0.30
    assert seen[-1].train_loss < seen[0].train_loss
    assert all(s.images_per_second > 0 and s.epoch_time > 0 for s in seen)
    check = evaluate(result.model, val_set, device="cpu")
    assert math.isclose(check.accuracy, seen[-1].val_accuracy, abs_tol=1e-6)
    assert sum(map(sum, check.confusion)) == len(val_set)


def test_same_seed_same_run_different_seed_different_run(small_split):
    train_set, val_set = small_split
    tiny = train_set.subset(torch.arange(256))
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=64, rotation=10, cutout=8)
    a = train(config, tiny, val_set.subset(torch.arange(200)), device="cpu")
    b = train(config, tiny, val_set.subset(torch.arange(200)), device="cpu")
    c = train(config.replace(seed=1), tiny, val_set.subset(torch.arange(200)), device="cpu")
    assert a.history[0].train_loss == b.history[0].train_loss
    assert a.history[0].train_loss != c.history[0].train_loss


def test_nan_loss_raises_its_own_error(small_split):
    train_set, _ = small_split
    broken = LabeledImages(train_set.images[:128], train_set.labels[:128])
    config = TrainConfig(model="cnn_basic", epochs=3, batch_size=32, lr=1e30, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train(config, broken, device="cpu")


def test_multistep_milestones_are_fractions_of_the_run(small_split):
    train_set, _ = small_split
    tiny = train_set.subset(torch.arange(64))
    config = TrainConfig(
        model="cnn_basic",
        epochs=5,
        batch_size=64,
        lr=0.1,
        optimizer="sgd",
        milestones=(0.4, 0.8),
        gamma=0.1,
    )
    assert config.milestone_epochs() == [2, 4]
    assert TrainConfig(epochs=125, milestones=(0.6, 0.8)).milestone_epochs() == [75, 100]
    lrs = [s.lr for s in train(config, tiny, device="cpu").history]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_early_stopping_restores_best_weights(small_split):
    train_set, val_set = small_split
    tiny, tiny_val = train_set.subset(torch.arange(128)), val_set.subset(torch.arange(300))
    # A rate this high makes validation loss worse after the first epochs, so patience triggers.
    config = TrainConfig(
        model="cnn_basic", epochs=12, batch_size=32, lr=0.02, patience=2, optimizer="sgd"
    )
    result = train(config, tiny, tiny_val, device="cpu")
    losses = [s.val_loss for s in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    if result.stopped_early:
        assert len(result.history) == result.best_epoch + 2
    restored = evaluate(result.model, tiny_val, device="cpu")
    assert restored.loss == pytest.approx(min(losses), rel=1e-4)


def test_resume_continues_from_checkpoint(small_split, tmp_path):
    train_set, val_set = small_split
    tiny, tiny_val = train_set.subset(torch.arange(128)), val_set.subset(torch.arange(100))
    config = TrainConfig(model="cnn_basic", epochs=3, batch_size=32)
    full = train(config, tiny, tiny_val, device="cpu")
    path = tmp_path / "state.pt"

    class Interrupt(Exception):
        pass

    def stop_after_two(stats):
        if stats.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            config, tiny, tiny_val, device="cpu", checkpoint_path=path, on_epoch_end=stop_after_two
        )
    resumed = train(config, tiny, tiny_val, device="cpu", checkpoint_path=path, resume=True)
    assert [s.epoch for s in resumed.history] == [1, 2, 3]
    assert resumed.history[2].train_loss == pytest.approx(full.history[2].train_loss, rel=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "invalid epochs=0"),
        ({"optimizer": "lamb"}, "invalid optimizer='lamb'"),
        ({"milestones": (0.8, 0.6)}, "invalid milestones"),
        ({"lr": -1.0}, "invalid lr=-1.0"),
        ({"cutout": 40}, "invalid cutout=40"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_config_round_trip():
    config = TrainConfig(model_kwargs={"dropout": [0.1, 0.2, 0.3]}, milestones=(0.5,))
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 0.1})
