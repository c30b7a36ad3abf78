"""The training loop: the whole data set resident on the device, augmentation on whole batches.

`train` sets a run up and loops over epochs; `_train_epoch` holds the training step (forward,
loss, backward, step, schedule) on one screen; `_RunState` is everything a run carries from epoch
to epoch (model, optimizer, generator, fp16's loss scaler, history, best, bad epochs, global
step) and writes and reads its own checkpoint. The learning rate is a pure function of the
global step (`training._config.learning_rate`), set in one place before each step.

`effective_precision` is the one place a precision ("auto" included) meets the hardware.

With `config.compile`, `_compile` gives the training step and validation one graph each: the
partial last training batch is dropped, validation batches are padded to one size.

Nothing here knows about Ray or Optuna: a search observes a run through `on_epoch_end`.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augment import Policy, build_batch_augment, load_policy
from models import create_model

from ._checkpoint import CheckpointPolicy
from ._config import OPTIMIZERS, PRECISIONS, TrainConfig, learning_rate
from ._data import LabeledImages
from ._io import atomic_write

# Per-channel mean and std of the CIFAR-10 training images, on the 0..1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# Augmenting this many images per call keeps kernels large without holding a float copy of
# the whole epoch.
_AUGMENT_CHUNK = 8192
_EVAL_BATCH = 1024
# torch.compile's backend. Tests swap in a cheap one: the guards, hence the recompiles, are
# dynamo's and the same under every backend.
_COMPILE_BACKEND = "inductor"
# Check the running loss for NaN/inf every this many global steps: a check costs a device sync.
_FINITE_CHECK_EVERY = 50
# /proc/cpuinfo flags of CPUs that compute in bf16 natively (x86 AVX512-BF16, Intel AMX; ARM's
# "bf16" feature). Without them autocast emulates bf16 through fp32 and is slower than fp32.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# The CPU rule of precision "auto": bf16 on a CPU with native bf16 (it trains cnn_reg about 1.8x
# as fast as fp32 on Zen 4, Zen 5 and a Xeon with AMX: bench/bench_train.py; to the same test
# accuracy, 70.27 against 69.66 % over 3 seeds on the Xeon: bench/RESULTS.md). False makes
# "auto" fp32 on every CPU; explicit bf16 stays offered where it is native either way.
CPU_AUTO_BF16 = True
# The autocast dtype of each precision a run can have (None: autocast off, plain fp32).
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


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
    lr: float  # the learning rate of the epoch's first step
    epoch_time: float  # seconds, training and validation
    images_per_second: float  # training images per second of training time
    val_tta: bool = False  # val_loss and val_accuracy are of flip test-time augmentation


@dataclass
class TrainResult:
    """A finished run: `model` holds the best weights when early stopping, else the last."""

    model: nn.Module
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    wall_time: float
    device: str
    precision: str  # what ran: "fp32", "bf16" or "fp16" (effective_precision of the config's)
    extra: dict = field(default_factory=dict)
    # Training images left out of every epoch: compiled, the partial last batch is dropped.
    images_dropped_per_epoch: int = 0

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


@dataclass(frozen=True)
class EvalResult:
    """Loss, accuracy (0..1), per-class accuracy and confusion matrix [true, predicted]; `tta`
    says whether they are of flip test-time augmentation (see `evaluate`)."""

    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    count: int
    tta: bool = False


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` or "auto" means CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    asked = str(device)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"invalid device {asked!r}; expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device} requested but this machine has {torch.cuda.device_count()} GPU(s); "
            "expected cuda:0 to cuda:N-1, or auto"
        )
    return device


def device_name(device: torch.device) -> str:
    """What a run records as its device: the GPU's name, or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine_name(device: torch.device) -> str:
    """What a benchmark or a comparison records as its machine: the GPU's name on a CUDA device,
    else the CPU's model (with its family and model numbers, which tell CPU generations apart)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU model name (with family/model numbers) from /proc/cpuinfo, else from platform."""
    import platform

    try:
        fields: dict[str, str] = {}
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return (
                f"{fields['model name']} (family {fields.get('cpu family', '?')}, "
                f"model {fields.get('model', '?')})"
            )
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX flags in /proc/cpuinfo)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return not _NATIVE_BF16_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    except OSError:  # not Linux: no way to tell, so no bf16 on the CPU
        pass
    return False


