"""Sweeps: files, validation, a real tiny sweep on a local Ray tracked in MLflow, resume after a killed driver."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attention_tuner import sweep
from attention_tuner.cli import main as cli
from attention_tuner.config import ConfigError
from conftest import recorded_checkpoints

ROOT = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.py"))
CLI = [sys.executable, "-m", "attention_tuner.cli"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_file_loads_and_names_only_real_fields(path):
    spec = sweep.load_sweep(path)
    ts = sweep.trials(spec)
    assert ts and len({t.key for t in ts}) == len(ts)
    assert "__main__" in path.read_text()  # runnable on its own (ray submit cluster.yaml sweeps/x.py)


def test_paper_sweep_covers_the_main_table():
    ts = sweep.trials(sweep.load_sweep(ROOT / "sweeps" / "paper.py"))
    combos = {(t.config.task.name, t.config.method, t.config.seed) for t in ts}
    assert len(combos) == 5 * 2 * 5
    assert {t.config.model.d_model for t in ts} == {512}


def test_a_task_parameter_named_at_its_default_needs_no_second_dataset():
    from attention_tuner.presets import SMOKE

    spec = sweep.SweepSpec(name="defaults", base={**SMOKE, "task.name": "Hallway", "data.episodes": 8},
                           space={"arm": {"none": {"task.kwargs": {}}, "named": {"task.kwargs": {"length": 30}, "seed": 1},
                                          "ten": {"task.kwargs": {"length": 10}}}})
    needed = sweep.datasets_needed(sweep.trials(spec))
    assert [kwargs for _, kwargs, _, _ in needed] == [{}, {"length": 10}]
    # the same seed too: one trial (a report would count it once), refused before anything starts
    same = dataclasses.replace(spec, space={"task.kwargs": [{}, {"length": 30}]})
    with pytest.raises(ConfigError, match="are one attention_tuner trial: they differ only in task.kwargs.length, "
                                          "which name a task parameter at its default;"):
        sweep.trials(same)
    assert len(sweep.trials(same, allow_same=True)) == 2  # a resumed run goes on with the trials it started


def test_resume_refuses_trials_other_than_those_it_started_with(tmp_path):
    """Tune restores a sweep's trials as they were started: a --set that now asks for another configuration
    was ignored silently; it is refused in one line before anything starts."""
    from attention_tuner.presets import SMOKE

    spec = sweep.SweepSpec(name="again", base={**SMOKE, "task.name": "Ordering", "task.kwargs": {"length": 2}},
                           space={"seed": [0, 1]})
    started = sweep.trials(spec, {"optim.epochs": 60})
    (tmp_path / "again-1").mkdir()
    (tmp_path / "again-1" / sweep.STARTED).write_text(json.dumps(sweep.started_trials(started)))
    (tmp_path / "again.latest").write_text("again-1\n")
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(ValueError, match=r"--resume continues sweep again .* but trial \S+'s optim.epochs was 60 "
                                         r"and is now 3: resume with the same sweep file"):
        sweep.run(spec, resume=True, tracking_uri=uri, storage=str(tmp_path), extra={"optim.epochs": 3})
    with pytest.raises(ValueError, match=r"but trials \S+ are new"):
        sweep.run(dataclasses.replace(spec, space={"seed": [0, 1, 2]}), resume=True, tracking_uri=uri,
                  storage=str(tmp_path), extra={"optim.epochs": 60})
    sweep.check_same_trials(tmp_path / "again-1" / sweep.STARTED, sweep.trials(spec, {"optim.epochs": 60}), "again")
    assert not (tmp_path / "mlruns.db").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "again-1", "again.latest"]


def test_the_cost_estimate_counts_the_encoder_on_distinct_views_only(monkeypatch):
    import numpy as np

    # 100 Transformer parameters on 2 tokens, 10 encoder parameters and 50 convolution multiply-adds on a third
    assert sweep.step_flops(100, 10, 50, 1 / 3) == 6 * 100 * 2 + 6 * 60 / 3
    a = np.zeros((4, 7, 7, 3), np.uint8)
    b = a.copy()
    b[1:, 0, 0, 0] = 1  # views 0, 1, 1, 1
    assert sweep.distinct_share([a, b]) == 2 / 8  # two distinct views among eight
    from attention_tuner.presets import CPU_MODEL

    ts = sweep.trials(sweep.SweepSpec(name="c", base={**CPU_MODEL, "task.name": "Ordering", "optim.epochs": 1},
                                      space={}))
    deduplicated = sweep.cost(ts)["pflop"]
    monkeypatch.setattr(sweep, "distinct_share", lambda views: 1.0)
    assert deduplicated < 0.7 * sweep.cost(ts)["pflop"]  # Ordering's views repeat: many encodings are saved


BAD = {
    "unknown key": ('{"optim.lrr": 1}', "{}", "unknown key optim.lrr"),
    "wrong type": ('{"optim.epochs": "many"}', "{}", "optim.epochs: expected int"),
    "unknown task": ("{}", '{"task.name": ["Hallway", "Maze"]}', "unknown task 'Maze'"),
    "head out of range": ("{}", '{"memory.heads": [[[5, 0]]]}', r"\(5, 0\) is out of range"),
    "fraction": ("{}", '{"data.annotation_fraction": [0.5, 1.5]}', r"annotation_fraction must be in \[0, 1\]"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_sweep_files_fail_before_any_trial_with_one_line(case, tmp_path, capsys):
    base, space, message = BAD[case]
    f = tmp_path / "bad.py"
    f.write_text(f"from attention_tuner.sweep import SweepSpec\nSWEEP = SweepSpec(name='bad', base={base}, "
                 f"space={space})\n")
    with pytest.raises(ConfigError, match=message):
        sweep.trials(sweep.load_sweep(f))
    code = cli(["sweep", str(f), "--storage", str(tmp_path / "store"),
                "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("attention-tuner: error:")
    assert not (tmp_path / "store").exists() and not (tmp_path / "m.db").exists()


def test_missing_or_broken_sweep_file(tmp_path, capsys):
    assert cli(["sweep", str(tmp_path / "none.py")]) == 2
    broken = tmp_path / "broken.py"
    broken.write_text("SWEEP = undefined_name\n")
    assert cli(["sweep", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "sweep file not found" in err and "NameError" in err


def test_dry_run_prints_trials_datasets_and_cost_and_starts_nothing(tmp_path, capsys):
    assert cli(["sweep", str(ROOT / "sweeps" / "tiny.py"), "--dry-run", "--storage", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "2 trials" in out and "datasets" in out and "PFLOP" in out
    assert not (tmp_path / "s").exists()


def mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return c, c.search_runs([exp.experiment_id], max_results=100)


def test_tiny_sweep_writes_one_parent_and_two_child_runs(tiny_sweep):
    uri, rows, _ = tiny_sweep
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    c, runs = mlflow_runs(uri, "tiny")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.data.tags["sweep"] == "tiny" and parent.data.tags["git_commit"] and parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/sessions"] == 1 and parent.data.metrics["sweep/running_s"] > 0
    # in the UI: the parent named by its sweep run (runs of one sweep apart), its description, the commit
    sweep_id = parent.data.tags["sweep_id"]
    assert re.fullmatch(r"tiny-\d{8}-\d{6}(-\d+)?", sweep_id) and parent.data.tags["mlflow.runName"] == sweep_id
    assert parent.data.tags["mlflow.note.content"].startswith("Smoke test: vanilla vs AttentionTuner")
    assert parent.data.tags["mlflow.source.git.commit"] == parent.data.tags["git_commit"]
    assert parent.data.params["base.task.name"] == "Ordering" and parent.data.params["base.optim.epochs"] == "2"
    for child in children:
        assert child.data.tags["sweep_id"] == sweep_id
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["device"] == "cpu"  # what device: auto became
        assert child.info.status == "FINISHED"
        assert child.data.params["task.name"] == "Ordering" and "optim.lr" in child.data.params
        assert not [k for k in child.data.params if k.startswith("rl.")]  # the RL baseline's settings: its own
        history = c.get_metric_history(child.info.run_id, "eval/success_rate")
        assert [m.step for m in history] == [1, 2]
        assert "train/action_loss" in child.data.metrics
        artifacts = {a.path for a in c.list_artifacts(child.info.run_id)}
        assert {"attention.png", "curves.png", "checkpoint", "dataset_manifest.json", "config.yaml"} <= artifacts
        from attention_tuner.config import load_yaml  # the trial again: `train --config config.yaml`

        config = load_yaml(c.download_artifacts(child.info.run_id, "config.yaml"))
        assert config.task.name == "Ordering" and config.method == child.data.params["label.method"]
    assert "results.md" in {a.path for a in c.list_artifacts(parent.info.run_id)}


def test_sweep_resumes_after_the_driver_is_killed_without_duplicates(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    store = tmp_path / "store"
    args = CLI + ["sweep", str(ROOT / "sweeps" / "tiny.py"), "--storage", str(store), "--tracking-uri", uri,
                  "--set", "optim.epochs=4"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:  # wait until a resume would restore some trial's checkpoint, then kill the driver and its local Ray
        while time.time() < deadline and not recorded_checkpoints(store):
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(store.glob("tiny-*/trials/*/checkpoint/checkpoint.pt")), "no checkpoint within the time limit"
    # the MLflow store moved meanwhile (a new head has a new address): the resumed trials must log to the new
    # one, which holds the same runs; Tune restores the grid, never the session's URI (sweep.trainable's ctx)
    old_uri, uri = uri, f"sqlite:///{tmp_path}/moved.db"
    with sqlite3.connect(tmp_path / "mlruns.db") as src, sqlite3.connect(tmp_path / "moved.db") as dst:
        src.backup(dst)  # a consistent copy, even should a worker of the killed session still be writing
    args[args.index(old_uri)] = uri
    done = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    # the terminal shows a line per trial event, not Tune's tables of every trial's configuration
    assert "started with configuration" not in done.stdout and "Trial status" not in done.stdout
    assert re.search(r"^\[\d\d:\d\d\] \S+ finished \(\d/2 done\), epoch 4: success", done.stdout, re.M), \
        done.stdout[-2000:]
    c, runs = mlflow_runs(uri, "tiny")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2, [r.data.tags.get("mlflow.runName") for r in runs]
    for child in children:
        assert child.info.status == "FINISHED"
        steps = {m.step for m in c.get_metric_history(child.info.run_id, "train/action_loss")}
        assert steps == {1, 2, 3, 4}
    starts = {p.parent.name: [json.loads(line)["from_epoch"] for line in p.read_text().splitlines()]
              for p in store.glob("tiny-*/trials/*/starts.jsonl")}
    assert any(s[-1] >= 1 for s in starts.values()), starts  # resumed from a checkpoint, not started over
    # two sessions; the killed one could not log its running time, and the report says so
    assert parents[0].data.metrics["sweep/sessions"] == 2
    assert [m.step for m in c.get_metric_history(parents[0].info.run_id, "sweep/running_s")] == [2]
    from attention_tuner import report

    assert "running in 2 sessions" in report.run_summary(uri, None, "tiny")[0]


def test_ctrl_c_ends_a_sweep_as_interrupted_and_resume_finishes_it(tmp_path):
    """Tune catches SIGINT and returns its results: the sweep must not call that done. Exit 130, the unfinished
    trials' runs and the parent KILLED, a pointer to --resume; then --resume finishes them in the same runs."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    store = tmp_path / "store"
    args = CLI + ["sweep", str(ROOT / "sweeps" / "tiny.py"), "--storage", str(store), "--tracking-uri", uri,
                  "--set", "optim.epochs=30", "--set", "eval.every=10"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not recorded_checkpoints(store):
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)  # the driver only, as Ctrl-C reaches it
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "did not finish; continue them with the same command and --resume" in err
    assert err.strip().splitlines()[-1].endswith("interrupted")
    assert "| interrupted |" in out
    c, runs = mlflow_runs(uri, "tiny")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "KILLED"
    assert "KILLED" in {r.info.status for r in children} and "RUNNING" not in {r.info.status for r in children}
    done = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    c, runs = mlflow_runs(uri, "tiny")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    # --resume once more, on a sweep that is done: Tune restores its trials without their `done`; still done
    again = subprocess.run(args + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("| ok |") == 2 and "| interrupted |" not in again.stdout, again.stdout[-2000:]
    assert "had finished, every trial done: nothing to resume" in again.stdout
    c, runs = mlflow_runs(uri, "tiny")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_retry_keeps_only_the_checkpoint_tune_was_reported(tmp_path):
    """A checkpoint saved but never reported (the trial killed between the two) is not resumed from: with none
    reported the retry starts over; with one reported, that one replaces whatever is on disk."""
    import ray.tune as tune

    local = tmp_path / "trial" / "checkpoint"
    local.mkdir(parents=True)
    (local / "checkpoint.pt").write_bytes(b"epoch 2, unreported")
    sweep.keep_reported_checkpoint(local, None)
    assert not local.exists()

    reported = tmp_path / "reported"
    reported.mkdir()
    (reported / "checkpoint.pt").write_bytes(b"epoch 1, reported")
    local.mkdir(parents=True)
    (local / "checkpoint.pt").write_bytes(b"epoch 2, unreported")
    (local / "stale.tmp").write_bytes(b"")
    sweep.keep_reported_checkpoint(local, tune.Checkpoint.from_directory(str(reported)))
    assert sorted(p.name for p in local.iterdir()) == ["checkpoint.pt"]
    assert (local / "checkpoint.pt").read_bytes() == b"epoch 1, reported"


def test_a_retry_does_not_log_again_an_epoch_mlflow_already_has(tmp_path, monkeypatch):
    """Killed after logging epoch 1 to MLflow but before reporting it to Tune, a trial starts over: epoch 1 is
    trained again and reported to Tune, but its MLflow run keeps one value per step (the first)."""
    import ray.tune as tune
    from mlflow.tracking import MlflowClient

    from attention_tuner import tracking
    from attention_tuner import trial as trial_module
    from attention_tuner.config import to_dict

    t = sweep.trials(sweep.load_sweep(ROOT / "sweeps" / "tiny.py"))[0]
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    exp = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.start_parent(uri, exp, "tiny", "tiny-1", {})
    run = tracking.child_run(uri, exp, parent, t.key, "tiny", sweep.trial_params(t))
    tracking.log_metrics(uri, run, {"epoch": 1.0, "train/loss": 0.5}, 1)  # the killed attempt's epoch 1
    reported = []
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reported.append(
        (metrics["epoch"], metrics.get(sweep.COMPLETE))))
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"weights")

    def retried(cfg, run_dir, data_root, report):  # the retry trains epochs 1 and 2 (other float rounding)
        for epoch in (1, 2):
            report({"epoch": float(epoch), "train/loss": 0.4}, epoch, None)
        return {"metrics": {"epoch": 2.0, "train/loss": 0.4}, "artifacts": [], "checkpoint": ckpt, "manifest": None}

    monkeypatch.setattr(trial_module, "run_trial", retried)
    ctx = {"uri": uri, "experiment_id": exp, "parent": parent, "sweep": "tiny", "trials": str(tmp_path / "trials"),
           "data_root": str(tmp_path / "data")}
    sweep.trainable({"trial": {"key": t.key, "labels": t.labels, "config": to_dict(t.config)}}, ctx)
    assert reported == [(1.0, None), (2.0, None), (2.0, 1)]  # then the completion mark, after the run ended
    loss = MlflowClient(tracking_uri=uri).get_metric_history(run, "train/loss")
    assert sorted((m.step, m.value) for m in loss) == [(1, 0.5), (2, 0.4)]


