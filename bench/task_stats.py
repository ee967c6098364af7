"""Per-task expert statistics and environment speed, written as the Markdown table of docs/tasks.md.

    .venv/bin/python bench/task_stats.py --seeds 1000 --out docs/tasks_table.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

import memory_tasks
from attention_tuner.animation import summary


def steps_per_second(short: str, obs_mode: str, seconds: float = 2.0) -> float:
    """Env steps/s of random actions in one process."""
    env = memory_tasks.make(short, obs_mode=obs_mode)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, term, trunc, _ = env.step(int(rng.integers(cast(Any, env.action_space).n)))
        steps += 1
        if term or trunc:
            env.reset(seed=steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--out", default="docs/tasks_table.md")
    args = ap.parse_args()
    rows = ["| task (default size) | expert success | mean length | max length | mean non-self pairs "
            "| longest recall gap | expert episodes/s | env steps/s symbolic | env steps/s pixels |",
            "|---|---|---|---|---|---|---|---|---|"]
    for short in memory_tasks.TASKS:
        env = memory_tasks.make(short, obs_mode="symbolic")
        start = time.perf_counter()
        stats = [summary(memory_tasks.rollout(env, s)) for s in range(args.seeds)]
        eps = args.seeds / (time.perf_counter() - start)
        success = np.mean([s["success"] for s in stats])
        lengths = [s["length"] for s in stats]
        rows.append(
            f"| {short} | {success:.1%} | {np.mean(lengths):.1f} | {max(lengths)} "
            f"| {np.mean([s['non_self_pairs'] for s in stats]):.1f} | {max(s['longest_gap'] for s in stats)} "
            f"| {eps:.0f} | {steps_per_second(short, 'symbolic'):,.0f} | {steps_per_second(short, 'pixels'):,.0f} |"
        )
        print(rows[-1], flush=True)
    Path(args.out).write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
