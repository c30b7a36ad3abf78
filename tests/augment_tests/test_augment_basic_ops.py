"""Part 1 ops (crop, flip, rotation, cutout): batched results match a per-image reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rounding import assert_op_matches, assert_within_one_level
from torchvision.transforms.v2 import functional as TF

from augment import functional as AF


def _same_draws(make_generator, seed: int = 7) -> tuple[torch.Generator, torch.Generator]:
    """Two generators in the same state: one to draw parameters, one for the random op."""
    return make_generator(seed), make_generator(seed)


class TestRandomCrop:
    @pytest.mark.parametrize("padding", [1, 4])
    def test_matches_per_image_slicing(self, batch, make_generator, padding):
        g_params, g_op = _same_draws(make_generator)
        n, _, h, w = batch.shape
        top, left = AF.sample_crop_offsets(n, padding, g_params, batch.device)
        out = AF.random_crop(batch, padding, g_op)
        for i in range(n):
            padded = F.pad(batch[i], (padding, padding, padding, padding))
            t, le = int(top[i]), int(left[i])
            assert torch.equal(out[i], padded[:, t : t + h, le : le + w])

    def test_offsets_cover_the_whole_range(self, device, make_generator):
        # Like torchvision's RandomCrop(32, padding=4): offsets 0..8 in the padded image.
        top, left = AF.sample_crop_offsets(4000, 4, make_generator(0), device)
        assert set(top.tolist()) == set(range(9)) == set(left.tolist())

    def test_zero_padding_is_identity(self, batch, make_generator):
        assert torch.equal(AF.random_crop(batch, 0, make_generator(0)), batch)

    def test_shape_dtype_determinism(self, batch, make_generator):
        a = AF.random_crop(batch, 4, make_generator(3))
        b = AF.random_crop(batch, 4, make_generator(3))
        c = AF.random_crop(batch, 4, make_generator(4))
        assert a.shape == batch.shape and a.dtype == torch.uint8 and a.device == batch.device
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_images_get_different_offsets(self, device, make_generator):
        same = torch.full((16, 3, 8, 8), 9, dtype=torch.uint8, device=device)
        same[:, :, 4, 4] = 200  # a marker whose position reveals the offset
        out = AF.random_crop(same, 2, make_generator(0))
        positions = {tuple((img[0] == 200).nonzero().flatten().tolist()) for img in out}
        assert len(positions) > 8

    def test_errors(self, batch, make_generator):
        with pytest.raises(ValueError, match="padding"):
            AF.random_crop(batch, -1, make_generator(0))
        with pytest.raises(TypeError, match="uint8"):
            AF.random_crop(batch.float(), 4, make_generator(0))
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            AF.random_crop(batch[0], 4, make_generator(0))


class TestRandomHorizontalFlip:
    def test_matches_per_image_flip(self, batch, make_generator):
        g_params, g_op = _same_draws(make_generator)
        flips = AF.sample_flips(batch.shape[0], 0.5, g_params, batch.device)
        out = AF.random_horizontal_flip(batch, g_op)
        assert 0 < int(flips.sum()) < batch.shape[0]  # both cases are exercised
        for i in range(batch.shape[0]):
            expected = batch[i].flip(-1) if flips[i] else batch[i]
            assert torch.equal(out[i], expected)

    @pytest.mark.parametrize("p", [0.0, 1.0])
    def test_probability_extremes(self, batch, make_generator, p):
        out = AF.random_horizontal_flip(batch, make_generator(0), p=p)
        assert torch.equal(out, batch.flip(-1) if p else batch)

    def test_flip_rate(self, device, make_generator):
        flips = AF.sample_flips(20000, 0.5, make_generator(0), device)
        assert abs(flips.float().mean().item() - 0.5) < 0.02

    def test_errors(self, batch, make_generator):
        with pytest.raises(ValueError, match="p must be in"):
            AF.random_horizontal_flip(batch, make_generator(0), p=1.5)


class TestRandomRotation:
    # Tolerance: what rounding can change (rounding.py): nearest samples within rounding of a
    # pixel boundary may read the other neighbour; bilinear values may be one grey level apart.
    @pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
    def test_matches_torchvision_rotate_per_image(self, batch, make_generator, interpolation):
        g_params, g_op = _same_draws(make_generator)
        angles = AF.sample_angles(batch.shape[0], 30.0, g_params, batch.device)
        out = AF.random_rotation(batch, 30.0, g_op, interpolation=interpolation)
        mode = TF.InterpolationMode(interpolation)
        refs = [
            TF.rotate(img, float(a), interpolation=mode)
            for img, a in zip(batch, angles, strict=True)
        ]
        if interpolation == "nearest":
            assert_op_matches(out, torch.stack(refs), "Rotate", angles.tolist())
        else:
            assert_within_one_level(out, torch.stack(refs))

    def test_grey_fill_matches_torchvision(self, batch, make_generator):
        angles = AF.sample_angles(batch.shape[0], 30.0, make_generator(1), batch.device)
        out = AF.rotate(batch, angles, fill=128)
        refs = [TF.rotate(img, float(a), fill=128) for img, a in zip(batch, angles, strict=True)]
        assert_op_matches(out, torch.stack(refs), "Rotate", angles.tolist())

    def test_bilinear_border_blends_towards_fill(self, device):
        # A constant image rotated with a fill of the same value stays constant: border pixels
        # are sum(w_in * pixel) + (1 - sum(w_in)) * fill. (torchvision's tensor path weights the
        # in-image part twice there, so its borders differ from this for fill != 0.)
        flat = torch.full((2, 3, 16, 16), 90, dtype=torch.uint8, device=device)
        out = AF.rotate(
            flat, torch.tensor([17.0, -33.0], device=device), interpolation="bilinear", fill=90
        )
        assert torch.equal(out, flat)

    def test_angles_uniform_in_range(self, device, make_generator):
        angles = AF.sample_angles(20000, 15.0, make_generator(0), device)
        assert angles.abs().max().item() <= 15.0
        assert angles.min().item() < -14.5 and angles.max().item() > 14.5
        assert abs(angles.mean().item()) < 0.3

    def test_zero_degrees_is_identity(self, batch, make_generator):
        assert torch.equal(AF.random_rotation(batch, 0.0, make_generator(0)), batch)

    def test_shape_dtype_determinism(self, batch, make_generator):
        a = AF.random_rotation(batch, 20.0, make_generator(3))
        b = AF.random_rotation(batch, 20.0, make_generator(3))
        c = AF.random_rotation(batch, 20.0, make_generator(4))
        assert a.shape == batch.shape and a.dtype == torch.uint8
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_errors(self, batch, make_generator):
        with pytest.raises(ValueError, match="max_degrees"):
            AF.random_rotation(batch, -5.0, make_generator(0))
        with pytest.raises(ValueError, match="interpolation"):
            AF.random_rotation(batch, 5.0, make_generator(0), interpolation="bicubic")


class TestCutout:
    def test_matches_per_image_slicing(self, batch, make_generator):
        size = 16
        g_params, g_op = _same_draws(make_generator)
        n, _, h, w = batch.shape
        cy, cx = AF.sample_centers(n, h, w, g_params, batch.device)
        out = AF.cutout(batch, size, g_op)
        for i in range(n):
            # DeVries & Taylor's code: zero [y - size // 2, y + size // 2), clipped to the image.
            y, x = int(cy[i]), int(cx[i])
            expected = batch[i].clone()
            expected[
                :,
                max(0, y - size // 2) : min(h, y + size // 2),
                max(0, x - size // 2) : min(w, x + size // 2),
            ] = 0
            assert torch.equal(out[i], expected)

    def test_odd_size_square_has_size_pixels(self, device):
        images = torch.full((1, 1, 20, 20), 5, dtype=torch.uint8, device=device)
        centre = torch.tensor([10], device=device)
        out = AF.erase_square(images, 5, centre, centre)
        assert int((out == 0).sum()) == 25
        assert torch.equal((out[0, 0] == 0).nonzero().min(0).values.cpu(), torch.tensor([8, 8]))

    def test_clipped_at_border(self, device):
        ones = torch.full((1, 1, 32, 32), 1, dtype=torch.uint8, device=device)
        zero = torch.tensor([0], device=device)
        out = AF.erase_square(ones, 16, zero, zero)
        assert int((out == 0).sum()) == 8 * 8

    def test_centres_cover_the_image(self, device, make_generator):
        cy, cx = AF.sample_centers(20000, 24, 40, make_generator(0), device)
        assert set(cy.tolist()) == set(range(24)) and set(cx.tolist()) == set(range(40))

    def test_zero_size_is_identity(self, batch, make_generator):
        assert torch.equal(AF.cutout(batch, 0, make_generator(0)), batch)

    def test_shape_dtype_determinism_and_variety(self, device, make_generator):
        same = torch.full((16, 3, 32, 32), 50, dtype=torch.uint8, device=device)
        a = AF.cutout(same, 16, make_generator(3))
        b = AF.cutout(same, 16, make_generator(3))
        assert a.shape == same.shape and a.dtype == torch.uint8 and torch.equal(a, b)
        assert len({tuple(img.flatten().tolist()) for img in a}) > 8  # squares in different places

    def test_errors(self, batch, make_generator):
        with pytest.raises(ValueError, match="size"):
            AF.cutout(batch, -2, make_generator(0))
        with pytest.raises(ValueError, match="size"):
            AF.cutout(batch, 2.5, make_generator(0))


class TestGenerator:
    def test_wrong_device_generator(self):
        # A batch on the meta device needs no accelerator and still disagrees with a CPU generator.
        images = torch.empty(2, 3, 8, 8, dtype=torch.uint8, device="meta")
        with pytest.raises(ValueError, match="generator is on cpu"):
            AF.random_crop(images, 4, torch.Generator())

    def test_not_a_generator(self, batch):
        with pytest.raises(TypeError, match="torch.Generator"):
            AF.cutout(batch, 4, 123)

    def test_global_rng_untouched(self, batch, make_generator):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        AF.cutout(
            AF.random_rotation(AF.random_crop(batch, 4, make_generator(0)), 10, make_generator(1)),
            8,
            make_generator(2),
        )
        assert torch.equal(torch.get_rng_state(), before)
