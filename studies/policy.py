"""Augmentation-policy search: each trial samples 5 sub-policies of 2 (op, probability, magnitude)
steps, as AutoAugment's controller did per child model (Cubuk et al. 2018), and trains a child
model on a reduced training set (4,000 images by default, the size AutoAugment and Fast
AutoAugment searched on). `python -m search.export_policy` merges the best trials' sub-policies
into one CIFAR10Policy-style JSON."""

from __future__ import annotations

from typing import Any

from augment import MAGNITUDE_BINS, OP_NAMES
from search import Space
from training import TrainConfig

SUB_POLICIES = 5
STEPS = 2
# AutoAugment discretised probabilities into 11 values (and magnitudes into augment's bins).
PROBABILITY_BINS = 11


def suggest(trial: Any) -> None:
    for i in range(SUB_POLICIES):
        for j in range(STEPS):
            trial.suggest_categorical(f"sp{i}_s{j}_op", list(OP_NAMES))
            trial.suggest_int(f"sp{i}_s{j}_prob", 0, PROBABILITY_BINS - 1)
            trial.suggest_int(f"sp{i}_s{j}_mag", 0, MAGNITUDE_BINS - 1)


def sub_policies(params: dict[str, Any]) -> list[list[list[Any]]]:
    """The trial's sub-policies as [[[op, probability, magnitude], ...], ...]."""

    def step(i: int, j: int) -> list[Any]:
        probability = round(params[f"sp{i}_s{j}_prob"] / (PROBABILITY_BINS - 1), 1)
        return [params[f"sp{i}_s{j}_op"], probability, int(params[f"sp{i}_s{j}_mag"])]

    return [[step(i, j) for j in range(STEPS)] for i in range(SUB_POLICIES)]


def to_config(params: dict[str, Any]) -> TrainConfig:
    # The child: the reference CNN with a fixed, reasonable recipe, so that only the policy
    # varies between trials. Crop, flip and Cutout stay around the policy, as in AutoAugment.
    return TrainConfig(
        model="cnn_reg",
        optimizer="adam",
        lr=2e-3,
        batch_size=128,
        weight_decay=5e-4,
        schedule="cosine",
        cutout=16,
        policy=sub_policies(params),
    )


SPACE = Space(
    name="policy",
    description="AutoAugment-style policy: 5 sub-policies x 2 steps of (op, probability, "
    "magnitude) on a cnn_reg child trained on 4,000 images",
    suggest=suggest,
    to_config=to_config,
    full_epochs=125,
    max_epochs=30,
    train_size=4000,
)
