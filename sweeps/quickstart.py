"""The embedded default (`make run`): vanilla vs AttentionTuner on two small tasks, 2 seeds each, on a CPU.

8 trials, two at a time on a 2-core machine, in under 20 minutes. The tasks are small versions where a short
CPU run already separates the methods (see docs/results.md and the pilots in docs/learning.md):

- Mortar Mayhem with 3 commands (symbolic observations): at every execution step the expert recalls the
  three frames that showed the current command; 20 epochs on 1,000 demonstrations.
- Ordering with 5 choices: each answer needs the two frames that showed the two objects; 55 epochs on
  1,000 demonstrations (AttentionTuner's decision accuracy leaves chance after about 35; vanilla's does not).

Model: d_model 128, 2 layers, 2 heads, feed-forward 256, Adam lr 1e-3, batch 32 (attention_tuner.presets.CPU_MODEL);
memory loss weight 10 on layer 0, head 0; 200 held-out evaluation episodes.
"""

from attention_tuner.sweep import CPU_MODEL, METHODS, SweepSpec, main

TASKS = {
    "MortarMayhem3": {"task.name": "MortarMayhem", "task.kwargs": {"commands": 3}, "task.obs_mode": "symbolic",
                      "optim.epochs": 20, "eval.every": 5},
    "Ordering5": {"task.name": "Ordering", "task.kwargs": {"length": 5}, "optim.epochs": 55, "eval.every": 11},
}

SWEEP = SweepSpec(
    name="quickstart",
    description="Vanilla Transformer vs AttentionTuner on Mortar Mayhem (3 commands) and Ordering (5 choices).",
    base={**CPU_MODEL, "data.episodes": 1000, "eval.episodes": 200, "eval.num_envs": 50, "checkpoint_every": 5},
    space={"task": TASKS, "method": METHODS, "seed": [0, 1]},
    resources={"cpu": 1, "gpu": 0},
)

if __name__ == "__main__":
    main(SWEEP)
