"""RandAugment and TrivialAugmentWide as torchvision defines them, batched, from a generator.

Both draw ops uniformly per image from a list of 14 (Identity and 13 image ops; no Invert) and
apply each drawn op to every image that drew it at once. Magnitudes come from 31 bins
(torchvision's `num_magnitude_bins=31`), as data: `{op: (magnitudes(bins, height, width), signed)}`
copied from torchvision 0.29's transforms/autoaugment.py (v1) and v2/_auto_augment.py, in the same
op order (so op index k is torchvision's op k).

- RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation with a
  reduced search space", arXiv:1909.13719): each image draws N ops uniformly with replacement and
  applies them in order, all at magnitude bin M; defaults N=2, M=9 as torchvision.
- TrivialAugmentWide (Muller & Hutter 2021, "TrivialAugment: Tuning-free Yet State-of-the-Art
  Data Augmentation", arXiv:2103.10158, the "wide" space): each image draws one op and one bin,
  both uniformly.

| op | RandAugment bins 0..30 | TrivialAugmentWide bins 0..30 | sign |
|---|---|---|---|
| Identity, AutoContrast, Equalize | none | none | no |
| ShearX, ShearY | factor 0 .. 0.3 | factor 0 .. 0.99 | yes |
| TranslateX, TranslateY | 0 .. 150/331 of width / height px | 0 .. 32 px | yes |
| Rotate | 0 .. 30 degrees | 0 .. 135 degrees | yes |
| Brightness, Color, Contrast, Sharpness | factor 1 +/- (0 .. 0.9) | 1 +/- (0 .. 0.99) | yes |
| Posterize | 8 - round(i / 7.5) bits (8 .. 4) | 8 - round(i / 5) bits (8 .. 2) | no |
| Solarize | threshold 255 * linspace(1, 0) | threshold 255 * linspace(1, 0) | no |

Translations are truncated to whole pixels (torchvision's `int(magnitude)`), geometric ops sample
nearest and fill with 0 (torchvision's `fill=None` on tensors and PIL images alike), a signed op
takes a random sign per image (probability 1/2). The kernels are the AutoAugment ones of
`_autoaugment.OPS`, bit-exact against torchvision per image on CPU except AutoContrast, which
computes the exact integer stretch (torchvision's kernel is one level low on ~1 % of values).

Where this differs from torchvision:
- Random streams: torchvision draws from torch's global RNG, per image, in the order op, bin,
  sign, skipping draws an op does not need; here every image draws all of them from an explicit
  generator, as whole tensors. The distribution is the same; the streams are not.
- Solarize thresholds follow transforms.v2 (`255 * linspace(1, 0, 31)`), so that a batch equals
  v2's `RandAugment` / `TrivialAugmentWide` image by image on CPU. The v1 classes
  (transforms.RandAugment, transforms.TrivialAugmentWide) use `linspace(255, 0, 31)`, which is
  exactly 119, 102 and 51 at bins 16, 18 and 24 where v2's lie just above, so v1 also inverts
  pixels equal to those thresholds; v1's colour kernels also round Color and Sharpness blends one
  grey level differently on about 0.1 % of values.
- The number of bins is fixed at torchvision's default 31 (M in 0..30); torchvision lets
  `num_magnitude_bins` vary.
- RandAugment's N is limited to 1..14; torchvision accepts any N >= 0.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _spatial
from ._autoaugment import OPS, _Apply, apply_by_op
from ._checks import (
    PolicyError,
    check_batch,
    check_color_batch,
    check_generator,
    check_interpolation,
)

MAGNITUDE_BINS = 31  # torchvision's num_magnitude_bins default for both
# Pixels moved in from outside the image: torchvision's default fill=None, black.
FILL = 0

# (bins, height, width) -> the unsigned magnitudes of the bins, or None for magnitude-free ops.
_Magnitudes = Callable[[int, int, int], torch.Tensor] | None


def _solarize_thresholds(bins: int) -> torch.Tensor:
    # transforms.v2: bound * magnitude, a float64 product of 255 and a float32 linspace value,
    # compared with uint8 pixels in float32 (v1's linspace(255, 0) differs: see the docstring).
    return (255.0 * torch.linspace(1.0, 0.0, bins).double()).float()


def _posterize_bits(bins: int, lowest: int) -> torch.Tensor:
    # torchvision: 8 - (arange(bins) / ((bins - 1) / (8 - lowest))).round().int()
    return (8 - (torch.arange(bins) / ((bins - 1) / (8 - lowest))).round().int()).float()


RANDAUGMENT_SPACE: dict[str, tuple[_Magnitudes, bool]] = {
    "Identity": (None, False),
    "ShearX": (lambda b, h, w: torch.linspace(0.0, 0.3, b), True),
    "ShearY": (lambda b, h, w: torch.linspace(0.0, 0.3, b), True),
    # 150 px of AutoAugment's 331-px ImageNet images, scaled to the image.
    "TranslateX": (lambda b, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, b), True),
    "TranslateY": (lambda b, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, b), True),
    "Rotate": (lambda b, h, w: torch.linspace(0.0, 30.0, b), True),
    "Brightness": (lambda b, h, w: torch.linspace(0.0, 0.9, b), True),
    "Color": (lambda b, h, w: torch.linspace(0.0, 0.9, b), True),
    "Contrast": (lambda b, h, w: torch.linspace(0.0, 0.9, b), True),
    "Sharpness": (lambda b, h, w: torch.linspace(0.0, 0.9, b), True),
    "Posterize": (lambda b, h, w: _posterize_bits(b, 4), False),
    "Solarize": (lambda b, h, w: _solarize_thresholds(b), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}

TRIVIALAUGMENT_WIDE_SPACE: dict[str, tuple[_Magnitudes, bool]] = {
    "Identity": (None, False),
    "ShearX": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    "ShearY": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    # Whole pixels whatever the image size (32 px: all of a CIFAR-10 image).
    "TranslateX": (lambda b, h, w: torch.linspace(0.0, 32.0, b), True),
    "TranslateY": (lambda b, h, w: torch.linspace(0.0, 32.0, b), True),
    "Rotate": (lambda b, h, w: torch.linspace(0.0, 135.0, b), True),
    "Brightness": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    "Color": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    "Contrast": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    "Sharpness": (lambda b, h, w: torch.linspace(0.0, 0.99, b), True),
    "Posterize": (lambda b, h, w: _posterize_bits(b, 2), False),
    "Solarize": (lambda b, h, w: _solarize_thresholds(b), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}

SPACES = {"randaugment": RANDAUGMENT_SPACE, "trivialaugment": TRIVIALAUGMENT_WIDE_SPACE}


def _translate(axis: str) -> _Apply:
    # Here the magnitudes are pixels already; torchvision truncates them with int().
    shift = _spatial.translate_x if axis == "x" else _spatial.translate_y
    return lambda x, v, mode, fill: shift(x, torch.trunc(v), interpolation=mode, fill=fill)


_TRANSLATIONS: dict[str, _Apply] = {"TranslateX": _translate("x"), "TranslateY": _translate("y")}


def _kernel(op: str) -> _Apply | None:
    """The batched op (None for Identity); looked up on each call, like Policy's."""
    if op == "Identity":
        return None
    return _TRANSLATIONS.get(op) or OPS[op].apply


