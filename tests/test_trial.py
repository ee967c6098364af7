"""One trial end to end in its run folder (attention_tuner.trial): resuming, refusing, nothing to do."""

from __future__ import annotations

import json

import pytest
import yaml

from attention_tuner import checkpoint, trial
from attention_tuner.config import TrialConfig, apply_overrides, build

TINY = {
    "task.name": "Ordering", "task.kwargs.length": 2, "data.episodes": 16, "model.d_model": 32,
    "model.n_layers": 1, "model.n_heads": 2, "model.d_ff": 64, "optim.batch_size": 8, "optim.epochs": 2,
    "eval.episodes": 0, "checkpoint_every": 2, "device": "cpu",
}


def config(**overrides) -> TrialConfig:
    return apply_overrides(build(TrialConfig, {}), {**TINY, **overrides})


def epochs_logged(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_another_configuration_is_refused_before_anything_is_written_or_generated(tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    trial.run_trial(config(), run, data)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    datasets_before = sorted(p.name for p in data.iterdir())
    with pytest.raises(checkpoint.CheckpointError, match="another configuration .*task.kwargs.length"):
        trial.run_trial(config(**{"task.kwargs.length": 3}), run, data)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in data.iterdir()) == datasets_before  # the other dataset was not generated
    assert yaml.safe_load((run / "config.yaml").read_text())["task"]["kwargs"] == {"length": 2}


def test_a_finished_run_asked_for_fewer_epochs_is_left_as_it_is(tmp_path):
    run = tmp_path / "run"
    trial.run_trial(config(), run, tmp_path / "data")
    result = trial.run_trial(config(**{"optim.epochs": 1}), run, tmp_path / "data")
    assert result["done_before"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["epochs"] == 2
    assert checkpoint.load(run / "checkpoint")["epoch"] == 2 and epochs_logged(run) == [1, 2]
    assert trial.run_trial(config(**{"optim.epochs": 3}), run, tmp_path / "data")["done_before"] is None
    assert epochs_logged(run) == [1, 2, 3]  # extended: trained on


def test_lines_logged_after_the_last_checkpoint_are_not_repeated_on_resume(tmp_path):
    run = tmp_path / "run"
    trial.run_trial(config(), run, tmp_path / "data")
    with open(run / "metrics.jsonl", "a") as f:  # an interrupted run: epoch 3 logged, killed before its checkpoint
        f.write(json.dumps({"epoch": 3.0, "train/loss": 9.0}) + "\n")
    trial.run_trial(config(**{"optim.epochs": 4}), run, tmp_path / "data")
    assert epochs_logged(run) == [1, 2, 3, 4]
    starts = [json.loads(line)["from_epoch"] for line in (run / "starts.jsonl").read_text().splitlines()]
    assert starts == [0, 2]  # resumed from the checkpoint's epoch 2, not started over
    assert [h["epoch"] for h in checkpoint.load(run / "checkpoint")["history"]] == [1, 2, 3, 4]


def test_a_run_folder_names_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    trial.run_trial(config(**{"optim.epochs": 1}), run, tmp_path / "data")
    assert checkpoint.resolve(run) == run / "checkpoint" / "checkpoint.pt"  # `attention-tuner evaluate RUN`
    assert checkpoint.resolve(run / "checkpoint") == run / "checkpoint" / "checkpoint.pt"


def test_a_dataset_that_fails_leaves_no_run_folder(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("manifest is not valid JSON")

    monkeypatch.setattr(trial, "dataset_for", broken)
    with pytest.raises(ValueError, match="not valid JSON"):
        trial.run_trial(config(), tmp_path / "run", tmp_path / "data")
    assert not (tmp_path / "run").exists()


def test_a_finished_run_restored_without_its_config_gets_one(tmp_path):
    """A retry on another node restores the last reported checkpoint into a fresh folder: nothing left to train,
    but the folder still gets its config.yaml."""
    run = tmp_path / "run"
    trial.run_trial(config(), run, tmp_path / "data")
    (run / "config.yaml").unlink()
    assert trial.run_trial(config(), run, tmp_path / "data")["done_before"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["epochs"] == 2


def test_a_resumed_run_keeps_its_dataset_when_the_task_code_has_changed(tmp_path, monkeypatch):
    """The dataset key follows the task's code; a run resumed after a change goes on with the dataset it
    started on (never two datasets in one run), and says so in one line when that dataset is gone."""
    import shutil

    import memory_tasks

    run, data = tmp_path / "run", tmp_path / "data"
    trial.run_trial(config(**{"checkpoint_every": 1, "optim.epochs": 1}), run, data)
    (first,) = [p.name for p in data.iterdir()]
    assert checkpoint.load(run / "checkpoint")["dataset_key"] == first.split("-", 1)[1]
    monkeypatch.setattr(memory_tasks, "source_digest", lambda name: "the expert was edited")
    trial.run_trial(config(**{"checkpoint_every": 1, "optim.epochs": 2}), run, data)
    assert [p.name for p in data.iterdir()] == [first]  # resumed on it: no new dataset generated
    assert epochs_logged(run) == [1.0, 2.0]
    shutil.rmtree(data / first)
    with pytest.raises(checkpoint.CheckpointError, match=f"trained on dataset {first}, which is not under"):
        trial.run_trial(config(**{"checkpoint_every": 1, "optim.epochs": 3}), run, data)
    assert not data.exists() or not any(data.iterdir())  # nothing generated either
    # a new run of the same configuration takes the new dataset
    trial.run_trial(config(**{"checkpoint_every": 1, "optim.epochs": 1}), tmp_path / "new", data)
    assert [p.name for p in data.iterdir()] != [first] and len(list(data.iterdir())) == 1
