"""Batched augmentation of uint8 (N, C, H, W) batches on any device, from explicit generators."""

from __future__ import annotations

from . import functional
from ._autoaugment import MAGNITUDE_BINS, OP_NAMES
from ._pipeline import build_batch_augment
from ._policy import (
    BUILTIN_POLICIES,
    AugmentPolicy,
    Policy,
    PolicyError,
    PolicyParams,
    Step,
    load_policy,
    policy_from_json,
    policy_to_json,
    save_policy,
)
from ._randaugment import OpDraws, RandAugment, TrivialAugmentWide
from ._transform import PolicyTransform

__all__ = [
    "BUILTIN_POLICIES",
    "AugmentPolicy",
    "MAGNITUDE_BINS",
    "OP_NAMES",
    "OpDraws",
    "Policy",
    "PolicyError",
    "PolicyParams",
    "PolicyTransform",
    "RandAugment",
    "Step",
    "TrivialAugmentWide",
    "build_batch_augment",
    "functional",
    "load_policy",
    "policy_from_json",
    "policy_to_json",
    "save_policy",
]
