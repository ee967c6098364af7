"""One trial end to end: find or generate its dataset, train, write its artifacts. Used by the CLI and sweeps.

The RL baseline (``algorithm: ppo_lstm``, attention_tuner.rl) runs through the same function without a
dataset, so the CLI and sweeps treat both alike.

A trial directory holds ``config.yaml``, ``metrics.jsonl`` (one line per epoch), ``checkpoint/`` and the
pictures (``attention.png``, ``curves.png``). Running it again resumes from the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from attention_tuner import checkpoint, datasets, demos, plots, training
from attention_tuner.allocator import keep_freed_memory, release_freed_memory
from attention_tuner.config import TrialConfig, supervised_heads, to_dict
from attention_tuner.model import AttentionTuner
from attention_tuner.observations import ObservationEncoder


def dataset_for(cfg: TrialConfig, root: str | Path, actors: int | None = None, progress: bool = True) -> Path:
    """Generate (or find) the dataset a trial needs."""
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
    run.mkdir(parents=True, exist_ok=True)
    demos.atomic_write_bytes(run / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    metrics_file = run / "metrics.jsonl"

    def log(metrics: dict[str, float], epoch: int, ckpt: Path | None) -> None:
        release_freed_memory()  # once an epoch: what the kept heap no longer uses goes back to the OS
        with open(metrics_file, "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if report is not None:
            report(metrics, epoch, ckpt)

    checkpoint_file = run / "checkpoint" / "checkpoint.pt"
    if cfg.algorithm == "ppo_lstm":
        from attention_tuner import rl

        final = rl.train(cfg, run, report=log)
        history = checkpoint.load(checkpoint_file)["history"]
        title = f"{cfg.task.name} (PPO with an LSTM, seed {cfg.seed})"
        artifacts = [plots.rl_learning_curves(history, run / "curves.png", title)]
        return {"metrics": final, "run_dir": str(run), "artifacts": artifacts, "checkpoint": checkpoint_file,
                "manifest": None}
    data = datasets.load(dataset_for(cfg, data_root, actors=actors, progress=progress))
    final = training.train(cfg, data, run, report=log)
    artifacts = write_pictures(run, data)
    return {"metrics": final, "run_dir": str(run), "artifacts": artifacts, "checkpoint": checkpoint_file,
            "manifest": data.manifest}


def all_heads(model: AttentionTuner) -> AttentionTuner:
    """The same weights in a model that returns every head's attention (for pictures, not training)."""
    heads = [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)]
    twin = AttentionTuner(**{**model.hparams, "supervised": heads})
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def write_pictures(run: Path, data: datasets.Demonstrations) -> list[Path]:
    """Attention heatmap on a held-out demonstration and learning curves, from the final checkpoint."""
    model, cfg, state = training.load_policy(run / "checkpoint")
    model = all_heads(model)
    _, val = datasets.split(data, cfg.data.val_fraction)
    episode = int(val[0]) if len(val) else 0
    encode = ObservationEncoder(cfg.task.name, cfg.task.obs_mode, "cpu")
    title = f"{cfg.task.name} ({cfg.method}, seed {cfg.seed}), held-out episode: expert vs learned attention"
    return [
        plots.attention_figure(model, encode, data, episode, run / "attention.png", title,
                               supervised=tuple(supervised_heads(cfg))),
        plots.learning_curves(state["history"], run / "curves.png", f"{cfg.task.name} ({cfg.method}, seed {cfg.seed})"),
    ]
