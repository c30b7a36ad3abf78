"""Real searches: a local Ray, Optuna's SQLite storage, ASHA, on a slice of the real CIFAR-10."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import REPO, SEARCH_ARGS

pytestmark = pytest.mark.slow
States = optuna.trial.TrialState


def search_command(out, data_root, trials, *extra):
    """The session study's command (SEARCH_ARGS) with another target and folder."""
    args = list(SEARCH_ARGS)
    args[args.index("--trials") + 1] = str(trials)
    return [
        sys.executable,
        "-m",
        "search.run",
        *args,
        "--data",
        str(data_root),
        "--out",
        str(out),
        *extra,
    ]


def run(command, timeout=600):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def load(out):
    return optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{out}/cnn_reg.db")


def test_database_tells_what_happened(real_study):
    """The session's study: 8 trials, the first enqueued with a learning rate that diverges."""
    study, stdout = real_study.load(), real_study.stdout
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(8))
    states = [t.state for t in trials]
    assert States.RUNNING not in states
    assert states.count(States.PRUNED) >= 1, states
    assert states.count(States.COMPLETE) >= 1, states

    diverged = trials[0]
    assert diverged.state == States.FAIL
    assert "NonFiniteLossError" in diverged.user_attrs["fail_reason"]

    for trial in trials:
        epochs = trial.user_attrs.get("epochs_run")
        if trial.state == States.COMPLETE:
            # Every epoch, the last included, is an intermediate value; the value is the last.
            assert sorted(trial.intermediate_values) == [1, 2, 3]
            assert trial.value == trial.intermediate_values[3]
            assert epochs == 3 and trial.user_attrs["wall_time"] > 0
            assert trial.user_attrs["device"] == "cpu"
            assert os.path.exists(trial.user_attrs["checkpoint_path"])
        elif trial.state == States.PRUNED:
            assert epochs < 3 and trial.user_attrs["pruned_by"] == "ASHA"
            assert trial.user_attrs["trial_time"] > 0  # its training time is not lost
            assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))

    attrs = study.user_attrs
    assert attrs["space"] == "cnn_reg" and attrs["project_version"]
    assert attrs["data_source"].endswith("train.zip")
    assert "best trial: #" in stdout and "python -m search.retrain --study cnn_reg" in stdout


def test_rerun_continues_the_study(real_study, data_root, tmp_path):
    # A copy, so the other tests keep seeing the 8-trial study.
    out = tmp_path
    shutil.copy(real_study.db, out / "cnn_reg.db")
    before = {t.number: (t.state, t.value) for t in load(out).get_trials()}
    stdout = run(search_command(out, data_root, 10))
    assert "8 trial(s) done, 2 to run" in stdout
    after = load(out).get_trials()
    assert [t.number for t in after] == list(range(10))
    assert {t.number: (t.state, t.value) for t in after if t.number < 8} == before
    assert all(t.state != States.RUNNING for t in after)


def test_killed_driver_trials_become_fail_and_rerun_finishes(tmp_path, data_root):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    command = search_command(tmp_path, data_root, 6)
    driver = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            time.sleep(1)
            if (tmp_path / "cnn_reg.db").exists():
                try:
                    trials = load(tmp_path).get_trials()
                except Exception:
                    continue
                done = [t for t in trials if t.state.is_finished()]
                if done and any(t.state == States.RUNNING for t in trials):
                    break
        else:
            pytest.fail("the search never had a finished and a running trial at once")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    killed = {t.number for t in load(tmp_path).get_trials() if t.state == States.RUNNING}
    assert killed
    # A kill between a trial's save and its last report leaves weights the study never got.
    for number in killed:
        folder = tmp_path / "cnn_reg" / "trials" / f"{number:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.pt").write_bytes(b"complete-looking weights")
        (folder / "config.json").write_text("{}")
    stdout = run(command)
    assert "left RUNNING by an interrupted run as FAIL" in stdout
    trials = load(tmp_path).get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state != States.RUNNING for t in trials)
    killed_runs = set()
    for trial in trials:
        if trial.number in killed:
            assert trial.state == States.FAIL
            assert trial.user_attrs["fail_reason"].startswith("interrupted")
            # How far it got, from the epochs it reported before the kill.
            assert trial.user_attrs["epochs_run"] == max(trial.intermediate_values, default=0)
            # Its folder no longer looks like a finished trial's.
            assert not (tmp_path / "cnn_reg" / "trials" / f"{trial.number:05d}").exists()
            killed_runs.add(trial.user_attrs["run_id"])
    # The killed driver's heartbeat no longer says it runs.
    attrs = load(tmp_path).user_attrs
    assert [attrs[f"run:{run}"]["status"] for run in killed_runs] == ["dead"]
    finished = [t for t in trials if t.state in (States.COMPLETE, States.PRUNED)]
    assert len(finished) == 6


def test_unknown_space_lists_known_ones(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "search.run", "--space", "nope", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown space 'nope'; known spaces: ")
    assert "cnn_reg" in lines[0] and "shake" in lines[0]
    assert not list(tmp_path.iterdir()), "nothing written for bad input"
