"""Load: a sweep of many tiny trials on 2 CPUs against one SQLite MLflow store, and a 10,000-episode
generation with bounded memory.

Both run in child processes (``python tests/test_load.py sweep|generate ...``): a fresh process has a clean
peak-RSS counter (VmHWM) and its own local Ray, started with a hook that counts SQLite lock retries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOAD_TRIALS = 50
GEN_EPISODES = 10_000
GEN_TASK, GEN_KWARGS = "Ordering", {"length": 50}  # 68 steps, 100 non-self pairs per episode, fixed
MB = 1 << 20
HOLD_S = 22  # an exclusive lock on the MLflow store, longer than MLflow's SQLite busy timeout of 20 s

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc for memory")


def run_child(args: list[str], timeout: int) -> dict:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, __file__, *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{args[0]} did not finish in {timeout} s:\n" + output[-3000:])
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, output[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def memory(pid: int | str = "self") -> dict[str, int]:
    """Resident set size now (VmRSS) and its peak so far (VmHWM), in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


# ----------------------------------------------------------------------------------- many tiny trials


def sweep_child(folder: Path) -> None:
    """LOAD_TRIALS real trials (0.5 CPU each: 4 at a time on 2 CPUs) writing to one SQLite store."""
    import sqlite3
    import threading

    import ray

    from attention_tuner import sweep
    from attention_tuner.presets import SMOKE

    retries = folder / "lock_retries.log"
    if __name__ != "__main__":  # imported (not run as a script): workers cannot import this module by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"worker_process_setup_hook": count_lock_retries,
                          "env_vars": {"LOAD_RETRY_LOG": str(retries)}})
    os.environ["LOAD_RETRY_LOG"] = str(retries)
    count_lock_retries()  # the driver's own MLflow calls too
    spec = sweep.SweepSpec(name="load", base={
        **SMOKE, "task.name": "Ordering", "task.kwargs": {"length": 2}, "data.episodes": 16, "optim.epochs": 1,
        "optim.batch_size": 16, "eval.episodes": 2, "checkpoint_every": 1, "device": "cpu",
    }, space={"seed": list(range(LOAD_TRIALS))}, resources={"cpu": 0.5, "gpu": 0})
    held: dict[str, float] = {}

    def hold_the_store() -> None:
        """Once trials are writing, lock the store longer than MLflow's SQLite busy timeout (20 s), so that
        writers fail with "database is locked" and tracking.retry must carry them."""
        deadline = time.time() + 900
        while time.time() < deadline and len(list(folder.glob("store/load-*/trials/*/worker.pid"))) < 6:
            time.sleep(0.2)
        con = sqlite3.connect(folder / "mlruns.db", isolation_level=None, timeout=60)
        con.execute("BEGIN EXCLUSIVE")
        held["from"] = time.time() - t0
        time.sleep(HOLD_S)
        con.execute("COMMIT")
        con.close()
        held["to"] = time.time() - t0

    t0 = time.time()
    holder = threading.Thread(target=hold_the_store, daemon=True)
    holder.start()
    rows = sweep.run(spec, tracking_uri=f"sqlite:///{folder}/mlruns.db", storage=str(folder / "store"), verbose=0)
    seconds = time.time() - t0
    holder.join(1)
    lines = retries.read_text().splitlines() if retries.exists() else []
    print("RESULT " + json.dumps({"rows": rows, "seconds": seconds, "lock_retries": len(lines), "held": held,
                                  "retrying_processes": len({line.split()[0] for line in lines})}), flush=True)
    ray.shutdown()


def count_lock_retries() -> None:
    """Ray worker setup hook: wrap tracking.retry so that every "database is locked" attempt it retries is
    appended to $LOAD_RETRY_LOG (one line per failed attempt)."""
    from attention_tuner import tracking

    if getattr(tracking.retry, "counting", False):
        return
    real, log = tracking.retry, os.environ["LOAD_RETRY_LOG"]

    def retry(fn, attempts=8):
        def attempt():
            try:
                return fn()
            except Exception as e:
                if "locked" in str(e).lower():
                    with open(log, "a") as f:
                        f.write(f"{os.getpid()} {type(e).__name__}\n")
                raise

        return real(attempt, attempts)

    retry.counting = True  # type: ignore[attr-defined]  # marks the wrapper
    tracking.retry = retry


