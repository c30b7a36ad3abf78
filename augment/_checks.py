"""Argument checks shared by the batched ops (no device syncs: shapes, dtypes and devices only)."""

from __future__ import annotations

import math
import numbers

import torch


def check_batch(images: torch.Tensor, name: str = "images") -> None:
    """Raise unless `images` is a uint8 tensor of shape (N, C, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype torch.uint8, got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")


def check_color_batch(images: torch.Tensor) -> None:
    """Raise unless `images` is a uint8 (N, C, H, W) batch with 1 or 3 channels."""
    check_batch(images)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"colour ops need 1 or 3 channels, got {images.shape[1]}")


def check_generator(generator: torch.Generator, device: torch.device) -> None:
    """Raise unless `generator` is a torch.Generator on the same device type as the batch."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the images are on {device}; "
            f"create it with torch.Generator(device=images.device)"
        )


def per_image(
    value: torch.Tensor | float,
    n: int,
    device: torch.device,
    name: str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Return `value` as a (N,) tensor of `dtype` on `device` (a scalar is broadcast)."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            value = value.expand(n)
        if value.shape != (n,):
            raise ValueError(
                f"{name} must have shape ({n},) (one per image), got {tuple(value.shape)}"
            )
        return value.to(device=device, dtype=dtype)
    return torch.full((n,), value, device=device, dtype=dtype)


def check_non_negative(value: object, name: str, *, integer: bool) -> None:
    """Raise ValueError unless `value` is a finite number >= 0 (an int when `integer`)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {expected} >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_interpolation(interpolation: str) -> None:
    """Raise ValueError unless `interpolation` is 'nearest' or 'bilinear'."""
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")


class PolicyError(ValueError):
    """A policy, its name or the JSON it was read from is malformed."""
