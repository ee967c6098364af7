"""How much of a training epoch is padding, for the length bucketing of ``datasets.batches``.

    .venv/bin/python bench/padding.py                           # Hallway-30, 4,000 episodes (the paper's dataset)
    .venv/bin/python bench/padding.py --task Ordering --kw length=50 --episodes 5000

Prints, per batch size and bucket run (``datasets.BUCKET_BATCHES``: runs of that many batches are sorted by
length before they are cut; 1 = no bucketing), padded tokens over real tokens averaged over 3 shuffled epochs.
Needs no model: only the episode lengths.
"""

from __future__ import annotations

import argparse

import numpy as np
import yaml

from attention_tuner import datasets, demos
from attention_tuner.config import parse_assignments


def padding_ratio(data: datasets.Demonstrations, batch_size: int, run: int, epochs: int = 3) -> float:
    """Padded steps / real steps over ``epochs`` shuffled epochs with bucket runs of ``run`` batches."""
    saved = datasets.BUCKET_BATCHES
    datasets.BUCKET_BATCHES = run
    try:
        padded = real = 0
        for epoch in range(epochs):
            rng = np.random.default_rng([0, epoch])
            for b in datasets.batches(data, np.arange(len(data)), data.pairs, batch_size, rng):
                padded += b.mask.size
                real += int(b.mask.sum())
    finally:
        datasets.BUCKET_BATCHES = saved
    return padded / real


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="Hallway")
    ap.add_argument("--kw", action="append", default=None, metavar="KEY=VALUE", help="task parameter (length=30)")
    ap.add_argument("--episodes", type=int, default=4000)
    ap.add_argument("--batch-sizes", default="32,64")
    ap.add_argument("--runs", default="1,4,8,16,32", help="bucket runs to compare (batches per sorted run)")
    ap.add_argument("--data-root", default="datasets")
    args = ap.parse_args(argv)
    kwargs = {k: yaml.safe_load(v) for k, v in parse_assignments(args.kw, "--kw").items()} if args.kw else (
        {"length": 30} if args.task == "Hallway" else {})
    data = datasets.load(demos.generate(args.task, kwargs, args.episodes, 0, root=args.data_root, actors=0,
                                        progress=False))
    lengths = data.lengths
    print(f"{args.task} {kwargs}: {len(data)} episodes, mean {lengths.mean():.1f} steps (min {lengths.min()}, "
          f"max {lengths.max()}); the default bucket run is {datasets.BUCKET_BATCHES} batches\n")
    runs = [int(r) for r in args.runs.split(",")]
    print("| batch size | " + " | ".join(f"run {r}" for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        print(f"| {bs} | " + " | ".join(f"{padding_ratio(data, bs, r):.3f}" for r in runs) + " |")


if __name__ == "__main__":
    main()
