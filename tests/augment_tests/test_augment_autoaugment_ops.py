"""The 14 AutoAugment ops on a batch match torchvision's v2 functional (and PIL) image by image.

Tolerances, stated once:
- on CPU every op is bit-exact against torchvision's tensor kernels (same float32 arithmetic,
  same sampling grid, same rounding), except autocontrast (below);
- on other devices (CUDA) kernels may round differently (cuDNN's summation order in Sharpness'
  3x3 blur, fused multiply-adds, nearest samples exactly between two pixels), so up to 1 % of
  values may differ: by at most one grey level for colour ops and bilinear warps, by a
  neighbouring pixel for nearest warps;
- autocontrast computes the exact integer stretch floor(255 * (x - lo) / (hi - lo));
  torchvision's kernel and PIL's double-precision LUT each land one level low on some values
  (max abs diff 1 on at most 2 % and 0.2 % of values).
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import ImageOps
from torchvision.transforms.v2 import functional as TF

from augment import functional as AF

NEAREST = TF.InterpolationMode.NEAREST
BILINEAR = TF.InterpolationMode.BILINEAR


def assert_matches(
    out: torch.Tensor, refs: list[torch.Tensor], *, max_abs: int = 0, max_frac: float = 0.0
) -> None:
    """Batched `out` equals the stacked per-image `refs` within the given tolerance."""
    expected = torch.stack(refs).to(out.device)
    assert out.shape == expected.shape and out.dtype == torch.uint8
    diff = (out.int() - expected.int()).abs()
    frac = (diff > 0).float().mean().item()
    if max_abs == 0 and max_frac == 0.0:
        assert frac == 0.0, f"{frac:.4%} of values differ, max {diff.max().item()}"
    else:
        assert frac <= max_frac, f"{frac:.4%} of values differ (allowed {max_frac:.2%})"
        if max_abs:
            assert diff.max().item() <= max_abs


def off_cpu(device: torch.device, **tolerance) -> dict:
    """No tolerance on CPU (bit-exact); `tolerance` on other devices (see the module docstring)."""
    return {} if device.type == "cpu" else tolerance


def nearest_tolerance(device: torch.device) -> dict:
    return off_cpu(device, max_frac=0.01, max_abs=255)


def enhance_tolerance(device: torch.device) -> dict:
    return off_cpu(device, max_frac=0.01, max_abs=1)


def uniform(n: int, lo: float, hi: float, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def pil_reference(images: torch.Tensor, op) -> list[torch.Tensor]:
    """Apply a PIL op to each image (via PIL.Image) and return CHW uint8 tensors."""
    return [TF.pil_to_tensor(op(TF.to_pil_image(img.cpu()))) for img in images]


def _shear_degrees(factor: float) -> float:
    # torchvision takes a shear angle; AutoAugment's factor m is the matrix entry tan(angle).
    return math.degrees(math.atan(factor))


class TestShearX:
    def test_matches_torchvision_per_image(self, batch):
        m = uniform(batch.shape[0], -0.3, 0.3, batch.device)
        out = AF.shear_x(batch, m, fill=128)
        refs = [
            TF.affine(
                img,
                angle=0.0,
                translate=[0, 0],
                scale=1.0,
                shear=[_shear_degrees(float(f)), 0.0],
                interpolation=NEAREST,
                fill=128,
                center=[0, 0],
            )
            for img, f in zip(batch, m, strict=True)
        ]
        assert_matches(out, refs, **nearest_tolerance(batch.device))

    def test_bilinear_matches_torchvision(self, batch):
        m = uniform(batch.shape[0], -0.3, 0.3, batch.device, seed=1)
        out = AF.shear_x(batch, m, interpolation="bilinear")
        refs = [
            TF.affine(
                img,
                angle=0.0,
                translate=[0, 0],
                scale=1.0,
                shear=[_shear_degrees(float(f)), 0.0],
                interpolation=BILINEAR,
                center=[0, 0],
            )
            for img, f in zip(batch, m, strict=True)
        ]
        assert_matches(out, refs, **enhance_tolerance(batch.device))

    def test_zero_is_identity(self, batch):
        assert torch.equal(AF.shear_x(batch, 0.0, fill=128), batch)


class TestShearY:
    def test_matches_torchvision_per_image(self, batch):
        m = uniform(batch.shape[0], -0.3, 0.3, batch.device)
        out = AF.shear_y(batch, m, fill=128)
        refs = [
            TF.affine(
                img,
                angle=0.0,
                translate=[0, 0],
                scale=1.0,
                shear=[0.0, _shear_degrees(float(f))],
                interpolation=NEAREST,
                fill=128,
                center=[0, 0],
            )
            for img, f in zip(batch, m, strict=True)
        ]
        assert_matches(out, refs, **nearest_tolerance(batch.device))

    def test_zero_is_identity(self, batch):
        assert torch.equal(AF.shear_y(batch, 0.0, fill=128), batch)


class TestTranslateX:
    def test_matches_torchvision_per_image(self, batch):
        pixels = uniform(batch.shape[0], -15, 15, batch.device).trunc()
        out = AF.translate_x(batch, pixels, fill=128)
        refs = [
            TF.affine(
                img,
                angle=0.0,
                translate=[int(t), 0],
                scale=1.0,
                shear=[0.0, 0.0],
                interpolation=NEAREST,
                fill=128,
            )
            for img, t in zip(batch, pixels, strict=True)
        ]
        assert_matches(out, refs, **nearest_tolerance(batch.device))

    def test_direction_and_fill(self, batch):
        out = AF.translate_x(batch, 3.0, fill=128)
        assert torch.equal(out[..., 3:], batch[..., :-3])
        assert (out[..., :3] == 128).all()


class TestTranslateY:
    def test_matches_torchvision_per_image(self, batch):
        pixels = uniform(batch.shape[0], -11, 11, batch.device).trunc()
        out = AF.translate_y(batch, pixels, fill=128)
        refs = [
            TF.affine(
                img,
                angle=0.0,
                translate=[0, int(t)],
                scale=1.0,
                shear=[0.0, 0.0],
                interpolation=NEAREST,
                fill=128,
            )
            for img, t in zip(batch, pixels, strict=True)
        ]
        assert_matches(out, refs, **nearest_tolerance(batch.device))

    def test_direction_and_fill(self, batch):
        out = AF.translate_y(batch, -2.0, fill=128)
        assert torch.equal(out[..., :-2, :], batch[..., 2:, :])
        assert (out[..., -2:, :] == 128).all()


class TestRotate:
    def test_matches_torchvision_per_image(self, batch):
        angles = uniform(batch.shape[0], -30, 30, batch.device)
        out = AF.rotate(batch, angles, fill=128)
        refs = [
            TF.rotate(img, float(a), interpolation=NEAREST, fill=128)
            for img, a in zip(batch, angles, strict=True)
        ]
        assert_matches(out, refs, **nearest_tolerance(batch.device))

    def test_quarter_turn_is_counter_clockwise(self, device):
        square = torch.arange(36, dtype=torch.uint8, device=device).reshape(1, 1, 6, 6)
        assert torch.equal(AF.rotate(square, 90.0), torch.rot90(square, 1, dims=(-2, -1)))


class TestColor:
    def test_matches_torchvision_per_image(self, batch):
        f = uniform(batch.shape[0], 0.1, 1.9, batch.device)
        refs = [TF.adjust_saturation(img, float(v)) for img, v in zip(batch, f, strict=True)]
        assert_matches(AF.adjust_saturation(batch, f), refs, **enhance_tolerance(batch.device))

    def test_one_factor_is_identity(self, batch):
        assert torch.equal(AF.adjust_saturation(batch, 1.0), batch)

    def test_single_channel_is_unchanged(self, make_batch):
        grey = make_batch(channels=1)
        assert torch.equal(AF.adjust_saturation(grey, 0.3), grey)


class TestContrast:
    def test_matches_torchvision_per_image(self, batch):
        f = uniform(batch.shape[0], 0.1, 1.9, batch.device)
        refs = [TF.adjust_contrast(img, float(v)) for img, v in zip(batch, f, strict=True)]
        assert_matches(AF.adjust_contrast(batch, f), refs, **enhance_tolerance(batch.device))

    def test_single_channel_matches_torchvision(self, make_batch):
        grey = make_batch(channels=1)
        f = uniform(grey.shape[0], 0.1, 1.9, grey.device)
        refs = [TF.adjust_contrast(img, float(v)) for img, v in zip(grey, f, strict=True)]
        assert_matches(AF.adjust_contrast(grey, f), refs, **enhance_tolerance(grey.device))


class TestBrightness:
    def test_matches_torchvision_per_image(self, batch):
        f = uniform(batch.shape[0], 0.1, 1.9, batch.device)
        refs = [TF.adjust_brightness(img, float(v)) for img, v in zip(batch, f, strict=True)]
        assert_matches(AF.adjust_brightness(batch, f), refs, **enhance_tolerance(batch.device))


class TestSharpness:
    def test_matches_torchvision_per_image(self, batch):
        f = uniform(batch.shape[0], 0.1, 1.9, batch.device)
        refs = [TF.adjust_sharpness(img, float(v)) for img, v in zip(batch, f, strict=True)]
        assert_matches(AF.adjust_sharpness(batch, f), refs, **enhance_tolerance(batch.device))

    def test_border_is_unchanged(self, batch):
        out = AF.adjust_sharpness(batch, 0.1)
        assert torch.equal(out[..., 0, :], batch[..., 0, :])
        assert torch.equal(out[..., :, -1], batch[..., :, -1])


class TestPosterize:
    def test_matches_torchvision_per_image(self, batch):
        bits = torch.arange(batch.shape[0], device=batch.device) % 9  # every value 0..8
        refs = [TF.posterize(img, int(b)) for img, b in zip(batch, bits, strict=True)]
        assert_matches(AF.posterize(batch, bits), refs)

    @pytest.mark.parametrize("bits", [1, 4, 7, 8])
    def test_matches_pil(self, batch, bits):
        refs = pil_reference(batch, lambda im: ImageOps.posterize(im, bits))
        assert_matches(AF.posterize(batch, bits), refs)


class TestSolarize:
    def test_matches_torchvision_per_image(self, batch):
        thresholds = uniform(batch.shape[0], 0, 255, batch.device)
        refs = [TF.solarize(img, float(t)) for img, t in zip(batch, thresholds, strict=True)]
        assert_matches(AF.solarize(batch, thresholds), refs)

    @pytest.mark.parametrize("threshold", [0, 128, 227, 255])
    def test_matches_pil(self, batch, threshold):
        refs = pil_reference(batch, lambda im: ImageOps.solarize(im, threshold))
        assert_matches(AF.solarize(batch, float(threshold)), refs)

    def test_threshold_256_is_identity_and_0_inverts(self, batch):
        assert torch.equal(AF.solarize(batch, 256.0), batch)
        assert torch.equal(AF.solarize(batch, 0.0), 255 - batch)


class TestAutoContrast:
    # We compute PIL's floor(255 * (x - lo) / (hi - lo)) exactly; torchvision's tensor kernel and
    # PIL's double-precision LUT each land one level low on some values (about 1 % and 0.05 %).
    def test_matches_torchvision_per_image(self, batch):
        refs = [TF.autocontrast(img) for img in batch]
        assert_matches(AF.autocontrast(batch), refs, max_abs=1, max_frac=0.02)

    def test_matches_pil(self, batch):
        refs = pil_reference(batch, ImageOps.autocontrast)
        assert_matches(AF.autocontrast(batch), refs, max_abs=1, max_frac=0.002)

    def test_is_the_exact_integer_stretch(self, batch):
        x = batch.long()
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        exact = torch.where(hi > lo, (x - lo) * 255 // (hi - lo).clamp(min=1), x)
        assert torch.equal(AF.autocontrast(batch).long(), exact)

    def test_stretches_each_channel_and_keeps_flat_ones(self, batch):
        out = AF.autocontrast(batch)
        assert torch.equal(out[3], batch[3])  # flat image
        assert torch.equal(out[5, 0], batch[5, 0])  # flat channel
        assert (out[1].amin(dim=(1, 2)) == 0).all() and (out[1].amax(dim=(1, 2)) == 255).all()


class TestEqualize:
    def test_matches_torchvision_per_image(self, batch):
        assert_matches(AF.equalize(batch), [TF.equalize(img) for img in batch])

    def test_matches_pil(self, batch):
        assert_matches(AF.equalize(batch), pil_reference(batch, ImageOps.equalize))

    def test_single_channel_and_flat_images(self, make_batch):
        grey = make_batch(channels=1)
        assert_matches(AF.equalize(grey), [TF.equalize(img) for img in grey])
        assert torch.equal(AF.equalize(grey)[3], grey[3])

    def test_histograms_do_not_leak_between_images(self, make_batch):
        # Offsetting each (image, channel) into its own 256 bins must keep them independent.
        big = make_batch(n=40, seed=3)
        alone = torch.cat([AF.equalize(big[i : i + 1]) for i in range(big.shape[0])])
        assert torch.equal(AF.equalize(big), alone)


class TestInvert:
    def test_matches_torchvision_per_image(self, batch):
        assert_matches(AF.invert(batch), [TF.invert(img) for img in batch])


class TestErrors:
    @pytest.mark.parametrize(
        "op", [AF.adjust_brightness, AF.adjust_contrast, AF.adjust_saturation, AF.adjust_sharpness]
    )
    def test_per_image_values_need_one_per_image(self, batch, op):
        with pytest.raises(ValueError, match="one per image"):
            op(batch, torch.ones(batch.shape[0] + 1, device=batch.device))

    def test_colour_ops_need_1_or_3_channels(self, make_batch):
        with pytest.raises(ValueError, match="1 or 3 channels"):
            AF.equalize(make_batch(channels=4))

    def test_warps_reject_unknown_interpolation(self, batch):
        with pytest.raises(ValueError, match="interpolation"):
            AF.shear_x(batch, 0.1, interpolation="bicubic")
