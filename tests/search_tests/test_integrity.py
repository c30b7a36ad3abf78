"""`search.run` keeps a study whole: a continued study keeps its settings, every place it writes
is checked before anything starts, the resource plan, the printed commands, and a local Ray
reachable from this machine only.

The in-process tests end before the data is read; the Ray test starts a real local Ray.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import REPO, descendants

from search._driver import SearchPlan, plan_search
from search._job import SettingsConflict, StudySettings, resolve_settings
from search._space import get_space
from search._study import STUDIES_DIR, redact
from search._summary import where_options
from search._trainable import CONTEXT_RESERVE, memory_fraction
from search.run import build_parser, main

RECORDED = {
    "space": "cnn_reg",
    "max_epochs": 3,
    "train_size": 500,
    "val_size": 500,
    "seed": 0,
    "sampler": "tpe",
    "model_override": None,
    "precision": "fp32",
}


def settings_for(*argv: str, recorded=None) -> StudySettings:
    args = build_parser().parse_args(["--space", "cnn_reg", *argv])
    return resolve_settings(args, get_space("cnn_reg"), "cnn_reg", recorded or {})


def test_new_study_takes_options_then_defaults():
    space = get_space("cnn_reg")
    assert settings_for() == StudySettings(
        max_epochs=space.max_epochs,
        train_size=space.train_size,
        val_size=5000,
        seed=0,
        model=None,
        precision="auto",
        sampler="tpe",
    )
    assert settings_for("--seed", "5", "--val-size", "400").seed == 5


def test_continued_study_takes_its_recorded_settings():
    assert settings_for(recorded=RECORDED) == StudySettings(3, 500, 500, 0, None, "fp32", "tpe")
    # The same values given again, or another sampler, continue it too.
    same = ("--max-epochs", "3", "--val-size", "500", "--seed", "0", "--sampler", "random")
    assert settings_for(*same, recorded=RECORDED).sampler == "random"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--train-size", "1000"], "--train-size 500, not 1000"),
        (["--val-size", "400"], "--val-size 500, not 400"),
        (["--seed", "5"], "--seed 0, not 5"),
        (["--max-epochs", "2"], "--max-epochs 3, not 2"),
        (["--model", "resnet20"], "--model the space's own model, not resnet20"),
        (["--precision", "bf16"], "--precision fp32, not bf16"),
    ],
)
def test_continued_study_refuses_other_settings(argv, expected):
    with pytest.raises(SettingsConflict) as refused:
        settings_for(*argv, recorded=RECORDED)
    assert str(refused.value) == (
        f"study 'cnn_reg' was made with {expected}; leave {argv[0]} out to continue it, or "
        "pass --study NEW_NAME for a new study"
    )


def make_study(out: Path, recorded: dict | None = None) -> Path:
    """A study as `search.run --train-size 500 --val-size 500 --seed 0 --max-epochs 3` left it."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "cnn_reg.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.create_study(study_name="cnn_reg", storage=storage)
    for key, value in (recorded or RECORDED).items():
        study.set_user_attr(key, value)
    storage.engine.dispose()  # no connection left open: the folder can be remounted
    return db


