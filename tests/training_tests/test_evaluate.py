"""Evaluation with and without flip test-time augmentation, on synthetic tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training import LabeledImages, TrainConfig, cpu_has_native_bf16, evaluate, train
from training._trainer import normalize


def random_images(n: int, seed: int = 0) -> LabeledImages:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return LabeledImages(images, torch.randint(0, 10, (n,), generator=generator))


class _Net(nn.Module):
    """A small conv net, not mirror-symmetric (its linear layer weighs left and right apart)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Symmetric(_Net):
    """The same net made mirror-symmetric: f(x) = g(x) + g(mirror x) = f(mirror x), exactly
    (float addition commutes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.body(x.flip(-1))


def test_tta_of_a_mirror_symmetric_model_equals_plain_evaluation():
    data = random_images(300)
    plain = evaluate(_Symmetric(), data, device="cpu")
    tta = evaluate(_Symmetric(), data, device="cpu", tta=True)
    assert (plain.tta, tta.tta) == (False, True)
    assert tta.loss == plain.loss
    assert tta.confusion == plain.confusion and tta.accuracy == plain.accuracy


def test_tta_changes_the_results_of_a_model_that_is_not_symmetric():
    data = random_images(300)
    plain = evaluate(_Net(), data, device="cpu")
    tta = evaluate(_Net(), data, device="cpu", tta=True)
    assert (plain.tta, tta.tta) == (False, True)
    assert tta.loss != pytest.approx(plain.loss, rel=1e-4)
    assert tta.confusion != plain.confusion
    # ...and it is the mean of the two views' logits, as the docstring says.
    model = _Net().eval()
    with torch.no_grad():
        x = normalize(data.images)
        mean = (model(x) + model(x.flip(-1))) / 2
    expected = (mean.argmax(1) == data.labels).double().mean().item()
    assert tta.accuracy == pytest.approx(expected)


@pytest.mark.parametrize("tta", [False, True])
def test_validation_uses_the_configs_tta_and_says_so(tta):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    train_set = LabeledImages(images, torch.arange(64) % 10)
    val_set = random_images(50, seed=2)
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=32, tta=tta)
    result = train(config, train_set, val_set, device="cpu")
    stats = result.history[-1]
    assert stats.val_tta is tta
    check = evaluate(result.model, val_set, device="cpu", tta=tta)
    assert check.tta is tta
    assert stats.val_loss == pytest.approx(check.loss, rel=1e-6)
    other = evaluate(result.model, val_set, device="cpu", tta=not tta)
    assert stats.val_loss != pytest.approx(other.loss, rel=1e-6)


def test_bf16_evaluation_on_cpu_is_close_to_fp32():
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag)")
    data = random_images(200)
    fp32 = evaluate(_Net(), data, device="cpu", precision="fp32")
    bf16 = evaluate(_Net(), data, device="cpu", precision="bf16")
    # bf16 keeps 8 bits of mantissa: about 3 significant digits of the mean loss.
    assert bf16.loss == pytest.approx(fp32.loss, rel=2e-2)
    assert bf16.loss != fp32.loss  # autocast really ran in bf16
