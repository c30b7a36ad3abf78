"""What floating-point rounding may change when our batched ops are compared with torchvision's.

Two float32 implementations agree bit for bit only on the CPU they were compared on: torchvision
builds a warp's sampling grid with a matmul, whose summation order (and use of fused
multiply-adds) depends on the BLAS kernel, the vector width and the device. So the tests allow
exactly what rounding can change, and no more:

- a nearest-neighbour warp (shear, translate, rotate) may differ only at output pixels whose
  sampling coordinate lies within `TIE_PX` of the boundary between two input pixels (or of the
  image's edge): there the two implementations may pick different neighbours. AutoAugment's shear
  bins 2 and 6 put whole rows exactly on such boundaries. Anywhere else the same pixel is read;
- an op whose arithmetic is a reduction, a convolution or a chain of multiply-adds (Color,
  Contrast, Sharpness, bilinear warps) may land one grey level off where its exact value lies
  near .5: at most `LEVEL` level on at most `LEVEL_SHARE` of the values;
- integer ops and single correctly rounded products (Posterize, Solarize, Invert, Equalize,
  AutoContrast's exact stretch, Brightness, whole-pixel translations) are exact everywhere;
- in a chain of ops a rounding difference can grow (one level across a Solarize threshold, one
  pixel into Equalize's histogram), so an image whose chain holds a step that may round
  differently is bounded only by the share `CHAIN_SHARE` of differing values; every other image
  must be exact.

A wrong sign, centre or offset moves sampling coordinates by a tenth of a pixel or more, far
outside `TIE_PX`, and fails (test_augment_autoaugment_ops.TestToleranceHasPower shows it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# float32 sampling coordinates of a 32-pixel image are good to about 1e-5 px; a wrong map is off
# by much more than this at most pixels.
TIE_PX = 1e-3
LEVEL = 1
LEVEL_SHARE = 0.01
CHAIN_SHARE = 0.01

NEAREST_WARPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})
ONE_LEVEL_OPS = frozenset({"Color", "Contrast", "Sharpness"})

# Output (x, y) reads input (a x + b y + c, d x + e y + f), in pixel units with the origin at the
# image centre (pixel i at i + 0.5 - size / 2), as augment/_spatial.py writes its maps.
AffineMap = tuple[float, float, float, float, float, float]


def inverse_map(op: str, magnitude: float, height: int, width: int) -> AffineMap:
    """The inverse map of one warp op at `magnitude` (shear factor, whole pixels, or degrees)."""
    m = float(magnitude)
    if op == "ShearX":  # about the top-left corner: x_in = x + m (y + H / 2)
        return (1.0, m, m * height / 2, 0.0, 1.0, 0.0)
    if op == "ShearY":
        return (1.0, 0.0, 0.0, m, 1.0, m * width / 2)
    if op == "TranslateX":
        return (1.0, 0.0, -m, 0.0, 1.0, 0.0)
    if op == "TranslateY":
        return (1.0, 0.0, 0.0, 0.0, 1.0, -m)
    if op == "Rotate":  # counter-clockwise about the centre; y points down
        rad = math.radians(m)
        return (math.cos(rad), -math.sin(rad), 0.0, math.sin(rad), math.cos(rad), 0.0)
    raise ValueError(f"{op} is not a nearest warp")


def ambiguous_samples(maps: Sequence[AffineMap], height: int, width: int) -> torch.Tensor:
    """(N, H, W) bool: where image n's nearest sample lies within TIE_PX of a pixel boundary."""
    table = torch.tensor(maps, dtype=torch.float64).view(-1, 6, 1, 1)
    x = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    y = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2)[:, None]
    a, b, c, d, e, f = table.unbind(1)
    # Source positions as pixel indices: nearest reads round(u); boundaries are at k + 0.5.
    u = a * x + b * y + c + width / 2 - 0.5
    v = d * x + e * y + f + height / 2 - 0.5

    def near_boundary(t: torch.Tensor) -> torch.Tensor:
        return ((t - 0.5) - (t - 0.5).round()).abs() < TIE_PX

    return near_boundary(u) | near_boundary(v)


def assert_nearest_warp_matches(
    out: torch.Tensor, expected: torch.Tensor, maps: Sequence[AffineMap]
) -> None:
    """A batched nearest warp equals the per-image reference except at ambiguous samples."""
    out, expected = out.cpu(), expected.cpu()
    assert out.shape == expected.shape and out.dtype == expected.dtype
    differing = (out != expected).any(dim=1)
    stray = differing & ~ambiguous_samples(maps, *out.shape[-2:])
    assert not stray.any(), (
        f"{int(stray.sum())} pixels differ where no sample is within {TIE_PX} px of a pixel "
        f"boundary (first at image, row, column {stray.nonzero()[0].tolist()})"
    )


def assert_within_one_level(out: torch.Tensor, expected: torch.Tensor) -> None:
    """Values differ by at most LEVEL, on at most LEVEL_SHARE of them."""
    diff = (out.cpu().int() - expected.cpu().int()).abs()
    share = (diff > 0).float().mean().item()
    assert diff.max().item() <= LEVEL, f"values differ by up to {diff.max().item()} levels"
    assert share <= LEVEL_SHARE, f"{share:.3%} of values differ (allowed {LEVEL_SHARE:.0%})"


def may_round_differently(steps: Sequence[tuple[str, float]], height: int, width: int) -> bool:
    """Whether an image's chain of (op, magnitude) steps holds one that may round differently."""
    for op, magnitude in steps:
        if op in ONE_LEVEL_OPS:
            return True
        if op in NEAREST_WARPS:
            maps = [inverse_map(op, magnitude, height, width)]
            if ambiguous_samples(maps, height, width).any():
                return True
    return False


def assert_chains_match(
    out: torch.Tensor, expected: torch.Tensor, steps: Sequence[Sequence[tuple[str, float]]]
) -> None:
    """Images whose chain of applied `steps` cannot round differently are exact; the whole batch
    differs in at most CHAIN_SHARE of its values."""
    out, expected = out.cpu(), expected.cpu()
    assert out.shape == expected.shape and len(steps) == out.shape[0]
    h, w = out.shape[-2:]
    for n, chain in enumerate(steps):
        if not may_round_differently(chain, h, w):
            assert torch.equal(out[n], expected[n]), (n, list(chain))
    share = (out != expected).float().mean().item()
    assert share <= CHAIN_SHARE, f"{share:.3%} of values differ (allowed {CHAIN_SHARE:.0%})"


def assert_op_matches(
    out: torch.Tensor, expected: torch.Tensor, op: str, magnitudes: Sequence[float]
) -> None:
    """One op applied to image n at magnitudes[n]: the tolerance that op's arithmetic allows."""
    h, w = out.shape[-2:]
    if op in NEAREST_WARPS:
        maps = [inverse_map(op, m, h, w) for m in magnitudes]
        assert_nearest_warp_matches(out, expected, maps)
    elif op in ONE_LEVEL_OPS:
        assert_within_one_level(out, expected)
    else:
        assert torch.equal(out.cpu(), expected.cpu()), op
