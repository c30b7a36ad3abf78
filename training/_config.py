"""The training configuration: every knob of one run, validated before any work starts.

Also the two tables a configuration names entries of: `OPTIMIZERS` (name -> factory) and
`SCHEDULES` (name -> the schedule's shape), with `learning_rate(config, step, steps_per_epoch)`,
the rate of every training step as a pure function of the run's global step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Seeds go to torch.Generator.manual_seed, which takes a signed 64-bit integer.
SEED_LIMIT = 2**63
# Far beyond any schedule in use (Shake-Shake's 1800 epochs): a larger count is a typo, and would
# run for ever.
MAX_EPOCHS = 100_000


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
    # Linear warmup over this fraction of the run's steps, for every schedule (see
    # `learning_rate`); 0 = none. One-cycle's rise is this warmup, so it needs warmup > 0.
    warmup: float = 0.0
    # Flip test-time augmentation in validation: logits of the image and its mirror, averaged.
    tta: bool = False
    # Autocast precision: "auto" is chosen by the hardware (training.effective_precision: bf16
    # on GPUs and CPUs with native bf16, fp16 with loss scaling on Volta/Turing, else fp32);
    # "bf16" needs native bf16, "fp16" a CUDA GPU, "fp32" turns autocast off everywhere.
    precision: str = "auto"

    def __post_init__(self) -> None:
        # Checked in one fixed order: a config with several wrong values names the first one.
        self._check_optimizer()
        self._check_schedule()
        self._freeze_policy()
        self._check_regularisation()

    def _check_optimizer(self) -> None:
        """The model, the run's length and the optimizer's settings, and the seed."""
        _check(isinstance(self.model, str) and self.model, "model", self.model, "a model name")
        _check(
            1 <= self.epochs <= MAX_EPOCHS,
            "epochs",
            self.epochs,
            f"an integer in [1, {MAX_EPOCHS}]",
        )
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, _one_of(OPTIMIZERS))
        _check(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a finite positive number")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "weight_decay",
            self.weight_decay,
            "a finite number >= 0",
        )
        _check(
            isinstance(self.seed, int) and 0 <= self.seed < SEED_LIMIT,
            "seed",
            self.seed,
            "a whole number in [0, 2**63)",
        )

    def _check_schedule(self) -> None:
        """The schedule's name and milestones (kept as a tuple of floats)."""
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, _one_of(SCHEDULES))
        milestones = tuple(float(m) for m in self.milestones)
        _check(
            all(0 < m < 1 for m in milestones) and list(milestones) == sorted(milestones),
            "milestones",
            self.milestones,
            "increasing fractions of the run, each in (0, 1)",
        )
        object.__setattr__(self, "milestones", milestones)

    def _freeze_policy(self) -> None:
        if self.policy is not None and not isinstance(self.policy, str):
            # Tuples all the way down: the config stays hashable and compares equal after a
            # JSON round trip (which turns tuples into lists).
            object.__setattr__(
                self, "policy", tuple(tuple(tuple(step) for step in sub) for sub in self.policy)
            )

    def _check_regularisation(self) -> None:
        """gamma, label smoothing, augmentation, early stopping, warmup, TTA and precision."""
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
        _check(
            isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1,
            "warmup",
            self.warmup,
            "a fraction of the run in [0, 1)",
        )
        _check(
            self.schedule != "onecycle" or self.warmup > 0,
            "warmup",
            self.warmup,
            "a fraction in (0, 1) with schedule='onecycle' (its rise is the warmup)",
        )
        _check(isinstance(self.tta, bool), "tta", self.tta, "true or false")
        _check(self.precision in PRECISIONS, "precision", self.precision, _one_of(PRECISIONS))

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


def _one_of(names: Iterable[str]) -> str:
    return " or ".join(names)


# --- optimizers: name -> factory(parameters, config, extra keyword arguments) ---------------

OptimizerFactory = Callable[
    [Iterable[torch.nn.Parameter], "TrainConfig", dict], torch.optim.Optimizer
]


def _adam(
    params: Iterable[torch.nn.Parameter], c: TrainConfig, extra: dict
) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, **extra)


def _sgd(
    params: Iterable[torch.nn.Parameter], c: TrainConfig, extra: dict
) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=c.lr,
        momentum=c.momentum,
        nesterov=c.nesterov and c.momentum > 0,
        weight_decay=c.weight_decay,
        **extra,
    )


