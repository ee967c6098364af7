"""Training and evaluation speed of our AttentionTuner against a naive reference (bench/naive_reference.py).

    .venv/bin/python bench/training_speed.py                  # full run: paper and CPU sizes on Hallway-30
    .venv/bin/python bench/training_speed.py --quick          # smoke run (Hallway-5, tiny batches), ~1 minute

Prints Markdown tables, one model size after another:
- training: real (unpadded) steps per second through forward + backward + Adam (action loss + memory loss on
  head (0, 0), weight 10), ours (from d_model 256 on, projections, feed-forward and norms on the real tokens
  only; attention over batches padded to their longest episode, fused except the supervised head) vs the naive (all heads explicit, batches padded to the task's maximum length, every observation
  through the encoder) and the naive + dedup (the same, sharing our encoder's deduplication); the useful FLOP
  rate against this CPU's matmul peak (float32, or bfloat16 with --precision bf16); the activation memory
  autograd keeps for the backward pass;
- evaluation: episodes per second of the two naives (one environment, whole history re-run every step) vs ours
  with one environment and with --num-envs environments (cached decoding), closed loop with an untrained
  greedy policy (on Hallway it walks until the 4L+25-step limit: the naive's worst case) and teacher-forced
  replays of expert episodes (their real lengths, chosen at evenly spaced length quantiles).

FLOPs are an analytic count of the matrix multiplications only (convolutions, linear layers, attention scores
and weighted values; no LayerNorm, softmax or element-wise work), per real step: "useful" counts the real
tokens only and causal attention (query i against its i + 1 keys); "as the reference counts" counts what the
naive computes: every padded step, full L x L attention matrices and the output layer on every token.
The encoder is counted on
every real step, observations repeated within a batch included (each size's title gives their share of the count;
ours encodes them once). Training is 3x the forward count, less the input gradients that are not computed: those
of the first convolution and of the action encoder, whose inputs are one-hot codes (`training_flops`). Both implementations run in one process with the same allocator settings
(--malloc). The peak is the median rate of an NxN torch.matmul (--matmul) in the
training precision on the same --threads. Timings are medians of --repeats timed passes after one warm-up pass,
ours and the naives interleaved; run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from attention_tuner import datasets, demos
from attention_tuner.allocator import keep_freed_memory
from attention_tuner.config import ModelConfig, OptimConfig, TaskConfig, TrialConfig
from attention_tuner.evaluation import EncodingMemo, TransformerPolicy, closed_loop, evaluate
from attention_tuner.model import PACK_MIN_D_MODEL, AttentionTuner, token_mask
from attention_tuner.training import Stepper, build_model, n_actions_of
from naive_reference import NaiveAttentionTuner, max_episode_len, pad_batch
from naive_reference import evaluate as naive_evaluate
from naive_reference import replay as naive_replay

TASK = "Hallway"
SIZES = {  # name: (d_model, n_layers, n_heads, d_ff, batch size)
    "paper": (512, 4, 2, 2048, 64),
    "cpu": (128, 2, 2, 256, 32),
    # the CPU size at other widths (feed-forward 2x d_model, as the CPU preset), and with the paper's 4x
    # feed-forward, for a scan of the share of the peak: --sizes cpu,cpu-ff512,cpu-d192,cpu-d256,cpu-d384
    "cpu-ff512": (128, 2, 2, 512, 32),
    "cpu-d192": (192, 2, 2, 384, 32),
    "cpu-d256": (256, 2, 2, 512, 32),
    "cpu-d384": (384, 2, 2, 768, 32),
}
QUICK = dict(length=5, episodes=32, batches=1, repeats=2, max_batch=8, naive_episodes=1, single_episodes=2,
             num_envs=8, matmul=1024)
Episode = tuple[np.ndarray, np.ndarray]  # obs (T, 7, 7, 3) uint8, actions (T,) int64


# ------------------------------------------------------------------------------------------ measuring


def matmul_peak(n: int, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Median FLOP/s of an (n x n) @ (n x n) torch.matmul in dtype on the current threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def peak_dtype(args) -> torch.dtype:
    return torch.bfloat16 if args.precision == "bf16" else torch.float32


FIRST_CONV_FLOPS = 2 * 49 * 40 * 20 * 9  # the symbolic encoder's first convolution (20 -> 40 channels), forward


def observation_flops(model: AttentionTuner) -> float:
    """Matmul FLOPs of encoding one symbolic observation, forward: two 3x3 convolutions over the 7x7 view and
    the linear layer from their 3920 outputs to d_model."""
    return FIRST_CONV_FLOPS + 2 * (49 * 80 * 40 * 9 + 3920 * model.hparams["d_model"])


def observation_training_flops(model: AttentionTuner) -> float:
    """Matmul FLOPs of training on one observation's encoding: 3x the forward, less the first convolution's
    gradient of its input (a one-hot code: nobody needs it and autograd does not compute it)."""
    return 3 * observation_flops(model) - FIRST_CONV_FLOPS


def forward_flops(T: int, model: AttentionTuner, causal: bool = True, head_all: bool = False) -> float:
    """Matmul FLOPs of one forward pass over an episode of T steps (2T tokens); see the module docstring."""
    hp = model.hparams
    d, ff, n_layers, A = hp["d_model"], hp["d_ff"], hp["n_layers"], hp["n_actions"]
    L = 2 * T
    encoders = T * (observation_flops(model) + 2 * A * d)  # symbolic obs CNN + actions
    dense = L * n_layers * 2 * (3 * d * d + d * d + 2 * d * ff)  # qkv, out projection, feed-forward
    keys = L * (L + 1) / 2 if causal else L * L  # (query, key) pairs computed
    attention = n_layers * 2 * 2 * keys * d  # scores q.k and weights @ v, over all heads (nh * hs = d)
    head = (L if head_all else T) * 2 * d * A
    return encoders + dense + attention + head


def training_flops(T: int, model: AttentionTuner, causal: bool = True, head_all: bool = False) -> float:
    """Matmul FLOPs of one training step (forward + backward) over an episode of T steps: 3x `forward_flops`
    (the backward computes the gradients of each product's input and of its weight), less the input gradients
    of the two layers whose inputs are one-hot codes, which autograd does not compute: the first convolution
    of each observation and the action encoder (counted until 2026-12-04 night: 4.1% of the count at the CPU
    size, 0.4% at the paper's)."""
    A, d = model.hparams["n_actions"], model.hparams["d_model"]
    return 3 * forward_flops(T, model, causal, head_all) - T * (FIRST_CONV_FLOPS + 2 * A * d)


class SavedBytes:
    """Bytes autograd saves for the backward pass inside the block (parameters excluded, storages once)."""

    def __init__(self, model: torch.nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: set[int] = set()
        self.bytes = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in self.params and s.data_ptr() not in self.seen:
            self.seen.add(s.data_ptr())
            self.bytes += s.nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.__exit__(*exc)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rows_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ------------------------------------------------------------------------------------------- training


def bench_config(size: str, length: int = 30, max_batch: int | None = None, precision: str = "auto") -> TrialConfig:
    """The trial configuration of a bench size on Hallway-`length` (batch capped at max_batch when given)."""
    d, n_layers, n_heads, d_ff, batch = SIZES[size]
    if max_batch:
        batch = min(batch, max_batch)
    return TrialConfig(task=TaskConfig(TASK, {"length": length}),
                       model=ModelConfig(d_model=d, n_layers=n_layers, n_heads=n_heads, d_ff=d_ff),
                       optim=OptimConfig(batch_size=batch, precision=precision))


def trial_config(args, size: str) -> TrialConfig:
    return bench_config(size, args.length, args.max_batch, args.precision)


def hallway_setup(size: str, episodes: int, data_root: str
                  ) -> tuple[datasets.Demonstrations, AttentionTuner, torch.optim.Adam, Stepper]:
    """Hallway-30 expert data (generated under data_root when missing) and our model at a bench size, seeded, with
    its Adam and its Stepper (the trial defaults: memory loss on head (0, 0)), as the epoch-batch benches train it."""
    cfg = bench_config(size)
    kwargs = cfg.task.kwargs
    data = datasets.load(demos.generate(TASK, kwargs, episodes, 0, root=data_root, actors=0, progress=False))
    torch.manual_seed(0)
    model = build_model(cfg, n_actions_of(TASK, kwargs))
    optim = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    return data, model, optim, Stepper(cfg, model, torch.device("cpu"))


def train_bench(args, size: str, data: datasets.Demonstrations, n_actions: int) -> str:
    cfg = trial_config(args, size)
    kwargs = cfg.task.kwargs
    T_max = max_episode_len(TASK, kwargs)
    torch.manual_seed(0)
    ours = build_model(cfg, n_actions)
    naive = NaiveAttentionTuner.like(ours)
    naive_dedup = NaiveAttentionTuner.like(ours, dedup=True)  # the naive with our encoder deduplication
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    all_batches = list(datasets.batches(data, np.arange(len(data)), data.pairs, cfg.optim.batch_size, rng))
    batches = [b for b in all_batches if len(b.index) == cfg.optim.batch_size][: args.batches]
    if not batches:
        raise SystemExit(f"--episodes {len(data)} gives no full batch of {cfg.optim.batch_size}")
    padded = [pad_batch(b, T_max) for b in batches]

    # like for like: the same outputs on the same (real) steps, in eval mode (no dropout)
    ours.eval()
    naive.eval()
    with torch.no_grad():
        b, T = batches[0], batches[0].actions.shape[1]
        m = torch.from_numpy(b.mask)
        lo, ao = ours(torch.from_numpy(b.obs), torch.from_numpy(b.actions), m)  # as training calls it
        ln, an = naive(torch.from_numpy(padded[0].obs), torch.from_numpy(padded[0].actions))
        assert ao is not None and an is not None
        tok = token_mask(m)
        real_cells = tok[:, None, :, None] & tok[:, None, None, :]  # real query x real key
        diff = max(float((lo - ln[:, :T])[m].abs().max()),
                   float(((ao - an[:, :, : 2 * T, : 2 * T]) * real_cells).abs().max()))
    ours.train()
    naive.train()

    impls = {"ours": (ours, batches), "naive": (naive, padded), "naive + dedup": (naive_dedup, padded)}
    runs: dict[str, list[float]] = {name: [] for name in impls}
    steps = {name: Stepper(cfg, model, device) for name, (model, _) in impls.items()}
    optims = {name: torch.optim.Adam(model.parameters(), lr=cfg.optim.lr) for name, (model, _) in impls.items()}

    def one_pass(name: str, only: int | None = None) -> None:
        for batch in impls[name][1][:only]:
            out = steps[name](batch)
            optims[name].zero_grad(set_to_none=True)
            out["loss"].backward()
            optims[name].step()

    saved = {}
    for name, (model, bs) in impls.items():
        one_pass(name, 1)  # warm-up (also creates Adam's state)
        with SavedBytes(model) as sb:
            out = steps[name](bs[0])
        out["loss"].backward()
        saved[name] = sb.bytes / 2**20
    peaks = []  # the matmul peak measured again before each round of passes: this shared machine's drifts
    for _ in range(args.repeats):
        peaks.append(matmul_peak(args.matmul, dtype=peak_dtype(args)))
        for name in impls:
            runs[name].append(timed(functools.partial(one_pass, name)))
    peak = statistics.median(peaks)

    profile = ""
    if args.profile:  # where ours spends a pass, by operator (not timed: the profiler slows small operations)
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            one_pass("ours")
        profile = ("\nours, one pass under torch.profiler, operators by self CPU time:\n\n```\n"
                   + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15) + "\n```\n")
    real = float(sum(b.mask.sum() for b in batches))
    useful = sum(training_flops(int(n), ours) for b in batches for n in b.mask.sum(1))
    counted = sum(len(b.index) * training_flops(T_max, ours, causal=False, head_all=True) for b in batches)
    # the encoder is counted on every real step; ours encodes each distinct observation of a batch once, so the
    # repeats among a batch's real steps are counted and not computed (forward and backward)
    distinct = sum(len(np.unique(b.obs[b.mask].reshape(int(b.mask.sum()), -1), axis=0)) for b in batches)
    repeats_share = (real - distinct) * observation_training_flops(ours) / useful
    med = {name: statistics.median(t) for name, t in runs.items()}
    n_params = ours.num_parameters()
    header = ["implementation", "padded to", "samples/s", "speed-up", "vs naive + dedup", "useful GFLOP/s",
              "useful % of peak", "GFLOP/s as the reference counts", "activations saved, MB/batch"]
    rows = []
    packs = SIZES[size][0] >= PACK_MIN_D_MODEL  # ours packs the real tokens (model.Packing)
    for name in ("naive", "naive + dedup", "ours"):
        rate = real / med[name]
        pad = f"{T_max} (task max)" if name != "ours" else (
            "none (attention: longest in batch)" if packs else "longest in batch")
        as_counted = f"{counted / med[name] / 1e9:.1f}" if name != "ours" else "(same as useful)"
        rows.append([name, pad, f"{rate:,.0f}", f"{med['naive'] / med[name]:.2f}x",
                     f"{med['naive + dedup'] / med[name]:.2f}x",
                     f"{useful / med[name] / 1e9:.1f}", f"{100 * useful / med[name] / peak:.0f}%", as_counted,
                     f"{saved[name]:,.0f}"])
    d, n_layers, n_heads, d_ff, _ = SIZES[size]
    mean_len = real / sum(len(b.index) for b in batches)
    pad_len = float(np.mean([b.actions.shape[1] for b in batches]))
    title = (f"### Training, {size} size: d_model {d}, {n_layers} layers, {n_heads} heads, ff {d_ff}, "
             f"batch {cfg.optim.batch_size}, {n_params / 1e6:.2f}M parameters ({TASK}-{args.length})\n\n"
             f"{len(batches)} batches a pass ({real:,.0f} real steps, mean episode {mean_len:.1f} steps; ours "
             + ("runs its position-wise layers on the real tokens only and its attention padded to " if packs
                else "pads to ")
             + f"{pad_len:.1f} steps on average, the naive everything to {T_max}); median of {args.repeats} passes; "
             f"matmul peak {peak / 1e9:.1f} GFLOP/s (median of {len(peaks)}, one before each round of passes: "
             f"{min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f}); parameters + Adam state {3 * 4 * n_params / 2**20:.0f} MB "
             f"for both; max |difference| of logits and supervised attention, naive vs ours: {diff:.1e}; of the "
             f"useful FLOPs, {100 * repeats_share:.1f}% encode observations that repeat within their batch "
             f"({real - distinct:,.0f} of the real steps), which ours and the naive + dedup encode once\n")
    return title + "\n" + rows_table(header, rows) + "\n" + profile


# ----------------------------------------------------------------------------------------- evaluation


REPLAY_HIT_RATES: list[float] = []  # EncodingMemo hit rate of each replay_cached call


def replay_cached(model: AttentionTuner, episodes: list[Episode], num_envs: int) -> float:
    """Decode recorded episodes with the key/value cache, num_envs at a time; returns the seconds taken.

    Teacher-forced like ``naive_reference.replay``; finished episodes leave the batch as in ``evaluate``
    (inference mode, a cache allocated once for the longest episode, each distinct observation encoded once, the
    greedy actions read back once a step).
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    memo = EncodingMemo(lambda codes: model.encode_step(cache, torch.from_numpy(codes)))
    with torch.inference_mode():
        for w in range(0, len(episodes), num_envs):
            wave = sorted(episodes[w : w + num_envs], key=lambda e: -len(e[1]))  # longest first: active = prefix
            lengths = np.array([len(a) for _, a in wave])
            cache = model.new_cache(len(wave), capacity=2 * int(lengths[0]))
            prev = None
            for t in range(int(lengths[0])):
                n = int((lengths > t).sum())
                if n < cache.batch_size:
                    cache.select(torch.arange(n))
                    prev = None if prev is None else prev[:n]
                obs = np.stack([o[t] for o, _ in wave[:n]])
                model.step_embedded(cache, memo(obs), prev).argmax(-1).tolist()
                prev = torch.from_numpy(np.array([a[t] for _, a in wave[:n]]))
    model.train(was_training)
    REPLAY_HIT_RATES.append(memo.hit_rate)
    return time.perf_counter() - start


def quantile_episodes(data: datasets.Demonstrations, n: int) -> list[Episode]:
    """n episodes at evenly spaced quantiles of the length distribution (their mean length ~ the dataset's)."""
    order = np.argsort(data.lengths, kind="stable")
    picks = order[((np.arange(n) + 0.5) / n * len(order)).astype(int)]
    return [(data.episode_obs(i), data.episode_actions(i)) for i in picks]


def eval_bench(args, size: str, data: datasets.Demonstrations, n_actions: int) -> str:
    cfg = trial_config(args, size)
    kwargs = cfg.task.kwargs
    torch.manual_seed(0)
    ours = build_model(cfg, n_actions).eval()
    naives = {"naive": NaiveAttentionTuner.like(ours), "naive + dedup": NaiveAttentionTuner.like(ours, dedup=True)}
    N = args.num_envs
    counts = {"naive": args.naive_episodes, "naive + dedup": args.naive_episodes, "ours, 1 env": args.single_episodes,
              f"ours, {N} envs": N}

    evaluate(ours, TASK, kwargs, 1, 1)  # warm-up (both batch shapes of ours)
    evaluate(ours, TASK, kwargs, N, N)
    for naive in naives.values():
        naive_evaluate(naive, TASK, kwargs, 1)
    closed: dict[str, list[dict[str, float]]] = {k: [] for k in counts}
    replayed: dict[str, list[float]] = {k: [] for k in counts}
    reps = {k: quantile_episodes(data, n) for k, n in counts.items()}
    for _ in range(args.eval_repeats):
        for name, naive in naives.items():
            closed[name].append(naive_evaluate(naive, TASK, kwargs, counts[name]))
        closed["ours, 1 env"].append(evaluate(ours, TASK, kwargs, counts["ours, 1 env"], 1))
        closed[f"ours, {N} envs"].append(evaluate(ours, TASK, kwargs, N, N))
        for name, naive in naives.items():
            replayed[name].append(naive_replay(naive, reps[name]))
        replayed["ours, 1 env"].append(replay_cached(ours, reps["ours, 1 env"], 1))
        replayed[f"ours, {N} envs"].append(replay_cached(ours, reps[f"ours, {N} envs"], N))

    header = ["workload", "implementation", "episodes", "mean length", "episodes/s", "steps/s", "speed-up",
              "vs naive + dedup"]
    rows = []
    eps = {name: statistics.median(r["episodes_per_s"] for r in results) for name, results in closed.items()}
    for name, results in closed.items():
        sps = statistics.median(r["steps_per_s"] for r in results)
        rows.append(["closed loop, untrained policy", name, str(counts[name]), f"{results[0]['mean_length']:.1f}",
                     f"{eps[name]:,.2f}", f"{sps:,.0f}", f"{eps[name] / eps['naive']:.1f}x",
                     f"{eps[name] / eps['naive + dedup']:.1f}x"])
    rates = {name: counts[name] / statistics.median(secs) for name, secs in replayed.items()}
    for name, secs in replayed.items():
        n_steps = sum(len(a) for _, a in reps[name])
        rows.append(["replay of expert episodes", name, str(counts[name]), f"{n_steps / counts[name]:.1f}",
                     f"{rates[name]:,.2f}", f"{n_steps / statistics.median(secs):,.0f}",
                     f"{rates[name] / rates['naive']:.1f}x", f"{rates[name] / rates['naive + dedup']:.1f}x"])
    with torch.inference_mode():  # how often ours found an observation's encoding in its memo (not timed)
        policy = TransformerPolicy(ours, TASK)
        closed_loop(policy, TASK, kwargs, N, N)
    assert policy.memo is not None
    memo_hits = policy.memo.hit_rate
    title = (f"### Evaluation, {size} size ({TASK}-{args.length}, at most {max_episode_len(TASK, kwargs)} "
             f"steps), median of {args.eval_repeats}; closed loop plays the same held-out seeds in every row; "
             f"observations whose encoding ours reused: {memo_hits:.1%} in the closed loop "
             f"({N} episodes), {REPLAY_HIT_RATES[-1]:.1%} in the replay ({N} episodes)\n")
    return title + "\n" + rows_table(header, rows) + "\n"


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (intra-op)")
    ap.add_argument("--sizes", default="paper,cpu", help=f"comma-separated, of {sorted(SIZES)}")
    ap.add_argument("--length", type=int, default=30, help="Hallway length (episodes up to 4L+25 steps)")
    ap.add_argument("--episodes", type=int, default=256, help="expert episodes in the dataset")
    ap.add_argument("--batches", type=int, default=2, help="training batches per timed pass")
    ap.add_argument("--repeats", type=int, default=3, help="timed training passes (median)")
    ap.add_argument("--max-batch", type=int, default=0, help="cap on the batch size (0: the size's own)")
    ap.add_argument("--naive-episodes", type=int, default=2, help="episodes the naive evaluation plays")
    ap.add_argument("--single-episodes", type=int, default=4, help="episodes of our one-environment evaluation")
    ap.add_argument("--num-envs", type=int, default=32, help="environments of our batched evaluation (= episodes)")
    ap.add_argument("--eval-repeats", type=int, default=1, help="timed evaluation runs (median)")
    ap.add_argument("--matmul", type=int, default=2048, help="size N of the NxN matmul that sets the peak")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="training arithmetic (optim.precision) of both implementations; the peak is measured in "
                         "bfloat16 for bf16")
    ap.add_argument("--malloc", default="keep", choices=["keep", "default"],
                    help="keep: glibc keeps freed memory for reuse (allocator.keep_freed_memory, what training "
                         "does since 2026-12-03), for both implementations; default: glibc's own behaviour")
    ap.add_argument("--profile", action="store_true", help="also print where ours spends a training pass")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: train, eval")
    ap.add_argument("--data-root", default="datasets", help="dataset root (generated there when missing)")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = args.malloc == "keep" and keep_freed_memory()
    sizes = [s for s in args.sizes.split(",") if s]
    if unknown := set(sizes) - set(SIZES):
        raise SystemExit(f"--sizes: unknown {sorted(unknown)}; choose from {sorted(SIZES)}")
    skip = set(filter(None, args.skip.split(",")))

    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: load average {load:.1f}: other processes compete for the CPU; with --threads > 1 every "
              f"parallel region waits for a descheduled thread and small operations slow down many times over\n")
    kwargs = {"length": args.length}
    path = demos.generate(TASK, kwargs, args.episodes, 0, root=args.data_root, actors=0, progress=False)
    data = datasets.load(path)
    n_actions = n_actions_of(TASK, kwargs)
    dtype = peak_dtype(args)
    peak = matmul_peak(args.matmul, dtype=dtype)
    print(f"{TASK}-{args.length}: {len(data)} expert episodes (mean {data.lengths.mean():.1f} steps, longest "
          f"{data.lengths.max()}); torch {torch.__version__}, {torch.get_num_threads()} threads; training precision "
          f"{args.precision}; malloc {'keeps freed memory' if kept else 'default'}; {str(dtype).removeprefix('torch.')} {args.matmul}x{args.matmul} matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s\n", flush=True)
    for size in sizes:
        if "train" not in skip:
            print(train_bench(args, size, data, n_actions), flush=True)
        if "eval" not in skip:
            print(eval_bench(args, size, data, n_actions), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:,.0f} MB; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
