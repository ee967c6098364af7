"""Closed-loop evaluation: many environments stepped in one batch, cached incremental decoding, greedy actions.

Each wave of ``num_envs`` environments starts together; the model decodes one step for all of them with
its key/value cache (no re-running of the history); finished environments leave the batch. The loop
(`closed_loop`) takes any `BatchPolicy`, so the RL baseline (rl.py) is evaluated by the same code on the
same episodes.

The loop is kept lean, because with few environments the per-step overhead, not the arithmetic, sets the
speed: inference mode; a cache allocated once for the task's longest episode; the observations gathered
into one reused array; the greedy actions read back once a step (``tolist``), not one tensor element per
environment.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np
import torch

import memory_tasks
from attention_tuner.datasets import eval_seeds
from attention_tuner.model import AttentionTuner
from attention_tuner.observations import ObservationEncoder
from memory_tasks.core import SYMBOLIC_SHAPE


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
    bases = [env.unwrapped for env in envs]
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
                ret[i] += r
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


class TransformerPolicy:
    """The Transformer decoding incrementally: one key/value cache per wave, the previous actions fed back."""

    def __init__(self, model: AttentionTuner, task: str, device: torch.device | str = "cpu"):
        self.model, self.device = model, device
        self.encode = ObservationEncoder(task, model.obs_mode, device)

    def start(self, n: int, max_steps: int | None) -> None:
        # 2 tokens a step: a cache this long is never reallocated (the tasks' environments all have max_steps)
        self.cache = self.model.new_cache(n, self.device, 2 * max_steps if max_steps else 128)
        self.prev: torch.Tensor | None = None

    def act(self, codes: np.ndarray) -> list[int]:
        self.prev = self.model.step(self.cache, self.encode(codes), self.prev).argmax(-1)  # (n,)
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
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Success rate, mean return and length of the Transformer's greedy policy on held-out seeds."""
    if episodes <= 0:
        return {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return closed_loop(TransformerPolicy(model, task, device), task, kwargs, episodes, num_envs, seed_offset)
    finally:
        model.train(was_training)
