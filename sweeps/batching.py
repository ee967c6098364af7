"""Does batching by length change what is learned? Mystery Path 5x5 at the CPU reproduction's settings, both
methods, batches bucketed by length (the default) or random (the paper's code), 2 seeds: 8 trials, about 8
minutes on 2 cores (docs/method.md has the run).

    attention-tuner sweep sweeps/batching.py
    attention-tuner report --sweep batching

Mystery Path 5x5's episodes run from 4 to 61 steps, and with bucketed batches of 32 the shortest third of them
carry 32% of the action loss instead of 14% and 32% of the memory loss instead of 5% (`bench/batch_weighting.py
--task MysteryPath --kw size=5 --kw max_steps=64 --batch-size 32`); on tasks whose episodes all have one length
the two batchings are one objective.
"""

from attention_tuner.sweep import CPU_MODEL, METHODS, SweepSpec, main

SWEEP = SweepSpec(
    name="batching",
    description="Mystery Path 5x5 (CPU reproduction settings): {vanilla, AttentionTuner} x batches bucketed by "
                "length or random x 2 seeds.",
    base={**CPU_MODEL, "task.name": "MysteryPath", "task.kwargs": {"size": 5, "max_steps": 64},
          "task.obs_mode": "symbolic", "data.episodes": 1000, "optim.epochs": 30, "eval.episodes": 200,
          "eval.num_envs": 50, "eval.every": 10, "checkpoint_every": 5},
    space={"method": METHODS, "batches": {"bucketed": {"optim.bucket_by_length": True},
                                          "random": {"optim.bucket_by_length": False}}, "seed": [0, 1]},
    resources={"cpu": 1, "gpu": 0},
)

if __name__ == "__main__":
    main(SWEEP)