def effective_precision(precision: str, device: torch.device) -> str:
    """What `precision` (training.PRECISIONS) runs as on `device`: "fp32", "bf16" or "fp16".

    "auto" on CUDA: bf16 from compute capability 8.0 (Ampere, Hopper and later), fp16 with loss
    scaling on 7.x (Volta, Turing: fp16 tensor cores, no native bf16), fp32 below (Pascal and
    older). On CPU: bf16 where the CPU has native bf16 and `CPU_AUTO_BF16` is on, else fp32.
    A precision the device has no native support for is refused (emulated bf16 is slower than
    fp32); fp16 is for CUDA only (loss scaling is part of it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"invalid precision={precision!r}; expected {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        return _cuda_precision(precision, device)
    if device.type != "cpu":  # no rule for other devices: autocast off unless asked for
        return "fp32" if precision == "auto" else precision
    native = cpu_has_native_bf16()
    if precision == "auto":
        return "bf16" if native and CPU_AUTO_BF16 else "fp32"
    if precision == "fp16":
        raise ValueError(
            "invalid precision='fp16'; fp16 (with loss scaling) runs on CUDA GPUs only: expected "
            + ("auto, fp32 or bf16" if native else "auto or fp32")
            + " on the CPU"
        )
    if precision == "bf16" and not native:
        raise ValueError(
            "invalid precision='bf16'; this CPU has no native bf16 (no avx512_bf16 or amx_bf16 "
            "in /proc/cpuinfo): expected fp32 or auto"
        )
    return precision


def _cuda_precision(precision: str, device: torch.device) -> str:
    """`effective_precision` on a CUDA device, from its compute capability. Not
    `torch.cuda.is_bf16_supported()`: it also counts bf16 emulated on GPUs without it."""
    major, minor = torch.cuda.get_device_capability(device)
    if precision == "auto":
        return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"
    if precision == "bf16" and major < 8:
        raise ValueError(
            f"invalid precision='bf16'; {torch.cuda.get_device_name(device)} (compute capability "
            f"{major}.{minor}) has no native bf16, which needs 8.0 or later: expected fp16, fp32 "
            "or auto"
        )
    return precision


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `precision` runs with on `device` (see `effective_precision`); None
    means autocast off, plain fp32."""
    return _AUTOCAST_DTYPES[effective_precision(precision, device)]


