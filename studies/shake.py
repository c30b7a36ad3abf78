"""Shake-Shake-26 (Gastaldi 2017): width, SGD learning rate, weight decay, batch size, schedule.
Retrained for 1800 epochs, the length behind the reference report's 96.03 %."""

from __future__ import annotations

from typing import Any

from search import Recipe, Space
from training import TrainConfig


def suggest(trial: Any) -> None:
    trial.suggest_categorical("width", [32, 64, 96])
    trial.suggest_float("lr", 0.02, 0.4, log=True)
    trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    trial.suggest_categorical("schedule", ["cosine", "multistep"])


def to_config(params: dict[str, Any]) -> TrainConfig:
    return TrainConfig(
        model=f"shake26_2x{params['width']}d",
        optimizer="sgd",
        momentum=0.9,
        nesterov=True,
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        batch_size=params["batch_size"],
        schedule=params["schedule"],
        milestones=(0.5, 0.75),
        gamma=0.1,
        cutout=16,
    )


# Shake-Shake's own recipe (Gastaldi 2017, CIFAR-10): SGD, momentum 0.9, lr 0.2, cosine decay
# without restarts, weight decay 1e-4, batch 128; 2x64d, the width the reference report trained.
# This space always trains with Nesterov momentum and Cutout 16 (to_config).
RECIPES = (
    Recipe(
        name="gastaldi2017",
        source="Shake-Shake regularization (Gastaldi 2017), CIFAR-10 training: SGD momentum "
        "0.9, lr 0.2, cosine decay without restarts, weight decay 1e-4, batch 128; width 2x64d",
        params={
            "width": 64,
            "lr": 0.2,
            "weight_decay": 1e-4,
            "batch_size": 128,
            "schedule": "cosine",
        },
    ),
)


SPACE = Space(
    name="shake",
    description="Shake-Shake-26 2xNd: width, lr, weight decay, batch size, schedule",
    suggest=suggest,
    to_config=to_config,
    full_epochs=1800,
    max_epochs=30,
    # A whole GPU per trial until its peak is measured on one (bench_train.py records
    # `peak_memory_gib`): what backward keeps of a 2x96d batch of 256 is about 12 GB in fp32
    # (counted on CPU with saved_tensors_hooks), more than a quarter of a 40 GB GPU.
    gpu_share=1.0,
    recipes=RECIPES,
)
