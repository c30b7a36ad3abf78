"""The training loop: the whole data set resident on the device, augmentation on whole batches.

Nothing here knows about Ray or Optuna: a search observes a run through `on_epoch_end`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from augment import Policy, build_batch_augment, load_policy
from models import create_model

from ._config import TrainConfig
from ._data import LabeledImages

# Per-channel mean and std of the CIFAR-10 training images, on the 0..1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# Augmenting this many images per call keeps kernels large without holding a float copy of
# the whole epoch.
_AUGMENT_CHUNK = 8192
_EVAL_BATCH = 1024
# Check the running loss for NaN/inf every this many steps: a check costs a device sync.
_FINITE_CHECK_EVERY = 50


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""


@dataclass(frozen=True)
class EpochStats:
    """What `on_epoch_end` receives after each epoch (losses are mean cross-entropy)."""

    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float  # 0..1, on augmented training batches
    val_loss: float | None  # None when the run has no validation set
    val_accuracy: float | None
    lr: float  # the learning rate used during this epoch
    epoch_time: float  # seconds, training and validation
    images_per_second: float  # training images per second of training time


@dataclass
class TrainResult:
    """A finished run: `model` holds the best weights when early stopping, else the last."""

    model: nn.Module
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    wall_time: float
    device: str
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


@dataclass(frozen=True)
class EvalResult:
    """Loss, accuracy (0..1), per-class accuracy and confusion matrix [true, predicted]."""

    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    count: int


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` or "auto" means CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available; use cpu or auto")
    return device


_NORMALIZERS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float, standardised per channel, channels_last on CUDA."""
    if images.device not in _NORMALIZERS:  # made once per device: no host copy per batch
        _NORMALIZERS[images.device] = (
            torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1) * 255,
            torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1) * 255,
        )
    mean, std = _NORMALIZERS[images.device]
    x = (images.float() - mean) / std
    if images.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def resolve_policy(policy: str | tuple | None) -> Policy | None:
    """The augment.Policy a config names (built-in or file) or holds inline; None for none."""
    if policy is None:
        return None
    if isinstance(policy, str):
        return load_policy(policy)
    return Policy(policy)


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The configured model on `device` (channels_last on CUDA), initialised from the seed."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.model_kwargs).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def train(
    config: TrainConfig,
    train_set: LabeledImages,
    val_set: LabeledImages | None = None,
    *,
    device: str | torch.device | None = None,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train `config.model` on `train_set`, validating on `val_set` after every epoch.

    `on_batch_end(done, total)` is called after each batch with the epoch's progress (for a
    progress bar; it costs nothing when not given).

    `checkpoint_path` gets the full state (weights, optimizer, schedule, random generators,
    history) after every epoch; with `resume=True` the run continues from it.
    """
    device = resolve_device(device)
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    if config.patience is not None and val_set is None:
        raise ValueError("early stopping (patience) needs a validation set")
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
    model = build_model(config, device)
    policy = resolve_policy(config.policy)
    augment = build_batch_augment(
        crop_padding=config.crop_padding,
        flip=config.flip,
        rotation=config.rotation,
        cutout=config.cutout,
        policy=policy,
    )
    optimizer = _build_optimizer(config, model)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = _build_scheduler(config, optimizer, steps_per_epoch)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    val_gpu = val_set.to(device) if val_set is not None else None
    step_model = torch.compile(model) if config.compile else model
    use_bf16 = device.type == "cuda"

    history: list[EpochStats] = []
    best_loss, best_epoch, best_state, bad_epochs = math.inf, 0, None, 0
    first_epoch = 1
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        history = [EpochStats(**h) for h in state["history"]]
        best_loss, best_epoch, bad_epochs = state["best_loss"], state["best_epoch"], state["bad"]
        best_state = state.get("best_model")
        first_epoch = len(history) + 1

    stopped_early = False
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        order = torch.randperm(len(labels), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        batches_done = 0
        # Chunks hold whole batches, so every batch but the epoch's last has batch_size images.
        for chunk in order.split(max(1, _AUGMENT_CHUNK // config.batch_size) * config.batch_size):
            batch_images = augment(images[chunk], generator)
            batch_labels = labels[chunk]
            for step, (x, y) in enumerate(
                zip(
                    batch_images.split(config.batch_size),
                    batch_labels.split(config.batch_size),
                    strict=True,
                )
            ):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = step_model(normalize(x))
                    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if config.schedule == "cosine":
                    scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                batches_done += 1
                if on_batch_end is not None:
                    on_batch_end(batches_done, steps_per_epoch)
                if step % _FINITE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                    raise NonFiniteLossError(
                        f"training loss became {loss_sum.item()} at epoch {epoch}"
                    )
        if config.schedule == "multistep":
            scheduler.step()
        train_loss = loss_sum.item()
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"training loss became {train_loss} at epoch {epoch}")
        train_time = time.perf_counter() - epoch_start
        val = evaluate(step_model, val_gpu, device=device) if val_gpu is not None else None
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss / len(labels),
            train_accuracy=correct.item() / len(labels),
            val_loss=val.loss if val else None,
            val_accuracy=val.accuracy if val else None,
            lr=lr,
            epoch_time=time.perf_counter() - epoch_start,
            images_per_second=len(labels) / train_time,
        )
        history.append(stats)
        if val is not None and not math.isfinite(val.loss):
            raise NonFiniteLossError(f"validation loss became {val.loss} at epoch {epoch}")
        if val is None or val.loss < best_loss:
            best_loss = val.loss if val else math.inf
            best_epoch, bad_epochs = epoch, 0
            if config.patience is not None:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if checkpoint_path is not None:
            _save_state(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "cpu_rng": torch.get_rng_state(),
                    "history": [asdict(h) for h in history],
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad": bad_epochs,
                    **({"best_model": best_state} if best_state is not None else {}),
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(stats)
        if config.patience is not None and bad_epochs >= config.patience:
            stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if not history:  # resumed from a checkpoint of a run that had already finished
        raise ValueError(f"nothing to train: the checkpoint already holds {config.epochs} epochs")
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch or len(history),
        stopped_early=stopped_early,
        wall_time=time.perf_counter() - start,
        device=str(device),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, data: LabeledImages, *, device: str | torch.device | None = None
) -> EvalResult:
    """Loss, accuracy, per-class accuracy and confusion matrix of `model` on `data`."""
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    images, labels = data.images.to(device), data.labels.to(device)
    num_classes = len(data.classes)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    for x, y in zip(images.split(_EVAL_BATCH), labels.split(_EVAL_BATCH), strict=True):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(normalize(x))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(
            y * num_classes + logits.argmax(1), minlength=num_classes * num_classes
        )
    model.train(was_training)
    matrix = confusion.view(num_classes, num_classes).cpu()
    per_class = (matrix.diag().double() / matrix.sum(1).clamp(min=1).double()).tolist()
    count = len(labels)
    return EvalResult(
        loss=loss_sum.item() / max(count, 1),
        accuracy=matrix.diag().sum().item() / max(count, 1),
        per_class_accuracy=per_class,
        confusion=matrix.tolist(),
        count=count,
    )


def _build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # Fused kernels update all parameters in one launch on CUDA; CPU keeps the default path.
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
        **fused,
    )


def _build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "multistep":  # stepped once per epoch, as the report's MultiStepLR
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.milestone_epochs(), gamma=config.gamma
        )
    if config.schedule == "cosine":  # stepped every batch, down to zero at the end of the run
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs * steps_per_epoch
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _save_state(path: str | Path, state: dict) -> None:
    """Write atomically: a run killed mid-write keeps its previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
