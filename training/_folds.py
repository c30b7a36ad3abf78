"""K-fold splits and density-matching scores: the layer work of a Fast AutoAugment search.

Fast AutoAugment (Lim et al. 2019, "Fast AutoAugment", NeurIPS) scores an augmentation policy
without training anything: models trained once on K-1 folds of the search data classify their own
held-out fold augmented by the policy, and the policy's score is how well they do. A policy that
keeps augmented images "in the density" of the training data scores high. The search side
(search/_density.py) decides when to train the fold models and how scores become trial reports;
this module only splits, augments and classifies. Nothing here knows about Ray or Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from augment import build_batch_augment

from ._config import TrainConfig
from ._data import LabeledImages
from ._trainer import normalize, resolve_device, resolve_policy, resolve_precision

# Images classified per forward pass when scoring (as evaluate's batch).
_SCORE_BATCH = 1024


def fold_splits(labels: torch.Tensor, k: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(train indices, held-out indices in a random order) of each of `k` stratified folds.

    Every image is held out by exactly one fold; each class is dealt round-robin over the folds
    after a shuffle from `seed`, so the folds' class shares differ by at most one image. The
    same labels, k and seed always give the same folds (the search driver and every Ray worker
    compute them independently).
    """
    n = int(labels.shape[0])
    if not 2 <= k <= n:
        raise ValueError(f"invalid folds={k!r}; expected a whole number in 2..{n} (the images)")
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(n, dtype=torch.long)
    offset = 0
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        # The offset carries on between classes so that small classes do not all start at fold 0.
        fold_of[members] = (torch.arange(len(members)) + offset) % k
        offset += len(members)
    # Held-out images in a random order: data sets often come sorted by class, and a density
    # search scores the held-out fold a slice at a time, each slice a fair sample of the fold.
    order = torch.randperm(n, generator=generator)
    everything = torch.arange(n)
    return [(everything[fold_of != f], order[fold_of[order] == f]) for f in range(k)]


def config_augment(config: TrainConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The training augmentation `config` describes (crop, flip, rotation, its policy, cutout)."""
    return build_batch_augment(
        crop_padding=config.crop_padding,
        flip=config.flip,
        rotation=config.rotation,
        cutout=config.cutout,
        policy=resolve_policy(config.policy),
    )


@dataclass(frozen=True)
class SliceScore:
    """One slice of the held-out images, scored: counts and summed loss over every fold."""

    count: int  # held-out images in the slice
    correct: int  # images classified correctly in at least one of the draws
    loss_sum: float  # per image, the smallest cross-entropy over the draws, summed


@torch.no_grad()
def density_scores(
    models: Sequence[nn.Module],
    held_out: Sequence[LabeledImages],
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    *,
    slices: int,
    draws: int,
    generator: torch.Generator,
    device: str | torch.device | None = None,
    precision: str = "auto",
) -> Iterator[SliceScore]:
    """Score `augment` by density matching, one slice at a time.

    `models[f]` classifies `held_out[f]` (the fold it never trained on), each image augmented
    `draws` times; as Fast AutoAugment's `eval_tta`, an image counts as correct when any draw is
    classified correctly and its loss is the smallest over the draws. Slice s takes the s-th of
    `slices` near-equal parts of every fold, so each slice sees every fold model and an early
    slice is a fair sample of the whole. All random draws come from `generator`, in a fixed
    order: the same generator state gives the same scores.
    """
    if slices < 1 or draws < 1:
        raise ValueError(f"invalid slices={slices!r} or draws={draws!r}; expected integers >= 1")
    if len(models) != len(held_out):
        raise ValueError(f"{len(models)} models for {len(held_out)} held-out folds")
    device = resolve_device(device)
    autocast = resolve_precision(precision, device)
    parts = [
        (data.images.tensor_split(slices), data.labels.tensor_split(slices)) for data in held_out
    ]
    for model in models:
        model.eval()
    for s in range(slices):
        count, correct = 0, torch.zeros((), dtype=torch.long, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for model, (images, labels) in zip(models, parts, strict=True):
            for x, y in zip(
                images[s].split(_SCORE_BATCH), labels[s].split(_SCORE_BATCH), strict=True
            ):
                x, y = x.to(device), y.to(device)
                any_correct = torch.zeros(len(y), dtype=torch.bool, device=device)
                min_loss = torch.full((len(y),), float("inf"), device=device)
                for _ in range(draws):
                    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                        logits = model(normalize(augment(x, generator))).float()
                    any_correct |= logits.argmax(1) == y
                    min_loss = torch.minimum(min_loss, F.cross_entropy(logits, y, reduction="none"))
                count += len(y)
                correct += any_correct.sum()
                loss_sum += min_loss.double().sum()
        yield SliceScore(count=count, correct=int(correct.item()), loss_sum=float(loss_sum.item()))
