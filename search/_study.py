"""The study database: opening Optuna's RDB storage safely, study metadata, interrupted trials.

Every URL shown to a person or written to a file goes through `redact` first.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ._errors import UsageError
from ._resume import NOT_RUN_REASON, RETRIED_BY, queue_retry, withdraw_retry

STORAGE_ENV = "SEARCH_STORAGE"
STUDIES_DIR = Path("studies")
# A driver refreshes its heartbeat this often; a run silent for STALE_AFTER is taken as dead.
HEARTBEAT_INTERVAL = 20.0
STALE_AFTER = 90.0
RUN_ATTR_PREFIX = "run:"
INTERRUPTED_REASON = "interrupted"
# A trial that trained but whose weights could not be written (a full disk).
NOT_SAVED_REASON = "not saved"
# FAIL trials with these reasons do not count towards --trials: their configurations were not
# tried to the end, so a re-run runs as many trials again.
RERUN_REASONS = (INTERRUPTED_REASON, NOT_SAVED_REASON, NOT_RUN_REASON)
# Seconds between the tries of a study database write: about 7 s in all before giving up.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
T = TypeVar("T")


class StudyError(UsageError):
    """A storage URL or study that cannot be used as asked; the message says why and what to do."""


def default_storage_url(study: str, studies_dir: Path = STUDIES_DIR) -> str:
    """`sqlite:///<studies_dir>/<study>.db` (absolute, so Ray workers see the same file)."""
    return f"sqlite:///{(studies_dir / f'{study}.db').resolve()}"


def resolve_storage_url(storage: str | None, study: str, studies_dir: Path = STUDIES_DIR) -> str:
    """The URL to use: `--storage`, else `$SEARCH_STORAGE`, else the default SQLite file."""
    return storage or os.environ.get(STORAGE_ENV) or default_storage_url(study, studies_dir)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, found by structure, not by parsing.

    Everything between the user name and the last "@" after "://" is taken as the password, so a
    password holding an unescaped "@", ":" or "/" is hidden whole (a parser splits it at its first
    "@" and shows the rest as the host). Text without "://" is shown only when it has no "@".
    """
    scheme, sep, rest = url.partition("://")
    # An SQLite URL is a file path: no password, and "@" is just a character.
    if scheme.startswith("sqlite") and url.isprintable():
        return url
    if not sep:
        if "@" not in url and len(url) <= 200 and url.isprintable():
            return url
        return "<unparseable storage URL>"
    userinfo, at, host_and_path = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host_and_path}"


def _password(url: str) -> str:
    """The text `redact` hides ("" when there is none)."""
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    return userinfo.partition(":")[2] if at else ""


