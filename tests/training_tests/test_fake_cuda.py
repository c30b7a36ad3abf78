"""The CUDA paths without a GPU: training steps, augmentation, evaluation and density scoring on
emulated `cuda` tensors.

`FakeTensorMode` gives tensors a device, shape and dtype but no memory, and refuses most
mixed-device ops as CUDA does. `EmulatedCuda`, a dispatch mode above it, adds what it lacks:
- values: every op also runs on real CPU "shadow" tensors, so `item()`, `tolist()` and sizes
  known only from the data (the policies' group sizes) get real answers, and a result can be
  compared with the same computation on the CPU;
- the two checks CUDA makes that fake mode skips: a generator must be on the device it draws for,
  and a CPU tensor cannot be indexed with CUDA indices;
- a CUDA generator (`torch.Generator(device="cuda")` needs a driver): a CPU generator that says
  it is on cuda, and draws the shadows' values;
- `backward()`: the autograd engine needs a CUDA context, so each leaf the loss reaches gets a
  zero gradient of its own device and dtype (the optimizer's fused CUDA step then reads them);
- host synchronisations: every op that makes the host wait for a CUDA tensor (`item()`,
  `tolist()`, a copy to or from the host, an output sized by the data) is recorded with the
  function of ours that asked for it, so the tests can pin the syncs of a training step.
What needs a real GPU still (bench/gpu_check.sh): the kernels' speed and numerics, cuDNN,
memory, torch.compile, and checkpoints (the CUDA generators' state). Skipped when a real GPU is
present, or when this torch's fake tensors cannot run a cuda convolution without a driver (a
CPU-only build may not).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

try:  # private APIs: a torch without them skips the module rather than failing it
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        FakeTensor,
        FakeTensorMode,
        UnsupportedOperatorException,
        unset_fake_temporarily,
    )
    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
    from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten
    from torch.utils.weak import WeakIdKeyDictionary
except ImportError as exc:
    pytest.skip(
        f"no fake-tensor machinery in torch {torch.__version__}: {exc}", allow_module_level=True
    )

import augment._random as random_ops
import training._trainer as trainer_module
from augment import BUILTIN_POLICIES, Policy, RandAugment, build_batch_augment
from models import list_models
from training import (
    OPTIMIZERS,
    LabeledImages,
    TrainConfig,
    build_model,
    config_augment,
    density_scores,
    evaluate,
    train,
)

if torch.cuda.is_available():
    pytest.skip(
        "a real GPU is present: the suite's CUDA tests run on it (bench/gpu_check.sh)",
        allow_module_level=True,
    )

aten = torch.ops.aten
CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
_REAL_GENERATOR = torch.Generator
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INDEXING = frozenset(
    {
        aten.index.Tensor,
        aten.index_put.default,
        aten.index_put_.default,
        aten._index_put_impl_.default,
    }
)
# Ops with outputs of another shape or dtype on CUDA than on the CPU (batch norm's saved
# statistics in eval mode, empty on the CPU; cuDNN's reserve), read only by backward: their
# shadows are zeros.
_DEVICE_SHAPED = frozenset({aten.native_batch_norm.default, aten.cudnn_batch_norm.default})
_HOST_COPIES = frozenset({aten._to_copy.default, aten.copy_.default})


@dataclass(frozen=True)
class Sync:
    """A host synchronisation: the op that waited, and where in our code it was asked for."""

    op: str  # the aten op, "tolist", "copy to the GPU" or "copy to the host"
    site: str  # "path/in/repo.py:function"


class _NoDriverFakeTensorMode(FakeTensorMode):
    # Fake mode initialises the driver for cuda tensors when torch.cuda.is_available(), which the
    # emulation makes True for the code under test; there is no driver to initialise.
    avoid_device_init = True


class _CudaGenerator(_REAL_GENERATOR):
    """What torch.Generator(device="cuda") makes under emulation: a CPU generator (it draws the
    shadows' values) that says it is on cuda; the emulation knows it by its address."""

    @property
    def device(self) -> torch.device:
        return CUDA


class EmulatedCuda(TorchDispatchMode):
    """Runs every op on fake CUDA tensors (devices, shapes, dtypes) and on CPU shadows (values);
    see the module docstring. Enter it to emulate; `value(t)` is a fake tensor's real value."""

    def __init__(self) -> None:
        super().__init__()
        self.fake_mode = _NoDriverFakeTensorMode(
            allow_non_fake_inputs=True, allow_fallback_kernels=False
        )
        self.events: list[Sync | str] = []  # host syncs, and the marks of `mark`
        self.ops: set[str] = set()  # every aten op seen
        self._shadows = WeakIdKeyDictionary()
        self._cuda_generators: dict[int, _CudaGenerator] = {}  # kept alive: addresses stay theirs
        self._quiet = 0  # inside one host call that dispatches several ops (tolist)

    def __enter__(self) -> EmulatedCuda:
        self.fake_mode.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.fake_mode.__exit__(*exc)

    def value(self, tensor: torch.Tensor) -> torch.Tensor:
        """The real (CPU) value of a tensor made under emulation."""
        return self._shadows[tensor]

    def mark(self, label: str) -> None:
        self.events.append(label)

    def generator(self, device: str | torch.device = "cpu") -> torch.Generator:
        """torch.Generator(device) while emulating: cuda generators are emulated."""
        if torch.device(device).type != "cuda":
            return _REAL_GENERATOR(device)
        generator = _CudaGenerator()
        self._cuda_generators[generator._cdata] = generator
        return generator

    def tolist(self, tensor: torch.Tensor) -> list:
        """Tensor.tolist: one copy to the host on CUDA (one item per element under a mode)."""
        if tensor.device.type == "cuda":
            self._record(Sync("tolist", _site()))
        self._quiet += 1
        try:
            return _FAKE_TOLIST(tensor)
        finally:
            self._quiet -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        flat, spec = tree_flatten((args, kwargs))
        self.ops.add(str(func))
        self._check_generator(func, flat, kwargs)
        self._check_indices(func, args)
        real_args, real_kwargs = tree_unflatten([self._shadow(x) for x in flat], spec)
        with unset_fake_temporarily():
            real = _CPU_TWINS.get(func, func)(*real_args, **real_kwargs)
        on_cuda = any(isinstance(x, torch.Tensor) and x.is_cuda for x in flat)
        try:
            out = func(*args, **kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException):
            # Known only from the data: on CUDA the host waits for it.
            if on_cuda:
                self._record(Sync(str(func), _site()))
            device = next(x.device for x in flat if isinstance(x, torch.Tensor))
            out = tree_map(lambda r: self._fake_like(r, device), real)
        except (NotImplementedError, UnsupportedOperatorException):
            if func._schema.returns:
                raise
            # No fake kernel (the fused optimizer steps): they only write into their arguments,
            # which must share a device, as on CUDA.
            _check_one_device(func, flat)
            return None
        if func in _HOST_COPIES and (copy := _blocking_copy(func, args, kwargs)):
            self._record(Sync(copy, _site()))
        self._pair(func, out, real, flat)
        return out

    def _shadow(self, x: object) -> object:
        if isinstance(x, FakeTensor):
            return self._shadows[x]
        if isinstance(x, torch.device) and x.type == "cuda":
            return CPU
        return x

    @staticmethod
    def _fake_like(real: object, device: torch.device) -> object:
        if not isinstance(real, torch.Tensor):
            return real
        return torch.empty_strided(real.shape, real.stride(), dtype=real.dtype, device=device)

    def _pair(self, func, out: object, real: object, flat: list) -> None:  # noqa: ANN001
        """Register each new fake output's shadow, laid out as the fake one (a later view
        would otherwise see other strides)."""
        inputs = {id(x) for x in flat}
        for fake, shadow in zip(tree_flatten(out)[0], tree_flatten(real)[0], strict=True):
            if not isinstance(fake, FakeTensor) or id(fake) in inputs:
                continue
            with unset_fake_temporarily():
                if shadow.shape != fake.shape or shadow.dtype != fake.dtype:
                    if func not in _DEVICE_SHAPED:
                        raise AssertionError(
                            f"{func}: fake {fake.shape} {fake.dtype}, real {shadow}"
                        )
                    shadow = torch.zeros(fake.shape, dtype=fake.dtype)
                if shadow.stride() != fake.stride() and not func.is_view:
                    laid_out = torch.empty_strided(fake.shape, fake.stride(), dtype=fake.dtype)
                    shadow = laid_out.copy_(shadow)
            self._shadows[fake] = shadow

    def _check_generator(self, func, flat: list, kwargs: dict) -> None:  # noqa: ANN001
        """CUDA refuses a draw from a generator of another device; fake mode does not check."""
        generator = kwargs.get("generator")
        if generator is None:
            return
        target = kwargs.get("device") or next(
            (x.device for x in flat if isinstance(x, torch.Tensor)), CPU
        )
        has = "cuda" if generator._cdata in self._cuda_generators else generator.device.type
        if has != torch.device(target).type:
            raise RuntimeError(
                f"{func}: Expected a '{torch.device(target).type}' device type for generator "
                f"but found '{has}'"
            )

    @staticmethod
    def _check_indices(func, args: tuple) -> None:  # noqa: ANN001
        """CUDA refuses a CPU tensor indexed with CUDA indices; fake mode does not check."""
        if func not in _INDEXING or args[0].is_cuda:
            return
        if any(i is not None and i.is_cuda for i in args[1]):
            raise RuntimeError(
                f"{func}: indices should be either on cpu or on the same device as the indexed "
                "tensor (cpu)"
            )

    def _record(self, sync: Sync) -> None:
        if not self._quiet and sync.site is not None:
            self.events.append(sync)


_FAKE_TOLIST = FakeTensor.tolist  # item() per element
_TESTS = os.path.join(_REPO, "tests") + os.sep


def _site() -> str | None:
    """The "path:function" of the innermost frame of our code outside tests/ (what asked for a
    sync); None when only tests and libraries are on the stack (a test's own calls)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_REPO + os.sep) and not path.startswith(_TESTS):
            if "site-packages" not in path:
                return f"{os.path.relpath(path, _REPO)}:{frame.f_code.co_name}"
        frame = frame.f_back
    return None


def _check_one_device(func, flat: list) -> None:  # noqa: ANN001
    devices = {
        x.device
        for x in flat
        if isinstance(x, torch.Tensor) and not (x.ndim == 0 and not x.is_cuda)
    }
    if len(devices) > 1:
        raise RuntimeError(f"{func}: Expected all tensors to be on the same device, got {devices}")


def _blocking_copy(func, args: tuple, kwargs: dict) -> str | None:  # noqa: ANN001
    """What a copy is when it is a blocking one between host and GPU (the host waits for it):
    "copy to the GPU" or "copy to the host"; else None."""
    if func is aten._to_copy.default:
        source, target = args[0].device, kwargs.get("device")
        non_blocking = kwargs.get("non_blocking", False)
    else:  # copy_(self, src, non_blocking=False)
        target, source = args[0].device, args[1].device
        non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
    if target is None or non_blocking or {source.type, torch.device(target).type} != _BOTH:
        return None
    return "copy to the GPU" if torch.device(target).type == "cuda" else "copy to the host"


def _cudnn_batch_norm_on_the_cpu(*args: object) -> tuple[torch.Tensor, ...]:
    """cudnn_batch_norm's CPU twin: native_batch_norm, and an empty reserve buffer."""
    out, mean, invstd = aten.native_batch_norm.default(*args)
    return out, mean, invstd, torch.empty(0, dtype=torch.uint8)


# Ops torch picks for cuda inputs only, and what computes the same on the CPU.
_CPU_TWINS = {aten.cudnn_batch_norm.default: _cudnn_batch_norm_on_the_cpu}
_BOTH = {"cpu", "cuda"}


def _zero_backward(
    self: torch.Tensor,
    gradient: torch.Tensor | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: object = None,
) -> None:
    """Tensor.backward under emulation: the autograd engine needs a CUDA context, so each leaf
    the loss depends on gets a zero gradient of its own shape, dtype and device instead."""
    if self.grad_fn is None:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if gradient is None and self.numel() != 1:
        raise RuntimeError("grad can be implicitly created only for scalar outputs")
    seen, todo = set(), [self.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if leaf is not None and leaf.grad is None:
            leaf.grad = torch.zeros_like(leaf)
        todo.extend(child for child, _ in node.next_functions)


def _on_the_real_cpu(fn: Callable) -> Callable:
    """`fn` outside the emulation: a model is built on the CPU and then moved, as on CUDA (fake
    mode cannot move a module it built itself)."""

    @functools.wraps(fn)
    def outside(*args: object, **kwargs: object) -> object:
        with _disable_current_modes():
            return fn(*args, **kwargs)

    return outside


def _generator_type(emulation: EmulatedCuda) -> type:
    """A stand-in for torch.Generator: construction goes to `emulation`, isinstance as before."""

    class _GeneratorType(type):
        def __call__(cls, device: str | torch.device = "cpu") -> torch.Generator:
            return emulation.generator(device)

        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, _REAL_GENERATOR)

    return _GeneratorType("Generator", (), {})


def _pretend_a_gpu(monkeypatch: pytest.MonkeyPatch, emulation: EmulatedCuda) -> None:
    """What the code under test asks torch about its GPU, answered for an emulated sm_90 one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "emulated GPU")
    monkeypatch.setattr(torch, "Generator", _generator_type(emulation))
    monkeypatch.setattr(torch.Tensor, "backward", _zero_backward)
    monkeypatch.setattr(FakeTensor, "tolist", lambda tensor: emulation.tolist(tensor))
    monkeypatch.setattr(
        trainer_module, "create_model", _on_the_real_cpu(trainer_module.create_model)
    )
    monkeypatch.setattr(trainer_module, "_NORMALIZERS", {})  # would keep fake tensors
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)


def _clear_device_caches() -> None:
    """Empty every functools cache of augment/ and training/: they hold tensors per device, and
    a fake one must not outlive its emulation."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("augment", "training"):
            for value in vars(module).values():
                if isinstance(value, functools._lru_cache_wrapper):
                    value.cache_clear()


@functools.cache
def _fake_cuda_unavailable() -> str | None:
    """None when this torch's FakeTensorMode runs a convolution on cuda tensors without a
    driver, else why not (the emulation's own failures are the tests' to report)."""
    try:
        with _NoDriverFakeTensorMode(allow_non_fake_inputs=True):
            x = torch.rand(2, 3, 8, 8, device="cuda")
            F.conv2d(x, torch.ones(4, 3, 3, 3, device="cuda")).sum()
    except Exception as exc:  # noqa: BLE001 - any failure means: not on this torch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"fake CUDA tensors do not work on torch {torch.__version__}: {first}"
    return None


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedCuda]:
    """An EmulatedCuda to enter, with torch answering for one GPU for the whole test."""
    reason = _fake_cuda_unavailable()
    if reason:
        pytest.skip(reason)
    emulation = EmulatedCuda()
    _pretend_a_gpu(monkeypatch, emulation)
    _clear_device_caches()
    try:
        with torch.random.fork_rng(devices=[]):  # the shadows' dropout draws from the CPU's
            yield emulation
    finally:
        _clear_device_caches()


