"""Plain VGG-style CIFAR-10 baselines (``cnn_basic`` and its BatchNorm/Dropout twin ``cnn_reg``).

The layer sizes reproduce the course report's networks; their parameter counts (307,498 and
308,394) are the spec, so convs keep their bias even where BatchNorm follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._registry import check_num_classes, register_model

# (in, out) channels of the two convs in each of the three pooled blocks.
_BLOCKS = (((3, 32), (32, 32)), ((32, 64), (64, 64)), ((64, 128), (128, 128)))
# Three 2x2 pools take 32x32 down to 4x4, so the classifier sees 128 * 4 * 4 features.
_FLAT = 128 * 4 * 4


class _VGGLike(nn.Module):
    """Three (conv-conv-pool) blocks and one linear layer; optional BN and per-block dropout."""

    def __init__(self, num_classes: int, batch_norm: bool, dropout: Sequence[float] | None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, block in enumerate(_BLOCKS):
            for c_in, c_out in block:
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.MaxPool2d(2))
            if dropout is not None:
                layers.append(nn.Dropout(dropout[i]))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_FLAT, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for a normalised (N, 3, 32, 32) batch."""
        return self.classifier(torch.flatten(self.features(x), 1))


def _check_dropout(dropout: Sequence[float]) -> tuple[float, float, float]:
    """Return the three dropout rates (one per pooled block) after range checks."""
    rates = tuple(dropout)
    if len(rates) != 3:
        raise ValueError(f"dropout must have 3 values (one per block), got {dropout!r}")
    for p in rates:
        # p == 1 would zero every activation, so the valid range is half-open.
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be a number in [0, 1), got {p!r}")
    return rates  # type: ignore[return-value]


@register_model
def cnn_basic(*, num_classes: int = 10) -> nn.Module:
    """Six 3x3 convs with ReLU and three max pools; 307,498 params at 10 classes."""
    return _VGGLike(check_num_classes(num_classes), batch_norm=False, dropout=None)


@register_model
def cnn_reg(
    *, num_classes: int = 10, dropout: tuple[float, float, float] = (0.2, 0.3, 0.4)
) -> nn.Module:
    """``cnn_basic`` with conv-BN-ReLU and Dropout(dropout[k]) after pool k; 308,394 params."""
    rates = _check_dropout(dropout)
    return _VGGLike(check_num_classes(num_classes), batch_norm=True, dropout=rates)
