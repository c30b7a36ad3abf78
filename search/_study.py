"""The study database: opening Optuna's RDB storage safely, study metadata, interrupted trials.

Every URL shown to a person or written to a file goes through `redact` first.
"""

from __future__ import annotations

import os
import random
import shlex
import socket
import time
import uuid
from pathlib import Path
from typing import Any

STORAGE_ENV = "SEARCH_STORAGE"
STUDIES_DIR = Path("studies")
# A driver refreshes its heartbeat this often; a run silent for STALE_AFTER is taken as dead.
HEARTBEAT_INTERVAL = 20.0
STALE_AFTER = 90.0
RUN_ATTR_PREFIX = "run:"
INTERRUPTED_REASON = "interrupted"


class StudyError(ValueError):
    """A storage URL or study that cannot be used as asked; the message says why and what to do."""


def default_storage_url(study: str, studies_dir: Path = STUDIES_DIR) -> str:
    """`sqlite:///<studies_dir>/<study>.db` (absolute, so Ray workers see the same file)."""
    return f"sqlite:///{(studies_dir / f'{study}.db').resolve()}"


def resolve_storage_url(storage: str | None, study: str, studies_dir: Path = STUDIES_DIR) -> str:
    """The URL to use: `--storage`, else `$SEARCH_STORAGE`, else the default SQLite file."""
    return storage or os.environ.get(STORAGE_ENV) or default_storage_url(study, studies_dir)


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # A password sits before an "@"; text without one is shown so the mistake can be seen.
        if "@" not in url and len(url) <= 200 and url.isprintable():
            return url
        return "<unparseable storage URL>"


def _postgres_driver() -> str:
    """`postgresql+<driver>` for whichever DB-API module is installed (psycopg 3 first).

    SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, 2.0 as psycopg2; the project's
    `postgres` extra installs psycopg2-binary, so a bare URL must not depend on that default.
    """
    import importlib.util

    for module, name in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "postgresql"


def open_storage(url: str, *, must_exist: bool = False) -> Any:
    """Optuna's RDBStorage for `url`, with one-line errors for the usual ways it goes wrong.

    `must_exist` refuses to create a new SQLite file (for commands that only read a study).
    """
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(
            f"malformed storage URL {redact(url)!r}; expected an SQLAlchemy URL such as "
            "sqlite:///studies/cnn_reg.db or postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise StudyError("an in-memory SQLite storage cannot hold a study; give a file path")
        if must_exist and not Path(path).exists():
            raise StudyError(f"no study database at {path}; run a search first or pass --storage")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Several Ray trials and drivers write at once: wait for SQLite's lock, don't fail.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    connect_url = url
    if parsed.drivername == "postgresql":
        connect_url = parsed.set(drivername=_postgres_driver()).render_as_string(
            hide_password=False
        )
    try:
        return _new_rdb_storage(connect_url, engine_kwargs)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise StudyError(
            f"no database driver for {redact(url)!r} ({exc}); for PostgreSQL install "
            "psycopg2-binary (pip install -e '.[postgres]')"
        ) from None
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        raise StudyError(f"cannot reach storage {redact(url)!r}: {reason}") from None
    except RuntimeError as exc:
        text = str(exc)
        if "pip install -U optuna" in text:
            # Optuna does not know the database's schema revision: a newer Optuna wrote it.
            raise StudyError(
                f"storage {redact(url)!r} was written by a newer Optuna schema than optuna "
                f"{optuna.__version__} reads; upgrade Optuna (pip install -U optuna)"
            ) from None
        if "upgrade" in text.lower() or "schema" in text.lower():
            raise StudyError(
                f"storage {redact(url)!r} was written by an older, incompatible Optuna schema; "
                f"back it up, then upgrade it with: optuna storage upgrade --storage "
                f"{shlex.quote(redact(connect_url))}"
            ) from None
        raise StudyError(f"cannot open storage {redact(url)!r}: {exc}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StudyError(f"cannot open storage {redact(url)!r}: {type(exc).__name__}") from None


def _new_rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> Any:
    """RDBStorage(url), retried while another driver is creating the tables of a new database.

    Optuna creates missing tables without a lock: two drivers opening an empty PostgreSQL
    database at once collide (a duplicate type or table); the loser finds them made on a retry.
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def study_exists(storage: Any, study: str) -> bool:
    import optuna

    return study in optuna.study.get_all_study_names(storage)


def load_existing_study(storage: Any, study: str) -> Any:
    """The named study; a missing one lists those that exist."""
    import optuna

    names = optuna.study.get_all_study_names(storage)
    if study not in names:
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study named {study!r} in this storage; studies there: {known}")
    return optuna.load_study(study_name=study, storage=storage)


def new_run_id() -> str:
    """An id for one driver process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def record_heartbeat(study: Any, run_id: str, status: str = "running") -> None:
    """Mark this driver alive (or finished) in the study, for other drivers to see."""
    study.set_user_attr(
        RUN_ATTR_PREFIX + run_id,
        {
            "status": status,
            "heartbeat": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        },
    )


def _run_alive(run: dict[str, Any] | None, now: float) -> bool:
    """Whether the driver that wrote `run` still runs: by its pid on this host, else by its
    heartbeat's age."""
    if run is None or run.get("status") != "running":
        return False
    if run.get("host") == socket.gethostname() and run.get("pid"):
        try:
            os.kill(int(run["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's live process
    return now - float(run.get("heartbeat", 0)) < STALE_AFTER


def fail_interrupted_trials(study: Any, own_run_id: str | None = None) -> list[int]:
    """Mark FAIL every RUNNING trial whose driver is gone, with the reason; returns their numbers.

    A driver is gone when it recorded itself finished, its process is gone (same host), or its
    heartbeat is older than STALE_AFTER seconds. Trials of live drivers (another process or
    machine sharing the study) are left alone.
    """
    import optuna

    runs = {
        key[len(RUN_ATTR_PREFIX) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(RUN_ATTR_PREFIX)
    }
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        if run_id != own_run_id and _run_alive(runs.get(run_id) if run_id else None, now):
            continue
        storage = study._storage
        storage.set_trial_user_attr(
            trial._trial_id,
            "fail_reason",
            f"{INTERRUPTED_REASON}: the search driver ({run_id or 'unknown'}) stopped before "
            "this trial finished",
        )
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        failed.append(trial.number)
    return failed


def count_finished(study: Any) -> int:
    """Trials that count towards --trials: COMPLETE, PRUNED, and FAIL other than interrupted."""
    import optuna

    states = optuna.trial.TrialState
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (states.COMPLETE, states.PRUNED):
            count += 1
        elif trial.state == states.FAIL and not str(
            trial.user_attrs.get("fail_reason", "")
        ).startswith(INTERRUPTED_REASON):
            count += 1
    return count


def count_claimed(study: Any, own_run_id: str | None = None) -> int:
    """`count_finished` plus the RUNNING trials of live drivers (this one, `own_run_id`, too).

    Drivers sharing a study stop asking for trials once this reaches --trials, so the study ends
    with the target rather than the target per driver.
    """
    import optuna

    runs = {
        key[len(RUN_ATTR_PREFIX) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(RUN_ATTR_PREFIX)
    }
    now = time.time()
    running = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        if run_id == own_run_id or _run_alive(runs.get(run_id) if run_id else None, now):
            running += 1
    return count_finished(study) + running