def _images(n: int, seed: int = 0) -> LabeledImages:
    generator = _REAL_GENERATOR().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return LabeledImages(images, torch.arange(n) % 10)


def _per_step(events: list[Sync | str]) -> list[list[Sync]]:
    """The syncs before each "step" mark, then those after the last."""
    steps: list[list[Sync]] = [[]]
    for event in events:
        if event == "step":
            steps.append([])
        else:
            steps[-1].append(event)
    return steps


# The wider Shake-Shake models run the code of the narrowest with more channels (and take
# seconds more): slow-marked.
_WIDER = frozenset({"shake26_2x64d", "shake26_2x96d"})
# Every registered model once, and every optimizer (its fused CUDA step) at least once.
_RUNS = [
    pytest.param(m, list(OPTIMIZERS)[i % len(OPTIMIZERS)], marks=[pytest.mark.slow] * (m in _WIDER))
    for i, m in enumerate(list_models())
]


@pytest.mark.parametrize(("model", "optimizer"), _RUNS)
def test_training_and_validation_run_on_cuda(emulated, model, optimizer):
    config = TrainConfig(model=model, optimizer=optimizer, epochs=1, batch_size=8)
    train_set, val_set = _images(8), _images(8, seed=1)
    with emulated:
        result = train(config, train_set, val_set, device="cuda")
        assert all(p.is_cuda for p in result.model.parameters())
    stats = result.history[0]
    assert result.device == "cuda"
    assert math.isfinite(stats.train_loss) and math.isfinite(stats.val_loss)
    assert f"aten._fused_{optimizer}_.default" in emulated.ops, "the fused CUDA step ran"


