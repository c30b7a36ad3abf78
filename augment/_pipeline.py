"""`build_batch_augment`: the trainer's whole augmentation as one function of (batch, generator)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._checks import check_batch, check_generator, check_non_negative
from ._policy import POLICY_TYPES, AugmentPolicy, describe_policy
from ._random import cutout, random_crop, random_horizontal_flip, random_rotation


class BatchAugment:
    """Crop, flip, rotation, policy, cutout (in this order) on uint8 batches; 0 disables an op."""

    def __init__(
        self,
        *,
        crop_padding: int,
        flip: bool,
        rotation: float,
        cutout: int,
        policy: AugmentPolicy | None,
    ) -> None:
        self.crop_padding = crop_padding
        self.flip = flip
        self.rotation = rotation
        self.cutout = cutout
        self.policy = policy

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return an augmented copy of the uint8 (N, C, H, W) batch, drawing from `generator`."""
        check_batch(images)
        check_generator(generator, images.device)
        out = images
        if self.crop_padding:
            out = random_crop(out, self.crop_padding, generator)
        if self.flip:
            out = random_horizontal_flip(out, generator)
        if self.rotation:
            out = random_rotation(out, self.rotation, generator)
        if self.policy is not None:
            out = self.policy.apply(out, generator)
        if self.cutout:
            out = cutout(out, self.cutout, generator)
        return images.clone() if out is images else out

    def __repr__(self) -> str:
        policy = "None" if self.policy is None else f"<{describe_policy(self.policy)}>"
        return (
            f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip}, "
            f"rotation={self.rotation}, cutout={self.cutout}, policy={policy})"
        )


def build_batch_augment(
    *,
    crop_padding: int = 4,
    flip: bool = True,
    rotation: float = 0.0,
    cutout: int = 0,
    policy: AugmentPolicy | None = None,
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Return f(images, generator) -> augmented images: crop, flip, rotation, policy, cutout."""
    # Defaults: pad 4 and crop back, plus horizontal flips, the standard CIFAR-10 augmentation
    # (He et al. 2016, "Deep Residual Learning", Section 4.2); Cutout 16 is DeVries & Taylor's
    # CIFAR-10 setting, to be asked for explicitly.
    check_non_negative(crop_padding, "crop_padding", integer=True)
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    check_non_negative(rotation, "rotation", integer=False)
    check_non_negative(cutout, "cutout", integer=True)
    if policy is not None and not isinstance(policy, POLICY_TYPES):
        raise ValueError(
            f"policy must be a Policy, RandAugment, TrivialAugmentWide or None, got {policy!r}; "
            f"use load_policy({policy!r}) for a name or a JSON path"
        )
    return BatchAugment(
        crop_padding=int(crop_padding),
        flip=flip,
        rotation=float(rotation),
        cutout=int(cutout),
        policy=policy,
    )
