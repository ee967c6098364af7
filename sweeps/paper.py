"""The paper's main table: five tasks x {vanilla, AttentionTuner} x 5 seeds at the paper's settings (GPUs).

    attention-tuner sweep sweeps/paper.py --dry-run          # trials, datasets, cost
    ray submit cluster.yaml sweeps/paper.py                   # on the cluster of cluster.yaml

Reference settings (the paper; the project's method specification, ../shared/spec/method.md beside the repository; attention_tuner.presets): d_model 512, 4 layers, 2 heads,
feed-forward 2048, dropout 0.1, Adam lr 1e-4, batch 64, 300 epochs (600 for Counting), memory loss weight
10 on layer 0 head 0 (the paper's "layer 1, head 1"). Memory Gym dataset sizes are not published: 5,000.
The paper's numbers of demonstrations are the training sets here: 10% more are generated and held out for the
held-out metrics (attention_tuner.presets.with_held_out: 4,444 for Hallway's 4,000). On CUDA training runs in
bfloat16 mixed precision (optim.precision auto; the supervised heads' attention stays float32), the reference
in float32.
"""

from attention_tuner.sweep import METHODS, PAPER_MODEL, PAPER_TASKS, SweepSpec, main

SWEEP = SweepSpec(
    name="paper",
    description="Paper-scale main table: success rate of vanilla vs AttentionTuner on all five tasks.",
    base={**PAPER_MODEL, "device": "auto"},
    space={"task": PAPER_TASKS, "method": METHODS, "seed": [0, 1, 2, 3, 4]},
    resources={"cpu": 4, "gpu": 1},  # one trial per GPU worker of cluster.yaml (4 CPUs, 1 GPU)
    max_failures=5,  # spot workers: each reclaimed node costs a retry (from the trial's last checkpoint)
)

if __name__ == "__main__":
    main(SWEEP)
