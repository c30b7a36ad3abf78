"""RandAugment and TrivialAugmentWide against torchvision's own classes (transforms.v2).

Three kinds of checks:
- draw by draw: replaying the draws torchvision's class makes from torch's global RNG, our
  batched `apply_params` gives the same images (within what rounding can change: rounding.py);
- per op and bin: every (op, bin, sign) of both tables equals torchvision's op at that magnitude;
- in distribution, with different random streams (ours: a torch.Generator; torchvision: the global
  RNG): per-image outcome statistics agree by a two-sample Kolmogorov-Smirnov bound, and the same
  bound rejects a wrong configuration (so the check can fail).

AutoContrast is the one documented kernel difference (see test_augment_autoaugment_ops): we
compute the exact integer stretch, torchvision's kernel lands one level low on about 1 % of
values. The reference swaps in the exact stretch, so the remaining comparison is exact.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from rounding import assert_chains_match, assert_op_matches
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

import augment
from augment import (
    BUILTIN_POLICIES,
    OpDraws,
    Policy,
    PolicyError,
    PolicyTransform,
    RandAugment,
    TrivialAugmentWide,
    build_batch_augment,
    load_policy,
    policy_from_json,
    policy_to_json,
    save_policy,
)
from augment._autoaugment import OPS, OpSpec
from augment._randaugment import RANDAUGMENT_SPACE, TRIVIALAUGMENT_WIDE_SPACE

SPACES = {"trivialaugment": TRIVIALAUGMENT_WIDE_SPACE, "randaugment": RANDAUGMENT_SPACE}
REFERENCE = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment}


def _exact_autocontrast(img: torch.Tensor) -> torch.Tensor:
    x = img.long()
    lo, hi = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    return torch.where(hi > lo, (x - lo) * 255 // (hi - lo).clamp(min=1), x).to(torch.uint8)


@pytest.fixture
def exact_autocontrast(monkeypatch):
    """torchvision's classes call F.autocontrast at run time: give them the exact stretch."""
    monkeypatch.setattr(TF, "autocontrast", _exact_autocontrast)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: torchvision's per-image loops are thousands of tiny ops, which run
    up to 20x slower when two threads contend for a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def allowed_fraction(device: torch.device) -> float:
    """The same op twice on one CPU is exact; another device may round differently: 1 %."""
    return 0.0 if device.type == "cpu" else 0.01


def reference_magnitude(name: str, op: str, b: int, sign: float, height: int, width: int) -> float:
    """The magnitude torchvision's op gets at bin b (whole pixels for translations, as its
    `_apply_op` truncates them)."""
    magnitudes, signed = SPACES[name][op]
    if magnitudes is None:
        return 0.0
    value = float(magnitudes(31, height, width)[b]) * (sign if signed else 1.0)
    return float(int(value)) if op in ("TranslateX", "TranslateY") else value


