"""The training loop, on CPU: synthetic tensors for the mechanics (they run without the data),
real CIFAR-10 slices where learning itself is the point (marked slow)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import training._trainer as trainer_module
from models import _registry
from training import (
    CheckpointPolicy,
    LabeledImages,
    NonFiniteLossError,
    TrainConfig,
    cpu_has_native_bf16,
    evaluate,
    learning_rate,
    resolve_device,
    train,
    train_val_split,
)

# Every class's mean colour, fixed, shared by every synthetic set (training and validation).
_COLOURS = torch.randint(0, 256, (10, 3, 1, 1), generator=torch.Generator().manual_seed(99))


def synthetic(n: int, seed: int = 0, *, label_shift: int = 0) -> LabeledImages:
    """`n` images whose class is their colour: the class's colour plus pixel noise, so a CNN
    learns them in an epoch or two. Labels are `(class + label_shift) % 10`: a shifted set
    contradicts an unshifted one, and its loss only grows as the model learns the other."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.arange(n) % 10
    noise = torch.randn(n, 3, 32, 32, generator=generator) * 40
    images = (_COLOURS[classes].float() + noise).clamp(0, 255).to(torch.uint8)
    return LabeledImages(images, (classes + label_shift) % 10, source="synthetic")


@pytest.fixture(scope="module")
def small_split(cifar_train):
    return train_val_split(cifar_train, 1000, seed=0, train_size=4000)


@pytest.mark.slow
def test_short_run_really_learns(small_split):
    train_set, val_set = small_split
    seen = []
    config = TrainConfig(model="cnn_reg", epochs=2, batch_size=64, lr=2e-3, seed=0)
    result = train(config, train_set, val_set, device="cpu", on_epoch_end=seen.append)
    assert [s.epoch for s in seen] == [1, 2]
    # Chance is 10 %; two epochs on 4,000 real images get well above it.
    assert seen[-1].val_accuracy > 0.30
    assert seen[-1].train_loss < seen[0].train_loss
    assert all(s.images_per_second > 0 and s.epoch_time > 0 for s in seen)
    check = evaluate(result.model, val_set, device="cpu")
    assert math.isclose(check.accuracy, seen[-1].val_accuracy, abs_tol=1e-6)
    assert sum(map(sum, check.confusion)) == len(val_set)


def test_same_seed_same_run_different_seed_different_run():
    tiny, val = synthetic(256), synthetic(200, seed=1)
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=64, rotation=10, cutout=8)
    a = train(config, tiny, val, device="cpu")
    b = train(config, tiny, val, device="cpu")
    c = train(config.replace(seed=1), tiny, val, device="cpu")
    assert a.history[0].train_loss == b.history[0].train_loss
    assert a.history[0].train_loss != c.history[0].train_loss


