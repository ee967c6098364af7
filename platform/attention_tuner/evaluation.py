"""Closed-loop evaluation: many environments stepped in one batch, cached incremental decoding, greedy actions.

Each wave of ``num_envs`` environments starts together; the model decodes one step for all of them with
its key/value cache (no re-running of the history); finished environments leave the batch. The loop
(`closed_loop`) takes any `BatchPolicy`, so the RL baseline (rl.py) is evaluated by the same code on the
same episodes.

The loop is kept lean, because with few environments the per-step overhead, not the arithmetic, sets the
speed: inference mode; a cache allocated once for the task's longest episode; each distinct observation encoded
once (`EncodingMemo`); the observations gathered into one reused array; the greedy actions read back once a
step (``tolist``), not one tensor element per environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
import torch

import memory_tasks
from attention_tuner.datasets import eval_seeds
from attention_tuner.model import AttentionTuner, settle_cpu_math
from attention_tuner.observations import ObservationEncoder
from memory_tasks.core import SYMBOLIC_SHAPE, MemoryTask


class BatchPolicy(Protocol):
    """A policy that acts for a batch of environments in lockstep, remembering each one's history itself."""

    def start(self, n: int, max_steps: int | None) -> None:
        """A new wave of n episodes (at most max_steps long, when the task says)."""

    def act(self, codes: np.ndarray) -> list[int]:
        """Greedy actions for the active environments' current observations (n, 7, 7, 3) uint8 codes."""

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows (indices into the active environments, increasing) go on."""


def closed_loop(policy: BatchPolicy, task: str, kwargs: dict[str, Any], episodes: int, num_envs: int = 32,
                seed_offset: int = 0) -> dict[str, float]:
    """Play ``episodes`` held-out seeds, ``num_envs`` environments at a time; success rate, mean return and
    length, and the speed. The environments give symbolic codes; the policy encodes them as it needs (pixels
    are a pure render of the codes), so every method is evaluated on exactly the same episodes."""
    if episodes <= 0:
        return {}
    seeds = eval_seeds(episodes, seed_offset)
    envs = [memory_tasks.make(task, obs_mode="symbolic", **kwargs) for _ in range(min(num_envs, episodes))]
    bases = [cast(MemoryTask, env.unwrapped) for env in envs]
    max_steps = getattr(bases[0], "max_steps", None)
    codes = np.empty((len(envs), *SYMBOLIC_SHAPE), dtype=np.uint8)  # the envs are not reset yet: no obs to ask
    success: list[bool] = []
    returns: list[float] = []
    lengths: list[int] = []
    start, steps = time.perf_counter(), 0
    for wave in range(0, episodes, len(envs)):
        wave_seeds = seeds[wave : wave + len(envs)]
        for i, s in enumerate(wave_seeds):
            envs[i].reset(seed=s)
        active = list(range(len(wave_seeds)))
        ret = [0.0] * len(wave_seeds)
        policy.start(len(active), None if max_steps is None else int(max_steps))
        t = 0
        while active:
            for row, i in enumerate(active):
                codes[row] = bases[i].symbolic_obs
            actions = policy.act(codes[: len(active)])
            keep = []
            t += 1
            for row, (i, action) in enumerate(zip(active, actions, strict=True)):
                _, r, term, trunc, info = envs[i].step(action)
                ret[i] += float(r)
                if term or trunc:
                    success.append(bool(info.get("success", False)))
                    returns.append(ret[i])
                    lengths.append(t)
                else:
                    keep.append(row)
            steps += len(active)
            if len(keep) < len(active):
                policy.keep(torch.tensor(keep, dtype=torch.long))
                active = [active[r] for r in keep]
    for env in envs:
        env.close()
    elapsed = time.perf_counter() - start
    return {
        "success_rate": float(np.mean(success)),
        "success_stderr": float(np.std(success) / np.sqrt(len(success))),
        "mean_return": float(np.mean(returns)),
        "mean_length": float(np.mean(lengths)),
        "episodes": float(len(success)),
        "episodes_per_s": len(success) / elapsed,
        "steps_per_s": steps / elapsed,
    }


class EncodingMemo:
    """encode(codes) for (n, 7, 7, 3) uint8 codes, running ``encode`` once per distinct observation.

    The memory tasks repeat their views a lot (corridors, walls, the same arena between commands), and the
    observation encoder is the largest part of a small model's decoding step; an encoder is a pure function of
    one observation, so its output is kept in a table indexed by the observation's bytes (pixels are a pure
    render of the codes, so the codes are the key in both modes). The same values as encoding every step, up
    to float rounding (the batch a view is first encoded in, and so the kernels, can differ). At most
    ``limit`` encodings are kept (32,768 x d_model floats: 64 MB at the paper's size); past it the memo starts
    again.
    """

    def __init__(self, encode: Callable[[np.ndarray], torch.Tensor], limit: int = 1 << 15):
        self.encode, self.limit = encode, limit
        self.index: dict[bytes, int] = {}
        self.table: torch.Tensor | None = None  # (capacity, C): rows 0 .. len(index) - 1 are filled
        self.lookups = self.misses = 0

    def __call__(self, codes: np.ndarray) -> torch.Tensor:
        keys = [c.tobytes() for c in codes]
        if len(self.index) + len(keys) > self.limit:
            self.index.clear()
        first = len(self.index)
        new = []
        for i, k in enumerate(keys):
            if k not in self.index:
                self.index[k] = len(self.index)
                new.append(i)
        self.lookups, self.misses = self.lookups + len(keys), self.misses + len(new)
        if new:
            self._store(first, self.encode(codes[new]))
        assert self.table is not None
        if len(keys) == 1:
            j = self.index[keys[0]]
            return self.table[j : j + 1]
        rows = torch.tensor([self.index[k] for k in keys], dtype=torch.long)
        return self.table.index_select(0, rows.to(self.table.device, non_blocking=True))

    def _store(self, first: int, emb: torch.Tensor) -> None:
        end = first + emb.shape[0]
        if self.table is None or self.table.shape[0] < end or self.table.dtype != emb.dtype:
            grown = emb.new_empty(max(256, end, 2 * (0 if self.table is None else self.table.shape[0])),
                                  emb.shape[1])
            if self.table is not None and first:
                grown[:first] = self.table[:first]
            self.table = grown
        self.table[first:end] = emb

    @property
    def hit_rate(self) -> float:
        return 1 - self.misses / self.lookups if self.lookups else 0.0


class TransformerPolicy:
    """The Transformer decoding incrementally: one key/value cache per wave, the previous actions fed back,
    each distinct observation encoded once (`EncodingMemo`; ``reuse_encodings=False`` encodes every
    observation at every step, the reference the memo is tested and measured against)."""

    def __init__(self, model: AttentionTuner, task: str, device: torch.device | str | None = None,
                 reuse_encodings: bool = True):
        if device is None:  # where the model is
            device = next(model.parameters()).device
        self.model, self.device = model, device
        self.encode = ObservationEncoder(task, model.obs_mode, device)
        self.memo = EncodingMemo(self._encode) if reuse_encodings else None

    def start(self, n: int, max_steps: int | None) -> None:
        # 2 tokens a step: a cache this long is never reallocated (the tasks' environments all have max_steps)
        self.cache = self.model.new_cache(n, self.device, 2 * max_steps if max_steps else 128)
        self.prev: torch.Tensor | None = None

    def _encode(self, codes: np.ndarray) -> torch.Tensor:
        return self.model.encode_step(self.cache, self.encode(codes))

    def act(self, codes: np.ndarray) -> list[int]:
        emb = self.memo(codes) if self.memo is not None else self._encode(codes)
        self.prev = self.model.step_embedded(self.cache, emb, self.prev).argmax(-1)  # (n,)
        return self.prev.tolist()

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.select(rows)
        assert self.prev is not None
        self.prev = self.prev[rows.to(self.prev.device)]


def evaluate(
    model: AttentionTuner,
    task: str,
    kwargs: dict[str, Any],
    episodes: int,
    num_envs: int = 32,
    seed_offset: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Success rate, mean return and length of the Transformer's greedy policy on held-out seeds, decoded on
    ``device`` (default: the model's)."""
    if episodes <= 0:
        return {}
    settle_cpu_math()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return closed_loop(TransformerPolicy(model, task, device), task, kwargs, episodes, num_envs, seed_offset)
    finally:
        model.train(was_training)