def test_a_trial_killed_mid_training_is_retried_from_its_checkpoint(tmp_path):
    """SIGKILL the process running a trial: Tune retries it from its last checkpoint, the final metrics equal
    an uninterrupted run's, and its MLflow run is the same run, continued (no duplicate)."""
    from attention_tuner import datasets, training
    from attention_tuner.config import TrialConfig, build

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    store = tmp_path / "store"
    args = CLI + ["sweep", str(ROOT / "sweeps" / "tiny.py"), "--storage", str(store), "--tracking-uri", uri,
                  "--set", "optim.epochs=5"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = None
    try:
        deadline = time.time() + 240
        while killed is None and time.time() < deadline and proc.poll() is None:
            for reported in recorded_checkpoints(store):  # Tune has it: a retry restores it
                pid_file = next(store.glob(f"tiny-*/trials/{reported.parent.name}/worker.pid"), None)
                if pid_file is not None:
                    try:
                        os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):  # that trial has ended (or is writing its pid)
                        continue
                    killed = reported.parent.name
                    break
            time.sleep(0.2)
        assert killed, "no trial checkpoint appeared to interrupt"
        assert proc.wait(timeout=400) == 0, "the sweep did not survive the killed trial"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    c, runs = mlflow_runs(uri, "tiny")
    children = {r.data.tags["trial_key"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children.values())
    history = c.get_metric_history(children[killed].info.run_id, "train/action_loss")
    assert {m.step for m in history} == {1, 2, 3, 4, 5}
    starts = [json.loads(line)["from_epoch"]
              for line in next(store.glob(f"tiny-*/trials/{killed}/starts.jsonl")).read_text().splitlines()]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 1, starts  # retried from its checkpoint
    # the same trial, uninterrupted, in this process
    cfg = build(TrialConfig, __import__("yaml").safe_load(
        (next(store.glob(f"tiny-*/trials/{killed}")) / "config.yaml").read_text()))
    data = datasets.load(next((store / "datasets").glob("Ordering-*")))
    final = training.train(cfg, data, tmp_path / "uninterrupted")
    last = {m.step: m.value for m in history}[5]
    assert last == pytest.approx(final["train/action_loss"], rel=1e-6)


def test_the_printed_table_keeps_annotated_fractions_apart_from_full_annotation():
    """The end-of-sweep table groups by task and method; a fraction below 1 is its own arm (as in the
    report), not pooled into AttentionTuner's seeds."""
    from types import SimpleNamespace

    from attention_tuner.config import to_dict

    spec = sweep.load_sweep(ROOT / "sweeps" / "cpu_reproduction.py")
    picked = [t for t in sweep.trials(spec) if t.labels["arm"] in ("Ordering-attention_tuner", "Ordering-vanilla",
                                                                   "MortarMayhem-attention_tuner",
                                                                   "MortarMayhem-f0.1")]
    grid = [SimpleNamespace(config={"trial": {"key": t.key, "labels": t.labels, "config": to_dict(t.config)}},
                            metrics={"eval/success_rate": 0.5, sweep.COMPLETE: 1}, error=None) for t in picked]
    table = sweep.results_table(sweep.results_rows(grid, "eval/success_rate"))
    summary = table.split("\n\n")[1]
    assert "| MortarMayhem | attention_tuner | 0.500 ± 0.000 | 3 |" in summary
    assert "| MortarMayhem | attention_tuner (fraction 0.1) | 0.500 ± 0.000 | 3 |" in summary
    assert "| Ordering | vanilla | 0.500 ± 0.000 | 3 |" in summary


def test_the_printed_table_counts_finished_trials_only_and_keeps_noise_and_head_arms_apart():
    from types import SimpleNamespace

    from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict

    def result(key, overrides, success, error=None, done=True):
        cfg = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **overrides})
        return SimpleNamespace(config={"trial": {"key": key, "labels": {}, "config": to_dict(cfg)}},
                               metrics={"eval/success_rate": success, sweep.COMPLETE: int(done)},
                               error=error)

    grid = [result("0", {}, 0.9), result("1", {"seed": 1}, 0.1, error=RuntimeError("worker died")),
            result("2", {"data.noise.drop": 0.5}, 0.2), result("3", {"memory.heads": [[1, 1]]}, 0.3),
            result("4", {"memory.weight": 0.0}, 0.4), result("5", {"seed": 2}, 0.6, done=False)]
    rows = sweep.results_rows(grid, "eval/success_rate")
    assert [r["status"] for r in rows if r["trial"] in ("1", "5")] == ["error: worker died", "interrupted"]
    summary = sweep.results_table(rows).split("\n\n")[1]
    # the failed and the interrupted (stopped by Ctrl-C: its last result without the completion mark) trials listed, not counted
    assert "| Hallway | attention_tuner | 0.900 (one seed) | 1 | 1, 5 |" in summary
    assert "| Hallway | attention_tuner (noise drop=0.5) | 0.200 (one seed) | 1 |  |" in summary
    assert "| Hallway | attention_tuner (heads L1H1) | 0.300 (one seed) | 1 |  |" in summary
    assert "| Hallway | vanilla | 0.400 (one seed) | 1 |  |" in summary


