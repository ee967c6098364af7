"""One trial end to end: find or generate its dataset, train, write its artifacts. Used by the CLI and sweeps.

The RL baseline (``algorithm: ppo_lstm``, attention_tuner.rl) runs through the same function without a
dataset, so the CLI and sweeps treat both alike.

A trial directory holds ``config.yaml``, ``metrics.jsonl`` (one line per epoch), ``starts.jsonl`` (one line
per start: the epochs, or RL iterations, it resumed from, the process, the time), ``checkpoint/`` and the
pictures (``attention.png``, ``curves.png``). Running it again resumes from the checkpoint (its configuration
checked first, before anything is written or generated; ``metrics.jsonl`` cut back to the checkpoint's epochs);
a run with nothing left to train is left as it is, but for one more line in ``starts.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from attention_tuner import checkpoint, datasets, demos, plots, training
from attention_tuner.allocator import keep_freed_memory, release_freed_memory
from attention_tuner.config import TrialConfig, supervised_heads, to_dict
from attention_tuner.observations import ObservationEncoder


def dataset_for(cfg: TrialConfig, root: str | Path, actors: int | None = None, progress: bool = True,
                trained_on: str | None = None) -> Path:
    """Generate (or find) the dataset a trial needs. ``trained_on``: the dataset key of the checkpoint the trial
    resumes from; that dataset is kept, also when the task's code has changed since (the key of a new dataset
    would differ), so that one run never trains on two datasets. Gone from ``root``, and another key now: a
    CheckpointError."""
    if trained_on:
        kept = demos.dataset_directory(root, cfg.task.name, trained_on)
        if (kept / demos.MANIFEST).is_file():
            return kept
        now = demos.Request(cfg.task.name, dict(cfg.task.kwargs), cfg.data.episodes, cfg.data.seed)
        if now.key != trained_on:
            raise checkpoint.CheckpointError(
                f"the checkpoint trained on dataset {kept.name}, which is not under {Path(root).resolve()}; the "
                f"task's code has changed since (its dataset now: {now.directory(root).name}): give --data-root "
                "where that dataset is, or train a new run (another --out)")
    return demos.generate(cfg.task.name, cfg.task.kwargs, cfg.data.episodes, cfg.data.seed, root=root,
                          actors=actors, progress=progress)


def run_trial(
    cfg: TrialConfig,
    run_dir: str | Path,
    data_root: str | Path,
    report: Callable[[dict[str, float], int, Path | None], None] | None = None,
    actors: int | None = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir``: the Transformer on its dataset (generated under ``data_root`` when missing),
    or the RL baseline (algorithm ppo_lstm, no dataset). Returns the final metrics, the artifacts to keep (the
    pictures, the final checkpoint) and the dataset manifest (None for the RL baseline).

    The process's allocator is set to keep freed memory for the next step (`allocator.keep_freed_memory`):
    training re-allocates the same large activations every step; after each epoch the free part goes back to
    the OS (`allocator.release_freed_memory`)."""
    keep_freed_memory()
    run = Path(run_dir).resolve()
    checkpoint_file = run / "checkpoint" / "checkpoint.pt"
    saved = saved_state(cfg, checkpoint_file)  # another configuration's checkpoint: refused, nothing written
    metrics_file = run / "metrics.jsonl"

    def prepare(saved: dict[str, Any] | None) -> int | None:
        """The run folder, once training is about to start (a dataset that fails leaves no folder behind):
        metrics.jsonl holds one line per epoch of the checkpoint (lines an interrupted run logged after its
        last checkpoint are dropped, as those epochs train again), config.yaml the configuration, unless the
        run has nothing left to train (then it keeps the one that trained it). Returns the epochs (or RL
        iterations) of such a finished run, else None."""
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "starts.jsonl", "a") as f:  # where each start (first, resumed, retried) began
            f.write(json.dumps({"from_epoch": int(saved["epoch"]) if saved is not None else 0,
                                "pid": os.getpid(), "time": round(time.time(), 3)}) + "\n")
        if saved is not None or metrics_file.exists():
            history = saved["history"] if saved is not None else []
            demos.atomic_write_bytes(metrics_file, "".join(json.dumps(m) + "\n" for m in history).encode())
        done = int(saved["epoch"]) if saved is not None and finished(cfg, saved) else None
        if done is None or not (run / "config.yaml").exists():  # (a retry elsewhere restores a checkpoint alone)
            demos.atomic_write_bytes(run / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
        return done

    def log(metrics: dict[str, float], epoch: int, ckpt: Path | None) -> None:
        release_freed_memory()  # once an epoch: what the kept heap no longer uses goes back to the OS
        with open(metrics_file, "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if report is not None:
            report(metrics, epoch, ckpt)

    if cfg.algorithm == "ppo_lstm":
        from attention_tuner import rl

        done_before = prepare(saved)
        del saved
        final = rl.train(cfg, run, report=log)
        history = checkpoint.load(checkpoint_file)["history"]
        title = f"{cfg.task.name} (PPO with an LSTM, seed {cfg.seed})"
        artifacts = [plots.rl_learning_curves(history, run / "curves.png", title)]
        return {"metrics": final, "run_dir": str(run), "artifacts": artifacts, "checkpoint": checkpoint_file,
                "manifest": None, "done_before": done_before}
    trained_on = saved.get("dataset_key") if saved is not None else None
    data = datasets.load(dataset_for(cfg, data_root, actors=actors, progress=progress, trained_on=trained_on))
    done_before = prepare(saved)
    del saved
    final = training.train(cfg, data, run, report=log)
    artifacts = write_pictures(run, data)
    return {"metrics": final, "run_dir": str(run), "artifacts": artifacts, "checkpoint": checkpoint_file,
            "manifest": data.manifest, "done_before": done_before}


def saved_state(cfg: TrialConfig, path: Path) -> dict[str, Any] | None:
    """The progress (epoch, history, env_steps) of the checkpoint a run would resume from, or None; a
    CheckpointError when it is unreadable or cannot be resumed (`training.check_resumable`)."""
    if not path.is_file():
        return None
    state = checkpoint.load(path)
    training.check_resumable(state, cfg, path)
    return {k: state[k] for k in ("epoch", "history", "env_steps", "dataset_key") if k in state}  # not the weights


def finished(cfg: TrialConfig, state: dict[str, Any]) -> bool:
    """Whether a saved run has nothing left to train under cfg's budgets (so running it again changes nothing)."""
    if cfg.algorithm == "ppo_lstm":
        return int(state.get("env_steps", 0)) >= cfg.rl.env_steps
    return (int(state["epoch"]) >= cfg.optim.epochs
            or training.out_of_time(cfg, training.trained_seconds(state["history"])))


def write_pictures(run: Path, data: datasets.Demonstrations) -> list[Path]:
    """Attention heatmap on a held-out demonstration and learning curves, from the final checkpoint."""
    model, cfg, state = training.load_policy(run / "checkpoint")
    train, val = datasets.split(data, cfg.data.val_fraction)
    episode = plots.recall_episode(data.pairs, val if len(val) else train)  # one that recalls an earlier step
    encode = ObservationEncoder(cfg.task.name, cfg.task.obs_mode, "cpu")
    # a validation demonstration (held out of training); the closed loop's held-out seeds are others
    which = "validation episode" if len(val) else "training episode (no validation ones)"
    recall = "" if plots.has_recall(data.pairs[episode]) else ", only self-pairs"
    title = (f"{cfg.task.name} ({cfg.method}, seed {cfg.seed}), {which} {episode} (episode seed "
             f"{int(data.seeds[episode])}{recall}): expert vs learned attention")
    return [
        plots.attention_figure(model, encode, data, episode, run / "attention.png", title,
                               supervised=tuple(supervised_heads(cfg))),
        plots.learning_curves(state["history"], run / "curves.png", f"{cfg.task.name} ({cfg.method}, seed {cfg.seed})"),
    ]
