"""K-fold splits and density-matching scores (training._folds), on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training import LabeledImages, TrainConfig, config_augment, density_scores, fold_splits


def test_folds_partition_the_images_stratified_and_reproducibly():
    labels = torch.arange(1003) % 10
    splits = fold_splits(labels, 5, seed=3)
    held = torch.cat([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(1003)), "each image held out exactly once"
    for kept, h in splits:
        assert set(kept.tolist()).isdisjoint(h.tolist())
        assert len(kept) + len(h) == 1003
        counts = torch.bincount(labels[h], minlength=10)
        assert counts.max() - counts.min() <= 1, counts
    # Held-out images come in a random order (slices of a class-sorted set stay fair samples).
    assert splits[0][1].tolist() != sorted(splits[0][1].tolist())
    again = fold_splits(labels, 5, seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    other = fold_splits(labels, 5, seed=4)
    assert not torch.equal(splits[0][1], other[0][1])


@pytest.mark.parametrize("k", [1, 0, 11])
def test_fold_count_out_of_range(k):
    with pytest.raises(ValueError, match=f"invalid folds={k}"):
        fold_splits(torch.arange(10), k, seed=0)


class ConstantClass(nn.Module):
    """Predicts class 0 for every image, with logits (0, ..., 0) but for a small bump."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 10)
        logits[:, 0] = 1e-4
        return logits


def _held_out(n: int, seed: int) -> list[LabeledImages]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    data = LabeledImages(images, torch.arange(n) % 10)
    return [data.subset(h) for _, h in fold_splits(data.labels, 2, seed)]


def test_slices_cover_every_fold_once_and_scores_are_exact():
    held = _held_out(101, seed=0)
    augment = config_augment(TrainConfig(cutout=16, policy="cifar10"))
    scores = list(
        density_scores(
            [ConstantClass(), ConstantClass()],
            held,
            augment,
            slices=4,
            draws=3,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert len(scores) == 4
    assert sum(s.count for s in scores) == 101
    # Each slice takes a near-equal part of each fold.
    assert max(s.count for s in scores) - min(s.count for s in scores) <= 2
    # Class 0 images are exactly the ones a constant-class-0 model gets right, whatever the draws.
    zeros = sum(int((h.labels == 0).sum()) for h in held)
    assert sum(s.correct for s in scores) == zeros
    loss = sum(s.loss_sum for s in scores) / 101
    assert math.isclose(loss, math.log(10), rel_tol=1e-3)


def test_same_seed_same_scores_and_draws_can_only_help():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    held = _held_out(200, seed=1)
    augment = config_augment(TrainConfig(policy="trivialaugment"))

    def score(draws: int, seed: int, slices: int = 2) -> list:
        return list(
            density_scores(
                [model, model][: len(held)],
                held,
                augment,
                slices=slices,
                draws=draws,
                generator=torch.Generator().manual_seed(seed),
            )
        )

    assert score(2, seed=5) == score(2, seed=5)
    assert score(2, seed=5) != score(2, seed=6)
    # Correct if any draw is. With one batch (one fold, one slice) the first of three draws is
    # the one draw of a one-draw run, so more draws can only add.
    held = held[:1]
    one, three = score(1, seed=7, slices=1), score(3, seed=7, slices=1)
    assert sum(s.correct for s in three) >= sum(s.correct for s in one)
    assert sum(s.loss_sum for s in three) <= sum(s.loss_sum for s in one) + 1e-6


def test_bad_slices_or_draws():
    with pytest.raises(ValueError, match="slices"):
        next(
            density_scores(
                [ConstantClass()],
                _held_out(10, 0)[:1],
                config_augment(TrainConfig()),
                slices=0,
                draws=1,
                generator=torch.Generator(),
            )
        )
