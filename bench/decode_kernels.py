"""Micro-benchmarks behind the kernel choices of cached decoding (docs/performance.md, evaluation).

    .venv/bin/python bench/decode_kernels.py [--threads 1]

- the paper-size layer stack (4 layers of qkv, proj, ff_in, ff_out: 59 MB of float32 weights, more than the
  L3 cache) applied to 1, 2 and 32 rows as ``F.linear(x, W, b)``, as ``x @ W^T`` with a pre-transposed
  weight (``addmm(b, x, Wt)``), and as ``W @ x^T`` (the removed small-row path);
- attention of 1-2 new queries over a cache of 145-290 tokens (CPU size: 2 heads of 64) through
  ``F.scaled_dot_product_attention`` and written out by hand (scores, softmax, weighted values).
Median microseconds of 5 timed loops after a warm-up; run on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

SCALE = 1.0  # --loops: a share of the loop counts below (smoke runs)


def usec(f: Callable[[], object], n: int) -> float:
    n = max(1, int(n * SCALE))
    for _ in range(max(1, n // 10)):
        f()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def linear_stack() -> None:
    shapes = [(512, 1536), (512, 512), (512, 2048), (2048, 512)] * 4  # (in, out) of the paper's 4 layers
    weights = [(torch.randn(o, i), torch.randn(o)) for i, o in shapes]
    transposed = [(w.t().contiguous(), b) for w, b in weights]
    print("| rows | F.linear | x @ Wt (pre-transposed) | W @ x^T |\n|---|---|---|---|")
    for rows in (1, 2, 32):
        x = {i: torch.randn(rows, i) for i in (512, 2048)}
        a = usec(lambda: [F.linear(x[w.shape[1]], w, b) for w, b in weights], 200)  # noqa: B023 (run now)
        c = usec(lambda: [torch.addmm(b, x[w.shape[0]], w) for w, b in transposed], 200)  # noqa: B023
        d = usec(lambda: [torch.addmm(b[:, None], w, x[w.shape[1]].t()) for w, b in weights], 200)  # noqa: B023
        print(f"| {rows} | {a:,.0f} us | {c:,.0f} us | {d:,.0f} us |")


def attention() -> None:
    print("\n| batch | cached tokens | queries | fused (SDPA) | by hand |\n|---|---|---|---|---|")
    for B, S, nq in ((1, 145, 1), (1, 145, 2), (1, 290, 2), (32, 145, 2)):
        buf = torch.randn(B, 300, 256)  # the cache layout: (B, capacity, keys then values)
        k = buf[:, :S, :128].view(B, S, 2, 64).transpose(1, 2)
        v = buf[:, :S, 128:].view(B, S, 2, 64).transpose(1, 2)
        q = torch.randn(B, nq, 2, 64).transpose(1, 2)
        mask = None
        if nq > 1:
            mask = torch.zeros(nq, S)
            mask[:-1, S - nq + 1 :] = float("-inf")  # causal among the new tokens

        def by_hand(q=q, k=k, v=v, mask=mask):
            s = torch.matmul(q, k.transpose(-1, -2)) * 64**-0.5
            return torch.matmul(torch.softmax(s if mask is None else s + mask, -1), v)

        torch.testing.assert_close(by_hand(), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        a = usec(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 2000)  # noqa: B023
        b = usec(by_hand, 2000)
        print(f"| {B} | {S} | {nq} | {a:.1f} us | {b:.1f} us |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loops", type=float, default=1.0, help="share of the timed loop counts (default 1: the docs)")
    args = ap.parse_args()
    global SCALE
    SCALE = args.loops
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        linear_stack()
        attention()


if __name__ == "__main__":
    main()