_SETUP_COPIES = ("build_model", "_epoch_setup", "normalize")


def test_a_training_step_syncs_with_the_host_only_for_its_loss_check(emulated, monkeypatch):
    monkeypatch.setattr(trainer_module, "_FINITE_CHECK_EVERY", 2)
    config = TrainConfig(model="cnn_basic", epochs=1, batch_size=8, rotation=10.0, cutout=8)
    train_set = _images(32)
    with emulated:
        train(config, train_set, device="cuda", on_batch_end=lambda *_: emulated.mark("step"))
    steps = _per_step(emulated.events)
    item = "aten._local_scalar_dense.default"
    check = Sync(item, "training/_trainer.py:_train_epoch")
    # Up to the first step's end: the copies of the model, the data and (once per device) the
    # normalisation constants to the GPU; the step itself, as the others, does not wait.
    moved = {Sync("copy to the GPU", f"training/_trainer.py:{f}") for f in _SETUP_COPIES}
    assert set(steps[0]) == moved
    assert steps[1:4] == [[check], [], [check]], "one sync per _FINITE_CHECK_EVERY steps"
    assert steps[4] == [Sync(item, "training/_trainer.py:_train_and_validate")] * 2, (
        "the epoch's loss, accuracy"
    )


def _rounds(policy: object) -> int:
    """apply_by_op calls per batch: one per step of a sub-policy, per RandAugment op, or one."""
    if policy is None:
        return 0
    if isinstance(policy, Policy):
        return len(policy.sub_policies[0])
    return policy.num_ops if isinstance(policy, RandAugment) else 1


