"""Pure batched colour ops on uint8 (N, C, H, W) tensors (C = 1 or 3), with per-image parameters.

The arithmetic follows torchvision.transforms.v2.functional on uint8 tensors (float32 maths,
truncation back to uint8), so a batch matches the same op applied image by image there.
"""

from __future__ import annotations

import torch

from ._checks import check_color_batch, per_image

# ITU-R 601-2 luma weights, as PIL's convert("L") and torchvision's rgb_to_grayscale use.
_LUMA = (0.2989, 0.587, 0.114)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # Truncation after clamping, as torchvision's _blend does for uint8.
    return x.clamp_(0, 255).to(torch.uint8)


def _weights(images: torch.Tensor, factors: torch.Tensor | float) -> tuple[torch.Tensor, ...]:
    """(f, 1 - f) per image as float32 (N, 1, 1, 1), each rounded once from float64."""
    # torchvision takes the factor as a Python float and rounds f and 1 - f to float32
    # separately; doing the same keeps blends that land exactly on an integer (AutoAugment's
    # factors 1.1, 1.2, ... hit many) truncating to the same uint8 value.
    f = per_image(factors, images.shape[0], images.device, "factors", torch.float64)
    return f.float().view(-1, 1, 1, 1), (1.0 - f).float().view(-1, 1, 1, 1)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float32 luma, floored as torchvision does for uint8 images."""
    x = images.float()
    if images.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    luma = r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])
    return luma.floor_().unsqueeze(1)


def _blend(
    images: torch.Tensor, other: torch.Tensor, factors: torch.Tensor | float
) -> torch.Tensor:
    """images * f + other * (1 - f) per image, back to uint8: PIL's ImageEnhance.enhance."""
    f, rest = _weights(images, factors)
    # addcmul rounds like torchvision's add_(other, alpha=1 - f) (one rounding for the sum).
    return _to_uint8(images.float().mul_(f).addcmul_(other, rest))


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Scale each image by its factor (blend with black): AutoAugment's Brightness."""
    check_color_batch(images)
    f, _ = _weights(images, factors)
    return _to_uint8(images.float().mul_(f))


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Blend each image with its grayscale version: AutoAugment's Color."""
    check_color_batch(images)
    return _blend(images, _grayscale(images), factors)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Blend each image with the mean of its grayscale version: AutoAugment's Contrast."""
    check_color_batch(images)
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factors)


def adjust_sharpness(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Blend each image's interior with its 3x3-smoothed version: AutoAugment's Sharpness."""
    check_color_batch(images)
    h, w = images.shape[-2:]
    _, rest = _weights(images, factors)
    if h <= 2 or w <= 2:
        return images.clone()
    x = images.float()
    # PIL's SMOOTH filter is (3x3 box sum + 4 * centre) / 13. The integer sum is exact in
    # float32 and S / 13 is never within 1/26 of a .5, so rounding it gives the same pixels as
    # torchvision's float conv2d, with sums of shifted views instead of a depthwise conv
    # (several times faster on CPU).
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    inner = x[:, :, 1:-1, 1:-1]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    blurred = box.add_(inner, alpha=4.0).div_(13.0).round_()
    # Like PIL, the one-pixel border keeps its original values.
    inner.addcmul_(blurred.sub_(inner), rest)
    return _to_uint8(x)


def posterize(images: torch.Tensor, bits: torch.Tensor | int) -> torch.Tensor:
    """Keep the `bits` most significant bits (0..8) of every channel value, per image."""
    check_color_batch(images)
    bits = per_image(bits, images.shape[0], images.device, "bits", torch.long)
    masks = (torch.full_like(bits, 0xFF) << (8 - bits)) & 0xFF
    return images & masks.to(torch.uint8).view(-1, 1, 1, 1)


def solarize(images: torch.Tensor, thresholds: torch.Tensor | float) -> torch.Tensor:
    """Invert the channel values >= each image's threshold (256 leaves the image unchanged)."""
    check_color_batch(images)
    t = per_image(thresholds, images.shape[0], images.device, "thresholds").view(-1, 1, 1, 1)
    return torch.where(images >= t, images.bitwise_not(), images)


def invert(images: torch.Tensor) -> torch.Tensor:
    """Return 255 - value for every channel value."""
    check_color_batch(images)
    return images.bitwise_not()


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image linearly so its min maps to 0 and its max to 255."""
    check_color_batch(images)
    x = images.float()
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    # floor(255 * (x - lo) / (hi - lo)), PIL's LUT: numerator and denominator are exact integers
    # in float32 and a non-integer quotient lies >= 1/255 from the next integer, so the floor is
    # exact and the max maps to 255. (torchvision divides by (hi - lo) * (1 / 255) instead, which
    # can land just below an integer: up to 1 % of its values come out one level lower.)
    stretched = x.sub_(lo).mul_(255.0).div_((hi - lo).clamp_(min=1.0)).floor_()
    # A flat channel (hi == lo) is left as it is, as PIL's ImageOps.autocontrast does.
    return torch.where(hi == lo, images, stretched.to(torch.uint8))


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Equalize the histogram of each channel of each image, with PIL's ImageOps.equalize LUT."""
    check_color_batch(images)
    n, c, h, w = images.shape
    if images.numel() == 0:
        return images.clone()
    flat = images.reshape(n * c, h * w).long()
    # One bincount for every (image, channel) histogram at once: offset channel k's values by
    # 256 * k so that each histogram owns its own 256 bins.
    offsets = torch.arange(n * c, device=images.device)[:, None] * 256
    hist = torch.bincount((flat + offsets).reshape(-1), minlength=n * c * 256).reshape(n * c, 256)
    # PIL: step = (pixels - count of the highest occurring value) // 255, and
    # lut[k] = (step // 2 + #pixels below k) // step; a channel with step == 0 is left unchanged.
    top_count = hist.gather(1, flat.amax(dim=1, keepdim=True))
    step = (h * w - top_count).div(255, rounding_mode="floor")
    below = hist.cumsum(dim=1) - hist
    lut = (below + step.div(2, rounding_mode="floor")).div(step.clamp(min=1), rounding_mode="floor")
    lut = lut.clamp_(0, 255)
    out = torch.where(step > 0, lut.gather(1, flat), flat)
    return out.to(torch.uint8).reshape(n, c, h, w)