def test_the_printed_table_takes_the_main_heads_as_the_report_does():
    """A sweep whose AttentionTuner trials all supervise other heads than the default's: those heads are the
    main comparison's (as `outcomes.main_heads` takes them), so the table gives them no heads suffix; a second
    set of heads beside them is an arm of its own."""
    from types import SimpleNamespace

    from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict

    def result(key, overrides, success):
        cfg = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **overrides})
        return SimpleNamespace(config={"trial": {"key": key, "labels": {}, "config": to_dict(cfg)}},
                               metrics={"eval/success_rate": success, sweep.COMPLETE: 1}, error=None)

    grid = [result("0", {"memory.heads": "all"}, 0.9), result("1", {"memory.heads": "all", "seed": 1}, 0.7),
            result("2", {"memory.heads": [[1, 1]]}, 0.3), result("3", {"memory.weight": 0.0}, 0.4)]
    summary = sweep.results_table(sweep.results_rows(grid, "eval/success_rate")).split("\n\n")[1]
    assert "| Hallway | attention_tuner | 0.800 ± 0.100 | 2 |" in summary
    assert "| Hallway | attention_tuner (heads L1H1) | 0.300 (one seed) | 1 |" in summary
    assert "heads all" not in summary
    # no trial without noise: the default's heads are the main ones, so a noise arm gets no heads label
    noisy = [result("0", {"data.noise.drop": 0.5}, 0.5), result("1", {"memory.weight": 0.0}, 0.4)]
    summary = sweep.results_table(sweep.results_rows(noisy, "eval/success_rate")).split("\n\n")[1]
    assert "| Hallway | attention_tuner (noise drop=0.5) | 0.500 (one seed) | 1 |" in summary


