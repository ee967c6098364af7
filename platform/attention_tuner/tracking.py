"""MLflow tracking: one parent run per sweep, one nested child run per trial, one path for metrics.

The driver creates the store and the experiment before any trial starts (workers initialising a fresh
SQLite database at the same time collide). Trials find their child run by its ``trial_key`` tag, so a
retried or resumed trial continues its own run instead of starting a second one. SQLite "database is
locked" errors under concurrent trials are retried, never dropped silently.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from attention_tuner import __version__

T = TypeVar("T")
DEFAULT_DB = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"
PARENT_TAG, TRIAL_TAG, SWEEP_TAG = "mlflow.parentRunId", "trial_key", "sweep"


def default_uri(base: str | Path = ".") -> str:
    return f"sqlite:///{(Path(base) / DEFAULT_DB).resolve()}"


# Backends MLflow 3 accepts as a tracking URI (a database scheme may name its driver: postgresql+psycopg2).
SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
CONNECT_TIMEOUT_S = 5.0
SQLITE_MAGIC = b"SQLite format 3\x00"


def display_uri(uri: str) -> str:
    """The URI with any password replaced by *** (for messages, logs and reports)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", uri)


def unreachable(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None if a TCP connection to host:port opens within ``timeout`` seconds, else why not (a few words)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except socket.gaierror:
        return f"unknown host {host}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__


def resolve_uri(uri: str | None, must_exist: bool = False) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a local SQLite store in the working directory.

    Checked before anything starts, each mistake a one-line ValueError: the scheme; for SQLite that the file
    is an SQLite database (or that its folder is writable); for a server that it answers within
    CONNECT_TIMEOUT_S (MLflow itself would retry for minutes). ``must_exist`` (reports): the store must be
    there already instead of being created empty.
    """
    if uri:
        source = "--tracking-uri"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri, source = os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"
    else:
        uri, source = default_uri(), "tracking URI"
    given: str = uri

    def bad(problem: str) -> ValueError:
        return ValueError(f"{source} {display_uri(given)!r}: {problem}")

    scheme = uri.partition(":")[0].lower() if "://" in uri else ""
    if not scheme:
        raise bad("expected sqlite:///path or http(s)://host:port")
    if scheme.partition("+")[0] not in SCHEMES:
        raise bad(f"unsupported scheme {scheme!r} (use sqlite:///path or http(s)://host:port)")
    if scheme.partition("+")[0] == "sqlite":  # sqlite:///path, or with a driver: sqlite+pysqlite:///path
        head, sep, rest = uri.partition(":///")
        path, query_sep, query = rest.partition("?")
        if not sep or not path:
            raise bad("expected sqlite:///path (three slashes, then the path of the database file)")
        _check_sqlite(Path(path), must_exist, bad)
        # absolute: Ray Tune runs each trial in a folder of its own, where a relative path is another store
        uri = f"{head}:///{os.path.abspath(path)}{query_sep}{query}"
    elif scheme == "file":
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
            raise bad("MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true; use sqlite:///path")
        folder = Path(urllib.parse.urlsplit(uri).path)
        if must_exist and not folder.is_dir():
            raise bad(f"no MLflow store at {folder}")
        _check_folder(folder, bad)
    elif scheme in ("http", "https"):
        host, port = _host_port(uri, 443 if scheme == "https" else 80, bad)
        why = unreachable(host, port)
        if why:
            raise bad(f"no MLflow server reachable at {host}:{port} ({why})")
    elif scheme == "databricks":  # databricks://PROFILE[:PREFIX]: the profile's host and token, or the environment's
        profile = uri.partition("://")[2].partition(":")[0] or os.environ.get("DATABRICKS_CONFIG_PROFILE", "DEFAULT")
        inside = os.environ.get("DATABRICKS_HOST") or os.environ.get("DATABRICKS_RUNTIME_VERSION")  # or a notebook's
        if not inside and not _databricks_profile(profile):
            raise bad(f"no Databricks profile {profile!r} in ~/.databrickscfg and no $DATABRICKS_HOST")
    elif scheme.partition("+")[0] in DB_DRIVERS:  # a database server: its Python driver, then the server
        base, _, driver = scheme.partition("+")
        module = DRIVER_MODULES.get(driver, driver) or DB_DRIVERS[base][0]
        try:
            missing = importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a dotted name whose package is missing
            missing = True
        if missing:
            raise bad(f"the database driver {module} is not installed (pip install it, or use sqlite:///path)")
        host, port = _host_port(uri, DB_DRIVERS[base][1], bad)
        why = unreachable(host, port)
        if why:
            raise bad(f"no database server reachable at {host}:{port} ({why})")
    return uri


# Database schemes: the module SQLAlchemy imports by default (or the one named after '+') and the default port.
DB_DRIVERS = {"postgresql": ("psycopg2", 5432), "mysql": ("MySQLdb", 3306), "mssql": ("pyodbc", 1433)}
DRIVER_MODULES = {"mysqldb": "MySQLdb", "mysqlconnector": "mysql.connector"}


def _host_port(uri: str, default_port: int, bad: Callable[[str], ValueError]) -> tuple[str, int]:
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as e:  # e.g. "Invalid IPv6 URL"
        raise bad(f"not a valid URL ({e})") from None
    try:
        port = parts.port or default_port
    except ValueError:
        raise bad("bad port (expected scheme://host:port)") from None
    if not parts.hostname:
        raise bad("no host (expected scheme://host:port)")
    return parts.hostname, port


def _check_sqlite(db: Path, must_exist: bool, bad: Callable[[str], ValueError]) -> None:
    if db.is_dir():
        raise bad(f"{db} is a folder, not an SQLite file")
    if db.exists():
        try:
            with open(db, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise bad(f"cannot read {db} ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise bad(f"{db} is not an SQLite database")
        if must_exist:  # read it, never create MLflow's tables in it (an empty file, another program's database)
            _check_mlflow_tables(db, bad)
    elif must_exist:
        raise bad(f"no MLflow store at {db}")
    if not db.parent.is_dir():
        raise bad(f"folder {db.parent} does not exist")
    if not must_exist:
        _check_folder(db.parent, bad)


def _databricks_profile(profile: str) -> bool:
    import configparser

    cfg = configparser.ConfigParser()
    try:
        cfg.read(os.environ.get("DATABRICKS_CONFIG_FILE", Path.home() / ".databrickscfg"))
    except configparser.Error:
        return False
    return profile == "DEFAULT" and bool(cfg.defaults()) or cfg.has_section(profile)


def _check_mlflow_tables(db: Path, bad: Callable[[str], ValueError]) -> None:
    """The SQLite file holds an MLflow store (its tables), read without writing anything."""
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise bad(f"cannot read {db} ({e})") from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise bad(f"{db} is empty, not an MLflow store" if not tables
                  else f"{db} is an SQLite database without MLflow's tables, not an MLflow store")


def _check_folder(folder: Path, bad: Callable[[str], ValueError]) -> None:
    """The store's folder (or its nearest existing parent) accepts a new file (SQLite writes journals beside)."""
    import tempfile

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise bad(f"folder {probe} is not writable ({e.strerror or type(e).__name__})") from None


def retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run an MLflow call, retrying while SQLite is locked by another writer."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # mlflow wraps sqlalchemy's OperationalError in MlflowException
            if "locked" not in str(e).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


def client(uri: str):
    from mlflow.tracking import MlflowClient

    # "Creating initial MLflow database tables..." on every new store: MLflow's bookkeeping, not the user's
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The checkout's paths whose changes change what a trial does: the packages, the sweep files, the dependencies.
CODE_PATHS = ("platform", "tasks", "sweeps", "pyproject.toml")


def uncommitted_code() -> bool:
    """Whether the checkout this package runs from has changes to its code (CODE_PATHS) that are not committed,
    new files included: then its commit alone does not say what ran. False outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", *CODE_PATHS], capture_output=True, text=True,
                             timeout=10, cwd=root)
        return out.returncode == 0 and bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def commit_tags() -> dict[str, str]:
    """The code's commit: our ``git_commit`` tag (reports read it) and MLflow's own, which its UI shows; and
    ``git_uncommitted: true`` when the checkout had changes that are not in that commit."""
    commit = git_commit()
    return {"git_commit": commit, **({"mlflow.source.git.commit": commit} if commit != "unknown" else {}),
            **({"git_uncommitted": "true"} if commit != "unknown" and uncommitted_code() else {})}


def ensure_experiment(uri: str, name: str, artifacts: str | Path | None = None) -> str:
    """Create (or find) the experiment; artifacts go to an absolute location beside the store."""
    c = client(uri)
    exp = retry(lambda: c.get_experiment_by_name(name))
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        folder = Path(artifacts) if artifacts else Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS
        location = folder.resolve().as_uri()
    return retry(lambda: c.create_experiment(name, artifact_location=location))


def find_run(uri: str, experiment_id: str, tags: dict[str, str], parent: bool = False) -> str | None:
    """A run with these tags; ``parent``: a run that is no trial's (its trials carry its ``sweep_id`` too). The
    parent is told apart here, not in the query: `IS NULL` on tags is new in MLflow servers (2026)."""
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    runs = retry(lambda: client(uri).search_runs([experiment_id], filter_string=query, max_results=50,
                                                 order_by=["attributes.start_time ASC"]))  # a parent first
    runs = [r for r in runs if PARENT_TAG not in r.data.tags] if parent else runs
    return runs[0].info.run_id if runs else None


def run_status(uri: str, experiment_id: str, parent: str, trial_key: str) -> str | None:
    """The status of a trial's run (FINISHED, RUNNING, ...), None when it has none."""
    found = find_run(uri, experiment_id, {TRIAL_TAG: trial_key, "parent_run": parent})
    return retry(lambda: client(uri).get_run(found)).info.status if found else None


def start_parent(uri: str, experiment_id: str, sweep: str, sweep_id: str, params: dict[str, Any],
                 description: str = "") -> str:
    """The sweep's parent run, named ``sweep_id`` (each run of a sweep apart in the UI); the same ``sweep_id``
    (a resumed sweep) finds the same run. ``description`` becomes the run's description in the UI."""
    found = find_run(uri, experiment_id, {"sweep_id": sweep_id}, parent=True)
    if found:
        retry(lambda: client(uri).update_run(found, status="RUNNING"))
        log_missing_params(uri, found, params)
        return found
    tags = {SWEEP_TAG: sweep, "sweep_id": sweep_id, **commit_tags(), "package_version": __version__,
            "mlflow.runName": sweep_id, "mlflow.note.content": description}
    run = retry(lambda: client(uri).create_run(experiment_id, tags=tags))
    log_params(uri, run.info.run_id, params)
    return run.info.run_id


def child_run(uri: str, experiment_id: str, parent: str, trial_key: str, sweep: str, params: dict[str, Any],
              sweep_id: str = "") -> str:
    """The trial's nested run: created once, found again when the trial is retried or the sweep resumed."""
    found = find_run(uri, experiment_id, {TRIAL_TAG: trial_key, "parent_run": parent})
    if found:
        retry(lambda: client(uri).update_run(found, status="RUNNING"))
        log_missing_params(uri, found, params)
        return found
    tags = {PARENT_TAG: parent, "parent_run": parent, TRIAL_TAG: trial_key, SWEEP_TAG: sweep, "sweep_id": sweep_id,
            **commit_tags(), "package_version": __version__, "mlflow.runName": trial_key}
    run = retry(lambda: client(uri).create_run(experiment_id, tags=tags))
    log_params(uri, run.info.run_id, params)
    return run.info.run_id


def log_missing_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    """Log the params a found run lacks: one killed between its creation and its params gets them now (MLflow
    refuses to change a logged value, so the ones it has are left alone)."""
    have = retry(lambda: client(uri).get_run(run_id)).data.params
    log_params(uri, run_id, {k: v for k, v in params.items() if k not in have})


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        retry(partial(client(uri).log_batch, run_id, params=items[i : i + 100]))


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    retry(lambda: client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]))


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]  # drop NaN
    retry(lambda: client(uri).log_batch(run_id, metrics=items))


