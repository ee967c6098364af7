"""How much wrong annotation does AttentionTuner tolerate? Dropped, shifted and spurious pairs at several rates.

Noise is applied when loading (the stored expert pairs never change), deterministically by the trial seed.
Paper-scale settings on Hallway-30 and Ordering-50, 3 seeds; vanilla (no memory loss) is the floor.
"""

from attention_tuner.sweep import METHODS, PAPER_MODEL, PAPER_TASKS, SweepSpec, main

NOISE = {"clean": {}, "vanilla": METHODS["vanilla"]}
NOISE |= {f"drop{r}": {"data.noise.drop": r} for r in (0.25, 0.5, 0.9)}
NOISE |= {f"shift{k}": {"data.noise.shift": k} for k in (1, 3, 10)}
NOISE |= {f"spurious{r}": {"data.noise.spurious": r} for r in (0.5, 1.0, 3.0)}

SWEEP = SweepSpec(
    name="annotation_noise",
    description="Success rate under dropped, shifted and spurious memory pairs.",
    base={**PAPER_MODEL, "device": "auto"},
    space={"task": {k: PAPER_TASKS[k] for k in ("Hallway", "Ordering")}, "noise": NOISE, "seed": [0, 1, 2]},
    resources={"cpu": 2, "gpu": 0.5},  # two trials share a GPU worker of cluster.yaml (4 CPUs, 1 GPU)
    max_failures=5,  # spot workers: each reclaimed node costs a retry (from the trial's last checkpoint)
)

if __name__ == "__main__":
    main(SWEEP)
