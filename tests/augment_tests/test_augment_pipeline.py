"""build_batch_augment: order of ops, disabled ops, determinism and argument checks."""

from __future__ import annotations

import pytest
import torch

from augment import build_batch_augment, load_policy
from augment import functional as AF


class TestBuildBatchAugment:
    def test_order_crop_flip_rotation_policy_cutout(self, batch, make_generator):
        policy = load_policy("cifar10")
        augment = build_batch_augment(
            crop_padding=4, flip=True, rotation=10.0, cutout=8, policy=policy
        )
        out = augment(batch, make_generator(5))
        g = make_generator(5)
        expected = AF.random_crop(batch, 4, g)
        expected = AF.random_horizontal_flip(expected, g)
        expected = AF.random_rotation(expected, 10.0, g)
        expected = policy.apply(expected, g)
        expected = AF.cutout(expected, 8, g)
        assert torch.equal(out, expected)

    def test_defaults_are_crop_and_flip(self, batch, make_generator):
        out = build_batch_augment()(batch, make_generator(5))
        g = make_generator(5)
        expected = AF.random_horizontal_flip(AF.random_crop(batch, 4, g), g)
        assert torch.equal(out, expected)

    def test_all_disabled_returns_an_equal_copy(self, batch, make_generator):
        augment = build_batch_augment(crop_padding=0, flip=False, rotation=0, cutout=0)
        out = augment(batch, make_generator(0))
        assert torch.equal(out, batch) and out.data_ptr() != batch.data_ptr()

    def test_shape_dtype_device_determinism(self, batch, make_generator):
        augment = build_batch_augment(rotation=15.0, cutout=16, policy=load_policy("cifar10"))
        a = augment(batch, make_generator(1))
        b = augment(batch, make_generator(1))
        c = augment(batch, make_generator(2))
        assert (a.shape, a.dtype, a.device) == (batch.shape, torch.uint8, batch.device)
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_images_get_different_augmentations(self, device, make_generator):
        same = torch.arange(3 * 32 * 32, device=device).reshape(1, 3, 32, 32) % 251
        same = same.to(torch.uint8).expand(32, -1, -1, -1).contiguous()
        out = build_batch_augment(cutout=16)(same, make_generator(0))
        assert len({tuple(img.flatten().tolist()) for img in out}) == 32

    def test_input_is_not_modified(self, batch, make_generator):
        before = batch.clone()
        build_batch_augment(rotation=5.0, cutout=16, policy=load_policy("cifar10"))(
            batch, make_generator(0)
        )
        assert torch.equal(batch, before)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"crop_padding": -1}, "crop_padding.*-1"),
            ({"crop_padding": 2.5}, "crop_padding.*2.5"),
            ({"flip": "yes"}, "flip.*'yes'"),
            ({"rotation": -10.0}, "rotation.*-10.0"),
            ({"rotation": float("nan")}, "rotation.*nan"),
            ({"cutout": -16}, "cutout.*-16"),
            ({"cutout": True}, "cutout.*True"),
            ({"policy": "cifar10"}, "policy.*load_policy"),
        ],
    )
    def test_invalid_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            build_batch_augment(**kwargs)

    def test_arguments_are_keyword_only(self):
        with pytest.raises(TypeError):
            build_batch_augment(4)  # type: ignore[misc]

    def test_call_checks_the_batch(self, batch, make_generator):
        augment = build_batch_augment()
        with pytest.raises(TypeError, match="uint8"):
            augment(batch.float(), make_generator(0))
        with pytest.raises(TypeError, match="torch.Generator"):
            augment(batch, None)
