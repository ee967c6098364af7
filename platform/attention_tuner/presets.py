"""Named bundles of dotted overrides shared by the CLI (``--preset``) and the sweep files."""

from __future__ import annotations

from typing import Any

from attention_tuner.config import DataConfig, held_out_count

# The two methods: AttentionTuner is the default config (memory loss weight 10 on layer 0, head 0).
METHODS: dict[str, dict[str, Any]] = {"vanilla": {"memory.weight": 0.0}, "attention_tuner": {}}

# The RL baseline (attention_tuner.rl): PPO with an LSTM from reward alone, no demonstrations. Needs the
# RLlib extra (.venv/bin/pip install -e '.[rllib]'). Add it to a sweep's method axis: {**METHODS, **RL_BASELINE}.
RL_BASELINE: dict[str, dict[str, Any]] = {"ppo_lstm": {"algorithm": "ppo_lstm"}}

# The paper's settings (../shared/spec/method.md); needs a GPU.
PAPER_MODEL: dict[str, Any] = {
    "model.d_model": 512, "model.n_layers": 4, "model.n_heads": 2, "model.d_ff": 2048, "model.dropout": 0.1,
    "memory.weight": 10.0, "memory.heads": [[0, 0]], "optim.lr": 1e-4, "optim.batch_size": 64,
    "optim.epochs": 300, "eval.episodes": 100, "eval.every": 25, "checkpoint_every": 10,
    "optim.bucket_by_length": False,  # random batches, as the paper's code: the losses weigh its steps alike
}

def with_held_out(train: int, val_fraction: float = DataConfig.val_fraction) -> int:
    """The episodes to generate so that ``train`` of them are left for training once `datasets.split` has held
    out ``val_fraction`` (the paper trains on all its demonstrations and tests on a separate set)."""
    n = train
    while n - held_out_count(n, val_fraction) < train:
        n += 1
    return n


# The paper's task sizes and training-set sizes (Memory Gym sizes are unpublished: 5,000 demonstrations), plus
# the episodes held out for the held-out metrics: 4,444 generated for Hallway's 4,000 training episodes.
PAPER_TASKS: dict[str, dict[str, Any]] = {
    "Hallway": {"task.name": "Hallway", "task.kwargs": {"length": 30}, "data.episodes": with_held_out(4000)},
    "Ordering": {"task.name": "Ordering", "task.kwargs": {"length": 50}, "data.episodes": with_held_out(5000)},
    "Counting": {"task.name": "Counting", "task.kwargs": {"length": 20}, "data.episodes": with_held_out(10000),
                 "optim.epochs": 600},
    "MortarMayhem": {"task.name": "MortarMayhem", "task.kwargs": {"commands": 10},
                     "data.episodes": with_held_out(5000), "task.obs_mode": "pixels"},
    "MysteryPath": {"task.name": "MysteryPath", "task.kwargs": {"size": 7, "max_steps": 128},
                    "data.episodes": with_held_out(5000), "task.obs_mode": "pixels"},
}

# A small model for a 2-core CPU: minutes per trial instead of GPU-hours.
CPU_MODEL: dict[str, Any] = {
    "model.d_model": 128, "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 256, "model.dropout": 0.1,
    "optim.lr": 1e-3, "optim.batch_size": 32, "device": "cpu",
}

SMOKE: dict[str, Any] = {
    "model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64, "data.episodes": 40,
    "optim.epochs": 2, "optim.lr": 1e-3, "eval.episodes": 8, "eval.every": 1,
}

CLI_PRESETS: dict[str, dict[str, Any]] = {
    "attention_tuner": METHODS["attention_tuner"],
    "vanilla": METHODS["vanilla"],
    "paper": PAPER_MODEL,
    "cpu": CPU_MODEL,
    "smoke": SMOKE,
}