_NORMALIZERS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float, standardised per channel, channels_last (see build_model)."""
    if images.device not in _NORMALIZERS:  # made once per device: no host copy per batch
        _NORMALIZERS[images.device] = (
            torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1) * 255,
            torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1) * 255,
        )
    mean, std = _NORMALIZERS[images.device]
    return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)


def resolve_policy(policy: str | tuple | None) -> Policy | None:
    """The augment.Policy a config names (built-in or file) or holds inline; None for none."""
    if policy is None:
        return None
    if isinstance(policy, str):
        return load_policy(policy)
    return Policy(policy)


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The configured model on `device`, channels_last, initialised from the seed.

    channels_last on every device: on CUDA for its tensor-core convolutions, and on CPU because
    oneDNN's convolutions are faster in it too (measured on a 2-core AVX512-BF16 EPYC, cnn_reg,
    training epoch: 1.19x in fp32, 1.27x in bf16; bench/RESULTS.md)."""
    torch.manual_seed(config.seed)
    return create_model(config.model, **config.model_kwargs).to(
        device, memory_format=torch.channels_last
    )


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
    checkpoint_policy: CheckpointPolicy | None = None,
    on_resume: Callable[[list[EpochStats]], None] | None = None,
) -> TrainResult:
    """Train `config.model` on `train_set`, validating on `val_set` after every epoch.

    `on_batch_end(done, total)` is called after each batch with the epoch's progress (for a
    progress bar; it costs nothing when not given).

    `checkpoint_path` gets the full state (weights, optimizer, random generators, history, global
    step, and the configuration) after the epochs `checkpoint_policy` says are due (None:
    `CheckpointPolicy()`, after every epoch, the last included); each save is timed, for the
    policy's budget. With `resume=True` the run continues from that file, when there is one,
    exactly as if it had not stopped after the epoch saved last; a file that is not such a
    checkpoint, or one saved by a run of another configuration, is a ValueError.
    `on_resume(history)` is called once, right after a resume, with the restored epochs' stats
    in order, before training continues (a search replays them as the run's earlier results).
    """
    device = resolve_device(device)
    _check_trainable(config, train_set, val_set)
    precision = effective_precision(config.precision, device)
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
    model = build_model(config, device)
    augment = _batch_augment(config)
    run = _new_run_state(config, model, device, precision)
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        run.load(checkpoint_path, device)
        if on_resume is not None:
            on_resume(list(run.history))
    setup = _epoch_setup(config, model, augment, train_set, val_set, device, precision)

    saver = _Saver(checkpoint_path, checkpoint_policy or CheckpointPolicy(), config.epochs)
    stopped_early = False
    for epoch in range(run.epochs_done + 1, config.epochs + 1):
        run.end_epoch(_train_and_validate(run, setup, epoch, on_batch_end))
        saver.after_epoch(run, epoch)
        if on_epoch_end is not None:
            on_epoch_end(run.history[-1])
        if run.patience_exhausted():
            stopped_early = True
            break
    return _finish(run, setup, stopped_early, start)


@dataclass
class _Saver:
    """Writes a run's checkpoint after the epochs `policy` says are due, timing each save for it."""

    path: str | Path | None
    policy: CheckpointPolicy
    last_epoch: int
    # When the last save ended (at first: when training started), and how long it took.
    saved_at: float = field(default_factory=time.perf_counter)
    cost: float = 0.0

    def after_epoch(self, run: _RunState, epoch: int) -> None:
        if self.path is None:
            return
        since = time.perf_counter() - self.saved_at
        if not self.policy.due(epoch, self.last_epoch, since, self.cost):
            return
        start = time.perf_counter()
        run.save(self.path)
        self.saved_at = time.perf_counter()
        self.cost = self.saved_at - start


def _check_trainable(
    config: TrainConfig, train_set: LabeledImages, val_set: LabeledImages | None
) -> None:
    """ValueError when `config` cannot train on these sets."""
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    if config.patience is not None and val_set is None:
        raise ValueError("early stopping (patience) needs a validation set")
    if config.compile and len(train_set) < config.batch_size:
        raise ValueError(
            f"invalid batch_size={config.batch_size} with compile (which drops the partial last "
            f"batch); expected at most the {len(train_set)} training images"
        )


