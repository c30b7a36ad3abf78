"""The training configuration: every knob of one run, validated before any work starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("multistep", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Milestones are fractions of `epochs`, so a configuration keeps its
    schedule's shape when retrained at another length (0.6, 0.8 of 125 epochs = epochs 75, 100)."""

    model: str = "cnn_reg"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 0.0
    schedule: str = "multistep"
    milestones: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.5
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    rotation: float = 0.0  # maximum degrees either way
    cutout: int = 0  # side of the square, pixels; 0 = off
    # AutoAugment policy: a name ("cifar10"), a policy JSON path, or the sub-policies inline as
    # [[[op, probability, magnitude], [op, probability, magnitude]], ...] (what a policy
    # search's trials carry).
    policy: str | tuple | None = None
    patience: int | None = None  # early stopping on validation loss; None = off
    seed: int = 0
    compile: bool = False  # torch.compile the model (CUDA only)

    def __post_init__(self) -> None:
        _check(isinstance(self.model, str) and self.model, "model", self.model, "a model name")
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, " or ".join(OPTIMIZERS))
        _check(self.lr > 0, "lr", self.lr, "a positive number")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, " or ".join(SCHEDULES))
        milestones = tuple(float(m) for m in self.milestones)
        _check(
            all(0 < m < 1 for m in milestones) and list(milestones) == sorted(milestones),
            "milestones",
            self.milestones,
            "increasing fractions of the run, each in (0, 1)",
        )
        object.__setattr__(self, "milestones", milestones)
        if self.policy is not None and not isinstance(self.policy, str):
            # Tuples all the way down: the config stays hashable and compares equal after a
            # JSON round trip (which turns tuples into lists).
            object.__setattr__(
                self, "policy", tuple(tuple(tuple(step) for step in sub) for sub in self.policy)
            )
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _check(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            self.label_smoothing,
            "a number in [0, 1)",
        )
        _check(self.crop_padding >= 0, "crop_padding", self.crop_padding, "an integer >= 0")
        _check(0 <= self.rotation <= 180, "rotation", self.rotation, "degrees in [0, 180]")
        _check(0 <= self.cutout <= 32, "cutout", self.cutout, "pixels in [0, 32]")
        _check(
            self.patience is None or self.patience >= 1,
            "patience",
            self.patience,
            "an integer >= 1 or None",
        )

    def milestone_epochs(self) -> list[int]:
        """The epochs (1-based boundaries) at which MultiStepLR multiplies the rate by gamma."""
        return sorted({max(1, round(m * self.epochs)) for m in self.milestones})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        values = dataclasses.asdict(self)
        values["milestones"] = list(self.milestones)
        if isinstance(self.policy, tuple):
            values["policy"] = [[list(step) for step in sub] for sub in self.policy]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown training option(s) {', '.join(unknown)}; expected some of "
                + ", ".join(sorted(known))
            )
        values = dict(values)
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"invalid {name}={value!r}; expected {expected}")


# The reference report's final recipe: Adam 1e-3, batch 32, 125 epochs, LR halved at epochs 75
# and 100, crop + flip + rotation(15), dropout 0.2/0.3/0.4.
REPORT_RECIPE = TrainConfig(
    model="cnn_reg",
    model_kwargs={"dropout": (0.2, 0.3, 0.4)},
    epochs=125,
    batch_size=32,
    optimizer="adam",
    lr=1e-3,
    schedule="multistep",
    milestones=(0.6, 0.8),
    gamma=0.5,
    crop_padding=4,
    flip=True,
    rotation=15.0,
)
