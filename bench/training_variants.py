"""Training speed and resident memory on real epoch batches: glibc's default malloc against
`allocator.keep_freed_memory`, and the model's packing of real tokens (`model.Packing`) on and off.

    .venv/bin/python bench/training_variants.py                           # paper and CPU sizes, 12 batches, 2 rounds
    .venv/bin/python bench/training_variants.py --sizes cpu --batches 40

Each (size, variant) runs in its own process (the allocator setting is per process), the variants alternating
over --rounds rounds. Variants: default malloc with packing, keep_freed_memory with packing, keep_freed_memory
without packing (packing forced on or off whatever the width; training packs from d_model 256 on,
`model.PACK_MIN_D_MODEL`). A process trains our model alone (forward + backward + Adam, memory loss on head (0, 0)),
on the first --batches batches of a shuffled, length-bucketed epoch of Hallway-30, as `training.train` cuts
them. Prints the median seconds per batch after the first (warm-up) batch, samples/s and useful GFLOP/s over
the batches after the first (FLOPs counted as in bench/training_speed.py, against the mean of a float32
2048x2048 matmul's rate measured in that process before and after training), the process's user and system CPU
time, its resident memory after the first batch and after the last, and its high-water mark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SIZES = {"paper": (512, 4, 2, 2048, 64), "cpu": (128, 2, 2, 256, 32)}  # as bench/training_speed.py


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(size: str, variant: str, batches: int, threads: int, episodes: int, data_root: str) -> dict:
    import numpy as np
    import torch

    import attention_tuner.model
    from attention_tuner import datasets
    from attention_tuner.allocator import keep_freed_memory
    from training_speed import hallway_setup, matmul_peak, training_flops

    mode, packing = variant.split("-")
    kept = keep_freed_memory() if mode == "keep" else False
    torch.set_num_threads(threads)
    data, model, optim, step = hallway_setup(size, episodes, data_root)
    batch = step.cfg.optim.batch_size
    # packing on or off at any width (the model's own rule packs from d_model PACK_MIN_D_MODEL)
    attention_tuner.model.PACK_MIN_D_MODEL = 0 if packing == "on" else sys.maxsize
    epoch = datasets.batches(data, np.arange(len(data)), data.pairs, batch, np.random.default_rng(0))
    peaks = [matmul_peak(2048)]
    times, rss, samples, flops = [], [], 0, 0.0
    t_cpu = os.times()
    for _, b in zip(range(batches), epoch, strict=False):
        t0 = time.perf_counter()
        out = step(b)
        optim.zero_grad(set_to_none=True)
        out["loss"].backward()
        optim.step()
        times.append(time.perf_counter() - t0)
        rss.append(rss_mb())
        if len(times) > 1:  # after the warm-up batch
            samples += int(b.mask.sum())
            flops += sum(training_flops(int(n), model) for n in b.mask.sum(1))
    t_end = os.times()
    if len(times) < 2:
        raise SystemExit(f"{len(data)} episodes make {len(times)} batch of {batch}: a warm-up and at least one "
                         "timed batch are needed (more --episodes)")
    peaks.append(matmul_peak(2048))
    useful = flops / sum(times[1:])
    return {"kept": kept, "s_per_batch": statistics.median(times[1:]), "samples_per_s": samples / sum(times[1:]),
            "useful_gflops": useful / 1e9, "peak_pct": 100 * useful / statistics.mean(peaks),
            "user": t_end.user - t_cpu.user, "sys": t_end.system - t_cpu.system, "rss_first": rss[0],
            "rss_last": rss[-1], "rss_max": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="paper,cpu")
    ap.add_argument("--batches", type=int, default=12, help="batches a process trains (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (median over them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=4000, help="Hallway-30 expert episodes in the dataset")
    ap.add_argument("--data-root", default="datasets")
    ap.add_argument("--variants", default="default-on,keep-on,keep-off",
                    help="comma-separated MALLOC-PACKING pairs: malloc default|keep, packing on|off")
    ap.add_argument("--child", nargs=2, metavar=("SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        size, variant = args.child
        print(json.dumps(child(size, variant, args.batches, args.threads, args.episodes, args.data_root)))
        return
    print(f"Hallway-30, {args.episodes} episodes, {args.batches} batches a process, {args.threads} threads, "
          f"median of {args.rounds} alternating rounds\n")
    print("| size | malloc | packing | s/batch | samples/s | useful GFLOP/s | % of peak | user s | system s | RSS after batch 1 (MB) | RSS after the last | "
          "peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        res: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
        for _ in range(args.rounds):
            for variant in res:
                cmd = [sys.executable, __file__, "--child", size, variant, "--batches", str(args.batches),
                       "--threads", str(args.threads), "--episodes", str(args.episodes),
                       "--data-root", args.data_root]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                res[variant].append(json.loads(out.strip().splitlines()[-1]))
        for variant, runs in res.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "kept"}
            mode, packing = variant.split("-")
            label = "keep_freed_memory" if runs[0]["kept"] else mode
            print(f"| {size} | {label} | {packing} | {med['s_per_batch']:.3f} | {med['samples_per_s']:,.0f} | "
                  f"{med['useful_gflops']:.1f} | {med['peak_pct']:.0f}% | {med['user']:.1f} | "
                  f"{med['sys']:.1f} | {med['rss_first']:,.0f} | {med['rss_last']:,.0f} | {med['rss_max']:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
