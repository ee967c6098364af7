"""Where should the memory loss go? Each (layer, head) of the paper's 4x2 model on its own, and all heads.

Paper-scale settings on Hallway-30 and Mortar Mayhem, 3 seeds; heads are 0-based (layer 0, head 0 is the
paper's "layer 1, head 1").
"""

from attention_tuner.sweep import PAPER_MODEL, PAPER_TASKS, SweepSpec, main

HEADS = {f"L{layer}H{head}": {"memory.heads": [[layer, head]]} for layer in range(4) for head in range(2)}
HEADS["all"] = {"memory.heads": "all"}

SWEEP = SweepSpec(
    name="layer_head",
    description="Memory loss on each (layer, head) of the 4-layer, 2-head model, and on all heads at once.",
    base={**PAPER_MODEL, "device": "auto"},
    space={"task": {k: PAPER_TASKS[k] for k in ("Hallway", "MortarMayhem")}, "heads": HEADS, "seed": [0, 1, 2]},
    resources={"cpu": 2, "gpu": 0.5},  # two trials share a GPU worker of cluster.yaml (4 CPUs, 1 GPU)
    max_failures=5,  # spot workers: each reclaimed node costs a retry (from the trial's last checkpoint)
)

if __name__ == "__main__":
    main(SWEEP)
