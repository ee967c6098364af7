"""Faults: a lost cluster node, and every writer failing half-way (full disk, failed rename, killed writer).

The writers under test: dataset shards and manifest (demos), checkpoints (checkpoint), PNGs (plots.save_png),
the report's tables, Markdown, plots and copied attention pictures (report, report_plots), GIFs (animation).
For each, a failure half-way must leave nothing a reader would take for complete: no final-named file with
partial content, the previous good file intact, and a re-run that completes.

Run as a script (``python tests/test_faults.py node-loss FOLDER``) this file is the child process of the
node-loss test: a two-node local Ray cluster, one trial, one node removed while it trains.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import recorded_checkpoints, torch_threads

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they spin (10x slower)."""
    with torch_threads(1):
        yield


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def write_half_then_fail(data: bytes, path: str | Path) -> None:
    """What a full disk does to a writer: the first half of the bytes reach the file, then ENOSPC."""
    with builtins.open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    raise disk_full()


class HalfWrittenFile:
    """A file object whose first write() puts half of its bytes on disk, then fails with ENOSPC."""

    def __init__(self, path, mode="r", *args, **kwargs):
        self._f = builtins.open(path, mode, *args, **kwargs)

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise disk_full()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fail_replace_to(monkeypatch, name: str) -> None:
    """``os.replace`` fails (ENOSPC) for renames onto a file called ``name``; every other rename works."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise disk_full()
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def fail_fsync(monkeypatch, name: str) -> None:
    """ENOSPC surfacing at fsync (delayed allocation: the bytes were accepted, never stored), for the files
    whose name starts with ``name`` (a writer's temporary); every other fsync works."""
    real = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(name):
            raise disk_full()
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def hidden(folder: Path) -> list[str]:
    """Leftover temporaries (hidden files) under ``folder``; not a report's list of what it wrote."""
    from attention_tuner.report import WRITTEN

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.is_file() and p.name != WRITTEN)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every visible file under ``folder``: what a reader would take."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def png_ok(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated PNG raises
    return True


# ---------------------------------------------------------------------------- datasets: shards, manifest

REQ = {"task": "Ordering", "kwargs": {"length": 3}, "episodes": 10, "seed": 0}


@pytest.fixture
def small_shards(monkeypatch):
    from attention_tuner import demos

    monkeypatch.setattr(demos, "SHARD_EPISODES", 3)  # 4 shards for 10 episodes


@pytest.fixture
def reference(tmp_path, small_shards):
    from attention_tuner import demos

    path = demos.generate(**REQ, root=tmp_path / "reference", actors=0, progress=False)
    return json.loads((path / demos.MANIFEST).read_text())["shards"]


