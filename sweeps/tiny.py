"""A tiny sweep for tests and smoke runs: 2 trials x 2 epochs on Ordering-2 (seconds on a laptop)."""

from attention_tuner.sweep import METHODS, SweepSpec, main

SWEEP = SweepSpec(
    name="tiny",
    description="Smoke test: vanilla vs AttentionTuner on Ordering with 2 choices, 2 epochs.",
    base={
        "task.name": "Ordering", "task.kwargs": {"length": 2}, "data.episodes": 32,
        "model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64,
        "optim.lr": 1e-3, "optim.batch_size": 16, "optim.epochs": 2, "eval.episodes": 8, "eval.every": 1,
        "checkpoint_every": 1, "device": "cpu",
    },
    space={"method": METHODS},
    resources={"cpu": 1, "gpu": 0},
)

if __name__ == "__main__":
    main(SWEEP)
