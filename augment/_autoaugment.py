"""AutoAugment's operations and their magnitude table, as data: `{op: (magnitudes, signed)}`.

Magnitude index i in 0..9 picks bin i of the table below. We use the table that torchvision's
`AutoAugment` (transforms/v2/_auto_augment.py, `_AUGMENTATION_SPACE`) and the widely used PIL
`CIFAR10Policy` (github.com/DeepVoltaire/AutoAugment) share; both index 10 bins with
`linspace(lo, hi, 10)`:

| op | bin 0 .. bin 9 | signed |
|---|---|---|
| ShearX, ShearY | 0 .. 0.3 (shear factor) | yes |
| TranslateX, TranslateY | 0 .. 150/331 of the width / height (int pixels) | yes |
| Rotate | 0 .. 30 degrees | yes |
| Color, Contrast, Sharpness, Brightness | enhance factor 1 +/- (0 .. 0.9) | yes |
| Posterize | round(linspace(8, 4)) = 8 8 7 7 6 6 5 5 4 4 bits | no |
| Solarize | threshold 256 .. 0 | no |
| AutoContrast, Equalize, Invert | no magnitude (the index is ignored) | no |

Signed ops take a random sign per image; geometric ops fill with grey 128 (CIFAR10Policy's
`fillcolor`) and sample with nearest-neighbour interpolation (torchvision's default).

Where this differs from the original AutoAugment code (tensorflow/models research/autoaugment,
augmentation_transforms.py, levels 0..9 scaled by PARAMETER_MAX = 10):
- Posterize: the original keeps 4 - int(4 * level / 10) bits (4 down to 1); here 8 down to 4,
  the range [4, 8] in the paper's list of operations (Cubuk et al. 2018, arXiv:1805.09501).
- Color/Contrast/Sharpness/Brightness: the original uses the unsigned factor
  0.1 + 1.8 * level / 10 (0.1 .. 1.72, level 5 is identity); here 1 +/- 0.9 * i / 9 with a random
  sign (bin 0 is identity), which spans the paper's range [0.1, 1.9] from the middle out.
- TranslateX/Y: the original shifts by int(10 * level / 10) = level pixels (at most 9 on 32-px
  images); here by up to 150/331 of the image size (14 px on CIFAR-10): the paper's range of
  150 px on 331-px ImageNet images, scaled to the image.
- Shear and Rotate reach 0.3 and 30 degrees at bin 9 (the original: 0.27 and 27).
Between the two implementations we follow: Solarize uses CIFAR10Policy's 256 .. 0 (torchvision
uses 255 .. 0, which also inverts pure white at bin 0 and differs by at most one grey level
elsewhere); shear factors are used as in both (torchvision passes atan(factor) as an angle).
TranslateX/Y truncate to whole pixels as torchvision does (CIFAR10Policy passes the fraction
to PIL, whose nearest sampling rounds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import _color, _spatial

MAGNITUDE_BINS = 10
MAGNITUDE_TABLE = "torchvision"
# Grey fill for pixels that geometric ops move in from outside, as CIFAR10Policy's fillcolor.
FILL = 128


def _linspace(lo: float, hi: float) -> tuple[float, ...]:
    # torch's float32 linspace, as torchvision builds the table: enhance bins such as 1.1 then
    # truncate x * factor to the same uint8 value as torchvision's AutoAugment when the exact
    # product is an integer.
    return tuple(torch.linspace(lo, hi, MAGNITUDE_BINS, dtype=torch.float32).tolist())


# (images, per-image values, interpolation, fill) -> images; values are already signed.
_Apply = Callable[[torch.Tensor, torch.Tensor, str, float], torch.Tensor]


@dataclass(frozen=True)
class OpSpec:
    """One AutoAugment op: its batched function and its 10 unsigned magnitudes (None: none)."""

    apply: _Apply
    magnitudes: tuple[float, ...] | None
    signed: bool


def _pixels(values: torch.Tensor, size: int) -> torch.Tensor:
    # torchvision's AutoAugment truncates translations to whole pixels (int(magnitude)).
    return torch.trunc(values * size)


OPS: dict[str, OpSpec] = {
    "ShearX": OpSpec(
        lambda x, v, mode, fill: _spatial.shear_x(x, v, interpolation=mode, fill=fill),
        _linspace(0.0, 0.3),
        True,
    ),
    "ShearY": OpSpec(
        lambda x, v, mode, fill: _spatial.shear_y(x, v, interpolation=mode, fill=fill),
        _linspace(0.0, 0.3),
        True,
    ),
    # 150 px on AutoAugment's 331 x 331 ImageNet images (paper, Table 1), as a fraction.
    "TranslateX": OpSpec(
        lambda x, v, mode, fill: _spatial.translate_x(
            x, _pixels(v, x.shape[-1]), interpolation=mode, fill=fill
        ),
        _linspace(0.0, 150.0 / 331.0),
        True,
    ),
    "TranslateY": OpSpec(
        lambda x, v, mode, fill: _spatial.translate_y(
            x, _pixels(v, x.shape[-2]), interpolation=mode, fill=fill
        ),
        _linspace(0.0, 150.0 / 331.0),
        True,
    ),
    "Rotate": OpSpec(
        lambda x, v, mode, fill: _spatial.rotate(x, v, interpolation=mode, fill=fill),
        _linspace(0.0, 30.0),
        True,
    ),
    "Color": OpSpec(
        lambda x, v, mode, fill: _color.adjust_saturation(x, 1.0 + v.double()),
        _linspace(0.0, 0.9),
        True,
    ),
    "Posterize": OpSpec(
        lambda x, v, mode, fill: _color.posterize(x, v.long()),
        tuple(float(round(b)) for b in _linspace(8.0, 4.0)),
        False,
    ),
    "Solarize": OpSpec(
        lambda x, v, mode, fill: _color.solarize(x, v), _linspace(256.0, 0.0), False
    ),
    "Contrast": OpSpec(
        lambda x, v, mode, fill: _color.adjust_contrast(x, 1.0 + v.double()),
        _linspace(0.0, 0.9),
        True,
    ),
    "Sharpness": OpSpec(
        lambda x, v, mode, fill: _color.adjust_sharpness(x, 1.0 + v.double()),
        _linspace(0.0, 0.9),
        True,
    ),
    "Brightness": OpSpec(
        lambda x, v, mode, fill: _color.adjust_brightness(x, 1.0 + v.double()),
        _linspace(0.0, 0.9),
        True,
    ),
    "AutoContrast": OpSpec(lambda x, v, mode, fill: _color.autocontrast(x), None, False),
    "Equalize": OpSpec(lambda x, v, mode, fill: _color.equalize(x), None, False),
    "Invert": OpSpec(lambda x, v, mode, fill: _color.invert(x), None, False),
}

OP_NAMES: tuple[str, ...] = tuple(OPS)

# Names are matched case-insensitively, so the lower-camel spellings of the common PIL
# CIFAR10Policy ("shearX", "translateY", "autocontrast", ...) load as well.
_BY_LOWER = {name.lower(): name for name in OP_NAMES}


def canonical_op_name(name: str) -> str | None:
    """Return the CamelCase op name for `name` (any letter case), or None if unknown."""
    return _BY_LOWER.get(name.lower()) if isinstance(name, str) else None


def magnitude_tensor(op: str, device: torch.device) -> torch.Tensor:
    """The op's 10 unsigned magnitudes as a float32 tensor (zeros for magnitude-free ops)."""
    mags = OPS[op].magnitudes or (0.0,) * MAGNITUDE_BINS
    return torch.tensor(mags, dtype=torch.float32, device=device)


def apply_by_op(
    images: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kernels: Sequence[_Apply | None],
    interpolation: str,
    fill: float,
) -> None:
    """Apply kernels[k] in place to the images whose key is k, each kernel once on its group.

    `keys` (N,) long: each image's kernel index; the key len(kernels), or a None kernel, leaves
    the image as it is. `values` (N,): each image's signed magnitude.
    """
    skip = len(kernels)
    # One host sync: the group sizes. Sorting by key puts each op's images together, so every
    # op runs once on its whole group instead of once per image. Counted by scatter_add_, not
    # bincount: on CUDA bincount syncs twice more to size its output (a min and a max).
    counts = torch.zeros(skip + 1, dtype=torch.long, device=keys.device)
    counts = counts.scatter_add_(0, keys, torch.ones_like(keys)).tolist()
    groups = torch.argsort(keys, stable=True).split(counts)
    for kernel, idx in zip(kernels, groups[:skip], strict=True):
        if kernel is None or idx.numel() == 0:
            continue
        result = kernel(images.index_select(0, idx), values[idx], interpolation, fill)
        images.index_copy_(0, idx, result)