@functools.lru_cache(maxsize=32)
def _tables(
    space_name: str, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_ops, 31) float32 unsigned magnitudes (0 where none) and (num_ops,) signed flags."""
    rows, signed = [], []
    for magnitudes, is_signed in SPACES[space_name].values():
        rows.append(
            torch.zeros(MAGNITUDE_BINS)
            if magnitudes is None
            else magnitudes(MAGNITUDE_BINS, height, width).float()
        )
        signed.append(is_signed)
    return torch.stack(rows).to(device), torch.tensor(signed, device=device)


@dataclass(frozen=True)
class OpDraws:
    """The per-image draws of RandAugment / TrivialAugmentWide (what `sample_params` returns).

    Row r is the r-th op applied to each image (RandAugment: N rows; TrivialAugmentWide: 1).
    """

    ops: torch.Tensor  # (R, N) long: index into the policy's op list (`ops`)
    bins: torch.Tensor  # (R, N) long: magnitude bin, 0..30
    signs: torch.Tensor  # (R, N) float32, +1 or -1: the sign of signed ops' magnitudes


class _RandomOps:
    """Shared engine: draw ops per image, then apply each round grouped by op."""

    _space: str

    @property
    def ops(self) -> tuple[str, ...]:
        """The op list, in torchvision's order."""
        return tuple(SPACES[self._space])

    def _rounds(self) -> int:
        raise NotImplementedError

    def _bins(
        self, shape: tuple[int, int], generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        raise NotImplementedError

    def sample_params(
        self, n: int, generator: torch.Generator, device: torch.device | str
    ) -> OpDraws:
        """Draw each image's ops, bins and signs (in this order) from `generator`."""
        device = torch.device(device)
        shape = (self._rounds(), n)
        ops = torch.randint(len(self.ops), shape, generator=generator, device=device)
        bins = self._bins(shape, generator, device)
        signs = torch.rand(shape, generator=generator, device=device)
        return OpDraws(ops=ops, bins=bins, signs=torch.where(signs < 0.5, -1.0, 1.0))

    def apply_params(
        self,
        images: torch.Tensor,
        params: OpDraws,
        *,
        interpolation: str = "nearest",
        fill: float = FILL,
    ) -> torch.Tensor:
        """Apply the drawn ops in order; images are grouped by op, never looped over."""
        check_color_batch(images)
        check_interpolation(interpolation)
        n, _, h, w = images.shape
        shape = (self._rounds(), n)
        if params.ops.shape != shape or params.bins.shape != shape:
            raise ValueError(
                f"params were drawn for {tuple(params.ops.shape)} (rounds, images); "
                f"this policy on this batch needs {shape}"
            )
        out = images.clone()
        if n == 0:
            return out
        magnitudes, signed = _tables(self._space, h, w, images.device)
        kernels = [_kernel(op) for op in self.ops]
        for r in range(shape[0]):
            op_index = params.ops[r]
            values = magnitudes[op_index, params.bins[r]]
            values = torch.where(signed[op_index], values * params.signs[r], values)
            apply_by_op(out, op_index, values, kernels, interpolation, fill)
        return out

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Apply the policy to a uint8 (N, C, H, W) batch, drawing from `generator`."""
        check_batch(images)
        check_generator(generator, images.device)
        params = self.sample_params(images.shape[0], generator, images.device)
        return self.apply_params(images, params)


def _check_int(value: object, name: str, lo: int, hi: int, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise PolicyError(
            f"invalid randaugment {name}={value!r}; expected an integer in {lo}..{hi} ({meaning})"
        )
    return int(value)


@dataclass(frozen=True)
class RandAugment(_RandomOps):
    """RandAugment: `num_ops` (N) ops per image, uniform with replacement, all at bin `magnitude`
    (M, of 0..30), as torchvision's `RandAugment(num_ops, magnitude)`."""

    num_ops: int = 2
    magnitude: int = 9
    _space = "randaugment"

    def __post_init__(self) -> None:
        # torchvision accepts any N >= 0; N = 0 is no policy (leave --policy out instead) and
        # more draws than ops only repeats them, so N stays in 1..14.
        n_ops = len(RANDAUGMENT_SPACE)
        _check_int(self.num_ops, "N", 1, n_ops, "num_ops, ops applied per image")
        _check_int(self.magnitude, "M", 0, MAGNITUDE_BINS - 1, "magnitude bin")
        object.__setattr__(self, "num_ops", int(self.num_ops))
        object.__setattr__(self, "magnitude", int(self.magnitude))

    def __str__(self) -> str:
        return f"randaugment:{self.num_ops},{self.magnitude}"

    def _rounds(self) -> int:
        return self.num_ops

    def _bins(
        self, shape: tuple[int, int], generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        return torch.full(shape, self.magnitude, dtype=torch.long, device=device)


@dataclass(frozen=True)
class TrivialAugmentWide(_RandomOps):
    """TrivialAugmentWide: one op per image, uniform, at a bin uniform over 0..30, as
    torchvision's `TrivialAugmentWide()`."""

    _space = "trivialaugment"

    def __str__(self) -> str:
        return "trivialaugment"

    def _rounds(self) -> int:
        return 1

    def _bins(
        self, shape: tuple[int, int], generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        return torch.randint(MAGNITUDE_BINS, shape, generator=generator, device=device)