def test_conflicting_rerun_is_one_line_and_writes_nothing(tmp_path, capsys):
    db = make_study(tmp_path)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    argv = ["--space", "cnn_reg", "--out", str(tmp_path), "--data", str(tmp_path / "none")]
    argv += ["--train-size", "1000", "--val-size", "400", "--seed", "5", "--max-epochs", "2"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: study 'cnn_reg' was made with --"), err
    assert "--study NEW_NAME" in err[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn_reg.db"]


def test_continued_study_refuses_other_data(tmp_path, capsys, cifar_train):
    from PIL import Image

    from training import CIFAR10_CLASSES, train_val_split

    _, val_set = train_val_split(cifar_train, 100, 0, 200)
    recorded = {**RECORDED, "val_size": 100, "train_size": 200}
    recorded.update(val_fingerprint=val_set.fingerprint(), data_source=cifar_train.source)
    db = make_study(tmp_path / "out", recorded)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    other = tmp_path / "other"  # CIFAR-10-shaped, other images
    for label, name in enumerate(CIFAR10_CLASSES):
        (other / "train" / name).mkdir(parents=True)
        for i in range(40):
            Image.new("RGB", (32, 32), (label * 20, i * 5, 7)).save(
                other / "train" / name / f"{i}.png"
            )
    line = run_main(["--out", str(tmp_path / "out"), "--data", str(other)], capsys)
    assert line.startswith("error: study 'cnn_reg' was made with other data ("), line
    assert "pass --data with the study's data" in line and "--study NEW_NAME" in line
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cnn_reg.db"]


def run_main(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["--space", "cnn_reg", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_studies_dir_that_is_a_file_or_under_one(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    missing = str(tmp_path / "no-data")  # the data would be read next: it is never reached
    line = run_main(["--studies-dir", str(afile), "--data", missing], capsys)
    assert line == f"error: --studies-dir {afile} cannot be made: {afile} is a file; " + (
        "expected a folder path"
    )
    line = run_main(["--studies-dir", str(afile / "sub"), "--data", missing], capsys)
    assert f"{afile} is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_studies_dir_read_only(small_disk, remount, capsys):
    make_study(small_disk)
    remount(small_disk, "ro")
    missing = str(small_disk.parent / "no-data")
    line = run_main(["--studies-dir", str(small_disk / "new"), "--data", missing], capsys)
    assert line == (
        f"error: --studies-dir {small_disk / 'new'} is not writable ({small_disk}); "
        "expected a writable folder"
    )
    # An existing database in a read-only --studies-dir.
    line = run_main(["--studies-dir", str(small_disk), "--data", missing], capsys)
    assert line == (
        f"error: --studies-dir {small_disk} is not writable ({small_disk}); "
        "expected a writable folder"
    )
    # An existing database there, named by --storage from a writable --studies-dir.
    url = f"sqlite:///{small_disk / 'cnn_reg.db'}"
    out = small_disk.parent / "out"
    line = run_main(["--storage", url, "--studies-dir", str(out), "--data", missing], capsys)
    assert line.startswith(f"error: --storage {small_disk} is not writable"), line
    assert not out.exists()


def test_study_database_that_cannot_be_opened_for_writing(tmp_path, capsys):
    """A database file that is read-only in a writable folder (a read-only bind mount of the
    file): opened for writing, it is refused in one line, and nothing in it changes."""
    db = make_study(tmp_path / "out")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    bound = subprocess.run(["mount", "--bind", str(db), str(db)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True)
        missing = str(tmp_path / "no-data")
        line = run_main(["--studies-dir", str(tmp_path / "out"), "--data", missing], capsys)
    finally:
        gc.collect()  # the failed run's database connection, then the mount
        subprocess.run(["umount", "--lazy", str(db)], check=True)
    assert line == (
        f"error: --studies-dir: the study database {db} is not writable; expected a writable file"
    )
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cnn_reg.db"]


def test_gpu_share_without_a_gpu_is_refused_before_the_data(tmp_path, capsys):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs: --gpus-per-trial 2 is possible")
    missing = str(tmp_path / "no-data")  # reading it would fail with another message
    line = run_main(
        ["--gpus-per-trial", "2", "--out", str(tmp_path / "o"), "--data", missing], capsys
    )
    assert "--gpus-per-trial 2.0 asks for" in line and "GPU" in line, line
    assert not (tmp_path / "o").exists()


def test_bf16_on_a_cpu_without_it_is_refused_before_the_data(tmp_path, capsys, monkeypatch):
    import torch

    import training._trainer

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: bf16 trials would run there")
    monkeypatch.setattr(training._trainer, "cpu_has_native_bf16", lambda: False)
    missing = str(tmp_path / "no-data")  # reading it would fail with another message
    line = run_main(
        ["--precision", "bf16", "--out", str(tmp_path / "o"), "--data", missing], capsys
    )
    assert line.startswith("error: invalid precision='bf16'; this CPU has no native bf16"), line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kwargs", "plan"),
    [
        ({"cluster_cpus": 2, "cluster_gpus": 0, "remaining": 8}, SearchPlan(2, 1, 0.0)),
        ({"cluster_cpus": 2, "cluster_gpus": 0, "remaining": 1}, SearchPlan(1, 1, 0.0)),
        (
            {"cluster_cpus": 8, "cluster_gpus": 0, "remaining": 8, "cpus_per_trial": 3},
            SearchPlan(2, 3, 0.0),
        ),
        ({"cluster_cpus": 16, "cluster_gpus": 1, "remaining": 8}, SearchPlan(4, 4, 0.25)),
        (
            {"cluster_cpus": 16, "cluster_gpus": 1, "remaining": 20, "gpus_per_trial": 0.1},
            SearchPlan(10, 1, 0.1),
        ),
        (
            {"cluster_cpus": 16, "cluster_gpus": 2, "remaining": 8, "gpus_per_trial": 0},
            SearchPlan(8, 1, 0),
        ),
        # The space's share is the default (Shake-Shake: a whole GPU a trial)...
        (
            {"cluster_cpus": 16, "cluster_gpus": 1, "remaining": 8, "space_share": 1.0},
            SearchPlan(1, 16, 1.0),
        ),
        # ...and an explicit --gpus-per-trial overrides it; no GPU: none either way.
        (
            {
                "cluster_cpus": 16,
                "cluster_gpus": 1,
                "remaining": 8,
                "gpus_per_trial": 0.5,
                "space_share": 1.0,
            },
            SearchPlan(2, 8, 0.5),
        ),
        (
            {"cluster_cpus": 2, "cluster_gpus": 0, "remaining": 8, "space_share": 1.0},
            SearchPlan(2, 1, 0.0),
        ),
    ],
)
def test_plan_search(kwargs, plan):
    assert plan_search(**kwargs) == plan


def test_a_trials_memory_cap_is_its_share_less_its_cuda_context():
    gib = 1 << 30
    assert memory_fraction(0.25, 80 * gib) == 0.25 - 1 / 80
    # Four trials' caps and contexts fill the GPU, no more.
    assert 4 * (memory_fraction(0.25, 80 * gib) * 80 * gib + CONTEXT_RESERVE) == 80 * gib
    assert memory_fraction(0.05, 16 * gib) == 0.025  # never below half the share
    assert memory_fraction(1.0, 16 * gib) == memory_fraction(2.0, 16 * gib) == 1.0


def test_plan_search_refuses_more_cpus_a_trial_than_the_cluster_has():
    # Tune would wait for them for ever (a 2-core machine with --cpus-per-trial 64 hung).
    with pytest.raises(ValueError, match="--cpus-per-trial 64 asks for more CPUs than the Ray"):
        plan_search(cluster_cpus=2, cluster_gpus=0, remaining=1, cpus_per_trial=64)


def test_plan_search_refuses_a_gpu_share_without_gpus():
    with pytest.raises(ValueError, match="asks for a GPU but the Ray cluster has none"):
        plan_search(cluster_cpus=2, cluster_gpus=0, remaining=1, gpus_per_trial=0.5)


def where(storage, studies_dir=STUDIES_DIR, env=None, monkeypatch=None):
    custom = None if studies_dir == STUDIES_DIR else Path(studies_dir).absolute()
    return where_options(storage, custom)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://qa:Qa@Leak77@127.0.0.1:1/x", "postgresql://qa:***@127.0.0.1:1/x"),
        ("postgresql://u:p:w%40/x@db:5432/s", "postgresql://u:***@db:5432/s"),
        (
            "postgresql+psycopg2://u:p%3A@db/s?sslmode=require",
            "postgresql+psycopg2://u:***@db/s?sslmode=require",
        ),
        ("postgresql://user@db/s", "postgresql://user@db/s"),
        ("sqlite:////data/a@b:c/x.db", "sqlite:////data/a@b:c/x.db"),
        ("user:secret@db", "<unparseable storage URL>"),
    ],
)
def test_redact_hides_the_password_by_structure(url, shown):
    assert redact(url) == shown


def test_printed_commands_never_hold_a_redacted_password(monkeypatch):
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    url = "postgresql://user:secret@db.example/studies"
    words, note = where(url)
    assert words == ["--storage", '"$SEARCH_STORAGE"'] and "SEARCH_STORAGE" in note
    assert "***" not in " ".join(words) and "secret" not in " ".join(words)
    monkeypatch.setenv("SEARCH_STORAGE", url)
    assert where(url) == (["--storage", '"$SEARCH_STORAGE"'], None)
    assert where("postgresql://user@db/x") == (["--storage", "postgresql://user@db/x"], None)
    assert where(None) == ([], None)  # $SEARCH_STORAGE or the default: found without options
    words, _ = where(None, Path("my studies"))
    assert words == ["--studies-dir", f"'{Path('my studies').absolute()}'"]


def listening_sockets(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, local address, port) of every TCP socket of `pids` that listens."""
    owners: dict[str, str] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owners[link[8:-1]] = name
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in owners:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(words)
            ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is 127.0.0.1
            found.append((owners[fields[9]], str(ip), int(port, 16)))
    return found


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only():
    """Every listening socket of the Ray a search starts (GCS, raylet, workers, the driver)
    is on 127.0.0.1."""
    script = (
        "import sys\n"
        "from search._driver import _start_ray\n"
        "_start_ray(None, False)\n"
        "import ray\n"
        "ray.get(ray.remote(lambda: 1).remote())  # a worker is up\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    driver = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout.readline().strip() == "ready"
        listeners = listening_sockets(descendants(driver.pid))
    finally:
        driver.communicate("", timeout=120)
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners
    assert [entry for entry in listeners if entry[1] != "127.0.0.1"] == [], listeners


def test_study_of_an_earlier_space_version_is_refused_in_one_line(
    tmp_path, capsys, cifar_train, data_root
):
    """A trial drawn when `augment` offered other choices: Optuna could not sample the study
    any more, so the continuation is refused before any trial starts."""
    from optuna.distributions import CategoricalDistribution

    from training import train_val_split

    _, val_set = train_val_split(cifar_train, 100, 0, 200)
    recorded = {**RECORDED, "val_size": 100, "train_size": 200}
    recorded.update(val_fingerprint=val_set.fingerprint(), data_source=cifar_train.source)
    db = make_study(tmp_path, recorded)
    study = optuna.load_study(study_name="cnn_reg", storage=f"sqlite:///{db}")
    study.add_trial(
        optuna.trial.create_trial(
            params={"augment": "crop_flip"},
            distributions={"augment": CategoricalDistribution(["crop_flip", "old_preset"])},
            value=0.5,
        )
    )
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    line = run_main(["--out", str(tmp_path), "--data", str(data_root)], capsys)
    assert line.startswith("error: study 'cnn_reg' was made with an earlier version of space"), line
    assert "augment" in line and "--study NEW_NAME" in line
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_changed_parameters_names_only_incompatible_ones():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space = get_space("cnn_reg")
    recorded = {
        "augment": CategoricalDistribution(["crop_flip", "old_preset"]),
        "p1": FloatDistribution(0.0, 0.9),  # another range: Optuna samples it without complaint
        "sgd_lr": FloatDistribution(0.01, 0.4, log=True),  # no longer asked for
        "schedule": CategoricalDistribution(["multistep", "cosine", "onecycle"]),
    }
    assert space.changed_parameters(recorded) == ["augment"]


def _open_at_once(url: str, barrier, results) -> None:
    from search._study import open_storage

    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except Exception as exc:  # the test reports what went wrong
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_processes_opening_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    """Optuna creates a new database's tables without a lock; six processes opening one new
    SQLite file at once (drivers, or a driver and a test polling its study) collided with
    "table ... already exists" before the retry (9 failures in 5 rounds when measured)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        barrier, results = context.Barrier(6), context.Queue()
        workers = [
            context.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        outcomes = [results.get(timeout=10) for _ in workers]
        assert outcomes == ["ok"] * 6, outcomes


@pytest.mark.slow
def test_search_runs_from_a_folder_holding_a_studies_folder(tmp_path, data_root):
    # The default --studies-dir makes studies/ in the working directory; Python would import it
    # as the `studies` package, and the search would find no space (as it did from any folder
    # but the project's root).
    (tmp_path / "studies").mkdir()
    command = [sys.executable, "-m", "search.run", "--space", "cnn_reg", "--trials", "1"]
    command += ["--max-epochs", "1", "--train-size", "200", "--val-size", "200"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [*command, "--data", str(data_root)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    study = optuna.load_study(
        study_name="cnn_reg", storage=f"sqlite:///{tmp_path / 'studies' / 'cnn_reg.db'}"
    )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
