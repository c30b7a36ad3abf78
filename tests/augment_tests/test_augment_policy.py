"""Policies: the op/magnitude table, batched application against a per-image reference, JSON."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from rounding import assert_chains_match, assert_op_matches
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

import augment
from augment import OP_NAMES, Policy, PolicyError, load_policy, policy_from_json, policy_to_json
from augment._autoaugment import OPS, OpSpec

NEAREST = TF.InterpolationMode.NEAREST


def _exact_autocontrast(img: torch.Tensor) -> torch.Tensor:
    x = img.long()
    lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
    return torch.where(hi > lo, (x - lo) * 255 // (hi - lo).clamp(min=1), x).to(torch.uint8)


def _bin(lo: float, hi: float, i: int) -> float:
    # torchvision's AutoAugment reads its magnitudes from a float32 torch.linspace.
    return float(torch.linspace(lo, hi, 10)[i])


def reference_magnitude(op: str, i: int, sign: float, height: int, width: int) -> float:
    """What the reference applies for a warp op at bin i: shear factor, whole pixels, degrees."""
    if op in ("ShearX", "ShearY"):
        return sign * _bin(0.0, 0.3, i)
    if op in ("TranslateX", "TranslateY"):
        return int(sign * 150 / 331 * (width if op == "TranslateX" else height) * i / 9)
    if op == "Rotate":
        return sign * _bin(0.0, 30.0, i)
    return 0.0


def reference_op(img: torch.Tensor, op: str, i: int, sign: float) -> torch.Tensor:
    """One AutoAugment op on one CHW image, written from the table in the brief with public
    torchvision functions (magnitude bin i of 10, sign +1/-1 for signed ops, grey fill 128)."""
    h, w = img.shape[-2:]
    warp = reference_magnitude(op, i, sign, h, w)
    if op in ("ShearX", "ShearY"):
        angle = math.degrees(math.atan(warp))
        shear = [angle, 0.0] if op == "ShearX" else [0.0, angle]
        return TF.affine(
            img,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear,
            interpolation=NEAREST,
            fill=128,
            center=[0, 0],
        )
    if op in ("TranslateX", "TranslateY"):
        translate = [warp, 0] if op == "TranslateX" else [0, warp]
        return TF.affine(
            img,
            angle=0.0,
            translate=translate,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=NEAREST,
            fill=128,
        )
    if op == "Rotate":
        return TF.rotate(img, warp, interpolation=NEAREST, fill=128)
    enhance = {
        "Color": TF.adjust_saturation,
        "Contrast": TF.adjust_contrast,
        "Sharpness": TF.adjust_sharpness,
        "Brightness": TF.adjust_brightness,
    }
    if op in enhance:
        return enhance[op](img, 1.0 + sign * _bin(0.0, 0.9, i))
    if op == "Posterize":
        return TF.posterize(img, round(8 - 4 * i / 9))
    if op == "Solarize":
        # CIFAR10Policy's thresholds 256 .. 0 (torchvision: 255 .. 0); 256 inverts nothing.
        threshold = _bin(256.0, 0.0, i)
        return img.clone() if threshold > 255 else TF.solarize(img, threshold)
    if op == "AutoContrast":
        return _exact_autocontrast(img)  # see test_augment_autoaugment_ops.TestAutoContrast
    if op == "Equalize":
        return TF.equalize(img)
    if op == "Invert":
        return TF.invert(img)
    raise AssertionError(op)


def applied_steps(policy: Policy, images: torch.Tensor, params) -> list[list[tuple[str, float]]]:
    """Per image, the (op, reference magnitude) of each step the draws applied, in order."""
    h, w = images.shape[-2:]
    chains = []
    for n in range(images.shape[0]):
        sub = policy.sub_policies[int(params.choice[n])]
        chains.append(
            [
                (
                    step.op,
                    reference_magnitude(step.op, step.magnitude, float(params.signs[k, n]), h, w),
                )
                for k, step in enumerate(sub)
                if params.applied[k, n]
            ]
        )
    return chains


def reference_apply(policy: Policy, images: torch.Tensor, params) -> torch.Tensor:
    """The policy applied image by image with the given draws."""
    out = []
    for n, img in enumerate(images):
        for k, step in enumerate(policy.sub_policies[int(params.choice[n])]):
            if params.applied[k, n]:
                img = reference_op(img, step.op, step.magnitude, float(params.signs[k, n]))
        out.append(img)
    return torch.stack(out)


def random_policy(seed: int, size: int = 40) -> Policy:
    """A policy that uses every op at varied probabilities and magnitudes."""
    rng = random.Random(seed)
    ops = list(OP_NAMES) * 6
    rng.shuffle(ops)
    return Policy(
        [
            [(ops[2 * s + k], rng.choice([0.3, 0.7, 1.0]), rng.randrange(10)) for k in range(2)]
            for s in range(size)
        ]
    )


class TestMagnitudeTable:
    def test_values(self):
        def bins(lo, hi):
            return [lo + (hi - lo) * i / 9 for i in range(10)]

        expected = {
            "ShearX": bins(0, 0.3),
            "ShearY": bins(0, 0.3),
            "TranslateX": bins(0, 150 / 331),
            "TranslateY": bins(0, 150 / 331),
            "Rotate": bins(0, 30),
            "Solarize": bins(256, 0),
            "Posterize": [8, 8, 7, 7, 6, 6, 5, 5, 4, 4],
            **{op: bins(0, 0.9) for op in ("Color", "Contrast", "Sharpness", "Brightness")},
        }
        for op in OP_NAMES:
            mags = OPS[op].magnitudes
            if op in expected:
                assert mags == pytest.approx(expected[op]), op
            else:
                assert mags is None, op
        signed = {op for op in OP_NAMES if OPS[op].signed}
        assert signed == {
            "ShearX",
            "ShearY",
            "TranslateX",
            "TranslateY",
            "Rotate",
            "Color",
            "Contrast",
            "Sharpness",
            "Brightness",
        }

    def test_agrees_with_torchvision_autoaugment(self):
        space = getattr(v2.AutoAugment, "_AUGMENTATION_SPACE", None)
        if space is None:
            pytest.skip("torchvision's private AutoAugment table moved")
        h, w = 24, 40
        for op in OP_NAMES:
            theirs, signed = space[op]
            theirs = theirs(10, h, w)
            assert OPS[op].signed == signed, op
            ours = OPS[op].magnitudes
            if theirs is None:
                assert ours is None
                continue
            ours = torch.tensor(ours, dtype=torch.float64)
            if op == "TranslateX":
                ours = ours * w
            elif op == "TranslateY":
                ours = ours * h
            elif op == "Solarize":
                ours = ours / 256  # the documented difference: torchvision scales 1..0 by 255
            assert torch.allclose(ours, theirs.double(), atol=1e-5), op

    def test_op_names(self):
        assert OP_NAMES == (
            "ShearX",
            "ShearY",
            "TranslateX",
            "TranslateY",
            "Rotate",
            "Color",
            "Posterize",
            "Solarize",
            "Contrast",
            "Sharpness",
            "Brightness",
            "AutoContrast",
            "Equalize",
            "Invert",
        )


class TestEveryOpAndBin:
    @pytest.mark.parametrize("op", OP_NAMES)
    def test_single_step_policy_matches_reference(self, batch, make_generator, op):
        for i in range(10):
            policy = Policy([[(op, 1.0, i), ("Invert", 0.0, 0)]])
            params = policy.sample_params(batch.shape[0], make_generator(i), batch.device)
            assert params.applied[0].all() and not params.applied[1].any()
            out = policy.apply_params(batch, params)
            expected = reference_apply(policy, batch.cpu(), params)
            magnitudes = [chain[0][1] for chain in applied_steps(policy, batch, params)]
            assert_op_matches(out, expected, op, magnitudes)


class TestPolicyApply:
    @pytest.mark.parametrize("name", ["cifar10", "random"])
    def test_batched_matches_per_image_reference(self, make_batch, make_generator, name):
        policy = load_policy("cifar10") if name == "cifar10" else random_policy(0)
        images = make_batch(n=64, height=32, width=32, seed=1)
        params = policy.sample_params(images.shape[0], make_generator(3), images.device)
        out = policy.apply_params(images, params)
        expected = reference_apply(policy, images.cpu(), params)
        assert_chains_match(out, expected, applied_steps(policy, images, params))

    def test_apply_is_sample_then_apply_params(self, batch, make_generator):
        policy = random_policy(1)
        params = policy.sample_params(batch.shape[0], make_generator(9), batch.device)
        assert torch.equal(
            policy.apply(batch, make_generator(9)), policy.apply_params(batch, params)
        )

    def test_shape_dtype_determinism(self, batch, make_generator):
        policy = load_policy("cifar10")
        a = policy.apply(batch, make_generator(1))
        b = policy.apply(batch, make_generator(1))
        c = policy.apply(batch, make_generator(2))
        assert (a.shape, a.dtype, a.device) == (batch.shape, torch.uint8, batch.device)
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_draws_match_probabilities(self, device, make_generator):
        policy = load_policy("cifar10")
        n = 50000
        params = policy.sample_params(n, make_generator(0), device)
        counts = torch.bincount(params.choice, minlength=25).cpu()
        assert counts.min().item() > 0.8 * n / 25 and counts.max().item() < 1.2 * n / 25
        for s, sub in enumerate(policy.sub_policies):
            chosen = params.choice == s
            for k, step in enumerate(sub):
                rate = params.applied[k][chosen].float().mean().item()
                assert abs(rate - step.probability) < 0.05, (s, k)
        assert abs((params.signs < 0).float().mean().item() - 0.5) < 0.01

    def test_groups_images_by_op_instead_of_looping(self, make_batch, make_generator, monkeypatch):
        calls = []
        for name, spec in list(OPS.items()):

            def counting(x, v, mode, fill, _name=name, _apply=spec.apply):
                calls.append((_name, x.shape[0]))
                return _apply(x, v, mode, fill)

            monkeypatch.setitem(OPS, name, OpSpec(counting, spec.magnitudes, spec.signed))
        images = make_batch(n=512, height=32, width=32)
        load_policy("cifar10").apply(images, make_generator(0))
        assert len(calls) <= 2 * len(OP_NAMES)  # at most one call per op per step
        assert sum(size for _, size in calls) > 512  # and those calls cover many images each

    def test_probability_zero_is_identity_and_one_always_applies(self, batch, make_generator):
        assert torch.equal(
            Policy([[("Invert", 0.0, 0), ("Equalize", 0.0, 0)]]).apply(batch, make_generator(0)),
            batch,
        )
        twice = Policy([[("Invert", 1.0, 0), ("Solarize", 1.0, 9)]])
        assert torch.equal(twice.apply(batch, make_generator(0)), 255 - (255 - batch))

    def test_images_draw_different_sub_policies(self, device, make_generator):
        policy = Policy(
            [[("Invert", 1.0, 0), ("Invert", 0.0, 0)], [("Invert", 0.0, 0), ("Invert", 0.0, 0)]]
        )
        images = torch.full((64, 3, 4, 4), 10, dtype=torch.uint8, device=device)
        out = policy.apply(images, make_generator(0))
        inverted = (out[:, 0, 0, 0] == 245).sum().item()
        assert 10 < inverted < 54

    def test_single_channel_and_empty_batches(self, make_batch, make_generator, device):
        grey = make_batch(channels=1)
        assert load_policy("cifar10").apply(grey, make_generator(0)).shape == grey.shape
        empty = torch.empty(0, 3, 32, 32, dtype=torch.uint8, device=device)
        assert load_policy("cifar10").apply(empty, make_generator(0)).shape == empty.shape

    def test_input_is_not_modified(self, batch, make_generator):
        before = batch.clone()
        random_policy(2).apply(batch, make_generator(0))
        assert torch.equal(batch, before)

    def test_errors(self, batch, make_generator):
        policy = load_policy("cifar10")
        params = policy.sample_params(batch.shape[0] - 1, make_generator(0), batch.device)
        with pytest.raises(ValueError, match="params were drawn for"):
            policy.apply_params(batch, params)
        with pytest.raises(TypeError, match="uint8"):
            policy.apply(batch.float(), make_generator(0))
        with pytest.raises(ValueError, match="1 or 3 channels"):
            policy.apply(torch.cat([batch, batch], dim=1), make_generator(0))


class TestCifar10Policy:
    def test_has_the_papers_25_sub_policies(self):
        policy = load_policy("cifar10")
        assert len(policy.sub_policies) == 25
        assert policy.sub_policies[0] == (("Invert", 0.1, 7), ("Contrast", 0.2, 6))
        assert policy.sub_policies[-1] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1))

    def test_agrees_with_torchvision(self):
        try:
            theirs = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies
        except AttributeError:
            pytest.skip("torchvision's private policy list moved")
        ours = load_policy("cifar10").sub_policies
        assert len(ours) == len(theirs)
        for our_sub, their_sub in zip(ours, theirs, strict=True):
            for (op, p, m), (their_op, their_p, their_m) in zip(our_sub, their_sub, strict=True):
                assert (op, p) == (their_op, their_p)
                assert their_m is None or m == their_m


class TestPolicyJson:
    def test_round_trip_dict(self):
        policy = random_policy(3)
        data = policy_to_json(policy)
        assert policy_from_json(data) == policy
        assert policy_to_json(policy_from_json(data)) == data
        assert json.loads(json.dumps(data)) == data

    def test_round_trip_file(self, tmp_path):
        for policy in (load_policy("cifar10"), random_policy(4)):
            path = tmp_path / "policy.json"
            augment.save_policy(policy, path)
            assert load_policy(str(path)) == policy
            assert load_policy(path) == policy
            assert json.loads(path.read_text()) == policy_to_json(policy)

    def test_format(self):
        data = policy_to_json(load_policy("cifar10"))
        assert data["magnitude_table"] == "torchvision" and data["magnitude_bins"] == 10
        assert data["sub_policies"][0] == [["Invert", 0.1, 7], ["Contrast", 0.2, 6]]

    def test_lower_camel_names_load(self, tmp_path):
        names = [
            "shearX",
            "shearY",
            "translateX",
            "translateY",
            "rotate",
            "color",
            "posterize",
            "solarize",
            "contrast",
            "sharpness",
            "brightness",
            "autocontrast",
            "equalize",
            "invert",
        ]
        data = {
            "magnitude_table": "torchvision",
            "magnitude_bins": 10,
            "sub_policies": [[[name, 0.5, 3], ["invert", 0.1, 3]] for name in names],
        }
        path = tmp_path / "cifar10policy_style.json"
        path.write_text(json.dumps(data))
        policy = load_policy(str(path))
        assert [sub[0].op for sub in policy.sub_policies] == list(OP_NAMES)
        assert policy_to_json(policy)["sub_policies"][11][0] == ["AutoContrast", 0.5, 3]

    def test_integer_probabilities_become_floats(self):
        policy = Policy([[("Invert", 1, 0), ("Equalize", 0, 0)]])
        assert policy.sub_policies[0][0].probability == 1.0
        assert isinstance(policy.sub_policies[0][0].probability, float)


def _doc(sub_policies, **header):
    return {
        "magnitude_table": "torchvision",
        "magnitude_bins": 10,
        "sub_policies": sub_policies,
        **header,
    }


GOOD = ["Invert", 0.1, 7]


class TestPolicyErrors:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (
                _doc([[GOOD, ["Blur", 0.5, 3]]]),
                r"^sub_policies\[0\]\[1\]: unknown op 'Blur'; "
                r"expected one of ShearX, ",
            ),
            (
                _doc([[GOOD, GOOD], [["Rotate", 1.5, 3], GOOD]]),
                r"^sub_policies\[1\]\[0\]: probability must be a number in \[0, 1\], got 1.5$",
            ),
            (_doc([[GOOD, ["Rotate", -0.1, 3]]]), r"^sub_policies\[0\]\[1\]: probability .*-0.1"),
            (_doc([[GOOD, ["Rotate", "0.5", 3]]]), r"sub_policies\[0\]\[1\]: probability .*'0.5'"),
            (_doc([[GOOD, ["Rotate", True, 3]]]), r"sub_policies\[0\]\[1\]: probability .*True"),
            (_doc([[GOOD, ["Rotate", float("nan"), 3]]]), r"sub_policies\[0\]\[1\]: probability"),
            (
                _doc([[GOOD, ["Rotate", 0.5, 10]]]),
                r"^sub_policies\[0\]\[1\]: magnitude_index must be an int in 0..9, got 10$",
            ),
            (_doc([[["Rotate", 0.5, -1], GOOD]]), r"^sub_policies\[0\]\[0\]: magnitude_index"),
            (_doc([[["Rotate", 0.5, 2.0], GOOD]]), r"^sub_policies\[0\]\[0\]: magnitude_index"),
            (
                _doc([[["Rotate", 0.5], GOOD]]),
                r"^sub_policies\[0\]\[0\]: expected a step \[op, probability, magnitude_index\]",
            ),
            (_doc([[GOOD, GOOD, GOOD]]), r"^sub_policies\[0\]: expected a list of 2 steps"),
            (_doc([GOOD]), r"^sub_policies\[0\]: expected a list of 2 steps"),
            (_doc([[GOOD, GOOD], "Invert"]), r"^sub_policies\[1\]: expected a list of 2 steps"),
            (_doc([]), r"^sub_policies: expected at least one sub-policy"),
            (_doc({"a": 1}), r"^sub_policies: expected a list of sub-policies, got dict"),
            (
                _doc([[GOOD, GOOD]], magnitude_table="autoaugment"),
                r"^magnitude_table: expected 'torchvision', got 'autoaugment'$",
            ),
            (_doc([[GOOD, GOOD]], magnitude_bins=11), r"^magnitude_bins: expected 10, got 11$"),
            (
                {"magnitude_bins": 10, "sub_policies": [[GOOD, GOOD]]},
                r"^magnitude_table: missing; expected 'torchvision'$",
            ),
            ({"magnitude_table": "torchvision", "magnitude_bins": 10}, r"^sub_policies: missing"),
            (_doc([[GOOD, GOOD]], name="mine"), r"^unknown key 'name'; expected only "),
            ("cifar10", r"^expected a JSON object"),  # (a bare list is read: see randaugment tests)
        ],
    )
    def test_malformed_json(self, data, message):
        with pytest.raises(PolicyError, match=message) as info:
            policy_from_json(data)
        assert "\n" not in str(info.value)

    def test_is_a_value_error(self):
        assert issubclass(PolicyError, ValueError)

    def test_constructor_checks_too(self):
        with pytest.raises(PolicyError, match=r"sub_policies\[0\]\[0\]: unknown op"):
            Policy([[("Cutout", 0.5, 3), ("Invert", 0.1, 3)]])

    def test_file_errors_name_the_file(self, tmp_path):
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        with pytest.raises(PolicyError, match="bad.json: not valid JSON"):
            load_policy(str(bad))
        bad.write_text(json.dumps(_doc([[GOOD, ["Blur", 0.5, 3]]])))
        with pytest.raises(PolicyError, match=r"bad.json: sub_policies\[0\]\[1\]: unknown op"):
            load_policy(str(bad))

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("[" * 200000 + "]" * 200000, "JSON nested too deep"),
            ("[]".encode("utf-16"), r"not UTF-8 text \(byte 0\)"),
            (b" " * (2 << 20), r"\d+ bytes; expected a policy JSON of at most"),
        ],
        ids=["deep", "utf-16", "huge"],
    )
    def test_hostile_files_are_one_line_naming_the_file(self, tmp_path, content, message):
        bad = tmp_path / "hostile.json"
        bad.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(PolicyError, match=f"hostile.json: {message}"):
            load_policy(str(bad))

    def test_unknown_name(self):
        with pytest.raises(FileNotFoundError, match="built-in policies: cifar10"):
            load_policy("imagenet")