def test_a_trial_given_a_gpu_it_cannot_use_is_refused_not_run_on_the_cpu(monkeypatch):
    import torch

    from attention_tuner.config import TrialConfig, apply_overrides, build

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only torch on a GPU node
    auto = build(TrialConfig, {"device": "auto"})
    with pytest.raises(RuntimeError, match=r"given GPU \[0\] but torch .* sees no CUDA device"):
        sweep.trial_device(auto, [0])
    assert sweep.trial_device(auto, []) == (apply_overrides(auto, {"device": "cpu"}), "cpu")  # none asked for
    assert sweep.trial_device(apply_overrides(auto, {"device": "cpu"}), [0])[1] == "cpu"  # said so


def test_a_trial_ray_gave_no_gpu_leaves_the_node_s_gpus_alone(monkeypatch):
    """Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a trial given 0 GPUs: under device: auto such a trial
    would train on cuda:0 beside the trials that were given it. It trains on the CPU; outside Ray (None) auto
    stays auto; and a sweep whose trials say device: cuda without asking Ray for a GPU is refused upfront."""
    import torch

    from attention_tuner.config import ConfigError, TrialConfig, build

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU node
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A10G")
    auto = build(TrialConfig, {"device": "auto"})
    cfg, name = sweep.trial_device(auto, [])
    assert (cfg.device, name) == ("cpu", "cpu")
    cfg, name = sweep.trial_device(auto, ["0"])
    assert (cfg.device, name) == ("auto", "cuda (NVIDIA A10G)")
    assert sweep.trial_device(auto, None)[1] == "cuda (NVIDIA A10G)"
    spec = sweep.SweepSpec(name="gpu_less", base={"device": "cuda"}, space={"seed": [0]})
    with pytest.raises(ConfigError, match=r"trial \{'seed': '0'\}: device: cuda, but resources.gpu is 0"):
        sweep.trials(spec)
    assert sweep.trials(dataclasses.replace(spec, resources={"cpu": 1, "gpu": 0.5}))[0].config.device == "cuda"