def _batch_augment(config: TrainConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The configured augmentation of a training batch."""
    return build_batch_augment(
        crop_padding=config.crop_padding,
        flip=config.flip,
        rotation=config.rotation,
        cutout=config.cutout,
        policy=resolve_policy(config.policy),
    )


def _new_run_state(
    config: TrainConfig, model: nn.Module, device: torch.device, precision: str
) -> _RunState:
    """A run's state before its first epoch: the optimizer, the seeded generator, the scaler."""
    return _RunState(
        config=config,
        model=model,
        optimizer=build_optimizer(config, model),
        generator=torch.Generator(device=device).manual_seed(config.seed),
        # fp16 needs loss scaling (its gradients underflow); disabled, the scaler passes through.
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
    )


@dataclass(frozen=True)
class _EpochSetup:
    """What every epoch of a run trains and validates with, fixed when the run starts."""

    images: torch.Tensor  # the training set, on the device
    labels: torch.Tensor
    val_data: LabeledImages | None  # the validation set, on the device
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    step_model: nn.Module  # the model the training step runs (compiled with config.compile)
    eval_model: nn.Module  # the model validation runs
    steps_per_epoch: int
    trained: int  # training images per epoch
    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16"


def _epoch_setup(
    config: TrainConfig,
    model: nn.Module,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    train_set: LabeledImages,
    val_set: LabeledImages | None,
    device: torch.device,
    precision: str,
) -> _EpochSetup:
    """The data on the device, the models compiled when asked, and the epoch's length."""
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    val_data = val_set.to(device) if val_set is not None else None
    step_model, eval_model = _compile(model, val_set) if config.compile else (model, model)
    # Compiled, every training batch is full, so one graph serves the whole run: the partial last
    # batch is dropped (each epoch's fresh order drops other images). Padding it instead would
    # need a masked loss and would still feed the padding into BatchNorm's batch statistics.
    trained = len(labels) - len(labels) % config.batch_size if config.compile else len(labels)
    return _EpochSetup(
        images=images,
        labels=labels,
        val_data=val_data,
        augment=augment,
        step_model=step_model,
        eval_model=eval_model,
        steps_per_epoch=math.ceil(trained / config.batch_size),
        trained=trained,
        device=device,
        precision=precision,
    )


def _train_and_validate(
    run: _RunState,
    setup: _EpochSetup,
    epoch: int,
    on_batch_end: Callable[[int, int], None] | None,
) -> EpochStats:
    """Epoch `epoch`: one pass of training, then validation when the run has a validation set."""
    config = run.config
    epoch_start = time.perf_counter()
    lr = learning_rate(config, run.step, setup.steps_per_epoch)
    loss_sum, correct = _train_epoch(
        run,
        setup.step_model,
        setup.images,
        setup.labels,
        setup.augment,
        setup.steps_per_epoch,
        _AUTOCAST_DTYPES[setup.precision],
        on_batch_end,
    )
    train_loss = _finite(loss_sum.item(), "training", epoch) / setup.trained
    train_time = time.perf_counter() - epoch_start
    val = None
    if setup.val_data is not None:
        val = evaluate(
            setup.eval_model,
            setup.val_data,
            device=setup.device,
            tta=config.tta,
            precision=setup.precision,
        )
        _finite(val.loss, "validation", epoch)
    return EpochStats(
        epoch=epoch,
        train_loss=train_loss,
        train_accuracy=correct.item() / setup.trained,
        val_loss=val.loss if val else None,
        val_accuracy=val.accuracy if val else None,
        lr=lr,
        epoch_time=time.perf_counter() - epoch_start,
        images_per_second=setup.trained / train_time,
        val_tta=val is not None and val.tta,
    )


def _finish(run: _RunState, setup: _EpochSetup, stopped_early: bool, start: float) -> TrainResult:
    """The run's result, its model holding the best weights when early stopping kept them."""
    if run.best_weights is not None:
        run.model.load_state_dict(run.best_weights)
    if not run.history:  # resumed from a checkpoint of a run that had already finished
        raise ValueError(
            f"nothing to train: the checkpoint already holds {run.config.epochs} epochs"
        )
    return TrainResult(
        model=run.model,
        history=run.history,
        best_epoch=run.best_epoch or len(run.history),
        stopped_early=stopped_early,
        wall_time=time.perf_counter() - start,
        device=str(setup.device),
        images_dropped_per_epoch=len(setup.labels) - setup.trained,
        precision=setup.precision,
    )


def _compile(model: nn.Module, val_set: LabeledImages | None) -> tuple[nn.Module, nn.Module]:
    """`model` compiled for the training step, and a module that evaluates it through its own
    compiled function, on batches padded to min(_EVAL_BATCH, validation images) (`_PaddedEval`).

    Two code objects, so each keeps its one graph: one compiled model serving both would recompile
    on the grad-mode and training-flag guards. dynamic=False: no shape ever changes (full training
    batches, padded evaluation batches), so nothing is traced with symbolic sizes."""
    compile = functools.partial(torch.compile, dynamic=False, backend=_COMPILE_BACKEND)
    eval_size = min(_EVAL_BATCH, len(val_set)) if val_set is not None else _EVAL_BATCH
    return compile(model), _PaddedEval(model, eval_size, compile(_logits))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`model(x)`, as a function of its own: what `_compile` compiles for evaluation."""
    return model(x)


class _PaddedEval(nn.Module):
    """`model` for `evaluate`, run through `logits(model, x)` on batches of exactly `size` images.

    A smaller batch (the last) is padded with zeros and the padding's logits dropped, so a
    compiled `logits` sees one shape; as eval mode scores every image on its own, the logits and
    counts are those of the unpadded batch."""

    def __init__(
        self,
        model: nn.Module,
        size: int,
        logits: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _logits,
    ) -> None:
        super().__init__()
        self.model, self.size, self.logits = model, size, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if n < self.size:
            x = torch.cat([x, x.new_zeros(self.size - n, *x.shape[1:])])
        # TTA's mirrored batch and the padded one keep channels_last strides: no stride guard fails.
        return self.logits(self.model, x.contiguous(memory_format=torch.channels_last))[:n]


def _train_epoch(
    run: _RunState,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    steps_per_epoch: int,
    autocast: torch.dtype | None,
    on_batch_end: Callable[[int, int], None] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the training set, advancing `run.step` by one per batch. Returns the summed
    loss and the number of correct predictions, as device tensors (no sync per step)."""
    config, optimizer, scaler, device = run.config, run.optimizer, run.scaler, images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    batches = _shuffled_batches(
        images, labels, augment, config.batch_size, steps_per_epoch, run.generator
    )
    for done, (x, y) in enumerate(batches, 1):
        for group in optimizer.param_groups:  # the one place the learning rate is set
            group["lr"] = learning_rate(config, run.step, steps_per_epoch)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(normalize(x))
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # the scaler is a no-op unless fp16
        scaler.step(optimizer)
        scaler.update()
        run.step += 1
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        if run.step % _FINITE_CHECK_EVERY == 0:
            _finite(loss_sum.item(), "training", run.epochs_done + 1)
        if on_batch_end is not None:
            on_batch_end(done, steps_per_epoch)
    return loss_sum, correct


def _shuffled_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    batch_size: int,
    steps: int,
    generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's first `steps` augmented batches in a fresh random order, augmented a chunk at
    a time (`steps` short of covering every image drops the rest of the order)."""
    order = torch.randperm(len(labels), device=labels.device, generator=generator)
    order = order[: steps * batch_size]
    # Chunks hold whole batches, so every batch but the epoch's last has batch_size images.
    for chunk in order.split(max(1, _AUGMENT_CHUNK // batch_size) * batch_size):
        yield from zip(
            augment(images[chunk], generator).split(batch_size),
            labels[chunk].split(batch_size),
            strict=True,
        )


def _finite(value: float, what: str, epoch: int) -> float:
    """`value`, after checking it is a number: a NaN or infinite loss ends the run."""
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} loss became {value} at epoch {epoch}")
    return value


@dataclass
class _RunState:
    """What a run carries from epoch to epoch; `save` and `load` are its checkpoint.

    `step` is the global step: batches trained since the run began (the schedule's clock).
    `best_weights` is kept only with early stopping (patience), to be restored at the end.
    """

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    scaler: torch.amp.GradScaler
    history: list[EpochStats] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_weights: dict | None = None
    step: int = 0

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def end_epoch(self, stats: EpochStats) -> None:
        """Record an epoch: its stats, the best validation loss so far and epochs without one."""
        self.history.append(stats)
        if stats.val_loss is None or stats.val_loss < self.best_loss:
            self.best_loss = stats.val_loss if stats.val_loss is not None else math.inf
            self.best_epoch, self.bad_epochs = stats.epoch, 0
            if self.config.patience is not None:
                self.best_weights = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1

    def patience_exhausted(self) -> bool:
        """Early stopping: `patience` epochs in a row without a better validation loss."""
        return self.config.patience is not None and self.bad_epochs >= self.config.patience

    def save(self, path: str | Path) -> None:
        """The full state, atomically: a run killed mid-write keeps its previous checkpoint."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            # Dropout draws from the global generators, not from `generator`.
            "cpu_rng": torch.get_rng_state(),
            "history": [asdict(h) for h in self.history],
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad": self.bad_epochs,
            "step": self.step,
            "config": _plain_config(self.config),
        }
        if self.best_weights is not None:
            state["best_model"] = self.best_weights
        if self.scaler.is_enabled():  # fp16's loss scale and its growth count
            state["scaler"] = self.scaler.state_dict()
        device = self.generator.device
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | Path, device: torch.device) -> None:
        """Continue from the state `save` wrote (of this version of the trainer) for a run of
        this configuration; ValueError, naming the file, for anything else (a truncated or
        foreign file, or a checkpoint of another configuration or with none stored)."""
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            stored = state.get("config")
        except Exception as exc:
            raise _refusal(path, type(exc).__name__) from None
        if stored != _plain_config(self.config):
            why = _config_differences(stored, self.config)
            raise _refusal(path, f"a checkpoint from another configuration: {why}", "it")
        try:
            self._restore(state, device)
        except Exception as exc:
            raise _refusal(path, type(exc).__name__) from None

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        if "cuda_rng" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        self.history = [EpochStats(**h) for h in state["history"]]
        self.best_loss, self.best_epoch = state["best_loss"], state["best_epoch"]
        self.bad_epochs, self.step = state["bad"], state["step"]
        self.best_weights = state.get("best_model")
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