@pytest.mark.parametrize("fault", ["write", "fsync", "rename"])
def test_manifest_write_failing_half_way_leaves_an_unfinished_dataset_that_resumes(
        tmp_path, monkeypatch, reference, fault):
    from attention_tuner import datasets, demos

    with monkeypatch.context() as m:
        if fault == "write":
            m.setattr(demos, "open", HalfWrittenFile, raising=False)  # the module's open(): the manifest only
        elif fault == "fsync":
            fail_fsync(m, f".{demos.MANIFEST}.")
        else:
            fail_replace_to(m, demos.MANIFEST)
        with pytest.raises(OSError) as e:
            demos.generate(**REQ, root=tmp_path / "data", actors=0, progress=False)
    assert e.value.errno == errno.ENOSPC
    path = demos.Request(REQ["task"], REQ["kwargs"], REQ["episodes"], REQ["seed"]).directory(tmp_path / "data")
    assert not (path / demos.MANIFEST).exists()
    assert hidden(path) == []
    with pytest.raises(demos.DatasetError, match="missing manifest"):
        datasets.load(path)
    shards = {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*.parquet")}
    assert len(shards) == len(reference)  # the shards were whole before the manifest was written
    again = demos.generate(**REQ, root=tmp_path / "data", actors=0, progress=False)
    assert json.loads((again / demos.MANIFEST).read_text())["shards"] == reference
    assert {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*.parquet")} == shards  # not rewritten
    assert len(datasets.load(again)) == REQ["episodes"]


@pytest.mark.parametrize("fault", ["write", "fsync", "rename"])
def test_shard_write_failing_half_way_leaves_no_partial_shard_and_resumes(tmp_path, monkeypatch, reference, fault):
    import pyarrow.parquet as pq

    from attention_tuner import datasets, demos

    real_write = pq.write_table
    calls = []

    def write_table(table, where, **kwargs):  # the second shard's Parquet writer fails half-way
        calls.append(where)
        if len(calls) != 2 or fault != "write":
            return real_write(table, where, **kwargs)
        buf = io.BytesIO()
        real_write(table, buf, **kwargs)
        write_half_then_fail(buf.getvalue(), where)

    with monkeypatch.context() as m:
        m.setattr(pq, "write_table", write_table)
        if fault == "fsync":
            fail_fsync(m, f".{demos.shard_name(1)}.")
        elif fault == "rename":
            fail_replace_to(m, demos.shard_name(1))
        with pytest.raises(OSError) as e:
            demos.generate(**REQ, root=tmp_path / "data", actors=0, progress=False)
    assert e.value.errno == errno.ENOSPC
    path = demos.Request(REQ["task"], REQ["kwargs"], REQ["episodes"], REQ["seed"]).directory(tmp_path / "data")
    assert sorted(p.name for p in path.iterdir()) == [demos.shard_name(0)]  # no partial shard, no temporary
    first = (path / demos.shard_name(0)).stat().st_mtime_ns
    assert demos.sha256_of(path / demos.shard_name(0)) == reference[0]["sha256"]
    again = demos.generate(**REQ, root=tmp_path / "data", actors=0, progress=False)
    assert json.loads((again / demos.MANIFEST).read_text())["shards"] == reference
    assert (path / demos.shard_name(0)).stat().st_mtime_ns == first  # the whole shard was kept
    assert len(datasets.load(again)) == REQ["episodes"]


# ------------------------------------------------------------------------------------------ checkpoints

TINY = {
    "task.name": "Ordering", "task.kwargs.length": 2, "data.episodes": 24, "model.d_model": 32,
    "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64, "optim.batch_size": 8, "optim.epochs": 4,
    "eval.episodes": 2, "eval.every": 2, "checkpoint_every": 1, "device": "cpu",
}


def tiny_config(**overrides):
    from attention_tuner.config import TrialConfig, apply_overrides, build

    return apply_overrides(build(TrialConfig, {}), {**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from attention_tuner import datasets, demos

    root = tmp_path_factory.mktemp("faults_ds")
    return datasets.load(demos.generate("Ordering", {"length": 2}, 24, 0, root=root, actors=0, progress=False))


@pytest.mark.parametrize("fault", ["write", "fsync", "rename"])
def test_checkpoint_save_failing_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch, tiny_data, fault):
    import torch

    from attention_tuner import checkpoint, training

    run = tmp_path / "run"
    training.train(tiny_config(**{"optim.epochs": 2}), tiny_data, run)
    ckpt = run / "checkpoint"
    before = snapshot(ckpt)
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        write_half_then_fail(buf.getvalue(), f)

    with monkeypatch.context() as m:
        if fault == "write":
            m.setattr(torch, "save", save)
        elif fault == "fsync":
            fail_fsync(m, f".{checkpoint.FILE}.")
        else:
            fail_replace_to(m, checkpoint.FILE)
        with pytest.raises(OSError) as e:
            training.train(tiny_config(), tiny_data, run)  # epoch 3's checkpoint fails
    assert e.value.errno == errno.ENOSPC
    assert snapshot(ckpt)[checkpoint.FILE] == before[checkpoint.FILE] and hidden(ckpt) == []
    if fault != "rename":  # (a failed rename of the checkpoint leaves its checksum file naming old and new)
        assert snapshot(ckpt) == before
    assert checkpoint.load(ckpt)["epoch"] == 2
    # the re-run resumes from epoch 2 and ends where an uninterrupted run ends
    resumed = training.train(tiny_config(), tiny_data, run)
    full = training.train(tiny_config(), tiny_data, tmp_path / "full")
    assert checkpoint.load(ckpt)["epoch"] == 4
    assert resumed["train/action_loss"] == full["train/action_loss"]


CRASH_POINTS = {  # where the saving process dies -> the epoch a reader then finds
    "torch.save half-way": 1,
    "before rename 1 (checksum of both)": 1,
    "before rename 2 (the checkpoint)": 1,
    "before rename 3 (checksum of the new one)": 2,
    "after the save": 2,
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_checkpoint_writer_killed_at_any_step_leaves_a_loadable_checkpoint(tmp_path, point):
    """A forked child saves epoch 2 over epoch 1 and dies (os._exit, no clean-up) at one step of the save."""
    import torch

    from attention_tuner import checkpoint

    def state(epoch):
        return {"config": {"seed": 0}, "model": {"w": torch.full((64, 64), float(epoch))}, "epoch": epoch}

    d = tmp_path / "ckpt"
    checkpoint.save(d, state(1))
    second = state(2)  # built here: the child only writes
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real_replace, real_save, renames = os.replace, torch.save, []

            def replace(src, dst):
                renames.append(dst)
                if point.startswith(f"before rename {len(renames)} "):
                    os._exit(9)
                real_replace(src, dst)

            def save(obj, f):
                buf = io.BytesIO()
                real_save(obj, buf)
                with builtins.open(f, "wb") as out:
                    out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                os._exit(9)

            os.replace = replace
            if point == "torch.save half-way":
                torch.save = save
            checkpoint.save(d, second)
            os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == (0 if point == "after the save" else 9)
    loaded = checkpoint.load(d)  # never "checksum mismatch": the checksum file always names the file in place
    assert loaded["epoch"] == CRASH_POINTS[point]
    assert float(loaded["model"]["w"][0, 0]) == CRASH_POINTS[point]
    checkpoint.save(d, state(3))  # the next save completes over whatever the crash left
    assert checkpoint.load(d)["epoch"] == 3
    assert (d / checkpoint.SIDE).read_text().split() == [hashlib.sha256((d / checkpoint.FILE).read_bytes()).hexdigest()]


# ------------------------------------------------------------------------------------------------- PNGs


@pytest.mark.parametrize("fault", ["write", "rename"])
def test_png_write_failing_half_way_keeps_the_previous_picture(tmp_path, monkeypatch, fault):
    import matplotlib.figure
    import matplotlib.pyplot as plt

    from attention_tuner.plots import save_png

    def figure(y):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, y])
        return fig

    good = save_png(figure(1), tmp_path / "curves.png")
    before = good.read_bytes()
    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(self, fname, **kwargs):
        buf = io.BytesIO()
        real_savefig(self, buf, **kwargs)
        write_half_then_fail(buf.getvalue(), fname)

    open_before = set(plt.get_fignums())
    with monkeypatch.context() as m:
        if fault == "write":
            m.setattr(matplotlib.figure.Figure, "savefig", savefig)
        else:
            fail_replace_to(m, "curves.png")
            fail_replace_to(m, "new.png")
        for name in ("curves.png", "new.png"):  # over a good picture, and where there was none
            with pytest.raises(OSError):
                save_png(figure(2), tmp_path / name)
    assert good.read_bytes() == before and not (tmp_path / "new.png").exists()
    assert hidden(tmp_path) == [] and set(plt.get_fignums()) == open_before  # no temporary, no open figure
    assert png_ok(save_png(figure(2), tmp_path / "new.png"))


# ---------------------------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """Synthetic finished runs (one task, both methods, two seeds), each with an attention.png artifact."""
    import matplotlib.pyplot as plt

    from attention_tuner import tracking
    from attention_tuner.plots import save_png

    folder = tmp_path_factory.mktemp("faults_store")
    uri = f"sqlite:///{folder}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "faults")
    parent = tracking.start_parent(uri, exp, "faults", "sweep-1", {})
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow([[0, 1], [1, 0]])
    picture = save_png(fig, folder / "attention.png")
    for i, (weight, seed) in enumerate([(0, 0), (0, 1), (10, 0), (10, 1)]):
        run = tracking.child_run(uri, exp, parent, f"{i:03d}", "faults", {
            "task.name": "Ordering", "memory.weight": weight, "data.annotation_fraction": 1.0, "seed": seed,
            "memory.heads": "[[0, 0]]"})
        tracking.log_metrics(uri, run, {"eval/success_rate": 0.2 * i}, 1)
        tracking.log_artifact(uri, run, picture)
        tracking.finish(uri, run)
    tracking.finish(uri, parent)
    return uri


REPORT_FAULTS = ["csv table", "report.md", "plot png", "attention copy", "report.md rename"]


@pytest.mark.parametrize("fault", REPORT_FAULTS)
def test_report_failing_half_way_keeps_the_previous_report(tmp_path, monkeypatch, store, fault):
    import matplotlib.figure

    from attention_tuner import report as report_module

    uri = store
    out = tmp_path / "report"
    report_module.report(uri, out, experiment="faults")
    good = snapshot(out)
    assert set(good) == {"report.md", "task_method.csv", "success_by_task.png", "learning_curves.png",
                         "attention_Ordering_attention_tuner.png", "attention_Ordering_vanilla.png"}
    with monkeypatch.context() as m:
        if fault in ("csv table", "report.md"):  # both go through demos.atomic_write_bytes
            from attention_tuner import demos as demos_module

            target = "task_method.csv" if fault == "csv table" else "report.md"

            def half_open(path, mode="r", *args, **kwargs):
                if target in str(path) and "w" in mode:
                    return HalfWrittenFile(path, mode, *args, **kwargs)
                return builtins.open(path, mode, *args, **kwargs)

            m.setattr(demos_module, "open", half_open, raising=False)
        elif fault == "plot png":
            real_savefig = matplotlib.figure.Figure.savefig

            def savefig(self, fname, **kwargs):
                if "learning_curves" in str(fname):
                    buf = io.BytesIO()
                    real_savefig(self, buf, **kwargs)
                    write_half_then_fail(buf.getvalue(), fname)
                return real_savefig(self, fname, **kwargs)

            m.setattr(matplotlib.figure.Figure, "savefig", savefig)
        elif fault == "attention copy":
            real_copyfile = shutil.copyfile

            def copyfile(src, dst, **kwargs):
                if "attention_Ordering_vanilla" in str(dst):
                    write_half_then_fail(Path(src).read_bytes(), dst)
                return real_copyfile(src, dst, **kwargs)

            m.setattr(shutil, "copyfile", copyfile)
        else:
            fail_replace_to(m, "report.md")
        with pytest.raises(OSError) as e:
            report_module.report(uri, out, experiment="faults")
    assert e.value.errno == errno.ENOSPC
    # Every file a reader sees is the good one (the report's output is deterministic, so a file the failed
    # run had already finished is byte-identical too): nothing partial under a final name, nothing lost.
    assert snapshot(out) == good
    assert hidden(out) == []  # every writer (demos.atomic_target) removes its temporary
    report_module.report(uri, out, experiment="faults")  # a re-run completes
    assert snapshot(out) == good
    assert all(png_ok(out / name) for name in good if name.endswith(".png"))


@pytest.mark.parametrize("fault", ["write", "rename"])
def test_gif_write_failing_half_way_keeps_the_previous_gif(tmp_path, monkeypatch, fault):
    from PIL import Image

    from attention_tuner.animation import write_gif

    out = write_gif("Ordering", 0, tmp_path / "ep.gif", {"length": 2})
    before = out.read_bytes()
    real_save = Image.Image.save

    def save(self, fp, format=None, **params):  # noqa: A002 (PIL's own name)
        buf = io.BytesIO()
        real_save(self, buf, format=format, **params)
        write_half_then_fail(buf.getvalue(), fp)

    with monkeypatch.context() as m:
        if fault == "write":
            m.setattr(Image.Image, "save", save)
        else:
            fail_replace_to(m, "ep.gif")
        with pytest.raises(OSError):
            write_gif("Ordering", 1, out, {"length": 2})
    assert out.read_bytes() == before
    assert hidden(tmp_path) == []  # animation.write_gif removes its temporary
    write_gif("Ordering", 1, out, {"length": 2})
    with Image.open(out) as im:
        assert im.n_frames > 1


# -------------------------------------------------------------------------------------------- node lost

NODE_EPOCHS = 4


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def node_loss_child(folder: Path) -> None:
    """Head (1 CPU, held by a blocker actor) + worker (1 CPU): the trial starts on the worker. After its
    first checkpoint reaches Tune, the worker node is lost (its processes SIGKILLed, the node removed) and
    the blocker released: Tune retries the trial on the head. Prints what it saw as one JSON line."""
    import threading

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from attention_tuner import demos, sweep

    t0 = time.time()
    store = folder / "store"
    spec = sweep.SweepSpec(name="nodeloss", base={
        "task.name": "Ordering", "task.kwargs": {"length": 2}, "data.episodes": 64, "model.d_model": 32,
        "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64, "optim.lr": 1e-3, "optim.batch_size": 8,
        "optim.epochs": NODE_EPOCHS, "eval.episodes": 2, "eval.every": 100, "checkpoint_every": 1, "device": "cpu",
    }, space={"seed": [0]}, resources={"cpu": 1, "gpu": 0})
    demos.generate("Ordering", {"length": 2}, 64, 0, root=store / "datasets", actors=0, progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        # notice a lost node in ~1.5 s, not Ray's default ~15-30 s
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                           "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}})
    worker = cluster.add_node(num_cpus=1)
    info: dict = {}
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)

        @ray.remote(num_cpus=1)
        class Blocker:
            def ready(self) -> int:
                return os.getpid()

        head_id = ray.get_runtime_context().get_node_id()
        blocker = Blocker.options(  # type: ignore[attr-defined]  # an actor class of ray.remote
            scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote()
        ray.get(blocker.ready.remote())  # the head's CPU is taken: the trial can only start on the worker

        def raylet(node) -> int:
            return node.all_processes["raylet"][0].process.pid

        info.update(head_raylet=raylet(cluster.head_node), worker_raylet=raylet(worker))

        def lose_the_worker() -> None:
            deadline = time.time() + 400
            while time.time() < deadline and not recorded_checkpoints(store):  # a retry restores it
                time.sleep(0.05)
            pid_file = next(store.glob("nodeloss-*/trials/*/worker.pid"))
            pid = int(pid_file.read_text())
            info.update(first_pid=pid, first_ppid=_ppid(pid),
                        epochs_before_loss=len((pid_file.parent / "metrics.jsonl").read_text().splitlines()))
            doomed = [int(p.name) for p in Path("/proc").iterdir()
                      if p.name.isdigit() and _ppid(int(p.name)) == info["worker_raylet"]]
            for p in doomed:  # the machine is gone: its workers die with it, at once
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            cluster.remove_node(worker, allow_graceful=False)
            ray.kill(blocker)
            info.update(killed=doomed, lost_at_s=time.time() - t0)
            while time.time() < deadline:  # the retry writes its own pid
                text = pid_file.read_text().strip()
                if text and int(text) != pid:
                    info.update(second_pid=int(text), second_ppid=_ppid(int(text)))
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=lose_the_worker, daemon=True)
        thread.start()
        rows = sweep.run(spec, tracking_uri=f"sqlite:///{folder}/mlruns.db", storage=str(store), verbose=0)
        thread.join(10)
        info.update(rows=rows, total_s=time.time() - t0)
    finally:
        print("RESULT " + json.dumps(info, default=str), flush=True)
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")
def test_a_trial_on_a_lost_node_finishes_on_the_other_node_from_its_checkpoint(tmp_path):
    import yaml
    from mlflow.tracking import MlflowClient

    from attention_tuner import checkpoint, datasets, training
    from attention_tuner.config import TrialConfig, build

    ray_tmp = tempfile.mkdtemp(prefix="rayft", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}  # its own ray_current_cluster
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, __file__, "node-loss", str(tmp_path)], env=env, cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail("the node-loss run did not finish in 420 s:\n" + output[-3000:])
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, output[-3000:]
    info = json.loads(lines[-1].removeprefix("RESULT "))
    assert [r["status"] for r in info["rows"]] == ["ok"], info
    print(f"\nworker node lost {info['lost_at_s']:.0f} s in, after {info['epochs_before_loss']} of {NODE_EPOCHS} "
          f"epochs (pid {info['first_pid']} under raylet {info['first_ppid']}); retried as pid {info['second_pid']} "
          f"under the head's raylet {info['second_ppid']}; {info['total_s']:.0f} s in all")

    # the first attempt ran on the worker node, the retry on the head (the other node)
    assert info["first_ppid"] == info["worker_raylet"] and info["first_pid"] in info["killed"], info
    assert info["second_ppid"] == info["head_raylet"], info
    assert 1 <= info["epochs_before_loss"] < NODE_EPOCHS, info
    trial = next(tmp_path.glob("store/nodeloss-*/trials/000-0"))
    tune_trial = next(tmp_path.glob("store/nodeloss-*/tune/000-0"))
    assert (tune_trial / "error.txt").read_text().count("Failure #") == 1  # failed once, retried once

    # restored from its checkpoint, not started over: the retry began after epoch 1 or later, and every epoch
    # was trained (and logged) exactly once
    starts = [json.loads(line)["from_epoch"] for line in (trial / "starts.jsonl").read_text().splitlines()]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 1, starts
    epochs = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, NODE_EPOCHS + 1))
    final = checkpoint.load(trial / "checkpoint")
    assert final["epoch"] == NODE_EPOCHS and [h["epoch"] for h in final["history"]] == epochs

    # one MLflow run, continued: each step once, finished
    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    runs = c.search_runs([c.get_experiment_by_name("nodeloss").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 2 and len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED" and child.data.tags["trial_key"] == "000-0"
    history = c.get_metric_history(child.info.run_id, "train/action_loss")
    assert sorted(m.step for m in history) == list(range(1, NODE_EPOCHS + 1))

    # and it ends where the same trial, uninterrupted, ends
    cfg = build(TrialConfig, yaml.safe_load((trial / "config.yaml").read_text()))
    data = datasets.load(next((tmp_path / "store" / "datasets").glob("Ordering-*")))
    uninterrupted = training.train(cfg, data, tmp_path / "uninterrupted")
    assert {m.step: m.value for m in history}[NODE_EPOCHS] == pytest.approx(uninterrupted["train/action_loss"],
                                                                           rel=1e-6)


if __name__ == "__main__":
    if sys.argv[1:2] == ["node-loss"]:
        node_loss_child(Path(sys.argv[2]))
