"""cluster.yaml passes Ray's own validation offline; a tiny sweep runs as a Ray Job on a local head."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation_offline():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = cluster_config()
    validate_config(prepare_config(copy.deepcopy(cfg)))  # the launcher's own checks, no cloud credentials
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any(w["resources"].get("GPU", 0) >= 1 and w["min_workers"] == 0 for w in workers)
    assert "~/attention-tuner" in cfg["file_mounts"]
    assert any("pip install" in c and "attention-tuner" in c for c in cfg["setup_commands"])
    start = " ".join(cfg["head_start_ray_commands"])
    assert "mlflow server" in start and "--allowed-hosts" in start and "*" not in start  # named hosts only
    assert "--dashboard-host=127.0.0.1" in start
    assert not any(".git" in x for x in cfg["rsync_exclude"])  # nodes tag their runs with the commit


def in_ray_shell(command: str, **kw) -> subprocess.CompletedProcess:
    """A node command run as Ray's launcher runs it (ray/autoscaler/_private/command_runner.py): in an
    interactive login shell whose own command line holds the command."""
    return subprocess.run(["bash", "--login", "-c", "-i", f"source ~/.bashrc; export RAY_X=1 && ({command})"],
                          capture_output=True, text=True, timeout=60, **kw)


def test_the_heads_mlflow_restart_line_does_not_match_its_own_shell():
    """`pkill -f "mlflow server"` killed the very shell Ray ran it in (exit 143: "Start command failed"); the
    command in cluster.yaml must not match its own shell. Checked with pgrep (read-only: no process killed)."""
    kill = next(c for c in cluster_config()["head_start_ray_commands"] if c.startswith("pkill"))
    listed = in_ray_shell(kill.replace("pkill -f", "pgrep -af", 1))
    assert listed.returncode == 0 and "bash" not in listed.stdout, listed.stdout
    before = in_ray_shell('pgrep -af "mlflow server" || true')  # the old line's pattern: it finds its shell
    assert "bash" in before.stdout


@pytest.mark.slow
def test_the_heads_mlflow_server_answers_the_tunnel_and_the_workers(tmp_path):
    """The head's MLflow start line from cluster.yaml (port and paths moved into tmp_path), run in Ray's shell:
    it answers on localhost (the end of `ray attach -p 5000`) and on the private address (the workers), and
    refuses another Host header."""
    import urllib.error
    import urllib.request

    line = next(c for c in cluster_config()["head_start_ray_commands"] if "mlflow server" in c and "nohup" in c)
    port = free_port()
    line = (line.replace("5000", str(port)).replace("/mnt/shared/mlflow", str(tmp_path))
            .replace("/tmp/mlflow.log", str(tmp_path / "mlflow.log"))  # on a node ~/venv/bin is first on PATH
            .replace("nohup mlflow ", f"nohup {Path(sys.executable).with_name('mlflow')} "))
    assert in_ray_shell(line).returncode == 0
    private = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]

    def get(host: str, header: str | None = None) -> int:
        req = urllib.request.Request(f"http://{host}:{port}/api/2.0/mlflow/experiments/search?max_results=1")
        if header:
            req.add_header("Host", header)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        deadline = time.time() + 60
        while True:
            try:
                status = get("127.0.0.1")
                break
            except OSError:
                assert time.time() < deadline, (tmp_path / "mlflow.log").read_text()[-2000:]
                time.sleep(0.5)
        assert status == 200
        assert get(private) == 200
        assert get("127.0.0.1", "evil.example:80") == 403
    finally:
        subprocess.run(["pkill", "-f", f"[m]lflow server --host 0.0.0.0 --port {port}"])


def test_a_broken_cluster_yaml_is_rejected():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = cluster_config()
    cfg["max_workerz"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_workerz"):
        validate_config(prepare_config(cfg))


GIVEN: set[int] = set()


def free_port() -> int:
    """A free port above Ray's default worker port range (10002-19999), never one given before."""
    import random

    while True:
        port = random.randint(40000, 60000)
        if port in GIVEN:
            continue
        GIVEN.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


@pytest.mark.slow
def test_ray_job_submit_of_a_tiny_sweep_to_a_local_head(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    # Every port Ray would otherwise take at its default: another Ray on this machine (a sweep running beside
    # the tests) already holds them, and a head whose job agent cannot bind 52365 answers every submission
    # with "No available agent".
    ports = [f"--{name}-port={free_port()}" for name in (
        "dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent", "metrics-export", "ray-client-server",
        "node-manager", "object-manager")]
    temp = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--temp-dir={temp}", "--include-dashboard=true", *ports],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            probe = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(1)
        uri = f"sqlite:///{tmp_path}/mlruns.db"
        for _ in range(30):  # the head's job agent may start after the dashboard answers (Ray's own advice:
            job = subprocess.run(  # "No available agent to submit job, please try again later")
                [RAY, "job", "submit", "--address", address, "--", sys.executable,
                 str(ROOT / "sweeps" / "tiny.py"), "--storage", str(tmp_path / "store"), "--tracking-uri", uri],
                env=env, capture_output=True, text=True, timeout=400)
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout.lower()
        from mlflow.tracking import MlflowClient

        c = MlflowClient(tracking_uri=uri)
        runs = c.search_runs([c.get_experiment_by_name("tiny").experiment_id])
        assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    finally:
        stop_group(head)  # only the head this test started; never `ray stop`
        shutil.rmtree(temp, ignore_errors=True)


def stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
