"""Augmentation-policy search by density matching (Fast AutoAugment, Lim et al. 2019).

Each trial samples 5 sub-policies of 2 (op, probability, magnitude) steps, as AutoAugment's
controller did (Cubuk et al. 2018), and is scored by inference only: K fold models, trained once
per study on K-1 folds of the search subset (4,000 images by default, the size AutoAugment and
Fast AutoAugment searched on) with the baseline augmentation, classify their own held-out fold
augmented by the trial's policy (search/_density.py; its docstring says how the degenerate
"do nothing" optimum is kept off). `max_epochs` is the number of slices the held-out images are
scored in: each slice is one report, so ASHA can stop a weak policy after the first.

`policy_child` (studies/policy_child.py) is the same space scored AutoAugment's way, a child
model trained per trial. `python -m search.export_policy` merges the best trials' sub-policies of
either into one CIFAR10Policy-style JSON.
"""

from __future__ import annotations

from typing import Any

from augment import MAGNITUDE_BINS, OP_NAMES
from search import Space
from training import TrainConfig

SUB_POLICIES = 5
STEPS = 2
# AutoAugment discretised probabilities into 11 values (and magnitudes into augment's bins).
PROBABILITY_BINS = 11
# Epochs of each fold model: long enough that the fold models classify their held-out fold well
# above chance (a policy's effect is invisible to a model that has not learnt the data), short
# enough to be a small share of the search at the CPU scale; `search.run --fold-epochs` changes
# it (Fast AutoAugment trained its fold models for the full schedule, on GPUs).
FOLD_EPOCHS = 20


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


def child_recipe() -> TrainConfig:
    """The child: the reference CNN with a fixed, reasonable recipe, so that only the policy
    varies between trials. Crop, flip and Cutout 16 stay around the policy, as in AutoAugment;
    without a policy this is the baseline augmentation the fold models train with."""
    return TrainConfig(
        model="cnn_reg",
        optimizer="adam",
        lr=2e-3,
        batch_size=128,
        weight_decay=5e-4,
        schedule="cosine",
        cutout=16,
        epochs=FOLD_EPOCHS,
    )


def bare_child() -> TrainConfig:
    """The child without its other regularisers: no dropout, no Cutout (crop and flip stay), so
    that the policy is the only one beyond them (bench/bench_policy_regime.py measures where
    policies pay)."""
    return child_recipe().replace(model_kwargs={"dropout": [0.0, 0.0, 0.0]}, cutout=0)


# `search.run --child-recipe NAME`; a new study takes the first unless told.
CHILDREN = {"reg": child_recipe, "bare": bare_child}


def to_config(params: dict[str, Any]) -> TrainConfig:
    # On `child_recipe` for good: a study made before children were recorded trained this.
    return child_recipe().replace(policy=sub_policies(params))


SPACE = Space(
    name="policy",
    description="AutoAugment-style policy (5 sub-policies x 2 steps of op, probability, "
    "magnitude) scored by density matching: K fold models of cnn_reg on 4,000 images classify "
    "their held-out fold under the policy (Fast AutoAugment)",
    suggest=suggest,
    to_config=to_config,
    full_epochs=125,
    max_epochs=5,  # slices of the held-out images
    train_size=4000,
    method="density",
    fold_recipe=child_recipe,
    children=CHILDREN,
)