def start_session(uri: str, run_id: str, resumed: bool = False) -> int:
    """Count one more session of a sweep's parent run (metric ``sweep/sessions``; a resumed sweep is one more)
    and return its number. A resumed parent without the metric began before sessions were counted: its first
    session counts, untimed."""
    have = retry(lambda: client(uri).get_run(run_id)).data.metrics.get("sweep/sessions")
    sessions = (int(have) if have is not None else int(resumed)) + 1
    log_metrics(uri, run_id, {"sweep/sessions": sessions}, step=sessions)
    return sessions


def add_running_time(uri: str, run_id: str, seconds: float, session: int) -> None:
    """Add a session's running time to a sweep's parent run (metric ``sweep/running_s``, the total so far, at
    step ``session``), so a report can leave out the time a sweep was down between sessions."""
    have = retry(lambda: client(uri).get_run(run_id)).data.metrics
    log_metrics(uri, run_id, {"sweep/running_s": have.get("sweep/running_s", 0.0) + seconds}, step=session)


@contextmanager
def without_http_retries(timeout_s: int = 5) -> Iterator[None]:
    """MLflow calls inside fail at once (one try, ``timeout_s``) on a server that does not answer, instead of
    MLflow's own retries for minutes: for what is logged on the way out of an error."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def logged_steps(uri: str, run_id: str, key: str = "epoch") -> set[int]:
    """The steps at which a run has ``key`` (every epoch's metrics carry "epoch"): what a retried trial has
    logged already."""
    return {m.step for m in retry(lambda: client(uri).get_metric_history(run_id, key))}


def log_artifact(uri: str, run_id: str, path: str | Path, folder: str | None = None) -> None:
    retry(lambda: client(uri).log_artifact(run_id, str(path), folder))


def finish(uri: str, run_id: str, status: str = "FINISHED") -> None:
    retry(lambda: client(uri).set_terminated(run_id, status))


def end_unfinished_trials(uri: str, experiment_id: str, parent: str, trial_keys: list[str], status: str) -> None:
    """End with ``status`` the runs of these trials that are still RUNNING: FAILED for a trial whose worker died
    (killed, out of memory, node lost: it never ended its own run) after its last retry, KILLED for one stopped
    by an interrupted sweep (a resumed sweep continues the same run)."""
    for key in trial_keys:
        found = find_run(uri, experiment_id, {TRIAL_TAG: key, "parent_run": parent})
        if found and retry(partial(client(uri).get_run, found)).info.status == "RUNNING":
            finish(uri, found, status)
