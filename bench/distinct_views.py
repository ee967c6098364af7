"""How many of a training batch's observations are distinct, per task: what `model.encode_unique` saves.

    .venv/bin/python bench/distinct_views.py
    .venv/bin/python bench/distinct_views.py --tasks Hallway:length=30 --episodes 4000 --batch-size 64

For each task, one shuffled, length-bucketed epoch of --episodes expert episodes cut into batches as
`training.train` cuts them; per batch, the distinct observations (`model.unique_rows` over the B x T padded
views, padding included) over all of them. Prints the minimum, median and maximum share over the batches and how
many batches are more than 80% distinct (those the encoder ran on in full before 2026-12-03 evening, padding
included). Needs no model.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import yaml

from attention_tuner import datasets, demos
from attention_tuner.model import unique_rows

TASKS = "Hallway:length=30,Ordering:length=5,Counting,MortarMayhem:commands=5,MysteryPath"


def parse_task(spec: str) -> tuple[str, dict]:
    """'Name:key=value:key=value' -> (Name, {key: value})."""
    name, *pairs = spec.split(":")
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--tasks: {pair!r} in {spec!r} is not key=value")
        kwargs[key] = yaml.safe_load(value)
    return name, kwargs


def distinct_shares(data: datasets.Demonstrations, batch_size: int) -> list[float]:
    shares = []
    rng = np.random.default_rng(0)
    for b in datasets.batches(data, np.arange(len(data)), data.pairs, batch_size, rng):
        obs = torch.from_numpy(b.obs)
        n = obs.shape[0] * obs.shape[1]
        shares.append(unique_rows(obs.reshape(n, -1))[0].shape[0] / n)
    return shares


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=TASKS, help="comma-separated Name[:key=value...]")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-root", default="datasets")
    args = ap.parse_args(argv)
    specs = [parse_task(s) for s in args.tasks.split(",")]
    print(f"{args.episodes} episodes a task, batches of {args.batch_size}, one epoch\n")
    print("| task | batches | distinct share: min | median | max | batches over 80% distinct |")
    print("|---|---|---|---|---|---|")
    for name, kwargs in specs:
        try:
            path = demos.generate(name, kwargs, args.episodes, 0, root=args.data_root, actors=0, progress=False)
        except (KeyError, TypeError, ValueError) as e:
            raise SystemExit(f"--tasks {name} {kwargs}: {e}") from None
        shares = distinct_shares(datasets.load(path), args.batch_size)
        label = name + "".join(f" {k}={v}" for k, v in kwargs.items())
        print(f"| {label} | {len(shares)} | {min(shares):.0%} | {float(np.median(shares)):.0%} | "
              f"{max(shares):.0%} | {sum(s > 0.8 for s in shares)} |", flush=True)


if __name__ == "__main__":
    main()
