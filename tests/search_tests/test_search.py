"""Real searches: a local Ray, Optuna's SQLite storage, ASHA, on a slice of the real CIFAR-10."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import optuna
import pytest
from conftest import REPO, SEARCH_ARGS, kill_tree, uninterrupted_value

from search._study import count_finished

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


def test_killed_driver_trials_are_resumed_by_the_rerun(tmp_path, data_root):
    """The driver is SIGKILLed while two trials are half way: the re-run marks them FAIL, runs
    each again first from its checkpoint (one checkpoint corrupted here: that trial starts
    over, and says why) and ends with the 8 trials asked for, values as if never stopped."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # ASHA stops nothing (grace = max epochs): each trial's epochs are known.
    command = search_command(
        tmp_path, data_root, 8, "--grace-period", "3", "--checkpoint-every", "1"
    )
    driver = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        halfway = _wait_for_two_halfway(tmp_path)
    finally:
        kill_tree(driver.pid)  # the driver, the Ray it started and its workers, all gone
        driver.wait()
    trials = {t.number: t for t in load(tmp_path).get_trials()}
    killed = {n for n, t in trials.items() if t.state == States.RUNNING}
    # One of them may have finished in the moment before the kill.
    halfway = sorted(halfway & killed)
    assert halfway
    resumed, corrupted = halfway[0], halfway[1] if len(halfway) > 1 else None
    folders = tmp_path / "cnn_reg" / "trials"
    assert (folders / f"{resumed:05d}" / "state.pt").exists()
    if corrupted is not None:
        (folders / f"{corrupted:05d}" / "state.pt").write_bytes(b"not a checkpoint")
    # A kill between a trial's save and its last report leaves weights the study never got.
    for number in killed:
        (folders / f"{number:05d}").mkdir(parents=True, exist_ok=True)
        (folders / f"{number:05d}" / "weights.pt").write_bytes(b"complete-looking weights")
        (folders / f"{number:05d}" / "config.json").write_text("{}")

    stdout = run(command)
    assert "left RUNNING by an interrupted run as FAIL" in stdout
    assert "run again first, from their last checkpoints" in stdout
    after = load(tmp_path).get_trials()
    assert [t.number for t in after] == list(range(len(after)))
    assert all(t.state != States.RUNNING for t in after)
    assert count_finished(load(tmp_path)) == 8  # exactly the target
    retries = {t.user_attrs["retry_of"]: t for t in after if "retry_of" in t.user_attrs}
    assert set(retries) == killed
    for number in killed:
        old, retry = after[number], retries[number]
        assert old.state == States.FAIL and old.user_attrs["fail_reason"].startswith("interrupted")
        assert old.user_attrs["retried_by"] == retry.number
        assert retry.params == old.params
        if retry.state == States.FAIL:  # a sampled learning rate may diverge, run again or not
            assert "NonFiniteLossError" in retry.user_attrs["fail_reason"]
            continue
        assert retry.state == States.COMPLETE and sorted(retry.intermediate_values) == [1, 2, 3]
        # Values equal to the same trial's uninterrupted run, to the bit (CPU).
        assert retry.value == uninterrupted_value(command, retry)
        # Its folder no longer looks like a finished trial's, and no checkpoint is left.
        assert not (folders / f"{number:05d}").exists()
    # Only the epochs after its checkpoint were trained again (it saved after every epoch it
    # reported, perhaps one more before the kill).
    done_before = len(trials[resumed].intermediate_values)
    restored = retries[resumed].user_attrs["resumed_from_epoch"]
    assert done_before <= restored < 3
    assert retries[resumed].user_attrs["epochs_trained"] == 3 - restored
    assert "checkpoint_refused" not in retries[resumed].user_attrs
    if corrupted is not None:
        refused = retries[corrupted].user_attrs
        assert refused["checkpoint_refused"].startswith("cannot resume from ")
        assert "resumed_from_epoch" not in refused  # it started over
    assert f"#{resumed} as #{retries[resumed].number} ({restored} epochs restored)" in stdout
    assert not list(folders.glob("*/state.pt"))


def _wait_for_two_halfway(out, timeout: float = 240) -> set[int]:
    """The numbers of two RUNNING trials that reported 1 or 2 of their 3 epochs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        if not (out / "cnn_reg.db").exists():
            continue
        try:
            trials = load(out).get_trials()
        except Exception:
            continue
        halfway = {
            t.number
            for t in trials
            if t.state == States.RUNNING and 1 <= len(t.intermediate_values) < 3
        }
        if len(halfway) >= 2:
            return set(sorted(halfway)[:2])
    pytest.fail("the search never had two trials half way at once")


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