@pytest.mark.parametrize("name", [None, *BUILTIN_POLICIES])
def test_one_augmentation_batch_of_every_policy_on_cuda_matches_the_cpu(emulated, name):
    policy = BUILTIN_POLICIES.get(name)
    augment = build_batch_augment(rotation=15.0, cutout=8, policy=policy)
    images = _images(128).images
    expected = augment(images, _REAL_GENERATOR().manual_seed(5))
    with emulated:
        out = augment(images.to("cuda"), torch.Generator(device="cuda").manual_seed(5))
    assert out.is_cuda and out.dtype == torch.uint8
    assert torch.equal(emulated.value(out), expected), "the same draws and ops as on the CPU"
    grouping = "augment/_autoaugment.py:apply_by_op"
    assert [e for e in emulated.events if e.site == grouping] == [Sync("tolist", grouping)] * (
        _rounds(policy)
    ), "one sync per grouping of the batch by op: its group sizes"
    # Besides: the policy's tables go to the GPU (once per device: they are cached), and
    # Equalize's histograms, whose bincount sizes its output from the data (two syncs on CUDA,
    # kept: scatter_add_, which does not sync, is 1.5x slower on the CPU).
    others = {e for e in emulated.events if e.site != grouping and e.op != "copy to the GPU"}
    assert others <= {Sync("aten.bincount.default", "augment/_color.py:equalize")}