def _scrub(text: str, url: str) -> str:
    """`text` (a driver's message) with the URL's password, whole or in parts, as ***."""
    secret = _password(url)
    for piece in sorted({secret, *secret.replace(":", "@").split("@")}, key=len, reverse=True):
        if len(piece) >= 3:
            text = text.replace(piece, "***")
    return text


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
    import sqlalchemy.exc

    parsed = _parse_storage_url(url)
    engine_kwargs = _engine_kwargs(parsed, must_exist)
    connect_url = url
    if parsed.drivername == "postgresql":
        connect_url = parsed.set(drivername=_postgres_driver()).render_as_string(
            hide_password=False
        )
    try:
        if must_exist:  # before RDBStorage, which creates its tables in any database it opens
            _check_holds_optuna_tables(connect_url, engine_kwargs, url)
        return _new_rdb_storage(connect_url, engine_kwargs)
    except (ImportError, RuntimeError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise _open_error(exc, url, connect_url) from None


def _parse_storage_url(url: str) -> Any:
    """`url` as SQLAlchemy's URL; StudyError when it cannot be read as one."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite:") and "@" in url.partition("://")[2].rpartition("@")[0]:
        # A parser would split the password at its first "@" and take the rest for the host.
        raise StudyError(
            f"storage URL {redact(url)!r} has an unescaped '@' in its user name or password; "
            "expected it written as %40 (postgresql://user:p%40ss@host/db)"
        )
    try:
        return make_url(url)
    except Exception:
        raise StudyError(
            f"malformed storage URL {redact(url)!r}; expected an SQLAlchemy URL such as "
            "sqlite:///studies/cnn_reg.db or postgresql://user@host/db"
        ) from None


def _engine_kwargs(parsed: Any, must_exist: bool) -> dict[str, Any]:
    """The engine's keyword arguments for the parsed URL's backend; an SQLite file's folder is
    made here (StudyError for an in-memory one, or a missing one with `must_exist`)."""
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise StudyError("an in-memory SQLite storage cannot hold a study; give a file path")
        if must_exist and not Path(path).exists():
            raise StudyError(f"no study database at {path}; run a search first or pass --storage")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Several Ray trials and drivers write at once: wait for SQLite's lock, don't fail.
        return {"connect_args": {"timeout": 60}}
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    return engine_kwargs


def _open_error(exc: Exception, url: str, connect_url: str) -> StudyError:
    """The one-line StudyError for what opening the storage at `url` raised."""
    import optuna
    import sqlalchemy.exc

    if isinstance(exc, (ImportError, sqlalchemy.exc.NoSuchModuleError)):
        return StudyError(
            f"no database driver for {redact(url)!r} ({exc}); for PostgreSQL install "
            "psycopg2-binary (pip install -e '.[postgres]')"
        )
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        if "disk is full" in reason:  # SQLite's words: the machine lacks room (exit 1)
            return StudyError(
                f"cannot write to the study database {redact(url)}: {reason}; free space there "
                "and run the same command again",
                code=1,
            )
        return StudyError(f"cannot reach storage {redact(url)!r}: {_scrub(reason, url)}")
    if isinstance(exc, RuntimeError):
        text = str(exc)
        if "pip install -U optuna" in text:
            # Optuna does not know the database's schema revision: a newer Optuna wrote it.
            return StudyError(
                f"storage {redact(url)!r} was written by a newer Optuna schema than optuna "
                f"{optuna.__version__} reads; upgrade Optuna (pip install -U optuna)"
            )
        if "upgrade" in text.lower() or "schema" in text.lower():
            return StudyError(
                f"storage {redact(url)!r} was written by an older, incompatible Optuna schema; "
                f"back it up, then upgrade it with: optuna storage upgrade --storage "
                f"{shlex.quote(redact(connect_url))}"
            )
        return StudyError(f"cannot open storage {redact(url)!r}: {_scrub(text, url)}")
    return StudyError(f"cannot open storage {redact(url)!r}: {type(exc).__name__}")


# Tables every Optuna RDB storage has; a database without them holds no study of ours.
_OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def _check_holds_optuna_tables(connect_url: str, engine_kwargs: dict[str, Any], url: str) -> None:
    """StudyError unless the database already holds Optuna's tables; reads only (SQLite files
    are opened read-only), so another program's database is left byte for byte as it was."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    parsed = make_url(connect_url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3
        from urllib.parse import quote

        try:
            with sqlite3.connect(f"file:{quote(str(parsed.database))}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                tables = {name for (name,) in rows}
            db.close()
        except sqlite3.DatabaseError as exc:
            raise StudyError(
                f"{parsed.database} is not a study database ({exc}); expected the SQLite file a "
                "search wrote"
            ) from None
    else:
        engine = sqlalchemy.create_engine(connect_url, **engine_kwargs)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    if not _OPTUNA_TABLES <= tables:
        raise StudyError(
            f"storage {redact(url)!r} holds no Optuna study tables; expected a database that a "
            "search wrote (nothing was written to it)"
        )


def _new_rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> Any:
    """RDBStorage(url), retried while another driver is creating the tables of a new database.

    Optuna creates missing tables without a lock: two drivers (or a driver and a reader such as
    the dashboard) opening a new database at once collide, PostgreSQL with a duplicate type or
    table, SQLite with "table ... already exists"; the loser finds them made on a retry.
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
            sqlalchemy.exc.OperationalError,
        ) as exc:
            collided = not isinstance(exc, sqlalchemy.exc.OperationalError) or (
                "already exists" in str(exc.orig)
            )
            if attempt == 4 or not collided:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def sqlite_path(url: str) -> Path | None:
    """The absolute path of the SQLite file `url` names; None for another database, or a URL
    too malformed to parse (left to `open_storage` to refuse)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).absolute()


def check_sqlite_writable(url: str, option: str) -> None:
    """Raise OutputError unless the SQLite database `url` names can be written: its folder gets
    a real probe file (SQLite writes its journal beside the database) and an existing database
    is opened for writing, nothing written (root's `os.access` says yes to a file it cannot
    write). Other databases, and a URL too malformed to parse, are left to `open_storage`."""
    from training import OutputError, check_output_dir

    path = sqlite_path(url)
    if path is None:
        return
    check_output_dir(path.parent, option)
    if path.exists():
        try:
            with open(path, "r+b"):  # opened to read and write; nothing is changed
                pass
        except OSError:
            raise OutputError(
                f"{option}: the study database {path} is not writable; expected a writable file"
            ) from None