def test_a_cluster_whose_trials_run_elsewhere_needs_a_tracking_server():
    local, server = "sqlite:////tmp/mlruns.db", "http://10.0.0.5:5000"
    sweep.check_cluster_tracking(local, 1, 0, 0)  # one machine: a local store is right
    sweep.check_cluster_tracking(local, 1, 1, 1)  # one machine with its GPU
    sweep.check_cluster_tracking(server, 3, 0, 1)
    with pytest.raises(ValueError, match="file on this machine, which the other machines .*3 in all"):
        sweep.check_cluster_tracking(local, 3, 2, 1)
    with pytest.raises(ValueError, match="ask for GPUs that no node has: they can only run on machines that join"):
        sweep.check_cluster_tracking(local, 1, 0, 0.5)  # cluster.yaml's head alone, workers scale from 0


def test_sweeps_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.time, "strftime", lambda fmt: "20261203-180000")
    names = [sweep.new_run_name(tmp_path, "tiny") for _ in range(3)]
    assert names == ["tiny-20261203-180000", "tiny-20261203-180000-2", "tiny-20261203-180000-3"]
    assert all((tmp_path / n).is_dir() for n in names)


def test_a_trial_without_the_completion_mark_whose_run_finished_is_done():
    """Tune states saved before the mark existed: their finished trials are restored without it."""
    rows = [{"trial": "0", "status": "interrupted"}, {"trial": "1", "status": "interrupted"},
            {"trial": "2", "status": "ok"}, {"trial": "3", "status": "error: died"}]
    status = {"0": "FINISHED", "1": "RUNNING", "2": "FINISHED", "3": "FAILED"}
    assert [r["status"] for r in sweep.finished_by_mlflow(rows, status.get)] == [
        "ok", "interrupted", "ok", "error: died"]


