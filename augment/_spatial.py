"""Pure batched spatial ops on uint8 (N, C, H, W) tensors, with per-image parameters.

Geometric warps follow the conventions of torchvision.transforms.v2.functional on tensors, so a
batch matches the same op applied image by image there: `rotate` turns counter-clockwise about
the image centre, `shear_x`/`shear_y` shear about the top-left corner (as AutoAugment's
`center=[0, 0]`), `translate_*` moves the content by +pixels (right / down).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_batch, check_interpolation, check_non_negative, per_image


def pad_crop(
    images: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor
) -> torch.Tensor:
    """Zero-pad each image by `padding`, then crop H x W at (top, left) of the padded image."""
    check_batch(images)
    check_non_negative(padding, "padding", integer=True)
    n, _, h, w = images.shape
    top = per_image(top, n, images.device, "top", torch.long)
    left = per_image(left, n, images.device, "left", torch.long)
    padded = F.pad(images, (padding, padding, padding, padding))
    # Every H x W window of the padded images as a view (N, C, 2p + 1, 2p + 1, H, W); picking
    # one window per image is a single indexing op, about twice as fast as a flat gather.
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    return windows[torch.arange(n, device=images.device), :, top, left]


def horizontal_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry in the boolean (N,) mask `flip` is True."""
    check_batch(images)
    flip = per_image(flip, images.shape[0], images.device, "flip", torch.bool)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def erase_square(
    images: torch.Tensor, size: int, center_y: torch.Tensor, center_x: torch.Tensor
) -> torch.Tensor:
    """Zero a size x size square centred at (center_y, center_x) per image, clipped at borders."""
    check_batch(images)
    check_non_negative(size, "size", integer=True)
    n, _, h, w = images.shape
    center_y = per_image(center_y, n, images.device, "center_y", torch.long)
    center_x = per_image(center_x, n, images.device, "center_x", torch.long)
    # Rows [cy - size // 2, cy - size // 2 + size): for even sizes exactly the square of DeVries &
    # Taylor's reference code (y - size // 2 .. y + size // 2), for odd sizes still size rows.
    y0 = (center_y - size // 2)[:, None]
    x0 = (center_x - size // 2)[:, None]
    ys = torch.arange(h, device=images.device)
    xs = torch.arange(w, device=images.device)
    in_rows = (ys >= y0) & (ys < y0 + size)
    in_cols = (xs >= x0) & (xs < x0 + size)
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return images.masked_fill(mask[:, None], 0)


def _warp(
    images: torch.Tensor,
    inverse: list[torch.Tensor],
    interpolation: str,
    fill: float,
) -> torch.Tensor:
    """Resample each image through its inverse affine map (six (N,) tensors, centred coords)."""
    check_interpolation(interpolation)
    if not 0 <= fill <= 255:
        raise ValueError(f"fill must be a grey level in [0, 255], got {fill!r}")
    n, _, h, w = images.shape
    device = images.device
    # The maps take output to input positions in pixel units with the origin at the image
    # centre (pixel i at i + 0.5 - W / 2). The sampling grid is what affine_grid(align_corners=
    # False) computes, written out elementwise: a matmul there could run in TF32 on CUDA (and be
    # off by ~0.03 px), and in this form it rounds like torchvision's _affine_grid, so nearest
    # samples that fall exactly between two pixels (AutoAugment's shear bins 2 and 6 make whole
    # rows of them) pick the same neighbour as torchvision.
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device)[None, None, :]
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device)[None, :, None]
    grid = torch.empty(n, h, w, 2, device=device)
    for axis, half in ((0, 0.5 * w), (1, 0.5 * h)):
        m_x, m_y, m_1 = (v.view(n, 1, 1) / half for v in inverse[3 * axis : 3 * axis + 3])
        # (x * m_x + y * m_y) + m_1 per pixel, from an (N, 1, W) and an (N, H, 1) product, so
        # only two ops run at full size.
        coord = grid[..., axis]
        torch.add(xs * m_x, ys * m_y, out=coord)
        coord.add_(m_1)
    # Sampling (image - fill) with zero padding and adding fill back puts `fill` outside the
    # image (and blends towards it at bilinear borders) without a second grid_sample.
    x = images.float()
    if fill:
        x.sub_(fill)
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    if fill:
        out.add_(fill)
    if interpolation == "nearest":
        # Copies of input values (and fill): already whole numbers in range.
        return out.to(torch.uint8)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _zeros_ones(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) zeros and ones, for the fixed entries of an inverse map."""
    return torch.zeros(n, device=device), torch.ones(n, device=device)


def rotate(
    images: torch.Tensor,
    angles: torch.Tensor | float,
    *,
    interpolation: str = "nearest",
    fill: float = 0,
) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle in degrees about the image centre."""
    check_batch(images)
    n = images.shape[0]
    rad = per_image(angles, n, images.device, "angles") * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zeros = torch.zeros_like(cos)
    # Output point p reads input R p, R = [[cos, -sin], [sin, cos]] (y points down).
    return _warp(images, [cos, -sin, zeros, sin, cos, zeros], interpolation, fill)


def shear_x(
    images: torch.Tensor,
    factors: torch.Tensor | float,
    *,
    interpolation: str = "nearest",
    fill: float = 0,
) -> torch.Tensor:
    """Shear each image horizontally: output (x, y) reads input (x + factor * y, y)."""
    check_batch(images)
    n = images.shape[0]
    m = per_image(factors, n, images.device, "factors")
    zeros, ones = _zeros_ones(n, images.device)
    # About the top-left corner: x_in = x + m * (y + H / 2) in centred coordinates.
    h = images.shape[-2]
    return _warp(images, [ones, m, m * (h / 2.0), zeros, ones, zeros], interpolation, fill)


def shear_y(
    images: torch.Tensor,
    factors: torch.Tensor | float,
    *,
    interpolation: str = "nearest",
    fill: float = 0,
) -> torch.Tensor:
    """Shear each image vertically: output (x, y) reads input (x, y + factor * x)."""
    check_batch(images)
    n = images.shape[0]
    m = per_image(factors, n, images.device, "factors")
    zeros, ones = _zeros_ones(n, images.device)
    # About the top-left corner: y_in = y + m * (x + W / 2) in centred coordinates.
    w = images.shape[-1]
    return _warp(images, [ones, zeros, zeros, m, ones, m * (w / 2.0)], interpolation, fill)


def translate_x(
    images: torch.Tensor,
    pixels: torch.Tensor | float,
    *,
    interpolation: str = "nearest",
    fill: float = 0,
) -> torch.Tensor:
    """Move each image's content right by its number of pixels (left when negative)."""
    check_batch(images)
    n = images.shape[0]
    t = per_image(pixels, n, images.device, "pixels")
    zeros, ones = _zeros_ones(n, images.device)
    return _warp(images, [ones, zeros, -t, zeros, ones, zeros], interpolation, fill)


def translate_y(
    images: torch.Tensor,
    pixels: torch.Tensor | float,
    *,
    interpolation: str = "nearest",
    fill: float = 0,
) -> torch.Tensor:
    """Move each image's content down by its number of pixels (up when negative)."""
    check_batch(images)
    n = images.shape[0]
    t = per_image(pixels, n, images.device, "pixels")
    zeros, ones = _zeros_ones(n, images.device)
    return _warp(images, [ones, zeros, zeros, zeros, ones, -t], interpolation, fill)
