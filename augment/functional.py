"""Batched augmentation ops on uint8 (N, C, H, W) tensors, one pure function per op.

Pure ops take per-image parameters ((N,) tensors, or scalars applied to every image); the
`random_*` ops (and `cutout`) draw those parameters from an explicit torch.Generator on the
batch's device, using the matching `sample_*` function, and call the pure op.
"""

from __future__ import annotations

from ._color import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    invert,
    posterize,
    solarize,
)
from ._random import (
    cutout,
    random_crop,
    random_horizontal_flip,
    random_rotation,
    sample_angles,
    sample_centers,
    sample_crop_offsets,
    sample_flips,
)
from ._spatial import (
    erase_square,
    horizontal_flip,
    pad_crop,
    rotate,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
    "autocontrast",
    "cutout",
    "equalize",
    "erase_square",
    "horizontal_flip",
    "invert",
    "pad_crop",
    "posterize",
    "random_crop",
    "random_horizontal_flip",
    "random_rotation",
    "rotate",
    "sample_angles",
    "sample_centers",
    "sample_crop_offsets",
    "sample_flips",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
]
