"""The CPU-scale reproduction: all five tasks, vanilla vs AttentionTuner, 3 seeds, plus an annotation-fraction
sweep and the RL baseline on two tasks, in under 3 hours on a 2-core machine (docs/results.md has the run, its command and time).

    attention-tuner sweep sweeps/cpu_reproduction.py
    attention-tuner report --sweep cpu_reproduction --out docs/results

The paper trains a 4-layer d_model-512 Transformer for 300 epochs on 4,000-10,000 demonstrations of the full
tasks: about 30 PFLOP for Hallway alone as the method spec counts it (padding to 145 steps included; the
dry run of sweeps/paper.py counts real steps only: 17 PFLOP a trial), GPU-days for the whole table. Every reduction below keeps the
memory structure of the task (what must be recalled, and that it is hidden when it is needed) and shrinks
only its length or the compute:

- Model: d_model 128, 2 layers, 2 heads, feed-forward 256 (attention_tuner.presets.CPU_MODEL), about 1/18 of
  the paper's parameters (0.8M against 14.7M); the memory loss stays on layer 0, head 0 with weight 10, as in the paper. Adam lr
  1e-3 (the paper's 1e-4 is tuned for the larger model and 300 epochs), batch 32.
- Demonstrations: 1,000 per task, 1,500 for Ordering (paper: 4,000-10,000), 10% held out for validation.
  (Ordering-5 pilots with 1,000 left the decision plateau on some seeds only; with 1,500 between epochs 40
  and 50: docs/learning.md.)
- Task sizes (paper sizes in brackets), chosen so that an episode is at most about 60 steps:
  - Hallway length 10 (30): episodes of 10-46 steps; the target object is recalled 6-42 steps later instead
    of up to 122.
  - Ordering length 5 (50): 5 choices after the 18-object sequence; chance is 1/32 instead of 2^-50.
  - Counting length 5 (20): 5 rooms, about 1.2 test rooms per episode.
  - Mortar Mayhem 5 commands (10), symbolic observations (pixels): 58 steps instead of 118. Pixels in this
    project are an exact tile rendering of the symbolic code (docs/tasks.md), so the observation carries the
    same information; the symbolic encoder only saves the CNN's compute.
  - Mystery Path on a 5x5 grid with 64 steps (7x7, 128), symbolic observations (same reason).
- Epochs per task: fixed (no time budget, so that a run is reproducible), 1-5 minutes of training per trial
  on one core, chosen from single-seed pilots (docs/learning.md): Ordering 50 (AttentionTuner leaves the
  plateau at 40-50), Mortar Mayhem 15 (at 15 the pilot had AttentionTuner at 0.77 and vanilla at 0.16; by
  epoch 20 both reach 100%, so a longer budget measures nothing), Mystery Path 30 (the gap opens at 25),
  Hallway and Counting 10 (neither method left its memoryless level in the pilots: Hallway by epoch 20,
  Counting by epoch 10; and without
  repeated frames they cost 3-6x more per epoch; these two rows show what a CPU budget does not learn).
  Evaluation on 200 held-out seeds every 5 or 10 epochs and at the end.
- Annotation fractions 0.1 and 0.01 (besides 1 = AttentionTuner and 0 = vanilla) on Mortar Mayhem and
  Mystery Path, two tasks where the pilots separated the methods and a trial is cheap.
- The RL baseline (PPO with an LSTM, RLlib; attention_tuner.rl) on the same two Memory Gym tasks, the ones
  Memory Gym's own papers train PPO on: 1,000,000 environment steps per trial (17x the expert steps in Mortar
  Mayhem's 1,000 demonstrations, 45x Mystery Path's), 10-25 minutes on one core; PPO's usual settings
  (lr 3e-4, 16 environments, 2,048 steps per iteration, 4 epochs of minibatches of 512, entropy 0.01), an MLP
  over the symbolic one-hot into an LSTM of 128, sequences of 64 steps (a whole Mortar Mayhem episode); success
  measured on the same 200 held-out seeds every 50 iterations (about 100,000 steps). Needs the RLlib extra.
"""

from attention_tuner.sweep import CPU_MODEL, METHODS, RL_BASELINE, SweepSpec, main

TASKS = {  # in the order the trials run: the tasks that separate in the pilots first
    "MortarMayhem": {"task.name": "MortarMayhem", "task.kwargs": {"commands": 5}, "task.obs_mode": "symbolic",
                     "optim.epochs": 15, "eval.every": 5},
    "MysteryPath": {"task.name": "MysteryPath", "task.kwargs": {"size": 5, "max_steps": 64},
                    "task.obs_mode": "symbolic", "optim.epochs": 30},
    "Ordering": {"task.name": "Ordering", "task.kwargs": {"length": 5}, "data.episodes": 1500, "optim.epochs": 50},
    "Hallway": {"task.name": "Hallway", "task.kwargs": {"length": 10}, "optim.epochs": 10, "eval.every": 5},
    "Counting": {"task.name": "Counting", "task.kwargs": {"length": 5}, "optim.epochs": 10, "eval.every": 5},
}
FRACTION_TASKS = ("MortarMayhem", "MysteryPath")
FRACTIONS = (0.1, 0.01)
RL_TASKS = ("MortarMayhem", "MysteryPath")
PPO = {**RL_BASELINE["ppo_lstm"], "rl.env_steps": 1_000_000, "rl.minibatch_size": 512, "eval.every": 50,
       "checkpoint_every": 25}

# One axis of named arms (task x method, plus the fraction arms), crossed with the seeds: the grid is not a
# full product, because the fraction sweep runs on two tasks only.
ARMS = {f"{task}-{method}": {**over, **METHODS[method]} for task, over in TASKS.items() for method in METHODS}
ARMS.update({f"{task}-f{f:g}": {**TASKS[task], **METHODS["attention_tuner"], "data.annotation_fraction": f}
             for task in FRACTION_TASKS for f in FRACTIONS})
ARMS.update({f"{task}-ppo_lstm": {**TASKS[task], **PPO} for task in RL_TASKS})

SWEEP = SweepSpec(
    name="cpu_reproduction",
    description="CPU-scale reproduction: five reduced tasks x {vanilla, AttentionTuner} x 3 seeds, "
                "annotation fractions 0.1 and 0.01 on Mortar Mayhem and Mystery Path, and the RL baseline "
                "(PPO with an LSTM, 1M environment steps) on the same two tasks.",
    base={**CPU_MODEL, "data.episodes": 1000, "eval.episodes": 200, "eval.num_envs": 50, "eval.every": 10,
          "checkpoint_every": 5},
    space={"arm": ARMS, "seed": [0, 1, 2]},
    resources={"cpu": 1, "gpu": 0},
)

if __name__ == "__main__":
    main(SWEEP)
