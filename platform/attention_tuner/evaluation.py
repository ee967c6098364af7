"""Closed-loop evaluation: many environments stepped in one batch, cached incremental decoding, greedy actions.

Each wave of ``num_envs`` environments starts together; the model decodes one step for all of them with
its key/value cache (no re-running of the history); finished environments leave the batch.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

import memory_tasks
from attention_tuner.datasets import eval_seeds
from attention_tuner.model import AttentionTuner
from attention_tuner.observations import ObservationEncoder


@torch.no_grad()
def evaluate(
    model: AttentionTuner,
    task: str,
    kwargs: dict[str, Any],
    episodes: int,
    num_envs: int = 32,
    seed_offset: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Success rate, mean return and length of the greedy policy on held-out seeds."""
    if episodes <= 0:
        return {}
    was_training = model.training
    model.eval()
    encode = ObservationEncoder(task, model.obs_mode, device)
    seeds = eval_seeds(episodes, seed_offset)
    envs = [memory_tasks.make(task, obs_mode="symbolic", **kwargs) for _ in range(min(num_envs, episodes))]
    success, returns, lengths = [], [], []
    start, steps = time.perf_counter(), 0
    for wave in range(0, episodes, len(envs)):
        wave_seeds = seeds[wave : wave + len(envs)]
        active = list(range(len(wave_seeds)))
        for i, s in enumerate(wave_seeds):
            envs[i].reset(seed=s)
        ret = np.zeros(len(wave_seeds))
        length = np.zeros(len(wave_seeds), dtype=int)
        cache = model.new_cache(len(active), device)
        prev = None
        while active:
            codes = np.stack([envs[i].unwrapped.symbolic_obs for i in active])
            logits = model.step(cache, encode(codes), prev)  # (n_active, A)
            actions = logits.argmax(-1)
            keep = []
            for row, i in enumerate(active):
                _, r, term, trunc, info = envs[i].step(int(actions[row]))
                ret[i] += r
                length[i] += 1
                steps += 1
                if term or trunc:
                    success.append(bool(info.get("success", False)))
                    returns.append(ret[i])
                    lengths.append(length[i])
                else:
                    keep.append(row)
            if len(keep) < len(active):
                rows = torch.tensor(keep, dtype=torch.long)
                cache.select(rows)
                actions = actions[rows.to(actions.device)]
                active = [active[r] for r in keep]
            prev = actions
    for env in envs:
        env.close()
    model.train(was_training)
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