@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_on_cuda_matches_the_cpu(emulated, tta):
    model, data = build_model(TrainConfig(model="cnn_reg"), CPU), _images(40, seed=2)
    expected = evaluate(model, data, device="cpu", tta=tta, precision="fp32")
    with emulated:  # the model moves to the GPU, as a trained one would
        result = evaluate(model.to("cuda"), data, device="cuda", tta=tta, precision="fp32")
    assert (result.count, result.confusion, result.tta) == (40, expected.confusion, tta)
    assert result.loss == pytest.approx(expected.loss, rel=1e-5)


def test_density_scores_on_cuda_match_the_cpu(emulated):
    config = TrainConfig(model="cnn_basic", crop_padding=0, flip=False, policy="cifar10")
    models = [build_model(config.replace(seed=seed), CPU) for seed in (0, 1)]
    held_out = [_images(12, seed=3), _images(12, seed=4)]
    augment, options = config_augment(config), {"slices": 2, "draws": 2, "precision": "fp32"}
    generator = _REAL_GENERATOR().manual_seed(7)
    expected = list(
        density_scores(models, held_out, augment, generator=generator, device="cpu", **options)
    )
    with emulated:
        cuda_models = [m.to("cuda") for m in models]
        cuda_held_out = [data.to("cuda") for data in held_out]
        generator = torch.Generator(device="cuda").manual_seed(7)
        scores = list(
            density_scores(
                cuda_models, cuda_held_out, augment, generator=generator, device="cuda", **options
            )
        )
    assert [(s.count, s.correct) for s in scores] == [(e.count, e.correct) for e in expected]
    assert [s.loss_sum for s in scores] == pytest.approx([e.loss_sum for e in expected], rel=1e-5)


def _flips_without_device(
    n: int, p: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """augment._random.sample_flips with its `device=` left out: a mistake the CPU cannot see."""
    return torch.rand(n, generator=generator) < p


def test_a_random_draw_without_its_device_fails_as_on_a_gpu(emulated, monkeypatch):
    monkeypatch.setattr(random_ops, "sample_flips", _flips_without_device)
    augment, images = build_batch_augment(), _images(8).images
    augment(images, _REAL_GENERATOR().manual_seed(0))  # the CPU suite passes it
    with emulated:
        on_cuda, generator = images.to("cuda"), torch.Generator(device="cuda")
        with pytest.raises(RuntimeError, match="Expected a 'cpu' device type for generator"):
            augment(on_cuda, generator)


def test_a_cpu_generator_drawing_on_cuda_fails_as_on_a_gpu(emulated):
    with emulated, pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
        random_ops.sample_crop_offsets(8, 4, _REAL_GENERATOR(), CUDA)


def test_cpu_images_picked_by_cuda_indices_fail_as_on_a_gpu(emulated):
    data = _images(8)
    with emulated:
        indices = torch.arange(4, device="cuda")
        with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same"):
            data.subset(indices)
