"""The reference report's regularized CNN (308,394 parameters): regularisation, optimiser,
schedule and augmentation. Retrained for 125 epochs, as the report trained its final model."""

from __future__ import annotations

from typing import Any

from search import Space
from training import TrainConfig

# Augmentation presets, from the report's recipe up to AutoAugment's CIFAR-10 policy + Cutout
# (Cubuk et al. 2018 used Cutout 16 with their policy; DeVries & Taylor 2017 chose 16 px).
AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    "crop_flip": {},
    "crop_flip_rotate": {"rotation": 15.0},
    "crop_flip_cutout": {"cutout": 16},
    "crop_flip_policy_cutout": {"policy": "cifar10", "cutout": 16},
}


def suggest(trial: Any) -> None:
    trial.suggest_float("p1", 0.0, 0.5)
    trial.suggest_float("p2", 0.0, 0.5)
    trial.suggest_float("p3", 0.0, 0.6)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    # Separate names because the useful ranges differ by two orders of magnitude.
    if optimizer == "adam":
        trial.suggest_float("adam_lr", 1e-4, 1e-2, log=True)
    else:
        trial.suggest_float("sgd_lr", 1e-2, 0.4, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_float("milestone1", 0.3, 0.7)
    trial.suggest_float("milestone2", 0.75, 0.95)
    trial.suggest_float("gamma", 0.05, 0.5, log=True)
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("augment", list(AUGMENT_PRESETS))


def to_config(params: dict[str, Any]) -> TrainConfig:
    optimizer = params["optimizer"]
    return TrainConfig(
        model="cnn_reg",
        model_kwargs={"dropout": (params["p1"], params["p2"], params["p3"])},
        optimizer=optimizer,
        lr=params[f"{optimizer}_lr"],
        batch_size=params["batch_size"],
        weight_decay=params["weight_decay"],
        schedule="multistep",
        milestones=(params["milestone1"], params["milestone2"]),
        gamma=params["gamma"],
        label_smoothing=params["label_smoothing"],
        **AUGMENT_PRESETS[params["augment"]],
    )


SPACE = Space(
    name="cnn_reg",
    description="cnn_reg: dropout, optimizer, lr, batch, weight decay, milestones, augmentation",
    suggest=suggest,
    to_config=to_config,
    full_epochs=125,
    max_epochs=30,
)