@pytest.mark.slow
def test_fifty_tiny_trials_four_at_a_time_are_each_recorded_once(tmp_path):
    from mlflow.tracking import MlflowClient

    out = run_child(["sweep", str(tmp_path)], timeout=1200)
    rows = out["rows"]
    assert len(rows) == LOAD_TRIALS and all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    runs = c.search_runs([c.get_experiment_by_name("load").experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == LOAD_TRIALS  # one run per trial: none lost, none doubled by a retried create
    assert {r.data.tags["trial_key"] for r in children} == {r["trial"] for r in rows}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        for key in ("train/action_loss", "eval/success_rate", "val/accuracy"):
            history = c.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == [1], (child.data.tags["trial_key"], key, history)  # exactly once
        assert {"attention.png", "curves.png", "checkpoint", "dataset_manifest.json"} <= {
            a.path for a in c.list_artifacts(child.info.run_id)}
    print(f"\n{LOAD_TRIALS} trials in {out['seconds']:.0f} s; store locked {out['held']}; SQLite lock retries: "
          f"{out['lock_retries']} (in {out['retrying_processes']} processes), none lost")
    assert out["held"].get("to"), "the store was never locked"
    assert out["lock_retries"] >= 1, "no MLflow write met the lock: tracking.retry was not exercised"


# ------------------------------------------------------------------------- 10,000 episodes, bounded memory


def generate_child(folder: Path, actors: int) -> None:
    """Warm up (imports, environments, the actor pool: one small dataset), then generate GEN_EPISODES and
    report resident memory: the driver's and each actor's, after warm-up and at peak (VmHWM)."""
    from attention_tuner import demos

    pids: list[int] = []
    if actors:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)

        def on_actors(handles):
            if not pids:
                pids.extend(ray.get([a.pid.remote() for a in handles]))
    else:
        on_actors = None  # type: ignore[assignment]  # generate takes None: no callback
    # Two shards: with two actors each writes one (the pool hands out one range per idle actor).
    demos.generate(GEN_TASK, GEN_KWARGS, 2 * demos.SHARD_EPISODES, 0, root=folder / "warmup", actors=actors,
                   progress=False, on_actors=on_actors)
    warm = {"driver": memory()["VmRSS"], **{str(p): memory(p)["VmRSS"] for p in pids}}
    t0 = time.time()
    path = demos.generate(GEN_TASK, GEN_KWARGS, GEN_EPISODES, 0, root=folder / "data", actors=actors,
                          progress=False)
    seconds = time.time() - t0
    peak = {"driver": memory()["VmHWM"], **{str(p): memory(p)["VmHWM"] for p in pids}}
    print("RESULT " + json.dumps({"warm": warm, "peak": peak, "seconds": seconds, "path": str(path)}), flush=True)


@pytest.mark.parametrize("actors", [0, 2], ids=["in-process", "2-ray-actors"])
def test_ten_thousand_episodes_are_generated_in_bounded_memory(tmp_path, actors):
    import memory_tasks
    from attention_tuner import datasets, demos

    out = run_child(["generate", str(tmp_path), str(actors)], timeout=600)
    manifest = demos.read_manifest(out["path"])
    assert manifest["episodes_on_disk"] >= GEN_EPISODES
    assert len(datasets.load(out["path"])) == GEN_EPISODES
    # What holding every episode at once would cost: the arrays of one episode (all are alike) x 10,000.
    ep = memory_tasks.rollout(memory_tasks.make(GEN_TASK, **GEN_KWARGS), 0)
    per_episode = sum(a.nbytes for a in (ep.observations, ep.symbolic, ep.actions, ep.rewards, ep.pairs))
    all_held = per_episode * GEN_EPISODES
    shard = per_episode * demos.SHARD_EPISODES
    bound = all_held // 4  # ~59 MB: fails if a quarter of the episodes (10 shards) stayed in memory
    growth = {who: out["peak"][who] - out["warm"][who] for who in out["warm"]}
    assert len(growth) == 1 + actors
    print(f"\n{GEN_EPISODES} x {GEN_TASK}{GEN_KWARGS} with actors={actors} in {out['seconds']:.1f} s; all episodes "
          f"held: {all_held / MB:.0f} MB, one shard: {shard / MB:.1f} MB, bound {bound / MB:.0f} MB; peak RSS "
          + ", ".join(f"{who}: {out['peak'][who] / MB:.0f} MB (+{g / MB:.1f} MB after warm-up)"
                      for who, g in growth.items()))
    for who, g in growth.items():
        assert g < bound, f"{who}: resident memory grew by {g / MB:.0f} MB while generating (bound {bound / MB:.0f} MB)"


if __name__ == "__main__":
    if sys.argv[1] == "sweep":
        sweep_child(Path(sys.argv[2]))
    elif sys.argv[1] == "generate":
        generate_child(Path(sys.argv[2]), int(sys.argv[3]))
