"""One precision for a run, train to test: every command tests a model in the precision it trained
in, and records that precision. Seen at the autocast level (the `autocasts` spy), on a CPU faked
to have native bf16 or not (`cpu`), with cases where "auto" would give another precision than the
run's, so that a test evaluation left at "auto" fails them."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

import training._trainer as trainer_module
from search import _density, get_space
from search import evaluate as evaluate_cli
from search import retrain as retrain_cli
from search import train as train_cli
from search._artifacts import save_run
from training import LabeledImages, TrainConfig, build_model

BF16 = torch.bfloat16
QUICK = ["--model", "cnn_basic", "--epochs", "1", "--train-size", "300", "--val-size", "0"]


@pytest.fixture(autouse=True)
def small_test_split(monkeypatch):
    """The commands test on 400 of the 10,000 test images: what precision the test runs in is
    the point here, and all of them take 15 s on two cores."""
    for command in (train_cli, retrain_cli, evaluate_cli):
        real = command.load_cifar10

        def load(root, split, *args, real=real, **kwargs):
            data = real(root, split, *args, **kwargs)
            return data.subset(torch.arange(400)) if split == "test" else data

        monkeypatch.setattr(command, "load_cifar10", load)


@pytest.fixture
def auto_is_fp32(monkeypatch):
    """The CPU rule switched off: "auto" is fp32 even on a CPU with native bf16."""
    monkeypatch.setattr(trainer_module, "CPU_AUTO_BF16", False)


@pytest.mark.parametrize(
    ("precision", "auto_bf16", "ran"),
    [("fp32", True, "fp32"), ("auto", True, "bf16")],
)
def test_train_tests_in_the_precision_it_trained_in(
    cpu, autocasts, monkeypatch, tmp_path, data_root, precision, auto_bf16, ran
):
    cpu(True)
    monkeypatch.setattr(trainer_module, "CPU_AUTO_BF16", auto_bf16)
    save = tmp_path / "run"
    train_cli.main(
        [*QUICK, "--precision", precision, "--save", str(save), "--data", str(data_root)]
    )
    dtype = {"fp32": None, "bf16": BF16}[ran]
    assert autocasts.of("_train_epoch") == {dtype}
    assert autocasts.of("evaluate") == {dtype}  # the test split: there is no validation split
    raw = json.loads((save / "config.json").read_text())
    assert raw["precision"] == ran and raw["train_config"]["precision"] == precision


@pytest.fixture
def study_of_one_trial(tmp_path) -> str:
    """A cnn_reg study on cnn_basic, made in bf16, with one COMPLETE trial; its storage URL."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{tmp_path / 'precision.db'}"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    for key, value in {"space": "cnn_reg", "val_size": 200, "model_override": "cnn_basic"}.items():
        study.set_user_attr(key, value)
    study.set_user_attr("precision", "bf16")
    trial = study.ask()
    get_space("cnn_reg").suggest(trial)
    study.tell(trial, 0.5)
    return url


@pytest.mark.parametrize(("given", "ran"), [([], "bf16"), (["--precision", "fp32"], "fp32")])
def test_retrain_tests_in_the_precision_it_trained_in(
    cpu, autocasts, auto_is_fp32, study_of_one_trial, tmp_path, data_root, given, ran
):
    """The study's bf16 where "auto" is fp32; --precision fp32 where the study's is bf16."""
    cpu(True)
    out = tmp_path / "retrain"
    retrain_cli.main(
        ["--study", "p", "--storage", study_of_one_trial, "--epochs", "1", "--train-size", "300"]
        + ["--data", str(data_root), "--out", str(out), *given]
    )
    dtype = {"fp32": None, "bf16": BF16}[ran]
    assert autocasts.of("_train_epoch") == {dtype} and autocasts.of("evaluate") == {dtype}
    assert json.loads((out / "metrics.json").read_text())["precision"] == ran
    assert json.loads((out / "config.json").read_text())["precision"] == ran


def _saved(folder, **recorded) -> str:
    config = TrainConfig(model="cnn_basic", precision=recorded.pop("asked", "auto"))
    save_run(folder, build_model(config, torch.device("cpu")), config, **recorded)
    return str(folder)


@pytest.mark.parametrize(
    ("recorded", "native", "dtype"),
    [
        ({"precision": "bf16"}, True, BF16),  # "auto" would be fp32 here
        ({"precision": "fp32", "asked": "auto"}, True, None),
        ({"asked": "fp32"}, True, None),  # saved before runs recorded what ran: what was asked
    ],
)
def test_evaluate_tests_in_the_precision_the_run_trained_in(
    cpu, autocasts, auto_is_fp32, tmp_path, data_root, capsys, recorded, native, dtype
):
    cpu(native)
    evaluate_cli.main([_saved(tmp_path / "run", **recorded), "--data", str(data_root)])
    assert set(autocasts.seen) == {dtype}
    assert f"precision {'bf16' if dtype else 'fp32'}" in capsys.readouterr().out


def test_evaluate_of_a_bf16_run_on_a_cpu_without_bf16(cpu, autocasts, tmp_path, data_root, capsys):
    """One line and exit 2, naming the way out; with --precision fp32 it runs in fp32."""
    cpu(False)
    target = _saved(tmp_path / "run", precision="bf16")
    with pytest.raises(SystemExit) as exited:
        evaluate_cli.main([target, "--data", str(data_root)])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: invalid precision='bf16'; this CPU has no native bf16 (no avx512_bf16 or "
        "amx_bf16 in /proc/cpuinfo): expected fp32 or auto (the model trained in bf16: "
        "--precision tests it in another)"
    )
    evaluate_cli.main([target, "--data", str(data_root), "--precision", "fp32"])
    assert set(autocasts.seen) == {None}


def test_fold_models_are_scored_on_their_held_out_fold_in_their_precision(
    cpu, autocasts, auto_is_fp32, tmp_path
):
    """A density search's fold models: trained and checked on their held-out fold in bf16 (the
    recipe's, where "auto" is fp32), which their config.json records."""
    cpu(True)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=generator)
    train_set = LabeledImages(images, torch.arange(60) % 10)
    recipe = TrainConfig(model="cnn_basic", epochs=1, batch_size=32, precision="bf16")
    _density._train_folds(tmp_path, recipe, train_set, 2, 0)
    assert autocasts.of("_train_epoch") == {BF16} and autocasts.of("evaluate") == {BF16}
    for fold in range(2):
        raw = json.loads((_density.fold_folder(tmp_path, fold) / "config.json").read_text())
        assert raw["precision"] == "bf16"