def test_progress_does_not_repeat_the_last_evaluation_for_the_completion_mark():
    from attention_tuner.progress import Progress

    lines: list[str] = []
    p = Progress(1, clock=lambda: 0.0, out=lambda text, flush: lines.append(text))
    trial = type("T", (), {"config": {"trial": {"key": "000-x"}}})()
    last = {"epoch": 2, "eval/success_rate": 0.5}
    p.on_trial_result(0, [], trial, last)
    p.on_trial_result(0, [], trial, {**last, sweep.COMPLETE: 1})  # the mark repeats the last result
    assert lines == ["[00:00] 000-x epoch 2: success 0.50"]


def test_progress_prints_one_line_per_trial_event():
    """A sweep's terminal output: one line when a trial starts, at each evaluation, when it ends or fails;
    epochs without an evaluation print nothing."""
    from types import SimpleNamespace

    from attention_tuner.progress import Progress, describe

    now = [0.0]
    lines: list[str] = []
    p = Progress(2, clock=lambda: now[0], out=lambda text, flush: lines.append(text))
    ok = SimpleNamespace(config={"trial": {"key": "000-Ordering-vanilla-0"}}, last_result=None)
    bad = SimpleNamespace(config={"trial": {"key": "001-Ordering-attention_tuner-0"}}, last_result=None,
                          error_file="/x/error.txt")
    p.setup()
    p.on_trial_start(0, [], ok)
    now[0] = 61.0
    p.on_trial_result(1, [], ok, {"epoch": 1, "val/accuracy": 0.5})  # no evaluation: silent
    p.on_trial_result(2, [], ok, {"epoch": 2, "eval/success_rate": 0.25, "val/accuracy": 0.75})
    ok.last_result = {"epoch": 2, "eval/success_rate": 0.25, "val/accuracy": 0.75}
    p.on_trial_complete(3, [], ok)
    p.on_trial_error(4, [], bad)
    assert lines == [
        "[00:00] 000-Ordering-vanilla-0 started",
        "[01:01] 000-Ordering-vanilla-0 epoch 2: success 0.25, held-out accuracy 0.75",
        "[01:01] 000-Ordering-vanilla-0 finished (1/2 done), epoch 2: success 0.25, held-out accuracy 0.75",
        "[01:01] 001-Ordering-attention_tuner-0 FAILED (2/2 done); error file: /x/error.txt",
    ]
    assert describe({"training_iteration": 7, "eval/mean_return": 0.5}) == "iteration 7: return 0.50"
    assert describe({}) == "result"


