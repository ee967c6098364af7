"""How few annotated demonstrations does AttentionTuner need? Fractions 1, 0.1, 0.01, 0.001 and 0 (vanilla).

The annotated subsets are nested (those at 0.1% are among those at 1%, ...) and fixed by the trial seed,
so the fractions compare like with like. Paper-scale settings, for GPUs (see sweeps/paper.py).
"""

from attention_tuner.sweep import PAPER_MODEL, PAPER_TASKS, SweepSpec, main

SWEEP = SweepSpec(
    name="annotation_fraction",
    description="Success rate against the fraction of demonstrations annotated with memory pairs.",
    base={**PAPER_MODEL, "device": "auto"},
    space={
        "task": {k: PAPER_TASKS[k] for k in ("Hallway", "Ordering", "Counting", "MortarMayhem")},
        "data.annotation_fraction": [1.0, 0.1, 0.01, 0.001, 0.0],
        "seed": [0, 1, 2],
    },
    resources={"cpu": 2, "gpu": 0.5},  # two trials share a GPU worker of cluster.yaml (4 CPUs, 1 GPU)
    max_failures=5,  # spot workers: each reclaimed node costs a retry (from the trial's last checkpoint)
)

if __name__ == "__main__":
    main(SWEEP)
