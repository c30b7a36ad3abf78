"""Bad input to `python -m search.run`: one line on stderr naming what is wrong and what is
expected, a non-zero exit, no traceback, and nothing written (no study database, no folder).

(An unknown space is tested in test_search.py.)
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys

import optuna
import pytest
from conftest import REPO

from search.run import main

PROG_ERROR = "python -m search.run: error: "


def run_search(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.run", "--space", "cnn_reg", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# Rejected while parsing the command line: argparse prints its usage block, then one line that
# names the option, the value and what is expected, and exits with 2. The usage lines are
# argparse's convention (every command here shares it), so they are allowed before that line.
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--trials", "0"], "argument --trials: expected a whole number >= 1, got 0"),
        (["--trials", "abc"], "argument --trials: expected a whole number, got 'abc'"),
        (["--max-epochs", "-1"], "argument --max-epochs: expected a whole number >= 1, got -1"),
        (
            ["--max-epochs", str(10**30)],
            f"argument --max-epochs: expected at most 100000 epochs, got {10**30}",
        ),
        (
            ["--seed", str(2**70)],
            f"argument --seed: expected a whole number below 2**63, got {2**70}",
        ),
        (["--gpus-per-trial", "x"], "argument --gpus-per-trial: invalid float value: 'x'"),
        (
            ["--checkpoint-every", "-1"],
            "argument --checkpoint-every: expected a whole number >= 0, got -1",
        ),
        (["--max-failures", "-1"], "argument --max-failures: expected a whole number >= 0, got -1"),
        *[
            (["--study", name], f"argument --study: invalid name {name!r}; expected a plain name")
            for name in ("../escape", "a/b", ".hidden", "a\\b", "")
        ],
    ],
)
def test_malformed_option_is_named_by_argparse(args, expected, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main(["--space", "cnn_reg", "--out", str(out), *args])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(PROG_ERROR + expected)
    assert lines[0].startswith("usage: ") and all(line.startswith(" ") for line in lines[1:-1]), (
        lines
    )
    assert not out.exists()


# Checked by search.run itself once parsed: exactly one line.
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--grace-period", "5", "--max-epochs", "3"],
            "error: --grace-period 5 exceeds --max-epochs 3; expected grace period <= max epochs",
        ),
        (
            ["--gpus-per-trial", "-1"],
            "error: --gpus-per-trial -1.0 is invalid; expected a number >= 0",
        ),
        (
            ["--gpus-per-trial", "nan"],
            "error: --gpus-per-trial nan is invalid; expected a number >= 0",
        ),
        (["--reduction-factor", "1"], "error: --reduction-factor 1 is too small; expected >= 2"),
        (
            ["--child-recipe", "bare"],
            "error: invalid --child-recipe: space 'cnn_reg' has no child recipe; --child-recipe "
            "is for the spaces whose trials vary a child's policy: policy, policy_child",
        ),
        (
            ["--cpus-per-trial", "4096"],
            f"error: --cpus-per-trial 4096 asks for more CPUs than this machine has "
            f"({os.cpu_count()}); expected at most {os.cpu_count()}",
        ),
        # Nobody listens there: without the check, ray.init retries for minutes.
        (
            ["--address", "127.0.0.1:1"],
            "error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused; expected the "
            "address `ray start --head` printed, with that port open to this machine",
        ),
    ],
)
def test_inconsistent_options_are_one_line(args, expected, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main(["--space", "cnn_reg", "--out", str(out), *args])
    assert exited.value.code == 2
    assert one_error_line(capsys.readouterr().err) == expected
    assert not out.exists()


@pytest.mark.slow
def test_argparse_error_from_the_command_line_has_no_traceback(tmp_path):
    done = run_search("--trials", "abc", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        PROG_ERROR + "argument --trials: expected a whole number, got 'abc'"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_malformed_storage_url(tmp_path, data_root):
    done = run_search(
        "--storage", "notaurl", "--data", str(data_root), "--out", str(tmp_path / "out")
    )
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert line.startswith("error: malformed storage URL 'notaurl'; expected an SQLAlchemy URL")
    assert not (tmp_path / "out").exists()


def refused_storage(url: str, tmp_path, data_root) -> tuple[str, str]:
    """(the one error line, all the output) of a search given `url`, refused with exit 2 and
    nothing written."""
    done = run_search("--storage", url, "--data", str(data_root), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert not (tmp_path / "out").exists()
    return one_error_line(done.stderr), done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("password", ["pw-do-not-print-7", "pw:with%3Acolon-7", "pw%40escaped-7"])
def test_unreachable_server_without_printing_the_password(tmp_path, data_root, password):
    url = f"postgresql://u:{password}@127.0.0.1:1/x"
    line, output = refused_storage(url, tmp_path, data_root)
    assert line.startswith("error: cannot reach storage 'postgresql://u:***@127.0.0.1:1/x': ")
    assert "Connection refused" in line
    assert "-7" not in output


@pytest.mark.slow
def test_unescaped_at_in_the_password_is_refused_unprinted(tmp_path, data_root):
    # A parser splits at the first "@": the driver's error would name "Leak77@127.0.0.1".
    url = "postgresql://qa:Qa@Leak77@127.0.0.1:1/x"
    line, output = refused_storage(url, tmp_path, data_root)
    assert line.startswith(
        "error: storage URL 'postgresql://qa:***@127.0.0.1:1/x' has an unescaped"
    )
    assert "Leak77" not in output and "Qa" not in output


def make_db_of_another_schema(out, revision: str):
    """A study database whose schema revision is `revision` instead of this Optuna's."""
    out.mkdir()
    db = out / "cnn_reg.db"
    optuna.create_study(study_name="cnn_reg", storage=f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    return db


@pytest.mark.slow
@pytest.mark.parametrize(
    ("revision", "advice"),
    [
        # A revision Optuna knows but is behind: the storage needs upgrading.
        (
            "v3.0.0.a",
            "back it up, then upgrade it with: optuna storage upgrade --storage sqlite:///",
        ),
        # One it does not know: a newer Optuna wrote it.
        ("v99.0.0.a", "upgrade Optuna (pip install -U optuna)"),
    ],
)
def test_database_of_an_incompatible_optuna_schema(revision, advice, tmp_path, data_root):
    out = tmp_path / "out"
    db = make_db_of_another_schema(out, revision)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done = run_search("--data", str(data_root), "--out", str(out))
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "incompatible Optuna schema" in line or "newer Optuna schema" in line, line
    assert advice in line, line
    assert sorted(p.name for p in out.iterdir()) == ["cnn_reg.db"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_data_folder_without_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    # An explicit --data is never downloaded into; the dead proxy would catch an attempt.
    proxy = "http://127.0.0.1:9"
    done = run_search(
        "--data",
        str(empty),
        "--out",
        str(tmp_path / "out"),
        env={"http_proxy": proxy, "https_proxy": proxy, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy},
    )
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert f"CIFAR-10 not found in {empty}" in line and "--data" in line, line
    assert not (tmp_path / "out").exists()
    assert not list(empty.iterdir())


@pytest.mark.slow
def test_corrupt_train_zip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.zip").write_bytes(b"PK\x03\x04 this is not really a zip file" * 100)
    done = run_search("--data", str(data), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: cannot open {data / 'train.zip'} as a zip file"), line
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in data.iterdir()) == ["train.zip"]  # no cache written


@pytest.mark.slow
def test_gpu_share_without_a_gpu_leaves_no_study_behind(tmp_path, data_root):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --gpus-per-trial 1 would start a real search")
    # Known only once Ray runs, after the study was made: the command deletes what it made.
    out = tmp_path / "out"
    done = run_search(
        "--gpus-per-trial", "1", "--trials", "1", "--data", str(data_root), "--out", str(out)
    )
    assert done.returncode == 2
    assert one_error_line(done.stderr) == (
        "error: --gpus-per-trial 1.0 asks for a GPU but the Ray cluster has none; "
        "use --gpus-per-trial 0"
    )
    assert not out.exists()


def _foreign_sqlite(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (line TEXT)")
        db.execute("INSERT INTO notes VALUES ('another program wrote this')")
    db.close()


@pytest.mark.parametrize("command", ["retrain", "report", "dashboard", "export_policy"])
@pytest.mark.parametrize("kind", ["foreign", "empty", "not sqlite"])
def test_read_only_commands_write_nothing_into_a_database_of_another_kind(
    tmp_path, capsys, command, kind
):
    import importlib

    db = tmp_path / "other.db"
    if kind == "foreign":
        _foreign_sqlite(db)
    elif kind == "empty":
        db.write_bytes(b"")
    else:
        db.write_bytes(b"plain text, not a database\n" * 10)
    before = db.read_bytes()
    module = importlib.import_module(f"search.{command}")
    argv = ["--study", "cnn_reg", "--storage", f"sqlite:///{db}"]
    if command == "export_policy":
        argv += ["-o", str(tmp_path / "policy.json")]
    with pytest.raises(SystemExit) as exited:
        module.main(argv)
    assert exited.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds no Optuna study tables" in line or "is not a study database" in line, line
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.slow
def test_a_search_refused_after_reading_the_data_writes_no_cache(tmp_path, data_root):
    """The cache of decoded images is written once the input is accepted, not before."""
    cache = tmp_path / "cache"
    done = run_search(
        *("--train-size", "60000", "--data", str(data_root), "--out", str(tmp_path / "out")),
        env={"CIFAR10_CACHE": str(cache)},
    )
    assert done.returncode == 2
    assert "train_size 60000 is out of range" in one_error_line(done.stderr)
    assert not cache.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_study_database_on_a_full_disk_is_one_line_and_exit_1(full_disk, data_root):
    """Issue 25: the database cannot be made on a full disk; exit 1, as every full disk."""
    done = run_search("--studies-dir", str(full_disk), "--data", str(data_root))
    assert done.returncode == 1, done.stderr[-2000:]
    line = one_error_line(done.stderr)
    assert "cannot write to the study database" in line and "free space there" in line, line
