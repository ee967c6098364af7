"""How much of each loss the short and the long episodes carry, with batches bucketed by length or drawn at random.

    .venv/bin/python bench/batch_weighting.py                                     # Hallway-30, 1,000 episodes
    .venv/bin/python bench/batch_weighting.py --task Counting --kw length=20

Both losses are one mean per batch (the action loss over the batch's real steps, the memory loss over the
cells of its annotated episodes' real-token blocks, (2L)^2 for an episode of L steps), and every batch counts
alike in the gradient. A step's weight in an epoch is therefore 1 / (its batch's real steps), and a cell's
1 / (its batch's cells). Random batches mix lengths, so every step weighs about the same; length-bucketed batches
(`datasets.batches(bucket=True)`, `optim.bucket_by_length`) put short episodes together, and each of their steps
weighs more. Prints, over --epochs shuffled epochs of the training episodes, the share of each loss's weight that
the shortest and the longest third of the episodes carry, beside their share of the steps. Counted from the
batches `datasets.batches` yields, no training.
"""

from __future__ import annotations

import argparse

import numpy as np

from attention_tuner import datasets, demos
from attention_tuner.cli import parse_kwargs


def shares(data: datasets.Demonstrations, batch_size: int, epochs: int, bucket: bool) -> dict[str, np.ndarray]:
    """Per episode: its summed weight in the action loss and in the memory loss over ``epochs`` epochs."""
    n = len(data)
    action, memory = np.zeros(n), np.zeros(n)
    index = np.arange(n)
    for epoch in range(epochs):
        rng = np.random.default_rng([0, epoch])
        for b in datasets.batches(data, index, data.pairs, batch_size, rng, bucket=bucket):
            lengths = b.mask.sum(1)
            cells = (2 * lengths) ** 2
            action[b.index] += lengths / lengths.sum()
            memory[b.index] += cells / cells.sum()
    return {"action": action / action.sum(), "memory": memory / memory.sum()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="Hallway")
    ap.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="task parameter")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data-root", default="datasets")
    args = ap.parse_args(argv)
    kwargs = parse_kwargs(args.kw) if args.kw else ({"length": 30} if args.task == "Hallway" else {})
    data = datasets.load(demos.generate(args.task, kwargs, args.episodes, 0, root=args.data_root, actors=0,
                                       progress=False))
    order = np.argsort(data.lengths, kind="stable")
    thirds = {"shortest third": order[: len(order) // 3], "longest third": order[-(len(order) // 3):]}
    steps = data.lengths / data.lengths.sum()
    print(f"{args.task} {kwargs}: {len(data)} episodes, {int(data.lengths.min())}-{int(data.lengths.max())} steps "
          f"(mean {data.lengths.mean():.1f}), batch {args.batch_size}, {args.epochs} epochs\n")
    print("| episodes | share of the steps | action loss, random batches | action loss, bucketed | "
          "memory loss, random batches | memory loss, bucketed |")
    print("|---|---|---|---|---|---|")
    w = {bucket: shares(data, args.batch_size, args.epochs, bucket) for bucket in (False, True)}
    for name, idx in thirds.items():
        cells = [f"{100 * steps[idx].sum():.0f}%"] + [f"{100 * w[bucket][loss][idx].sum():.0f}%"
                                                       for loss in ("action", "memory") for bucket in (False, True)]
        print(f"| {name} ({int(data.lengths[idx].min())}-{int(data.lengths[idx].max())} steps) | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