class CheckpointError(ValueError):
    """A file a run cannot continue from: not a checkpoint of this trainer, or one saved by a
    run of another configuration. The message names the file and why."""


def _refusal(path: str | Path, why: str, run: str = "this trainer") -> CheckpointError:
    """The one error of a file `_RunState.load` cannot continue from."""
    return CheckpointError(
        f"cannot resume from {path} ({why}); expected the checkpoint an interrupted run of "
        f"{run} saved"
    )


def _plain_config(config: TrainConfig) -> dict[str, Any]:
    """`config` as a checkpoint stores it: JSON's types only (lists, not tuples), so that
    `torch.load(weights_only=True)` reads it and a stored one compares equal to a run's."""
    return json.loads(json.dumps(config.to_dict()))


def _config_differences(stored: Any, config: TrainConfig) -> str:
    """What a checkpoint's stored configuration has that `config` has not, in a few words."""
    if not isinstance(stored, dict):
        return "it holds none, as checkpoints before configurations were stored"
    ours = _plain_config(config)
    names = sorted(
        map(str, {k for k in stored.keys() | ours.keys() if stored.get(k) != ours.get(k)})
    )
    return f"its {', '.join(names)} differ" + ("s" if len(names) == 1 else "")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: LabeledImages,
    *,
    device: str | torch.device | None = None,
    tta: bool = False,
    precision: str = "auto",
) -> EvalResult:
    """Loss, accuracy, per-class accuracy and confusion matrix of `model` on `data`.

    `tta=True` is flip test-time augmentation: the model's logits for each image and for its
    horizontal mirror are averaged, and loss and predictions come from that mean. Logits rather
    than softmax probabilities: the loss stays the cross-entropy of one set of logits, as without
    TTA, and it is what airbench does; the two means rarely disagree on the predicted class.
    `precision` is the autocast setting, as `TrainConfig.precision`: evaluate a trained model
    with the precision it ran (`TrainResult.precision`), so that it is tested as it trained.
    """
    device = resolve_device(device)
    autocast = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    images, labels = data.images.to(device), data.labels.to(device)
    num_classes = len(data.classes)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    for x, y in zip(images.split(_EVAL_BATCH), labels.split(_EVAL_BATCH), strict=True):
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            x = normalize(x)
            logits = model(x)
            if tta:
                logits = (logits.float() + model(x.flip(-1)).float()) / 2
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
        tta=tta,
    )


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer (`OPTIMIZERS[config.optimizer]`) over `model`'s parameters."""
    # Fused kernels update all parameters in one launch on CUDA; CPU keeps the default path.
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return OPTIMIZERS[config.optimizer](model.parameters(), config, fused)
