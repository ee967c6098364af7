"""What reusing observation encodings (evaluation.EncodingMemo) buys when evaluating trained checkpoints.

    .venv/bin/python bench/encoding_memo.py CHECKPOINT [CHECKPOINT ...] [--episodes 200] [--num-envs 50]

For each checkpoint (a Transformer trial's `checkpoint.pt`, e.g. from a sweep's Tune folder), plays the same
held-out seeds with the evaluation's own policy (each distinct observation encoded once) and with a policy that
encodes every observation at every step, interleaved, --repeats times each, with --num-envs environments and
with one; prints steps per second (median), the speed-up, the success rate of both (they must agree) and the
share of observations whose encoding was reused. One torch thread (--threads); run on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from attention_tuner.evaluation import TransformerPolicy, closed_loop
from attention_tuner.training import load_policy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--episodes", type=int, default=200, help="held-out episodes with --num-envs environments")
    ap.add_argument("--num-envs", type=int, default=50)
    ap.add_argument("--single-episodes", type=int, default=10, help="held-out episodes with one environment")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| task | kwargs | envs | steps/s, encoding every step | steps/s, memo | speed-up | success (both) "
          "| encodings reused |\n|---|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        model, cfg, _ = load_policy(path)
        model.eval()
        task, kwargs = cfg.task.name, cfg.task.kwargs
        for envs, episodes in ((args.num_envs, args.episodes), (1, args.single_episodes)):
            rates: dict[str, list[float]] = {"plain": [], "memo": []}
            success: dict[str, set[float]] = {"plain": set(), "memo": set()}
            reused = 0.0
            for _ in range(args.repeats):
                for name, reuse in (("plain", False), ("memo", True)):
                    policy = TransformerPolicy(model, task, reuse_encodings=reuse)
                    with torch.inference_mode():
                        res = closed_loop(policy, task, kwargs, episodes, envs)
                    rates[name].append(res["steps_per_s"])
                    success[name].add(res["success_rate"])
                    if policy.memo is not None:
                        reused = policy.memo.hit_rate
            plain, memo = statistics.median(rates["plain"]), statistics.median(rates["memo"])
            same = success["plain"] == success["memo"] and len(success["memo"]) == 1
            ok = f"{success['memo'].pop():.3f}" if same else f"DIFFER: {success}"
            print(f"| {task} | {kwargs} | {envs} | {plain:,.0f} | {memo:,.0f} | {memo / plain:.2f}x | {ok} "
                  f"| {reused:.1%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
