"""The final retrain and re-evaluation, on a study made by a real search."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
from conftest import REPO

pytestmark = pytest.mark.slow


def retrain(real_study, data_root, *extra, check=True):
    command = [
        sys.executable,
        "-m",
        "search.retrain",
        "--study",
        real_study.name,
        "--studies-dir",
        str(real_study.out),
        "--data",
        str(data_root),
        "--train-size",
        "500",
        *extra,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def retrained(real_study, data_root):
    done = retrain(real_study, data_root, "--epochs", "5")
    folder = re.search(r"^output: (.+)$", done.stdout, re.M).group(1)
    return folder, done.stdout


def test_retrain_takes_best_trial_and_scales_milestones(real_study, retrained):
    folder, stdout = retrained
    study = real_study.load()
    best = study.best_trial
    config = json.loads(open(os.path.join(folder, "config.json")).read())
    assert config["trial"] == best.number and config["params"] == best.params
    train_config = config["train_config"]
    assert train_config["epochs"] == 5
    # The search's --precision is recorded, used by every trial, and taken by the retrain.
    assert study.user_attrs["precision"] == "fp32" and train_config["precision"] == "fp32"
    trial_configs = list(real_study.out.glob("**/trials/*/config.json"))
    assert trial_configs, "no trial saved its configuration"
    for path in trial_configs:
        raw = json.loads(path.read_text())
        assert raw["train_config"]["precision"] == raw["precision"] == "fp32", path
    # What ran is recorded too: in each complete trial, the retrain's config.json and metrics.
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(t.user_attrs["precision"] == "fp32" for t in complete)
    assert config["precision"] == "fp32"
    assert json.loads(open(os.path.join(folder, "metrics.json")).read())["precision"] == "fp32"
    # Milestones stay fractions; the MultiStepLR epochs follow the new length.
    fractions = (best.params["milestone1"], best.params["milestone2"])
    assert train_config["milestones"] == list(fractions)
    metrics = json.loads(open(os.path.join(folder, "metrics.json")).read())
    lrs = [h["lr"] for h in metrics["history"]]
    drops = [epoch + 1 for epoch in range(1, 5) if lrs[epoch] < lrs[epoch - 1] * 0.999]
    expected = sorted({max(1, round(f * 5)) for f in fractions})
    assert drops == [e + 1 for e in expected if e < 5]
    assert "Accuracy of the network on the 10000 test images:" in stdout
    for name in ("plane", "car", "truck"):
        assert re.search(rf"^{name}\s+\d+\.\d\d$", stdout, re.M)


def test_retrain_writes_every_file_and_records_in_study(real_study, retrained):
    folder, _ = retrained
    assert sorted(os.listdir(folder)) == [
        "config.json",
        "metrics.json",
        "report.html",
        "weights.pt",
    ]
    metrics = json.loads(open(os.path.join(folder, "metrics.json")).read())
    for key in (
        "test_accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "best_val_accuracy",
        "final_val_accuracy",
        "epochs",
        "wall_time",
        "device",
        "seed",
        "project_version",
        "validation",
    ):
        assert key in metrics, key
    assert sum(map(sum, metrics["confusion_matrix"])) == 10000
    state = torch.load(os.path.join(folder, "weights.pt"), weights_only=True)
    from models import create_model

    create_model("cnn_reg").load_state_dict(state)  # strict: every key and shape matches
    report = open(os.path.join(folder, "report.html")).read()
    assert report.count("plotly-graph-div") >= 3 and "Confusion matrix" in report
    recorded = real_study.load().user_attrs["retrain"]
    assert recorded["test_accuracy"] == metrics["test_accuracy"]
    assert recorded["dir"] == folder


def test_evaluate_reproduces_test_accuracy(retrained, data_root):
    folder, _ = retrained
    metrics = json.loads(open(os.path.join(folder, "metrics.json")).read())
    done = subprocess.run(
        [sys.executable, "-m", "search.evaluate", folder, "--data", str(data_root)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    shown = float(re.search(r"test images: (\d+\.\d\d) %", done.stdout).group(1))
    assert shown == pytest.approx(100 * metrics["test_accuracy"], abs=0.006)


def test_interrupted_retrain_resumes(real_study, data_root, tmp_path):
    out = tmp_path / "retrain"
    command = [
        sys.executable,
        "-m",
        "search.retrain",
        "--study",
        real_study.name,
        "--studies-dir",
        str(real_study.out),
        "--data",
        str(data_root),
        "--train-size",
        "500",
        "--epochs",
        "4",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in proc.stdout:
        if re.match(r"\s*2/4 ", line) or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "state.pt").exists() and not (out / "metrics.json").exists()
    done = subprocess.run(
        command + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout
    assert not re.search(r"^\s*1/4 ", done.stdout, re.M), "epoch 1 is not trained again"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert not (out / "state.pt").exists()


def test_retrain_errors(real_study, data_root, tmp_path):
    done = retrain(real_study, data_root, "--trial", "99", check=False)
    assert done.returncode == 2 and "has no trial #99" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    storage = f"sqlite:///{tmp_path}/empty.db"
    study = optuna.create_study(study_name="empty", storage=storage)
    study.set_user_attr("space", "cnn_reg")
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.retrain",
            "--study",
            "empty",
            "--storage",
            storage,
            "--out",
            str(tmp_path / "x"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "has no completed trial" in done.stderr
    assert not (tmp_path / "x").exists(), "no output folder for bad input"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.retrain",
            "--study",
            "nope",
            "--studies-dir",
            str(tmp_path / "none"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no study database" in done.stderr
    assert not (tmp_path / "none").exists()


def test_evaluate_rejects_weights_that_are_not_ours(retrained, tmp_path, data_root):
    folder, _ = retrained
    (tmp_path / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    (tmp_path / "weights.pt").write_bytes(b"not a checkpoint")
    done = subprocess.run(
        [sys.executable, "-m", "search.evaluate", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "cannot load" in done.stderr
    torch.save({"conv9.weight": torch.zeros(3)}, tmp_path / "weights.pt")
    done = subprocess.run(
        [sys.executable, "-m", "search.evaluate", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "do not fit model 'cnn_reg'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
