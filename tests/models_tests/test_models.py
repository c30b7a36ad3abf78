"""CPU tests for the model registry, the CNN baselines and Shake-Shake-26."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import create_model, list_models
from models._registry import register_model
from models._shake_shake import _ProjectionShortcut, shake_combine, shake_shake

# Every test below that is about "each model" loops over the registry, so a new model is tested
# by being registered; these named ones also have their parameter counts pinned.
MODELS = list_models()
NAMED = ["cnn_basic", "cnn_reg", "shake26_2x32d", "shake26_2x64d", "shake26_2x96d"]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _batch(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g)


# --- registry -----------------------------------------------------------------------------


def test_list_models_is_sorted_and_has_the_named_models() -> None:
    assert MODELS == sorted(MODELS) and len(set(MODELS)) == len(MODELS)
    assert set(NAMED) <= set(MODELS)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError) as info:
        create_model("foo")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == "unknown model 'foo'; expected one of: " + ", ".join(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_kwarg_is_named(name: str) -> None:
    with pytest.raises(TypeError, match="widht"):
        create_model(name, widht=3)


def test_duplicate_registration_raises() -> None:
    def cnn_basic(*, num_classes: int = 10) -> nn.Module:
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="already registered"):
        register_model(cnn_basic)
    # The failed registration must not have replaced the real builder.
    assert _n_params(create_model("cnn_basic")) == 307_498


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_num_classes_validated(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model(name, num_classes=bad)


# --- parameter counts ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("cnn_basic", 307_498), ("cnn_reg", 308_394)])
def test_cnn_exact_param_counts(name: str, count: int) -> None:
    assert _n_params(create_model(name)) == count


@pytest.mark.parametrize(
    ("name", "paper"),
    # Gastaldi 2017, "Shake-Shake regularization", Table 1 / 2 parameter counts.
    [("shake26_2x32d", 2.9e6), ("shake26_2x64d", 11.7e6), ("shake26_2x96d", 26.2e6)],
)
def test_shake_param_counts_near_paper(name: str, paper: float) -> None:
    n = _n_params(create_model(name))
    assert abs(n - paper) / paper < 0.03, n


# --- forward shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("train", [True, False])
def test_forward_shape_every_model(name: str, train: bool) -> None:
    model = create_model(name, num_classes=7).train(train)
    with torch.no_grad():
        out = model(_batch(2))
    assert out.shape == (2, 7)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = _batch(2)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_shake_trains_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = create_model("shake26_2x32d").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_batch(2))
    out.float().sum().backward()
    assert out.shape == (2, 10)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# --- cnn_reg dropout ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dropout", "named"),
    [
        ((0.2, 0.3, 1.0), "1.0"),
        ((-0.1, 0.3, 0.4), "-0.1"),
        ((0.2, 0.3), "(0.2, 0.3)"),
        ((0.1, 0.2, 0.3, 0.4), "(0.1, 0.2, 0.3, 0.4)"),
        ((0.2, "x", 0.4), "'x'"),
    ],
)
def test_cnn_reg_dropout_validation(dropout: tuple, named: str) -> None:
    with pytest.raises(ValueError) as info:
        create_model("cnn_reg", dropout=dropout)
    assert named in str(info.value)


def test_cnn_reg_dropout_rates_applied_in_order() -> None:
    model = create_model("cnn_reg", dropout=(0.0, 0.5, 0.25))
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.0, 0.5, 0.25]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6


# --- Shake-Shake rule ---------------------------------------------------------------------


def test_shake_combine_forward_alpha_backward_beta() -> None:
    g = torch.Generator().manual_seed(1)
    n = 4
    b1 = torch.randn(n, 3, 2, 2, generator=g, requires_grad=True)
    b2 = torch.randn(n, 3, 2, 2, generator=g, requires_grad=True)
    alpha = torch.tensor([0.1, 0.4, 0.7, 0.9]).view(n, 1, 1, 1)
    beta = torch.tensor([0.8, 0.2, 0.35, 0.05]).view(n, 1, 1, 1)
    upstream = torch.randn(n, 3, 2, 2, generator=g)

    out = shake_combine(b1, b2, alpha, beta)
    torch.testing.assert_close(out, alpha * b1 + (1 - alpha) * b2)
    out.backward(upstream)

    torch.testing.assert_close(b1.grad, beta * upstream)
    torch.testing.assert_close(b2.grad, (1 - beta) * upstream)
    # An ordinary (autograd-derived) mix would have given the forward weights instead.
    assert not torch.allclose(b1.grad, alpha * upstream)
    assert not torch.allclose(b2.grad, (1 - alpha) * upstream)


def test_shake_shake_training_draws_independent_per_image_alpha_beta() -> None:
    torch.manual_seed(0)
    n = 64
    b1 = torch.zeros(n, 2, 3, 3, requires_grad=True)
    b2 = torch.ones(n, 2, 3, 3, requires_grad=True)
    out = shake_shake(b1, b2, training=True)
    out.backward(torch.ones_like(out))

    # With b1 = 0 and b2 = 1 the forward is 1 - alpha; with g = 1, b1's gradient is beta.
    alpha = 1 - out.detach()
    beta = b1.grad
    torch.testing.assert_close(b2.grad, 1 - beta)
    for t in (alpha, beta):
        # One value per image: constant within an image, varying across images, in [0, 1].
        assert torch.equal(t, t[:, :1, :1, :1].expand_as(t))
        assert t[:, 0, 0, 0].unique().numel() > n // 2
        assert ((t >= 0) & (t <= 1)).all()
    assert not torch.allclose(alpha, beta, atol=1e-2)


def test_shake_shake_eval_is_half_half() -> None:
    b1 = torch.randn(3, 4, 2, 2)
    b2 = torch.randn(3, 4, 2, 2)
    torch.testing.assert_close(shake_shake(b1, b2, training=False), 0.5 * (b1 + b2))


def test_shake_model_eval_deterministic_train_stochastic() -> None:
    torch.manual_seed(0)
    model = create_model("shake26_2x32d")
    x = _batch(2)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        # Train-mode BN is deterministic for a fixed batch, so any change comes from alpha.
        assert not torch.allclose(model(x), model(x))


def test_projection_shortcut_paths_see_offset_pixels() -> None:
    sc = _ProjectionShortcut(1, 2, stride=2).eval()
    with torch.no_grad():
        sc.conv1.weight.fill_(1.0)
        sc.conv2.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)  # non-negative, so the leading ReLU is a no-op
    with torch.no_grad():
        out = sc(x)
    eps_scale = (1 + sc.bn.eps) ** -0.5  # eval BN with fresh stats only divides by sqrt(1+eps)
    torch.testing.assert_close(out[:, 0], x[0, :, ::2, ::2] * eps_scale)
    torch.testing.assert_close(out[:, 1], x[0, :, 1::2, 1::2] * eps_scale)


def test_shake_init() -> None:
    torch.manual_seed(0)
    model = create_model("shake26_2x32d")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        elif isinstance(m, nn.Linear):
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k)). A widening conv
    # (32 -> 64 channels) is used so that fan_in would give a visibly different std.
    conv = model.stages[4].branch1[1]
    assert (conv.in_channels, conv.out_channels) == (32, 64)
    expected = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert abs(conv.weight.std().item() - expected) / expected < 0.05
