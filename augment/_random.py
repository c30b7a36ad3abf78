"""Random batched ops: draw per-image parameters from an explicit generator, then call a pure op.

Each `sample_*` function draws exactly what the matching `random_*` op draws, in the same order,
so a caller (or a test) holding a generator in the same state can reproduce the parameters.
"""

from __future__ import annotations

import torch

from . import _spatial
from ._checks import check_batch, check_generator, check_non_negative


def sample_crop_offsets(
    n: int, padding: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (top, left) window offsets, each uniform over 0..2 * padding, one per image."""
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    return top, left


def sample_flips(
    n: int, p: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Draw a boolean (N,) mask, True with probability `p`."""
    return torch.rand(n, generator=generator, device=device) < p


def sample_angles(
    n: int, max_degrees: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Draw one angle per image, uniform on [-max_degrees, max_degrees)."""
    return (torch.rand(n, generator=generator, device=device) * 2.0 - 1.0) * max_degrees


def sample_centers(
    n: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one (y, x) pixel per image, uniform over the image, as Cutout's centre."""
    center_y = torch.randint(0, height, (n,), generator=generator, device=device)
    center_x = torch.randint(0, width, (n,), generator=generator, device=device)
    return center_y, center_x


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to H x W at a random offset per image."""
    check_batch(images)
    check_non_negative(padding, "padding", integer=True)
    check_generator(generator, images.device)
    top, left = sample_crop_offsets(images.shape[0], padding, generator, images.device)
    return _spatial.pad_crop(images, padding, top, left)


def random_horizontal_flip(
    images: torch.Tensor, generator: torch.Generator, p: float = 0.5
) -> torch.Tensor:
    """Mirror each image left-right with probability `p`."""
    check_batch(images)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    check_generator(generator, images.device)
    flips = sample_flips(images.shape[0], p, generator, images.device)
    return _spatial.horizontal_flip(images, flips)


def random_rotation(
    images: torch.Tensor,
    max_degrees: float,
    generator: torch.Generator,
    fill: float = 0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Rotate each image by an angle uniform on [-max_degrees, max_degrees)."""
    check_batch(images)
    check_non_negative(max_degrees, "max_degrees", integer=False)
    check_generator(generator, images.device)
    angles = sample_angles(images.shape[0], max_degrees, generator, images.device)
    return _spatial.rotate(images, angles, interpolation=interpolation, fill=fill)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image, centre uniform over the image (DeVries & Taylor)."""
    check_batch(images)
    check_non_negative(size, "size", integer=True)
    check_generator(generator, images.device)
    _, _, h, w = images.shape
    center_y, center_x = sample_centers(images.shape[0], h, w, generator, images.device)
    return _spatial.erase_square(images, size, center_y, center_x)
