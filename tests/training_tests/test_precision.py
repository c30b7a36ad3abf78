"""Precision by hardware, checked on any machine: the GPU's compute capability and the CPU's
flags are faked (the `gpu` fixture here, `cpu` in tests/conftest.py), so the whole table runs
here whatever this CPU is and with no GPU at all; `autocasts` records what ran."""

from __future__ import annotations

import pytest
import torch

import training._trainer as trainer_module
from training import (
    TrainConfig,
    cpu_has_native_bf16,
    effective_precision,
    evaluate,
    resolve_precision,
    train,
)
from training._folds import density_scores

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture
def gpu(monkeypatch):
    """Makes `torch.cuda` answer as a GPU of the compute capability given to the returned setter.
    `is_bf16_supported` says yes everywhere, as it does where bf16 is only emulated: the table
    must not listen to it."""

    def fake(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return fake


# --- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "auto"),
    [
        ((9, 0), "bf16"),  # Hopper (H100, H200)
        ((8, 6), "bf16"),  # Ampere (RTX 30xx, A10)
        ((8, 0), "bf16"),  # Ampere (A100)
        ((7, 5), "fp16"),  # Turing (T4): fp16 tensor cores, no bf16
        ((7, 0), "fp16"),  # Volta (V100)
        ((6, 1), "fp32"),  # Pascal (GTX 10xx, P40)
        ((6, 0), "fp32"),  # Pascal (P100)
    ],
)
def test_auto_on_cuda_follows_the_compute_capability(gpu, capability, auto):
    gpu(*capability)
    assert effective_precision("auto", CUDA) == auto
    assert resolve_precision("auto", CUDA) == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        auto
    )
    assert effective_precision("fp32", CUDA) == "fp32" and resolve_precision("fp32", CUDA) is None
    assert effective_precision("fp16", CUDA) == "fp16"  # offered on every CUDA GPU


@pytest.mark.parametrize("capability", [(9, 0), (8, 0)])
def test_bf16_on_a_gpu_with_native_bf16(gpu, capability):
    gpu(*capability)
    assert resolve_precision("bf16", CUDA) == torch.bfloat16


@pytest.mark.parametrize("capability", [(7, 5), (7, 0), (6, 1)])
def test_bf16_on_a_gpu_without_native_bf16_is_refused_in_one_line(gpu, capability):
    gpu(*capability)
    with pytest.raises(ValueError) as raised:
        effective_precision("bf16", CUDA)
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"invalid precision='bf16'; Fake GPU (compute capability {capability[0]}.{capability[1]}) "
        "has no native bf16, which needs 8.0 or later: expected fp16, fp32 or auto"
    )


@pytest.mark.parametrize(("native", "auto"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_is_bf16_only_where_the_cpu_has_it(cpu, native, auto):
    cpu(native)
    assert effective_precision("auto", CPU) == auto
    assert effective_precision("fp32", CPU) == "fp32"


def test_the_cpu_rule_is_one_switch(cpu, monkeypatch):
    """`CPU_AUTO_BF16 = False` makes auto fp32 on every CPU; explicit bf16 stays where native."""
    cpu(True)
    monkeypatch.setattr(trainer_module, "CPU_AUTO_BF16", False)
    assert effective_precision("auto", CPU) == "fp32"
    assert effective_precision("bf16", CPU) == "bf16"


def test_bf16_on_a_cpu_without_it_and_fp16_on_any_cpu_are_refused(cpu):
    cpu(False)
    with pytest.raises(ValueError, match=r"^invalid precision='bf16'; this CPU has no native"):
        effective_precision("bf16", CPU)
    with pytest.raises(ValueError) as raised:
        effective_precision("fp16", CPU)
    assert str(raised.value) == (
        "invalid precision='fp16'; fp16 (with loss scaling) runs on CUDA GPUs only: expected "
        "auto or fp32 on the CPU"
    )
    cpu(True)
    with pytest.raises(ValueError, match=r"expected auto, fp32 or bf16 on the CPU$"):
        effective_precision("fp16", CPU)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match=r"^invalid precision='fp8'; expected auto, fp32, bf16"):
        effective_precision("fp8", CPU)


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw", False),  # Zen 3, Skylake-SP: no bf16
        ("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni", True),  # Zen 4, Cooper Lake
        ("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Sapphire R.
        ("Features\t: fp asimd sve bf16 i8mm", True),  # ARM (Graviton 3, Neoverse V1)
        ("Features\t: fp asimd evtstrm aes", False),  # ARM without bf16
    ],
)
def test_cpu_flag_reader(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some CPU\n{flags}\n\nprocessor\t: 1\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_cpu_flag_reader_without_cpuinfo_says_no(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "absent") is False


# --- what runs, train to test --------------------------------------------------------------------


def _tiny(n: int, seed: int = 0):
    from training import LabeledImages

    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return LabeledImages(images, torch.arange(n) % 10)


@pytest.mark.parametrize(
    ("precision", "native", "dtype"),
    [("auto", True, torch.bfloat16), ("auto", False, None), ("fp32", True, None)],
)
def test_train_and_its_validation_run_in_the_resolved_precision(
    cpu, autocasts, precision, native, dtype
):
    cpu(native)
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=32, precision=precision)
    result = train(config, _tiny(64), _tiny(40, seed=1), device="cpu")
    assert result.precision == {None: "fp32", torch.bfloat16: "bf16"}[dtype]
    assert len(autocasts.seen) == 2 + 1  # two training batches, one validation batch
    assert set(autocasts.seen) == {dtype}


def test_density_scores_run_in_the_precision_given(cpu, autocasts):
    cpu(True)
    model = trainer_module.build_model(TrainConfig(model="cnn_basic"), CPU)
    scores = density_scores(
        [model],
        [_tiny(20)],
        lambda x, generator: x,
        slices=1,
        draws=2,
        generator=torch.Generator().manual_seed(0),
        device="cpu",
        precision="fp32",
    )
    assert next(scores).count == 20
    assert autocasts.seen == [None, None]


def test_evaluate_runs_in_the_precision_given(cpu, autocasts):
    cpu(True)
    model = trainer_module.build_model(TrainConfig(model="cnn_basic"), CPU)
    evaluate(model, _tiny(10), device="cpu", precision="fp32")
    evaluate(model, _tiny(10), device="cpu", precision="bf16")
    evaluate(model, _tiny(10), device="cpu")  # auto, here bf16
    assert autocasts.seen == [None, torch.bfloat16, torch.bfloat16]


# --- checkpoints (fp16's scaler in the step and in resume: test_trainer.py) ------------------


def test_fp32_and_bf16_checkpoints_hold_no_scaler(cpu, tmp_path):
    cpu(True)
    for precision in ("fp32", "bf16"):
        config = TrainConfig(model="cnn_basic", epochs=1, batch_size=32, precision=precision)
        train(config, _tiny(32), device="cpu", checkpoint_path=tmp_path / precision)
        assert "scaler" not in torch.load(tmp_path / precision, weights_only=True)
