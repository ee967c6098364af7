"""Resident memory over training epochs with glibc's default malloc, with `allocator.keep_freed_memory`, and
with it plus `allocator.release_freed_memory` after every epoch (what trials do).

    .venv/bin/python bench/memory_trend.py                  # CPU size, Hallway-30, 4,000 episodes, 2 epochs

Each variant runs in its own process (the allocator setting is per process), one after another. A process
trains our model (forward + backward + Adam) over --epochs shuffled epochs as `training.train` cuts them and
prints its resident memory (MB, /proc/self/statm) every --every batches and, with the release, right after it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

SIZES = {"paper": (512, 4, 2, 2048, 64), "cpu": (128, 2, 2, 256, 32)}  # as bench/training_speed.py
VARIANTS = ("default", "keep", "keep+release")


def rss_mb() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def child(variant: str, size: str, epochs: int, every: int, episodes: int, data_root: str) -> str:
    import numpy as np

    from attention_tuner import datasets
    from attention_tuner.allocator import keep_freed_memory, release_freed_memory
    from training_speed import hallway_setup

    if variant != "default":
        keep_freed_memory()
    data, _, optim, step = hallway_setup(size, episodes, data_root)
    batch = step.cfg.optim.batch_size
    trend = []
    for epoch in range(epochs):
        rng = np.random.default_rng(epoch)
        for i, b in enumerate(datasets.batches(data, np.arange(len(data)), data.pairs, batch, rng)):
            out = step(b)
            optim.zero_grad(set_to_none=True)
            out["loss"].backward()
            optim.step()
            if i % every == 0:
                trend.append(str(rss_mb()))
        if variant == "keep+release":
            release_freed_memory()
            trend.append(f"released: {rss_mb()}")
    return ", ".join(trend)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu", choices=sorted(SIZES))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--every", type=int, default=25, help="batches between readings")
    ap.add_argument("--episodes", type=int, default=4000, help="Hallway-30 expert episodes in the dataset")
    ap.add_argument("--data-root", default="datasets")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(child(args.child, args.size, args.epochs, args.every, args.episodes, args.data_root))
        return
    print(f"Hallway-30, {args.size} size, {args.episodes} episodes, {args.epochs} epochs; resident MB every "
          f"{args.every} batches\n")
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--child", variant, "--size", args.size, "--epochs", str(args.epochs),
               "--every", str(args.every), "--episodes", str(args.episodes), "--data-root", args.data_root]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        print(f"- {variant}: {out}", flush=True)


if __name__ == "__main__":
    main()
