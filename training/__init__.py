"""The training core: CIFAR-10 data as device-resident tensors and a fast training loop.

It imports nothing from Ray or Optuna; searches drive it through `train(..., on_epoch_end=...)`.
"""

from __future__ import annotations

from ._checkpoint import CheckpointPolicy
from ._config import (
    OPTIMIZERS,
    PRECISIONS,
    REPORT_RECIPE,
    SCHEDULES,
    TrainConfig,
    learning_rate,
    warmup_steps,
)
from ._data import (
    CIFAR10_CLASSES,
    CIFAR10_SHORT_NAMES,
    DATA_ENV,
    CifarFiles,
    DataError,
    LabeledImages,
    default_data_root,
    load_cifar10,
    locate_cifar10,
    stratified_split,
    train_val_split,
)
from ._folds import SliceScore, config_augment, density_scores, fold_splits
from ._io import (
    OutputError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    check_output_dir,
    check_output_file,
)
from ._trainer import (
    EpochStats,
    EvalResult,
    NonFiniteLossError,
    TrainResult,
    build_model,
    build_optimizer,
    cpu_has_native_bf16,
    device_name,
    effective_precision,
    evaluate,
    resolve_device,
    resolve_policy,
    resolve_precision,
    train,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_SHORT_NAMES",
    "CheckpointPolicy",
    "CifarFiles",
    "DATA_ENV",
    "DataError",
    "EpochStats",
    "EvalResult",
    "LabeledImages",
    "NonFiniteLossError",
    "OPTIMIZERS",
    "OutputError",
    "PRECISIONS",
    "SliceScore",
    "REPORT_RECIPE",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "build_model",
    "build_optimizer",
    "check_free_space",
    "check_output_dir",
    "check_output_file",
    "config_augment",
    "cpu_has_native_bf16",
    "default_data_root",
    "device_name",
    "density_scores",
    "effective_precision",
    "evaluate",
    "fold_splits",
    "learning_rate",
    "load_cifar10",
    "locate_cifar10",
    "resolve_device",
    "resolve_policy",
    "resolve_precision",
    "stratified_split",
    "train",
    "train_val_split",
    "warmup_steps",
]
