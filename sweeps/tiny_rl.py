"""A tiny sweep with the RL baseline, for tests and smoke runs: the vanilla Transformer (2 epochs) and PPO with
an LSTM (2 iterations of 256 environment steps) on Ordering-2. Needs the RLlib extra: pip install '.[rllib]'."""

from attention_tuner.sweep import METHODS, RL_BASELINE, SweepSpec, main

SWEEP = SweepSpec(
    name="tiny_rl",
    description="Smoke test: vanilla Transformer vs PPO with an LSTM on Ordering with 2 choices.",
    base={
        "task.name": "Ordering", "task.kwargs": {"length": 2}, "data.episodes": 32,
        "model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 64,
        "optim.lr": 1e-3, "optim.batch_size": 16, "optim.epochs": 2, "eval.episodes": 8, "eval.every": 1,
        "checkpoint_every": 1, "device": "cpu",
        "rl.env_steps": 512, "rl.rollout_steps": 256, "rl.num_envs": 4, "rl.minibatch_size": 128,
        "rl.num_epochs": 2, "rl.lstm_cell_size": 32, "rl.max_seq_len": 32,
    },
    space={"method": {"vanilla": METHODS["vanilla"], **RL_BASELINE}},
    resources={"cpu": 1, "gpu": 0},
)

if __name__ == "__main__":
    main(SWEEP)
