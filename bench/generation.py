"""Demonstration throughput, storage size and load cost; results go to docs/performance.md.

    .venv/bin/python bench/generation.py speed   --episodes 1000      # plain loop vs 1 and 2 Ray actors
    .venv/bin/python bench/generation.py storage                      # bytes on disk per episode and step
    .venv/bin/python bench/generation.py load                         # paper-size datasets -> training-ready
    .venv/bin/python bench/generation.py multiprocessing              # the ceiling: 2 plain processes vs 1

Each prints a Markdown table. Run on an otherwise idle machine; numbers are medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import memory_tasks  # noqa: E402
from attention_tuner import demos  # noqa: E402

TASKS = {"Hallway": {"length": 30}, "Ordering": {"length": 50}, "Counting": {"length": 20},
         "MortarMayhem": {"commands": 10}, "MysteryPath": {}}
PAPER_SIZES = {"Hallway": 4000, "Ordering": 5000, "Counting": 10000}


def plain_loop(task: str, kwargs: dict, episodes: int) -> tuple[float, int]:
    env = memory_tasks.make(task, obs_mode="symbolic", **kwargs)
    start, steps = time.perf_counter(), 0
    for seed in range(episodes):
        steps += memory_tasks.rollout(env, seed).length
    return time.perf_counter() - start, steps


def with_actors(task: str, kwargs: dict, episodes: int, actors: int) -> tuple[float, int]:
    root = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        path = demos.generate(task, kwargs, episodes, 0, root=root, actors=actors, progress=False)
        elapsed = time.perf_counter() - start
        steps = sum(s["steps"] for s in demos.read_manifest(path)["shards"])
        return elapsed, steps
    finally:
        shutil.rmtree(root)


def speed(args) -> None:
    """Steady-state throughput: worker processes are started (and reused) before timing; see startup below."""
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    results: dict[tuple[str, str], tuple[float, int]] = {}
    for task, kwargs in TASKS.items():
        runs = [plain_loop(task, kwargs, args.episodes) for _ in range(args.repeats)]
        results[task, "plain"] = (statistics.median(r[0] for r in runs), runs[0][1])
    startup = {}
    for actors in (1, 2):
        t0 = time.perf_counter()
        with_actors("Ordering", {"length": 1}, 2, actors)  # starts the pool's worker processes
        startup[actors] = time.perf_counter() - t0
        for task, kwargs in TASKS.items():
            runs = [with_actors(task, kwargs, args.episodes, actors) for _ in range(args.repeats)]
            results[task, str(actors)] = (statistics.median(r[0] for r in runs), runs[0][1])
    print(f"{args.episodes} episodes per run, median of {args.repeats}; worker start-up (once per process, "
          f"not included): {startup[1]:.1f} s for 1 actor, {startup[2]:.1f} s for 2\n")
    print("| task | plain loop ep/s | 1 actor ep/s | 2 actors ep/s | 2 vs 1 actor | env steps/s (2 actors) |")
    print("|---|---|---|---|---|---|")
    for task in TASKS:
        plain, one, two = (args.episodes / results[task, k][0] for k in ("plain", "1", "2"))
        steps = results[task, "2"][1] / results[task, "2"][0]
        print(f"| {task} | {plain:,.0f} | {one:,.0f} | {two:,.0f} | {two / one:.2f}x | {steps:,.0f} |", flush=True)
    ray.shutdown()


def storage(args) -> None:
    print("| task | episodes | mean steps | bytes/episode | bytes/step | raw symbolic bytes/step "
          "| raw pixel bytes/step |")
    print("|---|---|---|---|---|---|---|")
    for task, kwargs in TASKS.items():
        root = Path(tempfile.mkdtemp())
        try:
            path = demos.generate(task, kwargs, args.episodes, 0, root=root, actors=0, progress=False)
            m = demos.read_manifest(path)
            size = sum(s["bytes"] for s in m["shards"])
            steps = sum(s["steps"] for s in m["shards"])
            print(f"| {task} | {m['episodes_on_disk']} | {steps / m['episodes_on_disk']:.1f} "
                  f"| {size / m['episodes_on_disk']:,.0f} | {size / steps:.1f} | 147 | 21,168 |", flush=True)
        finally:
            shutil.rmtree(root)


LOAD_CHILD = """
import json, sys, time
from attention_tuner import datasets
from attention_tuner.config import NoiseConfig
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = rss('VmRSS:')
t = time.perf_counter()
d = datasets.load(sys.argv[1])
train, val = datasets.split(d, 0.1)
ann = datasets.annotated_pairs(d, 1.0, 0, NoiseConfig())
elapsed = time.perf_counter() - t
print(json.dumps({'seconds': elapsed, 'peak_extra_bytes': rss('VmHWM:') - before, 'episodes': len(d),
                  'steps': int(d.offsets[-1]), 'array_bytes': int(d.obs.nbytes + d.actions.nbytes)}))
"""


def load(args) -> None:
    root = Path(args.root)
    print("| dataset | episodes | steps | load to training-ready (s) | peak extra memory | observation array |")
    print("|---|---|---|---|---|---|")
    for task, n in PAPER_SIZES.items():
        path = demos.generate(task, TASKS[task], n, 0, root=root, actors=args.actors, progress=False)
        runs = [json.loads(subprocess.run([sys.executable, "-c", LOAD_CHILD, str(path)], check=True,
                                          capture_output=True, text=True).stdout) for _ in range(args.repeats)]
        r = runs[0]
        t = statistics.median(x["seconds"] for x in runs)
        peak = statistics.median(x["peak_extra_bytes"] for x in runs)
        print(f"| {task}-{list(TASKS[task].values())[0]} | {r['episodes']:,} | {r['steps']:,} | {t:.2f} "
              f"| {peak / 2**20:,.0f} MiB | {r['array_bytes'] / 2**20:,.0f} MiB |", flush=True)


def _rollouts(seeds: tuple[int, int]) -> None:
    env = memory_tasks.make("Counting", obs_mode="symbolic")
    for s in range(*seeds):
        memory_tasks.rollout(env, s)


def multiprocessing_ceiling(args) -> None:
    """How two plain processes (no Ray) scale on this machine: the ceiling for 2 actors vs 1."""
    import multiprocessing as mp

    n = args.episodes
    _rollouts((0, 20))
    t0 = time.perf_counter()
    _rollouts((0, n))
    one = time.perf_counter() - t0
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_rollouts, [(0, 10), (10, 20)])
        t0 = time.perf_counter()
        pool.map(_rollouts, [(0, n), (n, 2 * n)])
        two = time.perf_counter() - t0
    print(f"Counting-20, {n} episodes per process: 1 process {one:.2f} s, 2 processes (2x the work) {two:.2f} s, "
          f"speed-up {2 * one / two:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["speed", "storage", "load", "multiprocessing"])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", default="datasets", help="dataset root for `load` (datasets are kept)")
    ap.add_argument("--actors", type=int, default=None)
    args = ap.parse_args()
    {"speed": speed, "storage": storage, "load": load, "multiprocessing": multiprocessing_ceiling}[args.what](args)


if __name__ == "__main__":
    main()