def test_nan_loss_raises_its_own_error():
    broken = synthetic(128)
    config = TrainConfig(model="cnn_basic", epochs=3, batch_size=32, lr=1e30, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train(config, broken, device="cpu")


class _PoisonedAfter(nn.Module):
    """A tiny classifier whose logits turn NaN from its `after`-th training forward pass on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 10)
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.mean((2, 3)))
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                logits = logits * math.nan
        return logits


def test_non_finite_loss_is_caught_every_50_global_steps(monkeypatch):
    # 30 batches an epoch; the loss turns NaN at global step 35 (epoch 2, batch 5). Counting
    # global steps, the check at step 50 (epoch 2, batch 20) stops the run: 49 batches done.
    # Counting steps within the epoch's chunk would look only at each epoch's batch 0 and leave
    # it to the end-of-epoch check, after 60.
    def poisoned(*, num_classes: int = 10) -> nn.Module:
        return _PoisonedAfter(after=35)

    monkeypatch.setitem(_registry._MODELS, "poisoned", poisoned)
    batches = []
    config = TrainConfig(model="poisoned", epochs=3, batch_size=4, schedule="constant")
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 2"):
        train(config, synthetic(120), device="cpu", on_batch_end=lambda d, t: batches.append(d))
    assert len(batches) == 49


def test_multistep_milestones_are_fractions_of_the_run():
    tiny = synthetic(64)
    config = TrainConfig(
        model="cnn_basic",
        epochs=5,
        batch_size=64,
        lr=0.1,
        optimizer="sgd",
        milestones=(0.4, 0.8),
        gamma=0.1,
    )
    assert config.milestone_epochs() == [2, 4]
    assert TrainConfig(epochs=125, milestones=(0.6, 0.8)).milestone_epochs() == [75, 100]
    lrs = [s.lr for s in train(config, tiny, device="cpu").history]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_epoch_lr_is_the_schedule_at_the_epochs_first_global_step(schedule):
    # 40 images in batches of 16: 3 steps an epoch (the last batch short), 12 in the run.
    config = TrainConfig(
        model="cnn_basic", epochs=4, batch_size=16, lr=0.01, schedule=schedule, warmup=0.3
    )
    history = train(config, synthetic(40), device="cpu").history
    assert [s.lr for s in history] == [learning_rate(config, 3 * e, 3) for e in range(4)]
    assert history[0].lr == pytest.approx(0.01 / 4)  # the first of 4 warmup steps


def test_early_stopping_stops_and_restores_best_weights():
    # Validation labels contradict training's, so every epoch of learning makes validation
    # loss worse: the first epoch is the best, and patience 2 ends the run after the third.
    # (Here 6.3, 7.7, 10.3.)
    tiny, contrary = synthetic(256), synthetic(300, seed=1, label_shift=1)
    config = TrainConfig(model="cnn_basic", epochs=12, batch_size=32, lr=1e-3, patience=2)
    result = train(config, tiny, contrary, device="cpu")
    losses = [s.val_loss for s in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert result.stopped_early
    assert result.best_epoch == 1
    assert len(result.history) == result.best_epoch + 2
    restored = evaluate(result.model, contrary, device="cpu")
    assert restored.loss == pytest.approx(min(losses), rel=1e-4)


def test_early_stopping_does_not_stop_while_validation_improves():
    tiny, val = synthetic(256), synthetic(300, seed=1)
    config = TrainConfig(model="cnn_basic", epochs=4, batch_size=32, lr=1e-3, patience=1)
    result = train(config, tiny, val, device="cpu")
    losses = [s.val_loss for s in result.history]
    assert losses == sorted(losses, reverse=True)  # each epoch better than the one before
    assert not result.stopped_early
    assert len(result.history) == 4 and result.best_epoch == 4


def _train_interrupted_then_resumed(config, train_set, val_set, path, stop_at, **options):
    """The run stopped by an exception after epoch `stop_at`, then resumed; `options` (such as
    checkpoint_policy, on_resume, on_epoch_end) go to the resumed run, the policy to both."""

    class Interrupt(Exception):
        pass

    def stop(stats):
        if stats.epoch == stop_at:
            raise Interrupt

    policy = {"checkpoint_policy": options.get("checkpoint_policy")}
    with pytest.raises(Interrupt):
        train(
            config,
            train_set,
            val_set,
            device="cpu",
            checkpoint_path=path,
            on_epoch_end=stop,
            **policy,
        )
    return train(
        config, train_set, val_set, device="cpu", checkpoint_path=path, resume=True, **options
    )


def test_resume_continues_from_checkpoint(tmp_path):
    tiny, tiny_val = synthetic(128), synthetic(100, seed=1)
    config = TrainConfig(model="cnn_basic", epochs=3, batch_size=32)
    full = train(config, tiny, tiny_val, device="cpu")
    resumed = _train_interrupted_then_resumed(config, tiny, tiny_val, tmp_path / "state.pt", 2)
    assert [s.epoch for s in resumed.history] == [1, 2, 3]
    assert resumed.history[2].train_loss == pytest.approx(full.history[2].train_loss, rel=1e-5)


@pytest.mark.parametrize("content", [b"\x80\x04truncated", b"", b"PK\x03\x04 not a zip"])
def test_resume_from_a_file_that_is_no_checkpoint_is_one_value_error(tmp_path, content):
    state = tmp_path / "state.pt"
    state.write_bytes(content)
    config = TrainConfig(model="cnn_basic", epochs=2, batch_size=32)
    with pytest.raises(ValueError, match=r"cannot resume from .*state.pt \(\w+\); expected the"):
        train(config, synthetic(64), device="cpu", checkpoint_path=state, resume=True)


def test_resume_is_exact_mid_warmup_with_dropout_and_early_stopping(tmp_path):
    # Interrupted inside the warmup of a cosine schedule, with dropout (global random state)
    # and early stopping's best weights in the checkpoint: the resumed run is the same run.
    tiny, val = synthetic(96), synthetic(60, seed=1)
    config = TrainConfig(
        model="cnn_reg",
        epochs=4,
        batch_size=32,
        optimizer="sgd",
        lr=0.05,
        schedule="cosine",
        warmup=0.6,
        patience=3,
        cutout=8,
    )
    full = train(config, tiny, val, device="cpu")
    resumed = _train_interrupted_then_resumed(config, tiny, val, tmp_path / "state.pt", 2)
    assert [(s.train_loss, s.val_loss, s.lr) for s in resumed.history] == [
        (s.train_loss, s.val_loss, s.lr) for s in full.history
    ]
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert not list(tmp_path.glob("*.tmp"))  # written through the atomic writer


def test_resume_every_2_epochs_is_exact_and_replays_the_saved_epochs(tmp_path):
    # What a search trial does: a checkpoint every 2 epochs, interrupted after epoch 3 (not
    # saved), resumed from epoch 2's; cnn_reg with dropout, SGD, warmup + cosine, Cutout, TTA.
    tiny, val = synthetic(96), synthetic(60, seed=1)
    config = TrainConfig(
        model="cnn_reg",
        model_kwargs={"dropout": (0.2, 0.3, 0.4)},
        epochs=4,
        batch_size=32,
        optimizer="sgd",
        lr=0.05,
        schedule="cosine",
        warmup=0.3,
        label_smoothing=0.1,
        cutout=8,
        tta=True,
    )
    full = train(config, tiny, val, device="cpu")
    replayed, seen = [], []
    resumed = _train_interrupted_then_resumed(
        config,
        tiny,
        val,
        tmp_path / "state.pt",
        3,
        checkpoint_policy=CheckpointPolicy(every=2),
        on_resume=replayed.append,
        on_epoch_end=seen.append,
    )
    assert len(replayed) == 1 and [s.epoch for s in replayed[0]] == [1, 2]
    assert [s.epoch for s in seen] == [3, 4]  # epoch 3 trained again, from epoch 2's state
    assert replayed[0] == resumed.history[:2]
    # Timings differ between runs; everything the run learned is the same.
    learned = [
        (s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy, s.lr) for s in full.history
    ]
    assert [
        (s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy, s.lr) for s in resumed.history
    ] == learned
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert resumed.history[-1].val_accuracy == full.history[-1].val_accuracy


def _saved_epochs(path):
    return [h["epoch"] for h in torch.load(path, weights_only=True)["history"]]


def test_checkpoint_policy_decides_which_epochs_are_saved(tmp_path):
    tiny = synthetic(64)
    config = TrainConfig(model="cnn_basic", epochs=3, batch_size=32)
    saved = []

    def after(stats):  # what the file holds when each epoch's callback runs
        saved.append(_saved_epochs(tmp_path / "a.pt")[-1] if (tmp_path / "a.pt").exists() else 0)

    policy = CheckpointPolicy(every=2, at_end=False)
    train(
        config,
        tiny,
        device="cpu",
        checkpoint_path=tmp_path / "a.pt",
        checkpoint_policy=policy,
        on_epoch_end=after,
    )
    assert saved == [0, 2, 2]  # epoch 3, the last, is not saved: at_end=False
    train(config, tiny, device="cpu", checkpoint_path=tmp_path / "b.pt")
    assert _saved_epochs(tmp_path / "b.pt") == [1, 2, 3]  # the default: every epoch, the last too
    never = CheckpointPolicy(every=0)
    train(config, tiny, device="cpu", checkpoint_path=tmp_path / "c.pt", checkpoint_policy=never)
    assert not (tmp_path / "c.pt").exists()


def test_resume_without_a_checkpoint_starts_afresh_and_replays_nothing(tmp_path):
    replayed = []
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=32)
    result = train(
        config,
        synthetic(32),
        device="cpu",
        checkpoint_path=tmp_path / "state.pt",
        resume=True,
        on_resume=replayed.append,
    )
    assert replayed == [] and [s.epoch for s in result.history] == [1]


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    tiny, state = synthetic(64), tmp_path / "state.pt"
    # Tuples inside (dropout, an inline policy) are stored as plain lists: weights_only reads it.
    config = TrainConfig(
        model="cnn_reg",
        model_kwargs={"dropout": (0.1, 0.2, 0.3)},
        epochs=2,
        batch_size=32,
        policy=((("Rotate", 0.5, 3), ("Invert", 0.2, 0)),),
    )
    last_unsaved = CheckpointPolicy(at_end=False)  # the file keeps epoch 1 of 2
    train(config, tiny, device="cpu", checkpoint_path=state, checkpoint_policy=last_unsaved)
    stored = torch.load(state, weights_only=True)["config"]
    assert stored["model_kwargs"] == {"dropout": [0.1, 0.2, 0.3]} and stored["lr"] == config.lr
    assert stored["policy"] == [[["Rotate", 0.5, 3], ["Invert", 0.2, 0]]]
    for other, differs in [({"lr": 2e-3}, "its lr differs"), ({"epochs": 3}, "its epochs differs")]:
        with pytest.raises(
            ValueError,
            match=rf"cannot resume from .*state.pt \(a checkpoint from another configuration: "
            rf"{differs}\); expected the checkpoint an interrupted run of it saved",
        ):
            train(config.replace(**other), tiny, device="cpu", checkpoint_path=state, resume=True)
    replayed = []
    resumed = train(
        config, tiny, device="cpu", checkpoint_path=state, resume=True, on_resume=replayed.append
    )
    assert [[s.epoch for s in h] for h in replayed] == [[1]]
    assert [s.epoch for s in resumed.history] == [1, 2]


def test_checkpoint_that_stores_no_configuration_is_refused(tmp_path):
    tiny, state = synthetic(64), tmp_path / "state.pt"
    config = TrainConfig(model="cnn_basic", epochs=2, batch_size=32)
    train(config.replace(epochs=1), tiny, device="cpu", checkpoint_path=state)
    older = torch.load(state, weights_only=True)
    del older["config"]  # as the trainer saved them before configurations were stored
    torch.save(older, state)
    with pytest.raises(ValueError, match=r"another configuration: it holds none"):
        train(config.replace(epochs=1), tiny, device="cpu", checkpoint_path=state, resume=True)


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """Every run is an fp16 run, on CPU: its loss scaler is a real `torch.amp.GradScaler("cpu")`,
    as the CUDA one is on a GPU. Autocast stays off: CPU autocast in fp16 has no fast kernels
    on most CPUs (minutes for these tiny runs)."""
    monkeypatch.setattr(trainer_module, "effective_precision", lambda precision, device: "fp16")
    monkeypatch.setitem(trainer_module._AUTOCAST_DTYPES, "fp16", None)


def test_fp16_scales_every_step_and_resumes_exactly(fp16_on_cpu, tmp_path):
    tiny, val = synthetic(96), synthetic(40, seed=1)  # 3 steps an epoch
    config = TrainConfig(model="cnn_basic", epochs=2, batch_size=32, optimizer="sgd", lr=0.05)
    full = train(config, tiny, val, device="cpu", checkpoint_path=tmp_path / "full.pt")
    assert full.precision == "fp16"
    scaler = torch.load(tmp_path / "full.pt", weights_only=True)["scaler"]
    # The scaler scaled the loss and stepped the optimizer at all 6 steps (its count of steps
    # without an overflow grows only through scale, step and update), from its initial scale.
    assert scaler["scale"] == 2.0**16 and scaler["_growth_tracker"] == 6
    resumed = _train_interrupted_then_resumed(config, tiny, val, tmp_path / "state.pt", 1)
    assert [(s.train_loss, s.val_loss) for s in resumed.history] == [
        (s.train_loss, s.val_loss) for s in full.history
    ]
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    # The scaler's state came back with the rest: a fresh scaler would have counted 3 steps.
    assert torch.load(tmp_path / "state.pt", weights_only=True)["scaler"] == scaler


@pytest.mark.slow
def test_bf16_on_cpu_trains_to_the_accuracy_of_fp32(small_split):
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag)")
    train_set, val_set = small_split
    config = TrainConfig(model="cnn_reg", epochs=2, batch_size=64, lr=2e-3, seed=0)
    fp32 = train(config.replace(precision="fp32"), train_set, val_set, device="cpu")
    bf16 = train(config.replace(precision="bf16"), train_set, val_set, device="cpu")
    # Same seed, same data; bf16 rounding makes the runs drift apart, not worse. 5 points on
    # 1,000 validation images: two fp32 runs of different seeds differ by about that much here
    # (seeds 0 and 1: 36.0 % and 26.7 %; fp32 vs bf16 at seed 0: 36.0 % and 36.2 %).
    assert fp32.history[-1].val_accuracy > 0.25 and bf16.history[-1].val_accuracy > 0.25
    assert bf16.history[-1].val_accuracy == pytest.approx(fp32.history[-1].val_accuracy, abs=0.05)


def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    config = TrainConfig(model="cnn_basic", epochs=1, precision="bf16")
    with pytest.raises(ValueError, match=r"invalid precision='bf16'; this CPU has no native bf16"):
        train(config, synthetic(32), device="cpu")
    with pytest.raises(ValueError, match=r"invalid precision='bf16'"):
        evaluate(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), synthetic(8), precision="bf16")


def test_model_and_batches_are_channels_last_on_cpu_too():
    """oneDNN's CPU convolutions are faster channels_last (bench/bench_channels_last.py)."""
    model = trainer_module.build_model(TrainConfig(model="cnn_reg"), torch.device("cpu"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    batch = trainer_module.normalize(synthetic(4).images)
    assert batch.is_contiguous(memory_format=torch.channels_last) and batch.dtype == torch.float32
    result = train(TrainConfig(model="cnn_basic", epochs=1, batch_size=16), synthetic(32))
    assert all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in result.model.parameters()
        if p.ndim == 4
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "invalid epochs=0"),
        ({"optimizer": "lamb"}, "invalid optimizer='lamb'"),
        ({"milestones": (0.8, 0.6)}, "invalid milestones"),
        ({"lr": -1.0}, "invalid lr=-1.0"),
        ({"cutout": 40}, "invalid cutout=40"),
        ({"schedule": "linear"}, "invalid schedule='linear'; expected .*onecycle"),
        ({"warmup": -0.1}, r"invalid warmup=-0.1; expected a fraction of the run in \[0, 1\)"),
        ({"warmup": 1.0}, r"invalid warmup=1.0"),
        ({"schedule": "onecycle"}, r"invalid warmup=0.0; expected .* with schedule='onecycle'"),
        ({"precision": "fp8"}, "invalid precision='fp8'; expected auto or fp32 or bf16 or fp16"),
        ({"tta": "yes"}, "invalid tta='yes'"),
        ({"lr": float("inf")}, "invalid lr=inf; expected a finite positive number"),
        ({"lr": float("nan")}, "invalid lr=nan"),
        ({"weight_decay": float("inf")}, "invalid weight_decay=inf; expected a finite number"),
        (
            {"seed": 2**63},
            r"invalid seed=9223372036854775808; expected a whole number in \[0, 2\*\*63\)",
        ),
        ({"seed": -1}, "invalid seed=-1"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "invalid device 'tpu'; expected auto, cpu, cuda or cuda:N"),
        ("meta", "invalid device 'meta'"),
        ("cuda:x", "invalid device 'cuda:x'"),
    ],
)
def test_resolve_device_names_what_is_offered(device, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


def test_config_round_trip():
    config = TrainConfig(model_kwargs={"dropout": [0.1, 0.2, 0.3]}, milestones=(0.5,))
    assert TrainConfig.from_dict(config.to_dict()) == config
    new = TrainConfig(schedule="onecycle", warmup=0.2, tta=True, precision="fp32")
    assert TrainConfig.from_dict(new.to_dict()) == new
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 0.1})
