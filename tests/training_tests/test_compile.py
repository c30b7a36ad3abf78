"""`compile=True` on CPU: one graph for training and one for evaluation, counted by torch._dynamo,
and the padding that keeps evaluation at one shape changes no count."""

from __future__ import annotations

import json

import pytest
import torch
import torch._dynamo
from test_trainer import synthetic  # the same synthetic sets (this folder is on sys.path)
from torch import nn
from torch._dynamo.utils import counters

import training._trainer as trainer_module
from models import _registry
from training import TrainConfig, evaluate, train
from training._trainer import _PaddedEval


class _Tiny(nn.Module):
    """BatchNorm and dropout, which act differently in training and eval mode (so a graph guards
    on the mode), in a net small enough to compile in seconds."""

    def __init__(self, *, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Dropout(0.1),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, "tiny", _Tiny)
    # 150 validation images in batches of 64: the last has 22, so it is padded.
    monkeypatch.setattr(trainer_module, "_EVAL_BATCH", 64)
    return "tiny"


@pytest.fixture
def graphs():
    """A function returning the graphs dynamo has compiled since the test began."""
    torch._dynamo.reset()
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()


@pytest.mark.slow  # compiling takes 5-15 s on 2 cores
def test_a_compiled_run_compiles_one_training_and_one_evaluation_graph(
    tiny_model, graphs, monkeypatch
):
    # aot_eager traces forward and backward through AOTAutograd as inductor does, without
    # inductor's minutes of C++ compilation on 2 cores; the guards that decide recompiles are
    # dynamo's under every backend. 300 training images in batches of 64 leave 44 over.
    monkeypatch.setattr(trainer_module, "_COMPILE_BACKEND", "aot_eager")
    train_set, val_set = synthetic(300), synthetic(150, seed=1)
    config = TrainConfig(model=tiny_model, epochs=2, batch_size=64, compile=True, tta=True)
    after_batch, after_epoch = [], []
    result = train(
        config,
        train_set,
        val_set,
        device="cpu",
        on_batch_end=lambda done, total: after_batch.append((done, total, graphs())),
        on_epoch_end=lambda stats: after_epoch.append(graphs()),
    )
    # Every training batch, the last of epoch 2 included, runs the graph of the first; the
    # validation of epoch 1 adds one, and nothing after it does.
    assert after_batch == [(d, 4, 1) for d in range(1, 5)] + [(d, 4, 2) for d in range(1, 5)]
    assert after_epoch == [2, 2]
    assert counters["graph_break"] == {}
    assert result.images_dropped_per_epoch == 44
    # Loss and accuracy are of the 256 images trained, not of the 300.
    assert all((s.train_accuracy * 256) == round(s.train_accuracy * 256) for s in result.history)
    # The padded, compiled validation scores as the plain model on the unpadded batches.
    plain = evaluate(result.model, val_set, device="cpu", tta=True)
    assert result.history[-1].val_accuracy == plain.accuracy
    assert result.history[-1].val_loss == pytest.approx(plain.loss, rel=1e-5)


def test_padded_evaluation_counts_exactly_as_unpadded(tiny_model):
    config = TrainConfig(model=tiny_model, epochs=1, batch_size=32)
    model = train(config, synthetic(128), device="cpu").model
    data = synthetic(150, seed=1)
    shapes = []

    def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return model(x)

    for tta in (False, True):
        shapes.clear()
        plain = evaluate(model, data, device="cpu", tta=tta)
        padded = evaluate(_PaddedEval(model, 64, logits), data, device="cpu", tta=tta)
        # Batches of 64, 64 and 22, the last padded to 64: one shape, as a compiled graph needs.
        assert set(shapes) == {(64, 3, 32, 32)} and len(shapes) == 3 * (2 if tta else 1)
        assert padded.confusion == plain.confusion and padded.accuracy == plain.accuracy
        assert padded.count == plain.count == 150
        # A different batch size may round the logits differently in the last bits.
        assert padded.loss == pytest.approx(plain.loss, rel=1e-6)
        assert model.training  # evaluate restored the mode of the model inside


def test_compile_refuses_a_training_set_smaller_than_a_batch():
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=64, compile=True)
    with pytest.raises(ValueError, match=r"invalid batch_size=64 with compile.*the 50 training"):
        train(config, synthetic(50), device="cpu")


def test_without_compile_the_partial_last_batch_is_trained(tiny_model):
    batches = []
    config = TrainConfig(model=tiny_model, epochs=1, batch_size=64)
    result = train(
        config, synthetic(100), device="cpu", on_batch_end=lambda d, t: batches.append(t)
    )
    assert batches == [2, 2] and result.images_dropped_per_epoch == 0


@pytest.mark.slow  # compiles, and reads the real data
def test_search_train_compile_says_and_saves_what_it_left_out(
    tiny_model, graphs, monkeypatch, tmp_path, data_root, capsys
):
    from search import train as train_cli

    monkeypatch.setattr(trainer_module, "_COMPILE_BACKEND", "aot_eager")
    save = tmp_path / "saved"
    train_cli.main(
        ["--epochs", "1", "--train-size", "300", "--val-size", "150", "--no-test", "--compile"]
        + ["--batch-size", "64", "--model", tiny_model, "--data", str(data_root)]
        + ["--save", str(save)]
    )
    out = capsys.readouterr().out
    assert "compile: each epoch left out its partial last batch, 44 of 300 images" in out
    assert json.loads((save / "config.json").read_text())["images_dropped_per_epoch"] == 44
    assert graphs() == 2