def test_the_paper_sweeps_train_on_the_papers_numbers_of_demonstrations():
    """The paper trains on all its demonstrations; here 10% are held out, so more are generated."""
    import numpy as np

    from attention_tuner import datasets
    from attention_tuner.presets import PAPER_TASKS

    class Episodes:  # what datasets.split reads of a dataset
        def __init__(self, n):
            self.seeds = np.arange(n)

        def __len__(self):
            return len(self.seeds)

    paper = {"Hallway": 4000, "Ordering": 5000, "Counting": 10000, "MortarMayhem": 5000, "MysteryPath": 5000}
    for task, overrides in PAPER_TASKS.items():
        train, _ = datasets.split(Episodes(overrides["data.episodes"]), 0.1)
        assert len(train) == paper[task], task


def test_the_printed_table_keeps_arms_of_any_other_setting_apart():
    """A sweep over a task parameter and over the memory-loss variant: each length is its own task row (both
    methods), each variant its own AttentionTuner arm (the default variant the main one); a setting that only
    differs between methods (not within one) splits nothing."""
    from types import SimpleNamespace

    from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict

    def result(key, overrides, success):
        cfg = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **overrides})
        return SimpleNamespace(config={"trial": {"key": key, "labels": {}, "config": to_dict(cfg)}},
                               metrics={"eval/success_rate": success, sweep.COMPLETE: 1}, error=None)

    grid = [result(f"{i}", {"task.kwargs.length": length, "memory.variant": variant, "seed": seed, **method},
                   success)
            for i, (length, variant, seed, method, success) in enumerate([
                (10, "reference", 0, {}, 0.9), (10, "reference", 1, {}, 0.7), (10, "decision_rows", 0, {}, 0.3),
                (30, "reference", 0, {}, 0.5), (10, "reference", 0, {"memory.weight": 0.0, "optim.lr": 1e-3}, 0.2),
                (30, "reference", 0, {"memory.weight": 0.0, "optim.lr": 1e-3}, 0.1)])]
    summary = sweep.results_table(sweep.results_rows(grid, "eval/success_rate")).split("\n\n")[1]
    assert "| Hallway (length=10) | attention_tuner | 0.800 ± 0.100 | 2 |" in summary
    assert "| Hallway (length=10) | attention_tuner (memory.variant=decision_rows) | 0.300 (one seed) | 1 |" in summary
    assert "| Hallway (length=30) | attention_tuner | 0.500 (one seed) | 1 |" in summary
    assert "| Hallway (length=10) | vanilla | 0.200 (one seed) | 1 |" in summary  # its own lr: no arm label
    assert "| Hallway (length=30) | vanilla | 0.100 (one seed) | 1 |" in summary


def test_the_printed_table_keeps_memory_loss_weights_apart():
    """A sweep over the memory loss's weight: each weight its own AttentionTuner arm, the default weight's the
    main one; the vanilla Transformer (weight 0) is no arm of it."""
    from types import SimpleNamespace

    from attention_tuner.config import TrialConfig, apply_overrides, build, to_dict

    def result(key, overrides, success):
        cfg = apply_overrides(build(TrialConfig, {}), {"task.name": "Hallway", **overrides})
        return SimpleNamespace(config={"trial": {"key": key, "labels": {}, "config": to_dict(cfg)}},
                               metrics={"eval/success_rate": success, sweep.COMPLETE: 1}, error=None)

    grid = [result("0", {}, 0.9), result("1", {"memory.weight": 1.0}, 0.6), result("2", {"memory.weight": 0.0}, 0.1)]
    summary = sweep.results_table(sweep.results_rows(grid, "eval/success_rate")).split("\n\n")[1]
    assert "| Hallway | attention_tuner | 0.900 (one seed) | 1 |" in summary
    assert "| Hallway | attention_tuner (memory.weight=1.0) | 0.600 (one seed) | 1 |" in summary
    assert "| Hallway | vanilla | 0.100 (one seed) | 1 |" in summary
