"""Finding the distinct observations of a training batch: `model.unique_rows` against torch.unique(dim=0).

    .venv/bin/python bench/unique_rows.py          # the first paper-size batch (64 episodes) of Hallway-30

Prints the best of --repeats times of each and checks that both give the same rows and inverse.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from attention_tuner import datasets, demos
from attention_tuner.model import unique_rows


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-root", default="datasets")
    args = ap.parse_args(argv)
    data = datasets.load(demos.generate("Hallway", {"length": 30}, 256, 0, root=args.data_root, actors=0,
                                        progress=False))
    batch = next(iter(datasets.batches(data, np.arange(len(data)), data.pairs, args.batch_size,
                                       np.random.default_rng(0))))
    rows = torch.from_numpy(batch.obs).reshape(-1, 147)
    ours, ref = unique_rows(rows), torch.unique(rows, dim=0, return_inverse=True)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    t_ours = best(lambda: unique_rows(rows), args.repeats)
    t_ref = best(lambda: torch.unique(rows, dim=0, return_inverse=True), args.repeats)
    print(f"{rows.shape[0]} observations, {ours[0].shape[0]} distinct: torch.unique(dim=0) {1e3 * t_ref:.1f} ms, "
          f"unique_rows {1e3 * t_ours:.1f} ms ({t_ref / t_ours:.1f}x), same result")


if __name__ == "__main__":
    main()
