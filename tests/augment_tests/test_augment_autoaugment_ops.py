"""The 14 AutoAugment ops on a batch match torchvision's v2 functional (and PIL) image by image.

One table (`CASES`: op, torchvision reference, tolerance) drives the comparison; a new op is
tested by adding a row.

Tolerances, on every device, are what rounding can change and no more (rounding.py says why):
- nearest warps (shears, translations, rotations) differ only at pixels whose sampling
  coordinate lies within rounding of a pixel boundary;
- colour ops built on reductions, convolutions or multiply-adds (Color, Contrast, Sharpness) and
  bilinear warps: at most one grey level, on at most 1 % of values;
- integer ops and Brightness (one correctly rounded product) are exact;
- autocontrast computes the exact integer stretch floor(255 * (x - lo) / (hi - lo));
  torchvision's kernel and PIL's double-precision LUT each land one level low on some values
  (max abs diff 1 on at most 2 % and 0.2 % of values).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from PIL import ImageOps
from rounding import (
    LEVEL,
    LEVEL_SHARE,
    ambiguous_samples,
    assert_nearest_warp_matches,
    inverse_map,
)
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


def enhance_tolerance(device: torch.device) -> dict:
    return {"max_frac": LEVEL_SHARE, "max_abs": LEVEL}


def uniform(n: int, lo: float, hi: float, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def pil_reference(images: torch.Tensor, op) -> list[torch.Tensor]:
    """Apply a PIL op to each image (via PIL.Image) and return CHW uint8 tensors."""
    return [TF.pil_to_tensor(op(TF.to_pil_image(img.cpu()))) for img in images]


def _shear_degrees(factor: float) -> float:
    # torchvision takes a shear angle; AutoAugment's factor m is the matrix entry tan(angle).
    return math.degrees(math.atan(factor))


def _shear(axis: int, interpolation=NEAREST, fill: float | None = 128):
    """torchvision's shear about the top-left corner (AutoAugment's), by factor, on one image."""

    def reference(img: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        shear = [0.0, 0.0]
        shear[axis] = _shear_degrees(float(factor))
        return TF.affine(
            img,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear,
            interpolation=interpolation,
            fill=fill,
            center=[0, 0],
        )

    return reference


def _translate(axis: int):
    """torchvision's translation by whole pixels, grey fill, on one image."""

    def reference(img: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        translate = [0, 0]
        translate[axis] = int(pixels)
        return TF.affine(
            img,
            angle=0.0,
            translate=translate,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=NEAREST,
            fill=128,
        )

    return reference


def _exact(device: torch.device) -> dict:
    return {}


def _autocontrast_tolerance(device: torch.device) -> dict:
    # We compute PIL's floor(255 * (x - lo) / (hi - lo)) exactly; torchvision's tensor kernel
    # lands one level low on about 1 % of values.
    return {"max_abs": 1, "max_frac": 0.02}


@dataclass(frozen=True)
class OpCase:
    """One op against torchvision: our batched call, the per-image reference, the tolerance."""

    ours: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    reference: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    tolerance: Callable[[torch.device], dict]
    values: Callable[[int, torch.device], torch.Tensor] | None = None  # per-image parameters
    channels: int = 3
    warp: str | None = None  # a nearest warp: compared by rounding.assert_nearest_warp_matches


def _enhance(ours, reference) -> OpCase:
    return OpCase(
        ours=ours,
        reference=lambda img, f: reference(img, float(f)),
        tolerance=enhance_tolerance,
        values=lambda n, device: uniform(n, 0.1, 1.9, device),
    )


CONTRAST = _enhance(AF.adjust_contrast, TF.adjust_contrast)
EQUALIZE = OpCase(lambda x, v: AF.equalize(x), lambda img, v: TF.equalize(img), _exact)

# The 14 AutoAugment ops (and three variants) against torchvision.transforms.v2.functional.
CASES: dict[str, OpCase] = {
    "ShearX": OpCase(
        lambda x, m: AF.shear_x(x, m, fill=128),
        _shear(0),
        _exact,
        lambda n, device: uniform(n, -0.3, 0.3, device),
        warp="ShearX",
    ),
    "ShearX-bilinear": OpCase(
        lambda x, m: AF.shear_x(x, m, interpolation="bilinear"),
        _shear(0, BILINEAR, fill=None),
        enhance_tolerance,
        lambda n, device: uniform(n, -0.3, 0.3, device, seed=1),
    ),
    "ShearY": OpCase(
        lambda x, m: AF.shear_y(x, m, fill=128),
        _shear(1),
        _exact,
        lambda n, device: uniform(n, -0.3, 0.3, device),
        warp="ShearY",
    ),
    "TranslateX": OpCase(
        lambda x, t: AF.translate_x(x, t, fill=128),
        _translate(0),
        _exact,
        lambda n, device: uniform(n, -15, 15, device).trunc(),
        warp="TranslateX",
    ),
    "TranslateY": OpCase(
        lambda x, t: AF.translate_y(x, t, fill=128),
        _translate(1),
        _exact,
        lambda n, device: uniform(n, -11, 11, device).trunc(),
        warp="TranslateY",
    ),
    "Rotate": OpCase(
        lambda x, a: AF.rotate(x, a, fill=128),
        lambda img, a: TF.rotate(img, float(a), interpolation=NEAREST, fill=128),
        _exact,
        lambda n, device: uniform(n, -30, 30, device),
        warp="Rotate",
    ),
    "Color": _enhance(AF.adjust_saturation, TF.adjust_saturation),
    "Contrast": CONTRAST,
    "Contrast-1-channel": dataclasses.replace(CONTRAST, channels=1),
    # One correctly rounded product per value: exact on every device.
    "Brightness": dataclasses.replace(
        _enhance(AF.adjust_brightness, TF.adjust_brightness), tolerance=_exact
    ),
    "Sharpness": _enhance(AF.adjust_sharpness, TF.adjust_sharpness),
    "Posterize": OpCase(
        AF.posterize,
        lambda img, b: TF.posterize(img, int(b)),
        _exact,
        lambda n, device: torch.arange(n, device=device) % 9,  # every value 0..8
    ),
    "Solarize": OpCase(
        AF.solarize,
        lambda img, t: TF.solarize(img, float(t)),
        _exact,
        lambda n, device: uniform(n, 0, 255, device),
    ),
    "AutoContrast": OpCase(
        lambda x, v: AF.autocontrast(x),
        lambda img, v: TF.autocontrast(img),
        _autocontrast_tolerance,
    ),
    "Equalize": EQUALIZE,
    "Equalize-1-channel": dataclasses.replace(EQUALIZE, channels=1),
    "Invert": OpCase(lambda x, v: AF.invert(x), lambda img, v: TF.invert(img), _exact),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_torchvision_per_image(make_batch, case: OpCase):
    images = make_batch(channels=case.channels)
    n = images.shape[0]
    values = None if case.values is None else case.values(n, images.device)
    refs = [
        case.reference(img, v)
        for img, v in zip(images, [None] * n if values is None else values, strict=True)
    ]
    out = case.ours(images, values)
    if case.warp is None:
        assert_matches(out, refs, **case.tolerance(images.device))
    else:
        h, w = images.shape[-2:]
        maps = [inverse_map(case.warp, float(v), h, w) for v in values]
        assert_nearest_warp_matches(out, torch.stack(refs), maps)


# (our op on a batch, PIL's op on one image, tolerance): the ops PIL's ImageOps has.
PIL_CASES = {
    **{
        f"Posterize-{bits}": (
            lambda x, b=bits: AF.posterize(x, b),
            lambda im, b=bits: ImageOps.posterize(im, b),
            {},
        )
        for bits in (1, 4, 7, 8)
    },
    **{
        f"Solarize-{t}": (
            lambda x, t=t: AF.solarize(x, float(t)),
            lambda im, t=t: ImageOps.solarize(im, t),
            {},
        )
        for t in (0, 128, 227, 255)
    },
    # PIL's double-precision LUT lands one level low on about 0.05 % of values.
    "AutoContrast": (AF.autocontrast, ImageOps.autocontrast, {"max_abs": 1, "max_frac": 0.002}),
    "Equalize": (AF.equalize, ImageOps.equalize, {}),
}


@pytest.mark.parametrize(("ours", "pil_op", "tolerance"), PIL_CASES.values(), ids=PIL_CASES.keys())
def test_matches_pil(batch, ours, pil_op, tolerance):
    assert_matches(ours(batch), pil_reference(batch, pil_op), **tolerance)


# (op, the parameter that must leave every image as it is)
IDENTITIES = {
    "ShearX": (lambda x, v: AF.shear_x(x, v, fill=128), 0.0),
    "ShearY": (lambda x, v: AF.shear_y(x, v, fill=128), 0.0),
    "Color": (AF.adjust_saturation, 1.0),
    "Solarize": (AF.solarize, 256.0),
}


@pytest.mark.parametrize(("op", "value"), IDENTITIES.values(), ids=IDENTITIES.keys())
def test_identity_parameter(batch, op, value):
    assert torch.equal(op(batch, value), batch)


class TestOpProperties:
    """What a torchvision comparison alone would not pin down: directions, fills, borders."""

    def test_translate_x_direction_and_fill(self, batch):
        out = AF.translate_x(batch, 3.0, fill=128)
        assert torch.equal(out[..., 3:], batch[..., :-3])
        assert (out[..., :3] == 128).all()

    def test_translate_y_direction_and_fill(self, batch):
        out = AF.translate_y(batch, -2.0, fill=128)
        assert torch.equal(out[..., :-2, :], batch[..., 2:, :])
        assert (out[..., -2:, :] == 128).all()

    def test_rotate_quarter_turn_is_counter_clockwise(self, device):
        square = torch.arange(36, dtype=torch.uint8, device=device).reshape(1, 1, 6, 6)
        assert torch.equal(AF.rotate(square, 90.0), torch.rot90(square, 1, dims=(-2, -1)))

    def test_color_single_channel_is_unchanged(self, make_batch):
        grey = make_batch(channels=1)
        assert torch.equal(AF.adjust_saturation(grey, 0.3), grey)

    def test_sharpness_border_is_unchanged(self, batch):
        out = AF.adjust_sharpness(batch, 0.1)
        assert torch.equal(out[..., 0, :], batch[..., 0, :])
        assert torch.equal(out[..., :, -1], batch[..., :, -1])

    def test_solarize_0_inverts(self, batch):
        assert torch.equal(AF.solarize(batch, 0.0), 255 - batch)

    def test_autocontrast_is_the_exact_integer_stretch(self, batch):
        x = batch.long()
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        exact = torch.where(hi > lo, (x - lo) * 255 // (hi - lo).clamp(min=1), x)
        assert torch.equal(AF.autocontrast(batch).long(), exact)

    def test_autocontrast_stretches_each_channel_and_keeps_flat_ones(self, batch):
        out = AF.autocontrast(batch)
        assert torch.equal(out[3], batch[3])  # flat image
        assert torch.equal(out[5, 0], batch[5, 0])  # flat channel
        assert (out[1].amin(dim=(1, 2)) == 0).all() and (out[1].amax(dim=(1, 2)) == 255).all()

    def test_equalize_leaves_flat_images(self, make_batch):
        grey = make_batch(channels=1)
        assert torch.equal(AF.equalize(grey)[3], grey[3])

    def test_equalize_histograms_do_not_leak_between_images(self, make_batch):
        # Offsetting each (image, channel) into its own 256 bins must keep them independent.
        big = make_batch(n=40, seed=3)
        alone = torch.cat([AF.equalize(big[i : i + 1]) for i in range(big.shape[0])])
        assert torch.equal(AF.equalize(big), alone)


class TestToleranceHasPower:
    """The rounding tolerance of nearest warps lets through ties and nothing else."""

    FACTOR = 1 / 15  # AutoAugment's shear bin 2: row 7 samples exactly between two columns

    def _shear(self, images: torch.Tensor, factor: float, **affine) -> torch.Tensor:
        kwargs = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "center": [0, 0], **affine}
        shear = [_shear_degrees(factor), 0.0]
        return torch.stack(
            [
                TF.affine(img, shear=shear, interpolation=NEAREST, fill=128, **kwargs)
                for img in images
            ]
        )

    def test_right_reference_passes_and_has_ties(self, make_batch):
        images = make_batch(height=32, width=32).cpu()
        maps = [inverse_map("ShearX", self.FACTOR, 32, 32)] * images.shape[0]
        assert ambiguous_samples(maps, 32, 32)[:, 7].all()  # the whole tie row is allowed
        out = AF.shear_x(images, self.FACTOR, fill=128)
        assert_nearest_warp_matches(out, self._shear(images, self.FACTOR), maps)

    @pytest.mark.parametrize(
        "wrong",
        [
            {"factor": -FACTOR},  # wrong sign
            {"center": None},  # sheared about the image centre, not the top-left corner
            {"translate": [1, 0]},  # one pixel off
        ],
        ids=["sign", "centre", "offset"],
    )
    def test_wrong_reference_fails(self, make_batch, wrong):
        images = make_batch(height=32, width=32).cpu()
        maps = [inverse_map("ShearX", self.FACTOR, 32, 32)] * images.shape[0]
        wrong = dict(wrong)
        factor = wrong.pop("factor", self.FACTOR)
        with pytest.raises(AssertionError, match="no sample is within"):
            assert_nearest_warp_matches(
                AF.shear_x(images, self.FACTOR, fill=128),
                self._shear(images, factor, **wrong),
                maps,
            )

    def test_half_a_degree_of_rotation_fails(self, make_batch):
        images = make_batch(height=32, width=32).cpu()
        angles = torch.full((images.shape[0],), 20.0)
        maps = [inverse_map("Rotate", 20.0, 32, 32)] * images.shape[0]
        off = torch.stack([TF.rotate(img, 20.5, fill=128) for img in images])
        with pytest.raises(AssertionError, match="no sample is within"):
            assert_nearest_warp_matches(AF.rotate(images, angles, fill=128), off, maps)

    def test_a_changed_pixel_passes_only_at_a_tie(self, make_batch):
        images = make_batch(height=32, width=32).cpu()
        maps = [inverse_map("ShearX", self.FACTOR, 32, 32)] * images.shape[0]
        out = AF.shear_x(images, self.FACTOR, fill=128)
        at_tie, elsewhere = out.clone(), out.clone()
        at_tie[0, :, 7, 12] += 1
        elsewhere[0, :, 8, 12] += 1
        assert_nearest_warp_matches(at_tie, out, maps)
        with pytest.raises(AssertionError, match="1 pixels differ"):
            assert_nearest_warp_matches(elsewhere, out, maps)


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
