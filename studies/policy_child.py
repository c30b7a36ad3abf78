"""Augmentation-policy search scored AutoAugment's way (Cubuk et al. 2018): each trial samples
the `policy` space's 5 sub-policies x 2 steps and trains a child model (cnn_reg, the `policy`
space's recipe) on a reduced training set with that policy; its validation accuracy is the
reward. Costlier than density matching (`--space policy`), and where both were measured, the
better export: on the `bare` child on 2,000 images (crop and flip only, 60 epochs) its export
(200 trials) gained +1.9 points of test accuracy over no policy, beyond the 95 % interval of 3
paired seeds, against -0.7 to +0.6 for the density exports (bench/RESULTS.md, 2026-12-03).
`python -m search.export_policy` exports it the same way."""

from __future__ import annotations

from search import Space
from studies.policy import CHILDREN, suggest, to_config

SPACE = Space(
    name="policy_child",
    description="AutoAugment-style policy: 5 sub-policies x 2 steps of (op, probability, "
    "magnitude), each trial training a cnn_reg child on 4,000 images",
    suggest=suggest,
    to_config=to_config,
    full_epochs=125,
    max_epochs=30,
    train_size=4000,
    children=CHILDREN,
)
