"""What the commands write: checked before the work starts, one writer and one schema for a run's
weights and configuration, and a trial whose weights cannot be written reported, not lost.

Unwritable places are real: a read-only tmpfs mount and a full one (root only; skipped with the
reason elsewhere), and a path under a file.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import optuna
import pytest
import torch
from conftest import make_one_trial_study

from search import _trainable, get_space
from search import export_policy as export_policy_cli
from search import report as report_cli
from search import retrain as retrain_cli
from search import run as run_cli
from search import train as train_cli
from search._artifacts import ArtifactError, load_model, save_run
from training import OutputError, TrainConfig, build_model

QUICK = ["--epochs", "1", "--train-size", "500", "--val-size", "500", "--no-test"]


@pytest.fixture(params=["read-only", "under a file"])
def unwritable(request, tmp_path) -> tuple[Path, Path, str]:
    """(the output folder to name, the place to check for leftovers, what the error says)."""
    if request.param == "under a file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file" / "run", tmp_path, "is a file"
    folder = request.getfixturevalue("read_only")
    return folder / "run", folder, "is not writable"


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "", "nothing is printed (or trained) before the error"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


# --- search.train -------------------------------------------------------------------------------


def test_train_save_checked_before_training(unwritable, data_root, capsys):
    """Issue 11 item 1: an unwritable --save fails at once, in one line, before any training."""
    save, place, says = unwritable
    before = files_under(place)
    with pytest.raises(SystemExit) as exited:
        train_cli.main([*QUICK, "--data", str(data_root), "--save", str(save)])
    assert exited.value.code == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --save {save} ") and says in line, line
    assert files_under(place) == before


def test_train_unknown_model_fails_before_printing(data_root, capsys):
    """Issue 11 item 9: the whole configuration is checked before data or config lines."""
    with pytest.raises(SystemExit) as exited:
        train_cli.main([*QUICK, "--data", str(data_root), "--model", "nope"])
    assert exited.value.code == 2
    assert one_error(capsys).startswith("error: unknown model 'nope'; expected one of: cnn_basic")


def test_train_model_arguments_checked_before_printing(data_root, capsys):
    """cnn_basic takes no dropout: said before anything is printed or trained."""
    with pytest.raises(SystemExit) as exited:
        train_cli.main(
            [*QUICK, "--data", str(data_root), "--model", "cnn_basic", "--dropout", "0.1"]
        )
    assert exited.value.code == 2
    assert one_error(capsys).startswith("error: invalid model_kwargs={'dropout': (0.1,)}")


def test_train_val_size_zero_allowed_and_negative_refused(capsys):
    """--val-size 0 (no validation split) stays a train option; below 0 is refused by argparse."""
    parser = train_cli.build_parser()
    assert parser.parse_args(["--val-size", "0"]).val_size == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--val-size", "-1"])
    assert "argument --val-size: expected a whole number >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--train-size", "0"])
    assert "argument --train-size: expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_train_save_writes_one_run_that_loads(tmp_path, data_root, capsys):
    save = tmp_path / "saved"
    train_cli.main([*QUICK, "--data", str(data_root), "--save", str(save), "--model", "cnn_basic"])
    assert sorted(p.name for p in save.iterdir()) == ["config.json", "weights.pt"]
    raw = json.loads((save / "config.json").read_text())
    assert raw["train_config"]["model"] == "cnn_basic" and raw["train_config"]["epochs"] == 1
    model, config = load_model(save, torch.device("cpu"))
    assert config == TrainConfig.from_dict(raw["train_config"])
    saved = torch.load(save / "weights.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


# --- search.retrain -----------------------------------------------------------------------------


def test_retrain_out_checked_before_training(one_trial_study, unwritable, data_root, capsys):
    """Issue 11 item 7: an unwritable --out, or one under a file, fails in one line, at once."""
    out, place, says = unwritable
    before = files_under(place)
    with pytest.raises(SystemExit) as exited:
        retrain_cli.main(
            [
                "--study",
                "s",
                "--storage",
                one_trial_study,
                "--epochs",
                "1",
                "--train-size",
                "500",
                "--data",
                str(data_root),
                "--out",
                str(out),
            ]
        )
    assert exited.value.code == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --out {out.absolute()} ") and says in line, line
    assert files_under(place) == before
    assert "retrain" not in optuna.load_study(study_name="s", storage=one_trial_study).user_attrs


# --- every write option, aimed at /proc -------------------------------------------------------

# Root's permission check says yes to /proc, and no file can be made there: the case of a root
# container, and of root-squashed NFS, where only a real file tells.
PROC_CASES = {
    "train --save": (train_cli.main, ["--save", "/proc/x/out", *QUICK], "--save /proc/x/out"),
    "retrain --out": (
        retrain_cli.main,
        ["--study", "s", "--storage", "STUDY", "--epochs", "1", "--out", "/proc/x"],
        "--out /proc/x",
    ),
    "run --studies-dir": (
        run_cli.main,
        ["--space", "cnn_reg", "--studies-dir", "/proc/x"],
        "--studies-dir /proc/x",
    ),
    "run --storage": (
        run_cli.main,
        ["--space", "cnn_reg", "--storage", "sqlite:////proc/x/s.db", "--studies-dir", "OUT"],
        "--storage /proc/x",
    ),
    "export_policy -o": (
        export_policy_cli.main,
        ["--study", "s", "--storage", "STUDY", "-o", "/proc/x/p.json"],
        "-o /proc/x/p.json",
    ),
    "report -o": (
        report_cli.main,
        ["--study", "s", "--storage", "STUDY", "-o", "/proc/x/r.html"],
        "-o /proc/x/r.html",
    ),
}


@pytest.mark.parametrize("case", PROC_CASES)
def test_every_write_option_refuses_proc_before_reading(case, one_trial_study, tmp_path, capsys):
    """Issue 19 item 2: one line naming the option, exit 2, nothing written. The data named is
    missing, and the study read after the check is not a policy study: a check that came later,
    or said yes, would end with another line."""
    command, argv, named = PROC_CASES[case]
    substitutes = {"STUDY": one_trial_study, "OUT": str(tmp_path / "out")}
    argv = [substitutes.get(arg, arg) for arg in argv]
    if command is not export_policy_cli.main and command is not report_cli.main:
        argv += ["--data", str(tmp_path / "no-data")]
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exited:
        command(argv)
    assert exited.value.code == 2
    assert (
        one_error(capsys) == f"error: {named} is not writable (/proc); expected a writable folder"
    )
    assert files_under(tmp_path) == before
    assert not Path("/proc/x").exists()


def test_retrain_refuses_a_study_database_it_cannot_record_in(
    small_disk, remount, tmp_path, capsys
):
    """The test accuracy is recorded in the study at the end: a read-only database is refused
    before the data is read, not after the training."""
    url = make_one_trial_study(small_disk / "study.db")
    remount(small_disk, "ro")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        retrain_cli.main(
            ["--study", "s", "--storage", url, "--epochs", "1", "--out", str(out)]
            + ["--data", str(tmp_path / "no-data")]
        )
    assert exited.value.code == 2
    assert one_error(capsys) == (
        f"error: --storage {small_disk} is not writable ({small_disk}); expected a writable folder"
    )
    assert not out.exists()


def test_retrain_on_a_disk_without_room_for_its_weights_fails_before_reading(
    small_disk, one_trial_study, tmp_path, capsys
):
    """Issue 25: --out on a disk too small for the run's weights and training state is one line
    and exit 1 (a full disk), before the data is read (it is missing here) or anything is made."""
    out = small_disk / "retrain"
    with pytest.raises(SystemExit) as exited:
        retrain_cli.main(
            ["--study", "s", "--storage", one_trial_study, "--epochs", "1", "--out", str(out)]
            + ["--data", str(tmp_path / "no-data")]
        )
    assert exited.value.code == 1
    line = one_error(capsys)
    assert line.startswith(f"error: --out {out}: ") and "MiB free on its disk" in line, line
    assert "expected at least that much free" in line
    assert not out.exists()


def test_train_save_on_a_disk_without_room_for_its_weights_fails_before_reading(
    small_disk, tmp_path, capsys
):
    """Issue 25: --save on a disk too small for the run's weights is one line and exit 1, before
    the data is read (it is missing here), anything is trained or the folder is made."""
    save = small_disk / "run"
    with pytest.raises(SystemExit) as exited:
        train_cli.main([*QUICK, "--data", str(tmp_path / "no-data"), "--save", str(save)])
    assert exited.value.code == 1
    line = one_error(capsys)
    assert line.startswith(f"error: --save {save}: ") and "MiB free on its disk" in line, line
    assert "(weights and config.json); expected at least that much free" in line
    assert files_under(small_disk) == []


def test_report_on_a_full_disk_leaves_no_folder(full_disk, one_trial_study, capsys):
    """Issue 25: a report that cannot be written is one line and exit 1, and the folder the
    command made for it is removed again: a failed command writes nothing."""
    output = full_disk / "new" / "deeper" / "r.html"
    with pytest.raises(SystemExit) as exited:
        report_cli.main(["--study", "s", "--storage", one_trial_study, "-o", str(output)])
    assert exited.value.code == 1
    line = one_error(capsys)
    assert line == f"error: disk full: no space left on device writing {output}", line
    assert files_under(full_disk) == ["filler"]


# --- one writer, one schema, one reader ---------------------------------------------------------


def test_save_run_and_load_model_round_trip(tmp_path):
    config = TrainConfig(model="cnn_basic", epochs=3, seed=4)
    model = build_model(config, torch.device("cpu"))
    weights = save_run(tmp_path / "run", model, config, trial=7, params={"lr": 0.1})
    assert weights == tmp_path / "run" / "weights.pt"
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    assert raw == {"train_config": config.to_dict(), "trial": 7, "params": {"lr": 0.1}}
    loaded, loaded_config = load_model(tmp_path / "run", torch.device("cpu"))
    assert loaded_config == config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "weights.pt"]


def test_load_model_wants_the_schema(tmp_path):
    config = TrainConfig(model="cnn_basic")
    save_run(tmp_path, build_model(config, torch.device("cpu")), config)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))  # no "train_config"
    with pytest.raises(ArtifactError, match="is not a configuration of ours .*'train_config'"):
        load_model(tmp_path, torch.device("cpu"))


class _Payload:
    def __reduce__(self):
        return (print, ("a weights file ran code",))


def test_load_model_refuses_what_it_cannot_build_or_load_in_one_line(tmp_path, capsys):
    import pickle
    import warnings

    config = TrainConfig(model="cnn_basic")
    save_run(tmp_path, build_model(config, torch.device("cpu")), config)
    good = (tmp_path / "config.json").read_text()
    raw = json.loads(good)
    raw["train_config"]["model_kwargs"] = {"bogus": 1}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="names a model we cannot build .*'bogus'"):
        load_model(tmp_path, torch.device("cpu"))
    (tmp_path / "config.json").write_text(good)
    (tmp_path / "weights.pt").write_bytes(pickle.dumps(_Payload()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's multi-line warning would be printed
        with pytest.raises(ArtifactError, match="cannot load .*weights.pt as a state dict"):
            load_model(tmp_path, torch.device("cpu"))
    assert "ran code" not in capsys.readouterr().out


def test_save_run_on_a_full_disk_leaves_nothing(full_disk):
    config = TrainConfig(model="cnn_basic")
    folder = full_disk / "trials" / "00003"
    with pytest.raises(OutputError) as raised:
        save_run(folder, build_model(config, torch.device("cpu")), config)
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"disk full: no space left on device writing {folder}/weights.pt"
    assert files_under(full_disk) == ["filler"], "no file, and no folder made for them"


def test_save_run_into_an_unwritable_place(unwritable):
    folder, place, _ = unwritable
    config = TrainConfig(model="cnn_basic")
    before = files_under(place)
    with pytest.raises(OutputError, match=f"cannot save the run in {folder}: "):
        save_run(folder, build_model(config, torch.device("cpu")), config)
    assert files_under(place) == before


# --- the trainable's last report (issue 11 item 4, the trial side) -----------------------------


def test_trial_that_cannot_save_reports_why_and_keeps_its_values(full_disk):
    """A trial whose weights do not fit: its last report keeps every value and says why, without
    `finished`, so the searcher records it FAIL "not saved" rather than losing it."""
    config = TrainConfig(model="cnn_basic", epochs=2)
    model = build_model(config, torch.device("cpu"))
    metrics = {"val_accuracy": 0.42, "val_loss": 1.5, "trial_number": 3, "wall_time": 9.0}
    folder = _trainable.trial_dir(full_disk, 3)
    report = _trainable.final_report(metrics, folder, model, config, 3, {"lr": 0.1})
    assert report == {
        **metrics,
        "save_error": f"disk full: no space left on device writing {folder}/weights.pt",
    }
    assert [p for p in files_under(full_disk) if (full_disk / p).is_file()] == ["filler"]


def test_trial_that_saves_reports_finished(tmp_path):
    config = TrainConfig(model="cnn_basic", epochs=2)
    model = build_model(config, torch.device("cpu"))
    folder = _trainable.trial_dir(tmp_path, 5)
    report = _trainable.final_report({"val_accuracy": 0.5}, folder, model, config, 5, {"a": 1})
    assert report == {
        "val_accuracy": 0.5,
        "finished": True,
        "checkpoint_path": str(folder / "weights.pt"),
    }
    raw = json.loads((folder / "config.json").read_text())
    assert raw["trial"] == 5 and raw["params"] == {"a": 1}
    assert load_model(folder, torch.device("cpu"))[1] == config


@pytest.mark.slow
def test_trial_on_a_full_disk_under_real_tune(full_disk, tmp_path, monkeypatch):
    """`run_trial` under a real (local) Ray Tune with its trial folders on a full disk: the
    trial ends normally, its last result carries the values and `save_error`, not `finished`,
    and no temp file is left. (The searcher's FAIL "not saved" is tested with the searcher.)"""
    import ray
    from ray import tune

    from training import LabeledImages

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    data = LabeledImages(images, torch.arange(64) % 10)
    trial = optuna.create_study().ask()
    get_space("cnn_reg").suggest(trial)
    settings = _trainable.TrialSettings(
        space="cnn_reg", max_epochs=1, seed=0, output_dir=str(full_disk), cpus_per_trial=1
    )
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = tune.Tuner(
            tune.with_parameters(
                _trainable.run_trial, settings=settings, train_set=data, val_set=data
            ),
            param_space={**trial.params, "trial_number": 2},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), name="full", verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    assert not results.errors
    last = results[0].metrics
    assert "finished" not in last and "checkpoint_path" not in last
    folder = _trainable.trial_dir(full_disk, 2)
    assert last["save_error"] == f"disk full: no space left on device writing {folder}/weights.pt"
    assert 0 <= last["val_accuracy"] <= 1 and last["trial_number"] == 2
    assert [p for p in files_under(full_disk) if (full_disk / p).is_file()] == ["filler"]
