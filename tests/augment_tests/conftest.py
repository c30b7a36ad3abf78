"""Fixtures for the augment tests: devices, seeded generators and mixed test batches."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def make_generator(device) -> Callable[[int], torch.Generator]:
    """Return seed -> a fresh torch.Generator on the test device."""
    return lambda seed: torch.Generator(device=device).manual_seed(seed)


def mixed_batch(
    device: torch.device,
    n: int = 12,
    height: int = 24,
    width: int = 40,
    channels: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """Uint8 images that exercise every op: noise, low-contrast, smooth, flat and one flat channel.

    Non-square on purpose, so that a swapped height and width shows.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, height, width), dtype=torch.uint8, generator=g)
    x[1::4] = x[1::4] // 4 + 60  # low contrast: autocontrast and equalize have work to do
    ramp = torch.linspace(0, 255, width).round().to(torch.uint8)
    x[2] = ramp.expand(channels, height, width)  # smooth: interpolation differences show
    x[3] = 77  # flat image: autocontrast and equalize leave it unchanged
    x[5, 0] = 200  # one flat channel
    return x.to(device)


@pytest.fixture
def batch(device) -> torch.Tensor:
    return mixed_batch(device)


@pytest.fixture
def make_batch(device) -> Callable[..., torch.Tensor]:
    """Return **kwargs -> `mixed_batch` on the test device (n, height, width, channels, seed)."""
    return lambda **kwargs: mixed_batch(device, **kwargs)
