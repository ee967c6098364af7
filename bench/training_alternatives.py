"""Alternatives to parts of our training step, A/B on real epoch batches: what was tried to bring the CPU size's
useful FLOP/s closer to the matmul peak, and what each gave.

    .venv/bin/python bench/training_alternatives.py                              # CPU size, 16 batches, 3 rounds
    .venv/bin/python bench/training_alternatives.py --sizes paper --batches 8
    .venv/bin/python bench/training_alternatives.py --variants now,compiled --batches 4 --rounds 2
    .venv/bin/python bench/training_alternatives.py --variants now,compiled-layers --batches 12 --rounds 3

One process trains our model (forward + backward + Adam, memory loss on head (0, 0)) on the first --batches
batches of a shuffled, length-bucketed epoch of Hallway-30, as `training.train` cuts them, under each variant in
turn, the variants alternating over --rounds rounds after one warm-up pass each (which also compiles, for
`compiled`). Prints per variant the median seconds a pass, samples/s, useful GFLOP/s (FLOPs counted as in
bench/training_speed.py) and its share of the float32 2048x2048 matmul peak measured before each round, and the
speed against the first variant. Variants (each undone before the next runs):

- now: the code as it is;
- dedup-0.8: `model.encode_unique` as before 2026-12-03 evening, deduplicating only when at most 80% of a
  call's observations are distinct (Hallway's batches are 64-93% distinct, padding included);
- relu-inplace: every ReLU of the model in place (the convolutions' and the feed-forward's outputs);
- int-dropout: dropout masks from 31-bit random integers (`torch.Tensor.random_`) instead of `bernoulli_`; the
  same distribution, another random stream;
- compiled: ``torch.compile(model)`` (inductor, static shapes: each batch shape is compiled in the warm-up
  pass), the observation deduplication left to eager mode;
- compiled-layers: each Transformer layer's ``forward`` compiled (inductor, dynamic shapes: one compilation for
  every batch length), the encoder eager: the layers' element-wise work (dropout, residual additions, LayerNorm,
  ReLU) is what inductor could fuse;
- no-encoder: not an alternative but a measurement: the observation encoder replaced by a stand-in that does
  almost nothing (one parameter, tanh of a scaled code), to time the rest of the step; its FLOP/s columns count
  the encoder's FLOPs it did not do, so read its time only.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

import attention_tuner.model as model_module
from attention_tuner import datasets
from attention_tuner.allocator import keep_freed_memory
from attention_tuner.model import AttentionTuner
from attention_tuner.training import Stepper
from training_speed import SIZES, hallway_setup, matmul_peak, training_flops

VARIANTS = ("now", "dedup-0.8", "relu-inplace", "int-dropout", "compiled", "compiled-layers", "no-encoder")


def encode_unique_080(encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """`model.encode_unique` before 2026-12-03 evening: no deduplication when over 80% of rows are distinct."""
    n = obs.shape[0]
    if n < model_module.DEDUP_MIN:
        return encoder(obs)
    uniq, inverse = model_module.unique_rows(obs.reshape(n, -1))
    if uniq.shape[0] > 0.8 * n:
        return encoder(obs)
    return encoder(uniq.view(-1, *obs.shape[1:])).index_select(0, inverse)


def int_dropout(self: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """nn.Dropout's function with the keep mask drawn as 31-bit integers >= p * 2^31."""
    if not self.training or self.p == 0:
        return x
    keep = torch.empty(x.shape, dtype=torch.int32, device=x.device).random_() >= round(self.p * 2**31)
    return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class StandIn(nn.Module):
    """An observation encoder that costs next to nothing: (N, 7, 7, 3) uint8 -> tanh(code * w), (N, d)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.w = nn.Parameter(torch.full((d_model,), 0.01))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(obs[:, 0, 0, :1].float() * self.w)


def variant(name: str, step: Stepper, model: AttentionTuner) -> tuple[Callable[[], None], Callable[[], None]]:
    """(apply, undo) for one variant."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]

    def relu(flag: bool) -> None:
        for m in relus:
            m.inplace = flag

    def dropout(on: bool) -> None:
        for m in drops:
            if on:
                m.forward = types.MethodType(int_dropout, m)  # type: ignore[method-assign]
            else:
                del m.forward

    if name == "now":
        return (lambda: None), (lambda: None)
    if name == "dedup-0.8":
        now = model_module.encode_unique
        return (lambda: setattr(model_module, "encode_unique", encode_unique_080),
                lambda: setattr(model_module, "encode_unique", now))
    if name == "relu-inplace":
        return (lambda: relu(True)), (lambda: relu(False))
    if name == "int-dropout":
        return (lambda: dropout(True)), (lambda: dropout(False))
    if name == "compiled":
        unique_rows = model_module.unique_rows
        compiled = torch.compile(model, dynamic=False)

        def apply() -> None:
            model_module.unique_rows = torch.compiler.disable(unique_rows)  # NumPy inside: eager
            step.model = compiled  # type: ignore[assignment]

        def undo() -> None:
            model_module.unique_rows = unique_rows
            step.model = model  # type: ignore[assignment]

        return apply, undo
    if name == "compiled-layers":  # each Transformer layer's forward compiled once for every length
        blocks = list(model.blocks)
        forwards = [torch.compile(b.forward, dynamic=True) for b in blocks]

        def apply_layers() -> None:
            for b, f in zip(blocks, forwards, strict=True):
                b.forward = f  # type: ignore[method-assign]

        def undo_layers() -> None:
            for b in blocks:
                del b.forward

        return apply_layers, undo_layers
    if name == "no-encoder":
        encoder, stand_in = model.obs_enc, StandIn(model.d_model)
        return (lambda: setattr(model, "obs_enc", stand_in)), (lambda: setattr(model, "obs_enc", encoder))
    raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def run_size(args, size: str) -> None:
    d, n_layers, n_heads, d_ff, batch = SIZES[size]
    data, model, optim, step = hallway_setup(size, args.episodes, args.data_root)
    epoch = datasets.batches(data, np.arange(len(data)), data.pairs, batch, np.random.default_rng(0))
    bs = [b for _, b in zip(range(args.batches), epoch, strict=False)]
    samples = sum(int(b.mask.sum()) for b in bs)
    flops = sum(training_flops(int(n), model) for b in bs for n in b.mask.sum(1))
    names = args.variants.split(",")
    torch._dynamo.config.recompile_limit = max(8, len(bs))  # every batch shape of the pass compiled once
    switches = {name: variant(name, step, model) for name in names}

    def one_pass() -> float:
        t0 = time.perf_counter()
        for b in bs:
            out = step(b)
            optim.zero_grad(set_to_none=True)
            out["loss"].backward()
            optim.step()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up (and compilation)
        apply, undo = switches[name]
        apply()
        one_pass()
        undo()
    peaks = []
    for _ in range(args.rounds):
        peaks.append(matmul_peak(2048))
        for name in names:
            apply, undo = switches[name]
            apply()
            times[name].append(one_pass())
            undo()
    peak = statistics.median(peaks)
    print(f"\n{size} size (d_model {d}, {n_layers} layers, ff {d_ff}, batch {batch}): {len(bs)} batches, "
          f"{samples:,} real steps a pass, median of {args.rounds} rounds, float32 matmul peak {peak / 1e9:.0f} "
          f"GFLOP/s ({min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f})\n")
    print("| variant | s/pass | samples/s | useful GFLOP/s | % of peak | speed vs first |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(times[names[0]])
    for name in names:
        t = statistics.median(times[name])
        print(f"| {name} | {t:.2f} | {samples / t:,.0f} | {flops / t / 1e9:.1f} | {100 * flops / t / peak:.0f}% | "
              f"{base / t:.3f}x |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="cpu", help="comma-separated: paper, cpu")
    ap.add_argument("--variants", default="now,dedup-0.8,relu-inplace,int-dropout,no-encoder",
                    help=f"comma-separated, the first is the baseline; from: {', '.join(VARIANTS)}")
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=4000, help="Hallway-30 expert episodes in the dataset")
    ap.add_argument("--data-root", default="datasets")
    args = ap.parse_args(argv)
    for size in args.sizes.split(","):
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    for size in args.sizes.split(","):
        run_size(args, size)


if __name__ == "__main__":
    main()
