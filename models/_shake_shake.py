"""Shake-Shake-26 2x{32,64,96}d for CIFAR (Gastaldi 2017, "Shake-Shake regularization").

Uses the paper's best CIFAR-10 rule, "Shake-Shake-Image": a fresh per-image alpha ~ U(0, 1)
mixes the two residual branches in the forward pass, an independent per-image beta ~ U(0, 1)
mixes their gradients in the backward pass, and evaluation uses the expectation 0.5 / 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import check_num_classes, register_model

__all__ = ["shake_combine", "shake_shake"]

# 26 layers = first conv + 3 stages * 4 blocks * 2 convs per branch + final linear.
_BLOCKS_PER_STAGE = 4
_STEM_WIDTH = 16


class _ShakeCombine(torch.autograd.Function):
    """alpha * b1 + (1 - alpha) * b2 forward; gradients beta * g and (1 - beta) * g backward."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        b1: torch.Tensor,
        b2: torch.Tensor,
        alpha: torch.Tensor,
        beta: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(beta)
        return alpha * b1 + (1 - alpha) * b2

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        (beta,) = ctx.saved_tensors
        # alpha and beta are sampled noise, never learned, so they get no gradient.
        return beta * grad, (1 - beta) * grad, None, None


def shake_combine(
    b1: torch.Tensor, b2: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """Mix branches with weight alpha on b1 forward and beta on b1's gradient backward.

    alpha and beta must broadcast against b1 (e.g. shape (N, 1, 1, 1) for per-image weights).
    """
    return _ShakeCombine.apply(b1, b2, alpha, beta)


def shake_shake(b1: torch.Tensor, b2: torch.Tensor, training: bool) -> torch.Tensor:
    """Shake-Shake-Image combination in training (random per-image alpha, beta); 0.5/0.5 in eval."""
    if not training:
        return 0.5 * (b1 + b2)
    shape = (b1.shape[0],) + (1,) * (b1.dim() - 1)
    # Sampled in the branches' own dtype/device so autocast (bf16) and CUDA need no special case.
    alpha = torch.rand(shape, dtype=b1.dtype, device=b1.device)
    beta = torch.rand(shape, dtype=b1.dtype, device=b1.device)
    return shake_combine(b1, b2, alpha, beta)


def _branch(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """One residual branch: ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN."""
    return nn.Sequential(
        # Not in-place: the block input also feeds the other branch and the shortcut.
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    )


class _ProjectionShortcut(nn.Module):
    """The paper's shortcut for a change of shape: ReLU, two offset 1x1 paths of out/2, concat, BN.

    The second path is shifted by one pixel so that, after the strided subsampling, the two
    halves see complementary pixels instead of the same ones.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"projection shortcut needs an even width, got {c_out}")
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out // 2, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shortcut features (N, c_out, H / stride, W / stride)."""
        x = F.relu(x)
        p1 = F.avg_pool2d(x, kernel_size=1, stride=self.stride)
        # Pad one zero column/row on the right/bottom, then crop the first row/column:
        # pixel (i, j) of the result is pixel (i + 1, j + 1) of the input.
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        p2 = F.avg_pool2d(shifted, kernel_size=1, stride=self.stride)
        return self.bn(torch.cat((self.conv1(p1), self.conv2(p2)), dim=1))


class _ShakeBlock(nn.Module):
    """Residual block: shortcut(x) + shake_shake(branch1(x), branch2(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.branch1 = _branch(c_in, c_out, stride)
        self.branch2 = _branch(c_in, c_out, stride)
        self.shortcut: nn.Module
        if c_in == c_out and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = _ProjectionShortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output (N, c_out, H / stride, W / stride)."""
        mixed = shake_shake(self.branch1(x), self.branch2(x), self.training)
        return self.shortcut(x) + mixed


class _ShakeShakeNet(nn.Module):
    """Stem conv-BN, three stages of 4 Shake-Shake blocks (w, 2w, 4w), ReLU, GAP, linear."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, _STEM_WIDTH, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(_STEM_WIDTH),
        )
        blocks: list[nn.Module] = []
        c_in = _STEM_WIDTH
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(_BLOCKS_PER_STAGE):
                # Stage 1 keeps 32x32 (its first block only widens 16 -> w).
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_ShakeBlock(c_in, c_out, stride))
                c_in = c_out
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 ("Delving Deep into Rectifiers") normal init, as in the paper's
                # fb.resnet.torch base code.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for a normalised (N, 3, 32, 32) batch."""
        x = self.stages(self.stem(x))
        x = F.adaptive_avg_pool2d(F.relu(x), 1)
        return self.fc(torch.flatten(x, 1))


@register_model
def shake26_2x32d(*, num_classes: int = 10) -> nn.Module:
    """Shake-Shake-26 2x32d (paper: 2.9M params); this build has 2,923,162 at 10 classes."""
    return _ShakeShakeNet(32, check_num_classes(num_classes))


@register_model
def shake26_2x64d(*, num_classes: int = 10) -> nn.Module:
    """Shake-Shake-26 2x64d (paper: 11.7M params); this build has 11,653,978 at 10 classes."""
    return _ShakeShakeNet(64, check_num_classes(num_classes))


@register_model
def shake26_2x96d(*, num_classes: int = 10) -> nn.Module:
    """Shake-Shake-26 2x96d (paper: 26.2M params); this build has 26,192,922 at 10 classes."""
    return _ShakeShakeNet(96, check_num_classes(num_classes))
