"""The learning-rate schedules and the optimizer table: pure functions of the config and the
global step, checked against PyTorch's own schedulers where they replace one."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training import OPTIMIZERS, SCHEDULES, TrainConfig, learning_rate, warmup_steps


def lrs(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The rate of every step of the run."""
    return [
        learning_rate(config, step, steps_per_epoch)
        for step in range(config.epochs * steps_per_epoch)
    ]


def _sgd(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize(
    "epochs, milestones, gamma", [(5, (0.4, 0.8), 0.1), (125, (0.6, 0.8), 0.5), (7, (0.5,), 0.3)]
)
def test_multistep_is_the_reports_multisteplr_stepped_per_epoch(epochs, milestones, gamma):
    config = TrainConfig(epochs=epochs, lr=0.1, milestones=milestones, gamma=gamma)
    optimizer = _sgd(0.1)
    reference = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestone_epochs(), gamma=gamma
    )
    steps_per_epoch = 3
    for epoch in range(epochs):  # the rate during epoch `epoch` (0-based), every step of it
        during = optimizer.param_groups[0]["lr"]
        for batch in range(steps_per_epoch):
            step = epoch * steps_per_epoch + batch
            assert learning_rate(config, step, steps_per_epoch) == pytest.approx(during)
        optimizer.step()  # (no gradient: changes nothing, but keeps PyTorch's order)
        reference.step()


def test_cosine_is_cosineannealinglr_stepped_per_batch():
    config = TrainConfig(epochs=4, lr=0.05, schedule="cosine")
    steps_per_epoch = 7
    optimizer = _sgd(0.05)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4 * steps_per_epoch)
    for step, lr in enumerate(lrs(config, steps_per_epoch)):
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        optimizer.step()
        reference.step()


def test_constant_is_constant():
    assert set(lrs(TrainConfig(epochs=3, lr=0.2, schedule="constant"), 5)) == {0.2}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_warmup_reaches_its_peak_at_the_right_step(schedule):
    # 10 epochs of 10 steps, warmup 0.25: steps 0..24 rise by lr/25 a step, step 24 (the 25th)
    # is the first at the peak, and from step 25 the schedule's own shape goes on.
    config = TrainConfig(epochs=10, lr=0.1, schedule=schedule, warmup=0.25, milestones=(0.5,))
    assert warmup_steps(config, 10) == 25
    rates = lrs(config, 10)
    for step in range(25):
        assert rates[step] == pytest.approx(0.1 * (step + 1) / 25)
    assert max(rates) == pytest.approx(0.1)
    assert rates.index(max(rates)) == 24
    if schedule in ("constant", "multistep"):  # flat until the milestone (epoch 5 = step 50)
        assert rates[25:50] == pytest.approx([0.1] * 25)
    else:  # cosine and onecycle start decaying from the peak at once
        assert rates[25] == pytest.approx(0.1) and rates[26] < rates[25]


def test_multistep_milestones_stay_at_epoch_boundaries_with_warmup():
    config = TrainConfig(epochs=5, lr=0.1, milestones=(0.4, 0.8), gamma=0.1, warmup=0.1)
    rates = lrs(config, 4)  # 20 steps, 2 of warmup
    assert rates[:2] == pytest.approx([0.05, 0.1])
    # From epoch 2 on, as without warmup: x0.1 at epochs 2 and 4 (steps 8 and 16).
    assert rates[4:] == pytest.approx([0.1] * 4 + [0.01] * 8 + [0.001] * 4)


def test_onecycle_rises_linearly_then_falls_linearly_to_zero():
    # Smith & Topin's one cycle in airbench's triangular form: 30 steps up, 70 steps down.
    config = TrainConfig(epochs=4, lr=0.4, schedule="onecycle", warmup=0.3)
    rates = lrs(config, 25)
    assert len(rates) == 100 and warmup_steps(config, 25) == 30
    rise, fall = rates[:30], rates[30:]
    assert rise == pytest.approx([0.4 * (s + 1) / 30 for s in range(30)])
    assert fall == pytest.approx([0.4 * (1 - s / 70) for s in range(70)])
    assert rates[-1] == pytest.approx(0.4 / 70)  # the last step: one step short of zero
    assert learning_rate(config, 100, 25) == pytest.approx(0.0, abs=1e-12)  # the end: zero


def test_warmup_steps_round_and_never_vanish():
    assert warmup_steps(TrainConfig(epochs=3), 10) == 0
    assert warmup_steps(TrainConfig(epochs=3, warmup=0.01), 10) == 1  # 0.3 steps -> 1
    assert warmup_steps(TrainConfig(epochs=1, warmup=0.99), 3) == 3  # all of a tiny run
    # ...and the shape after it still has a defined value (no division by zero).
    config = TrainConfig(epochs=1, warmup=0.99, schedule="cosine")
    assert [learning_rate(config, s, 3) for s in range(3)] == pytest.approx(
        [1e-3 / 3, 2e-3 / 3, 1e-3]
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_in_the_table_builds_from_a_config(name):
    config = TrainConfig(optimizer=name, lr=0.03, weight_decay=1e-4, momentum=0.8)
    optimizer = OPTIMIZERS[name](nn.Linear(2, 2).parameters(), config, {})
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 1e-4
    if name == "sgd":
        assert group["momentum"] == 0.8 and group["nesterov"] is True
        plain = OPTIMIZERS[name]([nn.Parameter(torch.zeros(1))], config.replace(momentum=0), {})
        assert plain.param_groups[0]["nesterov"] is False  # Nesterov needs momentum


def test_adamw_decay_is_decoupled_from_the_gradient_and_adams_is_not():
    # One step on a weight whose loss gradient is 0: AdamW shrinks it by lr * decay; Adam's
    # L2 term becomes the gradient, which Adam normalises into a step of about lr.
    config = TrainConfig(lr=0.1, weight_decay=0.5)
    after = {}
    for name in ("adam", "adamw"):
        weight = nn.Parameter(torch.ones(1))
        optimizer = OPTIMIZERS[name]([weight], config.replace(optimizer=name), {})
        weight.grad = torch.zeros(1)
        optimizer.step()
        after[name] = weight.item()
    assert after["adamw"] == pytest.approx(1 - 0.1 * 0.5)
    assert after["adam"] == pytest.approx(1 - 0.1, abs=1e-6)


def test_learning_rate_is_finite_and_positive_for_every_schedule_and_step():
    for schedule in SCHEDULES:
        config = TrainConfig(epochs=3, schedule=schedule, warmup=0.2)
        rates = lrs(config, 11)
        assert all(math.isfinite(r) and r > 0 for r in rates), schedule