def _adamw(
    params: Iterable[torch.nn.Parameter], c: TrainConfig, extra: dict
) -> torch.optim.Optimizer:
    # Decoupled weight decay (Loshchilov & Hutter 2019): `weight_decay` shrinks the weights by
    # lr * weight_decay per step instead of adding an L2 gradient that Adam rescales away.
    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, **extra)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


# --- schedules: name -> shape(config, step, steps_per_epoch, warmup_steps) -------------------
# A shape is the multiplier of `config.lr` at a 0-based global step; `learning_rate` applies the
# warmup on top. Each shape sees the warmup's length so it can start after it.

Schedule = Callable[["TrainConfig", int, int, int], float]


def _constant(c: TrainConfig, step: int, steps_per_epoch: int, warmup_steps: int) -> float:
    return 1.0


def _multistep(c: TrainConfig, step: int, steps_per_epoch: int, warmup_steps: int) -> float:
    # The report's MultiStepLR, stepped once per epoch: during 0-based epoch e the rate has been
    # multiplied by gamma once for every milestone epoch <= e. Milestones are epochs of the whole
    # run; warmup does not move them.
    epoch = step // steps_per_epoch
    return c.gamma ** sum(1 for m in c.milestone_epochs() if m <= epoch)


def _cosine(c: TrainConfig, step: int, steps_per_epoch: int, warmup_steps: int) -> float:
    # Half a cosine from 1 at the first step after warmup to 0 at the run's end, per batch (as
    # CosineAnnealingLR with T_max = all steps when there is no warmup).
    return 0.5 * (1 + math.cos(math.pi * _after_warmup(c, step, steps_per_epoch, warmup_steps)))


def _onecycle(c: TrainConfig, step: int, steps_per_epoch: int, warmup_steps: int) -> float:
    # The anneal half of the one cycle: linear from 1 after warmup to 0 at the run's end.
    return 1 - _after_warmup(c, step, steps_per_epoch, warmup_steps)


def _after_warmup(c: TrainConfig, step: int, steps_per_epoch: int, warmup_steps: int) -> float:
    """The fraction of the steps after warmup done before `step`: 0 up to step W, then (s - W) /
    (T - W)."""
    # max(1, ...): a run whose warmup is all of it (a few steps, warmup near 1) has no step here.
    span = max(1, c.epochs * steps_per_epoch - warmup_steps)
    return max(0, step - warmup_steps) / span


SCHEDULES: dict[str, Schedule] = {
    "multistep": _multistep,
    "cosine": _cosine,
    "constant": _constant,
    "onecycle": _onecycle,
}


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of linear warmup: `config.warmup` of the run's steps, at least 1 when warmup > 0."""
    if config.warmup == 0:
        return 0
    total = config.epochs * steps_per_epoch
    return min(total, max(1, round(config.warmup * total)))


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of 0-based global step `step` (step = epoch index * steps_per_epoch +
    batch index) of a run of `config.epochs` epochs of `steps_per_epoch` batches.

    With W = `warmup_steps(config, steps_per_epoch)` steps of warmup, step s < W trains at
    `lr * (s + 1) / W` times the schedule's shape: the rate rises linearly, per batch, and step
    W - 1 (the warmup's last) is the first at the full rate. From step W on the shape alone:

    - `constant`: 1.
    - `multistep`: `gamma ** k` during epoch e (0-based), k = milestone epochs <= e; the
      milestones stay epochs of the whole run, so a milestone inside the warmup lowers the peak
      the warmup ramps to.
    - `cosine`: `(1 + cos(pi * (s - W) / (T - W))) / 2` over the T steps of the run: 1 at step W,
      towards 0 at the end; with W = 0 this is CosineAnnealingLR(T_max=T) stepped per batch.
    - `onecycle` (Smith & Topin 2019, "Super-convergence", the 1cycle policy, in airbench's
      triangular form): the warmup is the rise (so `warmup` > 0 is required), then
      `1 - (s - W) / (T - W)`: linear from the peak at step W down to `lr / (T - W)` at the last
      step, i.e. to 0 at the run's end.
    """
    w = warmup_steps(config, steps_per_epoch)
    factor = SCHEDULES[config.schedule](config, step, steps_per_epoch, w)
    if step < w:
        factor *= (step + 1) / w
    return config.lr * factor


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
