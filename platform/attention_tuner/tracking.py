"""MLflow tracking: one parent run per sweep, one nested child run per trial, one path for metrics.

The driver creates the store and the experiment before any trial starts (workers initialising a fresh
SQLite database at the same time collide). Trials find their child run by its ``trial_key`` tag, so a
retried or resumed trial continues its own run instead of starting a second one. SQLite "database is
locked" errors under concurrent trials are retried, never dropped silently.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from attention_tuner import __version__

T = TypeVar("T")
DEFAULT_DB = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"
PARENT_TAG, TRIAL_TAG, SWEEP_TAG = "mlflow.parentRunId", "trial_key", "sweep"


def default_uri(base: str | Path = ".") -> str:
    return f"sqlite:///{(Path(base) / DEFAULT_DB).resolve()}"


def resolve_uri(uri: str | None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a local SQLite store in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    if "://" not in uri and not uri.startswith("sqlite:"):
        raise ValueError(f"tracking URI {uri!r}: expected sqlite:///path, http(s)://host:port or file:///path")
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ValueError(f"tracking URI {uri!r}: folder {folder} does not exist")
    return uri


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

    return MlflowClient(tracking_uri=uri)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def find_run(uri: str, experiment_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    runs = retry(lambda: client(uri).search_runs([experiment_id], filter_string=query, max_results=2))
    return runs[0].info.run_id if runs else None


def start_parent(uri: str, experiment_id: str, sweep: str, sweep_id: str, params: dict[str, Any]) -> str:
    """The sweep's parent run; the same ``sweep_id`` (a resumed sweep) finds the same run."""
    found = find_run(uri, experiment_id, {"sweep_id": sweep_id})
    if found:
        retry(lambda: client(uri).update_run(found, status="RUNNING"))
        return found
    tags = {SWEEP_TAG: sweep, "sweep_id": sweep_id, "git_commit": git_commit(), "package_version": __version__,
            "mlflow.runName": f"sweep {sweep}"}
    run = retry(lambda: client(uri).create_run(experiment_id, tags=tags))
    log_params(uri, run.info.run_id, params)
    return run.info.run_id


def child_run(uri: str, experiment_id: str, parent: str, trial_key: str, sweep: str, params: dict[str, Any]) -> str:
    """The trial's nested run: created once, found again when the trial is retried or the sweep resumed."""
    found = find_run(uri, experiment_id, {TRIAL_TAG: trial_key, "parent_run": parent})
    if found:
        retry(lambda: client(uri).update_run(found, status="RUNNING"))
        return found
    tags = {PARENT_TAG: parent, "parent_run": parent, TRIAL_TAG: trial_key, SWEEP_TAG: sweep,
            "git_commit": git_commit(), "package_version": __version__, "mlflow.runName": trial_key}
    run = retry(lambda: client(uri).create_run(experiment_id, tags=tags))
    log_params(uri, run.info.run_id, params)
    return run.info.run_id


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        retry(lambda chunk=items[i : i + 100]: client(uri).log_batch(run_id, params=chunk))


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]  # drop NaN
    retry(lambda: client(uri).log_batch(run_id, metrics=items))


def log_artifact(uri: str, run_id: str, path: str | Path, folder: str | None = None) -> None:
    retry(lambda: client(uri).log_artifact(run_id, str(path), folder))


def finish(uri: str, run_id: str, status: str = "FINISHED") -> None:
    retry(lambda: client(uri).set_terminated(run_id, status))