def new_sqlite_paths(url: str) -> tuple[Path, ...]:
    """The SQLite file `url` names and the folders above it that do not exist yet, deepest
    first: what opening the storage would create."""
    path = sqlite_path(url)
    new: list[Path] = []
    while path is not None and not path.exists() and path != path.parent:
        new.append(path)
        path = path.parent
    return tuple(new)


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


def sampler_seed(seed: int, run_id: str) -> int:
    """The seed of one driver's sampler: the study's --seed mixed with the driver's run id.

    Drivers sharing a study (or a re-run) draw different configurations, while the validation
    split and each trial's training seed stay the study's.
    """
    digest = hashlib.sha256(f"{seed}:{run_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` is the database failing (a lost connection, a full disk, a lock), which a
    retry may get past, rather than a mistake in the request."""
    import optuna
    import sqlalchemy.exc

    return isinstance(
        exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError, OSError)
    )


def write_with_retries(write: Callable[[], T], delays: Sequence[float] = RETRY_DELAYS) -> T:
    """`write()`, tried again after each of `delays` seconds while the database fails.

    The last storage error propagates; any other error at once.
    """
    for delay in delays:
        try:
            return write()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            time.sleep(delay)
    return write()


def storage_error_line(exc: BaseException) -> str:
    """A database error in one line: the driver's message, not SQLAlchemy's paragraph."""
    cause = exc
    while cause.__cause__ is not None and not getattr(cause, "orig", None):
        cause = cause.__cause__
    text = str(getattr(cause, "orig", None) or cause).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def record_heartbeat(study: Any, run_id: str, status: str = "running", **extra: Any) -> None:
    """Mark this driver alive (or finished) in the study, for other drivers to see."""
    study.set_user_attr(
        RUN_ATTR_PREFIX + run_id,
        {
            "status": status,
            "heartbeat": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **extra,
        },
    )


class Heartbeat:
    """While entered, refreshes this driver's heartbeat every `interval` seconds; on exit records
    it finished.

    A beat that fails is retried; when beats fail for longer than `warn_after` seconds (half of
    STALE_AFTER), a warning goes to `stream` (once, until a beat succeeds again): other drivers
    may soon take this one for dead and fail its live trials.
    """

    def __init__(
        self,
        study: Any,
        run_id: str,
        *,
        interval: float = HEARTBEAT_INTERVAL,
        delays: Sequence[float] = RETRY_DELAYS,
        warn_after: float = STALE_AFTER / 2,
        stream: TextIO | None = None,
        **extra: Any,
    ) -> None:
        self.warn_after = warn_after
        self.study = study
        self.run_id = run_id
        self.interval = interval
        self.delays = delays
        self.stream = stream
        self.extra = extra
        self.failing_since: float | None = None
        self.warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        write_with_retries(self._write, self.delays)  # a database that fails now fails the start
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + sum(self.delays) + 5)
        try:
            write_with_retries(lambda: self._write("finished"), self.delays)
        except Exception as exc:
            self._say(
                f"warning: could not record driver {self.run_id} as finished in the study "
                f"({storage_error_line(exc)}); other drivers take it for dead after "
                f"{STALE_AFTER:.0f} s"
            )

    def beat(self) -> bool:
        """One beat, retried; False (after warning when it has gone on too long) if it failed."""
        try:
            write_with_retries(self._write, self.delays)
        except Exception as exc:
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
            if not self.warned and now - self.failing_since >= self.warn_after:
                self.warned = True
                self._say(
                    f"warning: this driver's heartbeat could not be written for "
                    f"{now - self.failing_since:.0f} s ({storage_error_line(exc)}); other "
                    f"drivers sharing the study may mark its running trials FAIL after "
                    f"{STALE_AFTER:.0f} s"
                )
            return False
        self.failing_since = None
        self.warned = False
        return True

    def _write(self, status: str = "running") -> None:
        record_heartbeat(self.study, self.run_id, status, **self.extra)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def _say(self, message: str) -> None:
        print(message, file=self.stream or sys.stderr, flush=True)


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


@dataclass(frozen=True)
class RunningTrials:
    """The study's RUNNING trials sorted by whether the driver that runs them is alive."""

    live: list[Any]  # FrozenTrials of live drivers (this one included)
    orphaned: list[Any]  # FrozenTrials whose driver is gone
    dead_runs: dict[str, dict[str, Any]]  # heartbeat entries still "running" of gone drivers


def running_trials(study: Any, own_run_id: str | None = None) -> RunningTrials:
    """The one liveness scan: which RUNNING trials have a live driver.

    A driver is gone when it recorded itself finished, its process is gone (same host), or its
    heartbeat is older than STALE_AFTER seconds. `own_run_id` (the caller) counts as alive.
    """
    import optuna

    runs = {
        key[len(RUN_ATTR_PREFIX) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(RUN_ATTR_PREFIX)
    }
    now = time.time()
    live, orphaned = [], []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        alive = run_id is not None and (run_id == own_run_id or _run_alive(runs.get(run_id), now))
        (live if alive else orphaned).append(trial)
    dead_runs = {
        run_id: run
        for run_id, run in runs.items()
        if run_id != own_run_id and run.get("status") == "running" and not _run_alive(run, now)
    }
    return RunningTrials(live, orphaned, dead_runs)


def fail_interrupted_trials(
    study: Any, own_run_id: str | None = None, *, resume: bool = False
) -> list[int]:
    """Mark FAIL every RUNNING trial whose driver is gone, with the reason and the epochs it
    reported; mark such drivers "dead" in their heartbeat. Returns the numbers of the trials
    this call marked. With `resume`, each gets a retry queued first (search/_resume.py).

    Trials of live drivers (another process or machine sharing the study) are left alone; a
    trial another driver marked meanwhile is left to it.
    """
    import optuna

    scan = running_trials(study, own_run_id)
    failed = []
    for trial in scan.orphaned:
        try:
            _fail_orphan(study, trial, resume)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another driver recorded it first
        failed.append(trial.number)
    for run_id, run in scan.dead_runs.items():
        study.set_user_attr(RUN_ATTR_PREFIX + run_id, {**run, "status": "dead"})
    return failed


def _fail_orphan(study: Any, trial: Any, resume: bool) -> None:
    import optuna

    retry_id = None
    if resume and RETRIED_BY not in trial.user_attrs:
        retry_id = queue_retry(study, trial)
    try:
        _record_orphan(study, trial)
    except optuna.exceptions.UpdateFinishedTrialError:
        if retry_id is not None:
            withdraw_retry(study, retry_id, f"trial #{trial.number} was resumed by another driver")
        raise


def _record_orphan(study: Any, trial: Any) -> None:
    import optuna

    storage = study._storage
    run_id = trial.user_attrs.get("run_id")
    storage.set_trial_user_attr(
        trial._trial_id,
        "fail_reason",
        f"{INTERRUPTED_REASON}: the search driver ({run_id or 'unknown'}) stopped before "
        "this trial finished",
    )
    storage.set_trial_user_attr(
        trial._trial_id, "epochs_run", max(trial.intermediate_values, default=0)
    )
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def counts_toward_target(trial: Any) -> bool:
    """Whether `trial` counts towards --trials: COMPLETE, PRUNED, and FAIL other than
    interrupted or not saved (those run again on a re-run)."""
    import optuna

    states = optuna.trial.TrialState
    if trial.state in (states.COMPLETE, states.PRUNED):
        return True
    reason = str(trial.user_attrs.get("fail_reason", ""))
    return trial.state == states.FAIL and not reason.startswith(RERUN_REASONS)


def count_finished(study: Any) -> int:
    """Trials that count towards --trials (see `counts_toward_target`)."""
    return sum(counts_toward_target(t) for t in study.get_trials(deepcopy=False))


def count_claimed(study: Any, own_run_id: str | None = None) -> int:
    """`count_finished` plus the RUNNING trials of live drivers (this one, `own_run_id`, too).

    Drivers sharing a study stop asking for trials once this reaches --trials, so the study ends
    with the target rather than the target per driver.
    """
    return count_finished(study) + len(running_trials(study, own_run_id).live)


# The study's own user attributes (trial attributes are the searcher's): written and read here.
DENSITY_ATTR = "density"  # a density search's fold-model record (search/_density.py)
RETRAIN_ATTR = "retrain"  # the latest retrain's summary; "retrain:N" the one of trial N
# A trial attribute: where a trial queued when its study was made comes from ("seed:report",
# "warm-start:small#12"; search/_seeds.py).
SOURCE_ATTR = "source"
CONVERGED_ATTR = "converged"  # a --stop-when-converged search's stop (search/_converge.py)
# Defaults of what a study made before an attribute existed holds no value for.
DEFAULT_VAL_SIZE = 5000
DEFAULT_SEED = 0
DEFAULT_SAMPLER = "tpe"


@dataclass(frozen=True)
class StudyRecord:
    """How a study was made, as its user attributes record it: written once, when the study is
    created (a continued study keeps what it was first made with), read by every command.

    `max_epochs`, `train_size`, `val_size`, `seed`, `model_override`, `precision` and
    `child_recipe` decide how trials are scored, so every driver of one study uses the same;
    `sampler` only chooses what to try next, and may change.
    """

    space: str
    max_epochs: int
    train_size: int | None  # None: all the training images left after the validation split
    val_size: int
    seed: int  # the split's seed; trial n trains with seed + n
    sampler: str
    model_override: str | None  # replaces the space's model; None: the space's own
    precision: str  # training.PRECISIONS as given ("auto" stays "auto")
    data_source: str = ""
    val_fingerprint: str = ""  # LabeledImages.fingerprint() of the validation split
    metric: str = "val_accuracy"
    project_version: str = ""
    created: str = ""
    # A policy space's child (search.run --child-recipe): its TrainConfig.to_dict() and the name
    # it was given by. None: not a policy space, or a study made before the child was recorded,
    # which trained its space's `to_config` as it is.
    child_recipe: dict[str, Any] | None = None
    child_recipe_name: str | None = None

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes this record is written as."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], study_name: str) -> StudyRecord:
        """The record of a study's user attributes; what an older study lacks takes the value
        studies were made with before it was recorded."""
        return cls(
            space=attrs.get("space", study_name),
            max_epochs=int(attrs.get("max_epochs", 0)),
            train_size=attrs.get("train_size"),
            val_size=int(attrs.get("val_size", DEFAULT_VAL_SIZE)),
            seed=int(attrs.get("seed", DEFAULT_SEED)),
            sampler=attrs.get("sampler", DEFAULT_SAMPLER),
            model_override=attrs.get("model_override"),
            precision=attrs.get("precision", "auto"),
            data_source=str(attrs.get("data_source", "")),
            val_fingerprint=str(attrs.get("val_fingerprint", "")),
            metric=str(attrs.get("metric", "val_accuracy")),
            project_version=str(attrs.get("project_version", "")),
            created=str(attrs.get("created", "")),
            child_recipe=attrs.get("child_recipe"),
            child_recipe_name=attrs.get("child_recipe_name"),
        )

    @classmethod
    def of(cls, study: Any) -> StudyRecord:
        """The record of an Optuna study."""
        return cls.from_attrs(study.user_attrs, study.study_name)

    def write(self, study: Any) -> None:
        """Record this in `study`, leaving every attribute it already has as it is."""
        attrs = study.user_attrs
        for key, value in self.to_attrs().items():
            if key not in attrs:
                study.set_user_attr(key, value)


def density_record(study: Any) -> dict[str, Any] | None:
    """A density study's fold-model record; None before its fold models are trained."""
    return study.user_attrs.get(DENSITY_ATTR)


def write_density_record(study: Any, record: dict[str, Any]) -> None:
    write_with_retries(lambda: study.set_user_attr(DENSITY_ATTR, record))


def converged_record(study: Any) -> dict[str, Any] | None:
    """The last --stop-when-converged stop of the study; None when none stopped it."""
    return study.user_attrs.get(CONVERGED_ATTR)


def write_converged_record(study: Any, record: dict[str, Any]) -> None:
    """Record that a driver stopped asking for trials because the search converged."""
    study.set_user_attr(CONVERGED_ATTR, record)


def write_retrain_summary(study: Any, trial_number: int, summary: dict[str, Any]) -> None:
    """The retrain's result: the study's latest, and trial `trial_number`'s own."""
    study.set_user_attr(RETRAIN_ATTR, summary)
    study.set_user_attr(f"{RETRAIN_ATTR}:{trial_number}", summary)


def has_driver_record(study: Any) -> bool:
    """Whether a driver has written its heartbeat into the study (someone uses it)."""
    return any(key.startswith(RUN_ATTR_PREFIX) for key in study.user_attrs)


@dataclass
class StudyLocation:
    """Where a search's study lives, checked writable before anything is read or started.

    A database that exists is opened at once (`storage`), to read the study's record before the
    data; a new SQLite file (and its folders, `new_paths`) is created only by `opened_study`.
    """

    name: str
    url: str
    studies_dir: Path  # absolute; the study's outputs go under studies_dir/name
    new_paths: tuple[Path, ...] = ()
    storage: Any = None

    @property
    def output_dir(self) -> Path:
        return self.studies_dir / self.name


def locate_study(name: str, storage_option: str | None, studies_dir: Path) -> StudyLocation:
    """The study's URL (--storage, else $SEARCH_STORAGE, else studies_dir/NAME.db) with every
    place a search writes checked (OutputError); an existing database opened (StudyError)."""
    from training import check_output_dir

    studies_dir = check_output_dir(studies_dir, "--studies-dir")
    url = resolve_storage_url(storage_option, name, studies_dir)
    check_sqlite_writable(url, "--storage" if storage_option else "--studies-dir")
    location = StudyLocation(name, url, studies_dir, new_sqlite_paths(url))
    if not location.new_paths:
        location.storage = open_storage(url)
    return location


def recorded_attrs(location: StudyLocation) -> dict[str, Any]:
    """The user attributes of the study being continued; {} for a new one."""
    if location.storage is None:
        return {}
    try:
        if not study_exists(location.storage, location.name):
            return {}
        return dict(load_study(location).user_attrs)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise StudyError(
            f"cannot read the study database {redact(location.url)}: {storage_error_line(exc)}"
        ) from None


def load_study(location: StudyLocation) -> Any:
    """The study at `location` (it exists)."""
    import optuna

    return optuna.load_study(study_name=location.name, storage=location.storage)


@contextmanager
def opened_study(
    location: StudyLocation,
    record: StudyRecord,
    on_create: Callable[[Any], None] | None = None,
) -> Iterator[Any]:
    """The study, created when new with `record` written (a continued study keeps its own), and
    `on_create(study)` called when this call created it (the database decides: of two drivers
    creating one study at once, one does).

    A command that ends inside (an error, Ctrl+C) before its first trial leaves no empty study,
    nor a SQLite file it created, behind: trials it queued and nobody took count for nothing.
    """
    if location.storage is None:
        try:
            location.storage = open_storage(location.url)
        except StudyError:
            _remove_paths(location.new_paths)
            raise
    is_new = not study_exists(location.storage, location.name)
    try:
        try:
            study, created = _create_or_load(location)
            record.write(study)
            if created and on_create is not None:
                on_create(study)
        except Exception as exc:
            raise _write_failed(exc, location.url) from None
        yield study
    except BaseException:
        if is_new:
            _discard_unused_study(location)
        raise


def _create_or_load(location: StudyLocation) -> tuple[Any, bool]:
    """The study, and whether this call created it; another driver sharing the storage may
    create it at the same moment, and the database lets one of them."""
    import optuna

    try:
        study = optuna.create_study(
            study_name=location.name, storage=location.storage, direction="maximize"
        )
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return load_study(location), False


def _write_failed(exc: Exception, url: str) -> Exception:
    """`exc` of a study-database write as one line (exit 1), unless it is a bug."""
    if not is_storage_error(exc):
        return exc
    return UsageError(
        f"cannot write to the study database {redact(url)}: {storage_error_line(exc)}; "
        "free space there (or reach the server) and run the same command again",
        code=1,
    )


def _remove_paths(paths: Sequence[Path]) -> None:
    """Remove files and (empty) folders this command created, deepest first."""
    for path in paths:
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
                Path(f"{path}-journal").unlink(missing_ok=True)
        except OSError:
            pass  # something else was put there meanwhile: not ours to delete


def _queued_unused(trial: Any) -> bool:
    """Whether `trial` is one a new study was seeded with (`SOURCE_ATTR`) and nobody took."""
    import optuna

    return trial.state == optuna.trial.TrialState.WAITING and SOURCE_ATTR in trial.user_attrs


def _discard_unused_study(location: StudyLocation) -> None:
    """Delete the study this command created if it holds no trial, and a SQLite file (with its
    folders) this command created if it then holds no study."""
    import optuna

    storage = location.storage
    try:
        names = optuna.study.get_all_study_names(storage)
        if location.name in names:
            study = load_study(location)
            # Trials, or a driver's heartbeat: someone uses it (another driver may have made
            # it at the same moment as this one). Trials queued when it was made (seeds, a warm
            # start) that no driver took do not count.
            used = [t for t in study.get_trials(deepcopy=False) if not _queued_unused(t)]
            if used or has_driver_record(study):
                return
            optuna.delete_study(study_name=location.name, storage=storage)
            names.remove(location.name)
        if location.new_paths and not names:
            storage.engine.dispose()
            _remove_paths(location.new_paths)
    except Exception:  # best effort: the error being reported matters more
        pass