def natural_batch(n: int, seed: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """Smooth images of varied brightness and contrast (so every op changes them), on CPU."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    noise = torch.rand(n, 3, height, width, generator=g) * 0.15
    contrast = torch.rand(n, 1, 1, 1, generator=g) * 0.9 + 0.1
    offset = torch.rand(n, 1, 1, 1, generator=g) * (1 - contrast)
    return ((smooth + noise) / 1.15 * contrast + offset).mul(255).round().to(torch.uint8)


def replay_torchvision_draws(seed: int, name: str, rounds: int, magnitude: int | None):
    """The (op index, bin, sign) draws torchvision's v2 class makes after torch.manual_seed(seed).

    Mirrors its forward: op = randint(#ops); for ops with magnitudes, TrivialAugmentWide draws a
    bin = randint(31) and a signed op is negated when rand() <= 0.5.
    """
    space = SPACES[name]
    torch.manual_seed(seed)
    draws = []
    for _ in range(rounds):
        op = int(torch.randint(len(space), ()))
        magnitudes, signed = space[list(space)[op]]
        b, sign = (0 if magnitude is None else magnitude), 1.0
        if magnitudes is not None:
            if magnitude is None:
                b = int(torch.randint(31, ()))
            if signed and torch.rand(()) <= 0.5:
                sign = -1.0
        draws.append((op, b, sign))
    return draws


class TestTables:
    @pytest.mark.parametrize("name", list(SPACES))
    def test_agree_with_torchvision_v2(self, name):
        theirs = getattr(REFERENCE[name], "_AUGMENTATION_SPACE", None)
        if theirs is None:
            pytest.skip("torchvision's private augmentation table moved")
        ours = SPACES[name]
        assert list(ours) == list(theirs)  # same order: op index k is torchvision's op k
        h, w = 24, 40
        for op, (magnitudes, signed) in ours.items():
            their_fn, their_signed = theirs[op]
            assert signed == their_signed, op
            expected = their_fn(31, h, w)
            if expected is None:
                assert magnitudes is None, op
                continue
            got = magnitudes(31, h, w).double()
            expected = expected.double() * (255 if op == "Solarize" else 1)
            assert torch.allclose(got, expected, atol=1e-4), op

    def test_wide_and_standard_ranges(self):
        def top(space, op):
            return float(space[op][0](31, 32, 32)[-1])

        ta, ra = TRIVIALAUGMENT_WIDE_SPACE, RANDAUGMENT_SPACE
        assert (top(ta, "ShearX"), top(ta, "TranslateX"), top(ta, "Rotate")) == pytest.approx(
            (0.99, 32.0, 135.0)
        )
        assert (top(ra, "ShearX"), top(ra, "TranslateX"), top(ra, "Rotate")) == pytest.approx(
            (0.3, 150 / 331 * 32, 30.0)
        )
        assert top(ta, "Posterize") == 2 and top(ra, "Posterize") == 4
        assert "Invert" not in ta and "Invert" not in ra and "Identity" in ta


class TestMatchesTorchvisionDrawByDraw:
    @pytest.mark.parametrize(
        ("name", "policy", "reference", "rounds", "magnitude"),
        [
            ("trivialaugment", TrivialAugmentWide(), v2.TrivialAugmentWide(), 1, None),
            ("randaugment", RandAugment(3, 17), v2.RandAugment(3, 17), 3, 17),
            ("randaugment", RandAugment(), v2.RandAugment(), 2, 9),
        ],
    )
    def test_replayed_draws_give_torchvision_images(
        self, device, exact_autocontrast, name, policy, reference, rounds, magnitude
    ):
        # Non-square, so a swapped height and width in a table shows.
        images = natural_batch(400, seed=1, height=24, width=40)
        draws = [replay_torchvision_draws(i, name, rounds, magnitude) for i in range(400)]
        expected = []
        for i, img in enumerate(images):
            torch.manual_seed(i)
            expected.append(reference(img))
        table = torch.tensor(draws)  # (images, rounds, 3)
        params = OpDraws(
            ops=table[..., 0].long().T.contiguous().to(device),
            bins=table[..., 1].long().T.contiguous().to(device),
            signs=table[..., 2].float().T.contiguous().to(device),
        )
        out = policy.apply_params(images.to(device), params)
        ops = list(SPACES[name])
        steps = [
            [(ops[op], reference_magnitude(name, ops[op], b, sign, 24, 40)) for op, b, sign in row]
            for row in draws
        ]
        assert_chains_match(out, torch.stack(expected), steps)


class TestEveryOpAndBin:
    @pytest.mark.parametrize("name", list(SPACES))
    @pytest.mark.parametrize("op_index", range(14))
    def test_matches_torchvision_op(self, device, exact_autocontrast, name, op_index):
        """Image k gets bin k // 2 with sign (-1)^k: all 31 bins, both signs, one op."""
        reference = REFERENCE[name]()
        space = getattr(reference, "_AUGMENTATION_SPACE", None)
        apply_op = getattr(reference, "_apply_image_or_video_transform", None)
        if space is None or apply_op is None:
            pytest.skip("torchvision's private auto-augment helpers moved")
        op = list(SPACES[name])[op_index]
        images = natural_batch(62, seed=op_index, height=24, width=40)
        bins = torch.arange(62) // 2
        signs = torch.tensor([1.0, -1.0]).repeat(31)
        magnitudes_fn, signed = space[op]
        expected = []
        for img, b, s in zip(images, bins.tolist(), signs.tolist(), strict=True):
            magnitudes = magnitudes_fn(31, 24, 40)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[b])
            if signed:
                magnitude *= s
            expected.append(apply_op(img, op, magnitude, "nearest", reference._fill))
        policy = TrivialAugmentWide() if name == "trivialaugment" else RandAugment()
        params = OpDraws(
            ops=torch.full((1, 62), op_index, device=device),
            bins=bins[None].to(device),
            signs=signs[None].to(device),
        )
        if name == "randaugment":  # RandAugment applies N ops: give it one round here
            policy = RandAugment(1, 0)
        out = policy.apply_params(images.to(device), params)
        applied = [
            reference_magnitude(name, op, b, s, 24, 40)
            for b, s in zip(bins.tolist(), signs.tolist(), strict=True)
        ]
        assert_op_matches(out, torch.stack(expected), op, applied)


def _ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two ECDFs."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True) / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True) / b.numel()
    return (cdf_a - cdf_b).abs().max().item()


def _ks_bound(n: int, m: int) -> float:
    # Critical value at significance 0.001: c(alpha) = sqrt(-ln(alpha / 2) / 2) = 1.949.
    return math.sqrt(-math.log(0.0005) / 2) * math.sqrt((n + m) / (n * m))


def _outcomes(images: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics of what the policy did."""
    diff = out.float() - images.float()
    return {
        "mean abs change": diff.abs().mean(dim=(1, 2, 3)),
        "mean change": diff.mean(dim=(1, 2, 3)),
        "changed pixels": (diff != 0).float().mean(dim=(1, 2, 3)),
        "output std": out.float().std(dim=(1, 2, 3)),
    }


class TestSameDistributionAsTorchvision:
    N = 3000

    def _theirs(self, reference, images: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(12345)
        return torch.stack([reference(img) for img in images])

    @pytest.mark.parametrize(
        ("policy", "reference", "wrong"),
        [
            # The wrong variant is what a plausible bug would give: RandAugment's narrow table in
            # place of the wide one, a different magnitude, one op too few.
            (TrivialAugmentWide(), v2.TrivialAugmentWide(), RandAugment(1, 15)),
            (RandAugment(), v2.RandAugment(), RandAugment(2, 14)),
            (RandAugment(3, 5), v2.RandAugment(3, 5), RandAugment(2, 5)),
        ],
    )
    def test_per_image_outcomes(self, device, policy, reference, wrong):
        images = natural_batch(self.N, seed=7)
        their_images = self._theirs(reference, images)
        theirs = _outcomes(images, their_images)
        gen = torch.Generator(device=device).manual_seed(0)
        our_images = policy.apply(images.to(device), gen).cpu()
        ours = _outcomes(images, our_images)
        bound = _ks_bound(self.N, self.N)
        for key in theirs:
            assert _ks_statistic(ours[key], theirs[key]) < bound, key
        # Identity, bin 0 of signed ops, and AutoContrast/Equalize with nothing to do leave an
        # image as it is: the shares agree within binomial noise (5 sigma).
        p = (their_images == images).flatten(1).all(1).float().mean().item()
        ours_p = (our_images == images).flatten(1).all(1).float().mean().item()
        assert p > 0 and abs(ours_p - p) < 5 * math.sqrt(2 * p * (1 - p) / self.N)
        # The same statistics tell a wrong configuration apart: the check has power.
        gen = torch.Generator(device=device).manual_seed(0)
        bad = _outcomes(images, wrong.apply(images.to(device), gen).cpu())
        assert max(_ks_statistic(bad[key], theirs[key]) for key in theirs) > bound


class TestDraws:
    def test_trivialaugment_draws_are_uniform(self, device, make_generator):
        n = 62000
        params = TrivialAugmentWide().sample_params(n, make_generator(0), device)
        assert params.ops.shape == params.bins.shape == params.signs.shape == (1, n)
        ops = torch.bincount(params.ops[0], minlength=14).cpu()
        bins = torch.bincount(params.bins[0], minlength=31).cpu()
        assert ops.numel() == 14 and bins.numel() == 31
        assert (ops - n / 14).abs().max() < 5 * math.sqrt(n / 14)
        assert (bins - n / 31).abs().max() < 5 * math.sqrt(n / 31)
        assert abs((params.signs < 0).float().mean().item() - 0.5) < 0.01

    def test_randaugment_draws_n_ops_with_replacement_at_m(self, device, make_generator):
        n = 20000
        params = RandAugment(3, 7).sample_params(n, make_generator(0), device)
        assert params.ops.shape == (3, n)
        assert (params.bins == 7).all()
        for r in range(3):
            ops = torch.bincount(params.ops[r], minlength=14).cpu()
            assert (ops - n / 14).abs().max() < 5 * math.sqrt(n / 14)
        # With replacement: the same op twice on one image happens (1/14 of pairs).
        repeats = (params.ops[0] == params.ops[1]).float().mean().item()
        assert abs(repeats - 1 / 14) < 0.01

    def test_groups_images_by_op_instead_of_looping(self, make_batch, make_generator, monkeypatch):
        calls = []
        for name, spec in list(OPS.items()):

            def counting(x, v, mode, fill, _name=name, _apply=spec.apply):
                calls.append((_name, x.shape[0]))
                return _apply(x, v, mode, fill)

            monkeypatch.setitem(OPS, name, OpSpec(counting, spec.magnitudes, spec.signed))
        images = make_batch(n=512, height=32, width=32)
        RandAugment(2, 9).apply(images, make_generator(0))
        # Translations have their own pixel kernels; the other 11 image ops go through OPS.
        assert len(calls) <= 2 * 11
        assert sum(size for _, size in calls) > 512


@pytest.mark.parametrize("policy", [TrivialAugmentWide(), RandAugment(), RandAugment(14, 30)])
class TestApply:
    def test_determinism_given_a_seed(self, policy, batch, make_generator):
        a = policy.apply(batch, make_generator(1))
        b = policy.apply(batch, make_generator(1))
        c = policy.apply(batch, make_generator(2))
        assert (a.shape, a.dtype, a.device) == (batch.shape, torch.uint8, batch.device)
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_apply_is_sample_then_apply_params(self, policy, batch, make_generator):
        params = policy.sample_params(batch.shape[0], make_generator(9), batch.device)
        expected = policy.apply_params(batch, params)
        assert torch.equal(policy.apply(batch, make_generator(9)), expected)

    def test_same_result_on_every_device(self, policy, batch):
        # The draws come from a generator on the batch's device; drawn on CPU and applied on the
        # test device, they give the CPU images (within the cross-device tolerance).
        params = policy.sample_params(batch.shape[0], torch.Generator().manual_seed(3), "cpu")
        on_cpu = policy.apply_params(batch.cpu(), params)
        moved = OpDraws(*(t.to(batch.device) for t in (params.ops, params.bins, params.signs)))
        here = policy.apply_params(batch, moved).cpu()
        assert (here != on_cpu).float().mean().item() <= allowed_fraction(batch.device)

    def test_single_channel_empty_and_input_untouched(self, policy, make_batch, make_generator):
        grey = make_batch(channels=1)
        assert policy.apply(grey, make_generator(0)).shape == grey.shape
        empty = torch.empty(0, 3, 32, 32, dtype=torch.uint8, device=grey.device)
        assert policy.apply(empty, make_generator(0)).shape == empty.shape
        images = make_batch()
        before = images.clone()
        policy.apply(images, make_generator(0))
        assert torch.equal(images, before)

    def test_errors(self, policy, batch, make_generator):
        params = policy.sample_params(batch.shape[0] - 1, make_generator(0), batch.device)
        with pytest.raises(ValueError, match="params were drawn for"):
            policy.apply_params(batch, params)
        with pytest.raises(TypeError, match="uint8"):
            policy.apply(batch.float(), make_generator(0))
        with pytest.raises(ValueError, match="1 or 3 channels"):
            policy.apply(torch.cat([batch, batch], dim=1), make_generator(0))
        if batch.device.type != "cpu":
            with pytest.raises(ValueError, match="generator is on"):
                policy.apply(batch, torch.Generator().manual_seed(0))

    def test_usable_wherever_a_policy_is(self, policy, batch, make_generator):
        pipeline = build_batch_augment(crop_padding=0, flip=False, policy=policy)
        assert torch.equal(
            pipeline(batch, make_generator(5)), policy.apply(batch, make_generator(5))
        )
        assert str(policy) in repr(pipeline)
        transform = PolicyTransform(policy, generator=make_generator(4))
        assert torch.equal(transform(batch[0]), policy.apply(batch[:1], make_generator(4))[0])


class TestNames:
    def test_builtins(self):
        assert list(BUILTIN_POLICIES) == ["cifar10", "trivialaugment", "randaugment"]
        assert load_policy("trivialaugment") == TrivialAugmentWide()
        assert load_policy("randaugment") == RandAugment(2, 9)
        assert load_policy("randaugment:3,5") == RandAugment(num_ops=3, magnitude=5)
        assert load_policy("randaugment: 1, 30") == RandAugment(1, 30)
        assert PolicyTransform("randaugment:4,2").policy == RandAugment(4, 2)

    @pytest.mark.parametrize("policy", [TrivialAugmentWide(), RandAugment(), RandAugment(14, 0)])
    def test_str_is_a_name_that_loads_back(self, policy):
        assert load_policy(str(policy)) == policy

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("randaugment:0,9", r"^invalid randaugment N=0; expected an integer in 1\.\.14 "),
            ("randaugment:15,9", r"^invalid randaugment N=15; expected an integer in 1\.\.14 "),
            ("randaugment:2,31", r"^invalid randaugment M=31; expected an integer in 0\.\.30 "),
            ("randaugment:2,-1", r"^invalid randaugment M=-1; expected an integer in 0\.\.30 "),
            ("randaugment:x,9", r"^invalid randaugment N='x'; expected an integer in 1\.\.14 "),
            ("randaugment:2,9.5", r"^invalid randaugment M='9.5'; expected an integer "),
            ("randaugment:2", r"^invalid policy 'randaugment:2'; expected randaugment:N,M"),
            ("randaugment:2,9,1", r"^invalid policy 'randaugment:2,9,1'; expected randaugment"),
            ("randaugment:", r"^invalid policy 'randaugment:'; expected randaugment:N,M"),
            ("trivialaugment:1", r"^invalid policy 'trivialaugment:1'; trivialaugment takes no"),
            ("cifar10:2", r"^invalid policy 'cifar10:2'; cifar10 takes no parameters"),
        ],
    )
    def test_bad_names(self, name, message):
        with pytest.raises(PolicyError, match=message) as info:
            load_policy(name)
        assert "\n" not in str(info.value)

    def test_constructor_checks(self):
        with pytest.raises(PolicyError, match=r"invalid randaugment N=True"):
            RandAugment(True, 9)
        with pytest.raises(PolicyError, match=r"invalid randaugment M=2.0"):
            RandAugment(2, 2.0)

    def test_unknown_name_lists_the_known_ones(self):
        with pytest.raises(FileNotFoundError) as info:
            load_policy("autoaugment")
        assert str(info.value).endswith(
            "built-in policies: cifar10, trivialaugment, randaugment (or randaugment:N,M)"
        )


class TestJson:
    @pytest.mark.parametrize("policy", [TrivialAugmentWide(), RandAugment(), RandAugment(5, 0)])
    def test_round_trip(self, policy, tmp_path):
        data = policy_to_json(policy)
        assert json.loads(json.dumps(data)) == data
        assert policy_from_json(data) == policy
        path = tmp_path / "policy.json"
        save_policy(policy, path)
        assert load_policy(path) == policy
        assert json.loads(path.read_text()) == data

    def test_format(self):
        assert policy_to_json(RandAugment(2, 9)) == {
            "randaugment": {"num_ops": 2, "magnitude": 9, "magnitude_bins": 31}
        }
        assert policy_to_json(TrivialAugmentWide()) == {"trivialaugment": {"magnitude_bins": 31}}

    def test_defaults_as_torchvision(self):
        assert policy_from_json({"randaugment": {}}) == RandAugment(2, 9)
        assert policy_from_json({"randaugment": {"magnitude": 4}}) == RandAugment(2, 4)
        assert policy_from_json({"trivialaugment": {}}) == TrivialAugmentWide()

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"randaugment": {"num_ops": 0}}, r"^invalid randaugment N=0; expected "),
            ({"randaugment": {"magnitude": 40}}, r"^invalid randaugment M=40; expected "),
            ({"randaugment": {"num_ops": "2"}}, r"^invalid randaugment N='2'; expected "),
            (
                {"randaugment": {"n": 2}},
                r"^randaugment: unknown key 'n'; expected only num_ops, magnitude, magnitude_bins$",
            ),
            (
                {"randaugment": {"magnitude_bins": 10}},
                r"^randaugment: magnitude_bins: expected 31, got 10$",
            ),
            ({"randaugment": [2, 9]}, r"^randaugment: expected an object with keys num_ops, "),
            ({"trivialaugment": {"num_ops": 1}}, r"^trivialaugment: unknown key 'num_ops'"),
            ({"trivialaugment": None}, r"^trivialaugment: expected an object with keys"),
            (
                {"randaugment": {}, "trivialaugment": {}},
                r"^unknown key 'randaugment'; expected only magnitude_table, ",
            ),
            ("randaugment", r"^expected a JSON object with keys magnitude_table, "),
        ],
    )
    def test_malformed(self, data, message):
        with pytest.raises(PolicyError, match=message) as info:
            policy_from_json(data)
        assert "\n" not in str(info.value)

    def test_file_errors_name_the_file(self, tmp_path):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"randaugment": {"num_ops": 99}}))
        with pytest.raises(PolicyError, match=r"bad.json: invalid randaugment N=99; expected"):
            load_policy(bad)


class TestBareSubPolicyList:
    SUBS = [[["Invert", 0.1, 7], ["Contrast", 0.2, 6]], [["Rotate", 0.7, 2], ["shearX", 0.3, 9]]]

    def test_loads_with_the_torchvision_table(self, tmp_path):
        path = tmp_path / "other_tool.json"
        path.write_text(json.dumps(self.SUBS))
        policy = load_policy(path)
        assert policy == Policy(self.SUBS)
        assert policy.sub_policies[1][1] == ("ShearX", 0.3, 9)
        # We write the headed form, which reads back to the same policy.
        save_policy(policy, path)
        assert set(json.loads(path.read_text())) == {
            "magnitude_table",
            "magnitude_bins",
            "sub_policies",
        }
        assert load_policy(path) == policy

    def test_torchvisions_own_lists_load(self):
        # torchvision writes None as the magnitude of AutoContrast/Equalize/Invert.
        theirs = getattr(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), "_policies", None)
        if theirs is None:
            pytest.skip("torchvision's private policy list moved")
        policy = policy_from_json(json.loads(json.dumps(theirs)))
        assert len(policy.sub_policies) == 25
        ours = load_policy("cifar10").sub_policies
        for our_sub, their_sub in zip(ours, policy.sub_policies, strict=True):
            for a, b in zip(our_sub, their_sub, strict=True):
                assert (a.op, a.probability) == (b.op, b.probability)
                assert a.magnitude == b.magnitude or OPS[a.op].magnitudes is None

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([[["Invert", 0.1, 7]]], r"^sub_policies\[0\]: expected a list of 2 steps"),
            ([[["Blur", 0.1, 7], ["Invert", 0.1, 7]]], r"^sub_policies\[0\]\[0\]: unknown op"),
            ([[["Rotate", 0.1, None], ["Invert", 0.1, 7]]], r"^sub_policies\[0\]\[0\]: magnitude"),
            ([], r"^sub_policies: expected at least one sub-policy"),
        ],
    )
    def test_malformed(self, data, message):
        with pytest.raises(PolicyError, match=message):
            policy_from_json(data)


def test_public_api():
    for name in ("RandAugment", "TrivialAugmentWide", "OpDraws", "AugmentPolicy"):
        assert name in augment.__all__
