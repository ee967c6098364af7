"""A naive reference: our model's parameters run the way the released AttentionTuner code runs them.

Used only by ``bench/training_speed.py``, as the baseline our implementation is measured against. It is written
after the behaviour of github WilliamYue37/AttentionTuner (ltmb/transformer.py, dataset.py, trainer.py, eval.py),
not copied from it, and differs from ``attention_tuner`` in exactly these ways:

1. every head of every layer goes through explicit attention (scores, additive -inf causal mask, softmax,
   weights @ values), as ``nn.MultiheadAttention(need_weights=True, average_attn_weights=False)`` does, and
   all the weights are kept; the output layer runs on all 2T tokens and the observation rows are picked after;
2. training batches are padded to the task's maximum episode length (Hallway: 4 * length + 25 steps), not to
   the longest episode of the batch;
3. evaluation re-runs the whole history through the full forward pass at every step (no key/value cache);
4. evaluation plays one environment at a time;
5. the observation encoder runs on every observation it is given, padding and repeated views included, as
   the reference's ``ImageEmbedding`` does (ours encodes each distinct observation of a call once:
   ``attention_tuner.model.encode_unique``). ``NaiveAttentionTuner.like(model, dedup=True)`` gives the naive
   our deduplication as well: the bench reports both, so what the encoder's deduplication contributes to a
   speed-up can be read off.

Everything else is shared with our implementation, so the comparison is like for like: the same modules and
weights (``NaiveAttentionTuner`` subclasses ``AttentionTuner`` and loads its state dict), the same losses
(``attention_tuner.training.Stepper`` on the padded batch) and the same Adam step. Two things are kinder to the
naive than the reference is: its evaluation runs under ``torch.no_grad()`` (the released eval.py records an
autograd graph at every step) and observations are one-hot encoded inside the model, as ours are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import torch

import memory_tasks
from attention_tuner.datasets import Batch, eval_seeds
from attention_tuner.model import AttentionTuner, Block, sinusoid

# The longest episode of each task, as the reference computes it (ltmb/eval.py, ltmb/train.py).
MAX_LEN = {
    "Hallway": lambda kw: 4 * kw.get("length", 30) + 25,
    "Ordering": lambda kw: 18 + kw.get("length", 50),
    "Counting": lambda kw: 7 * kw.get("length", 20),
}


def max_episode_len(task: str, kwargs: dict[str, Any]) -> int:
    return MAX_LEN[task](kwargs)


class NaiveAttentionTuner(AttentionTuner):
    """Same parameters as AttentionTuner; `forward` computes explicit attention weights for every head."""

    dedup = False  # encode each distinct observation of a call once, as ours does (see the module docstring)

    @classmethod
    def like(cls, model: AttentionTuner, dedup: bool = False) -> NaiveAttentionTuner:
        """A naive copy of ``model``: same hyper-parameters, same weights, same train/eval mode."""
        naive = cls(**model.hparams)
        naive.load_state_dict(model.state_dict())
        naive.dedup = dedup
        return naive.train(model.training).to(model.head.weight.device)

    def _embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        if self.dedup:
            return super()._embed_obs(obs)
        return self.obs_enc(obs.reshape(-1, *self.obs_shape)).view(*obs.shape[:-3], self.d_model)  # (..., C)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None,
                probe: Iterable[tuple[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As `AttentionTuner.forward`; mask is ignored: every padded step is computed, as the reference does."""
        B, T = actions.shape
        C, nh = self.d_model, self.n_heads
        pe = sinusoid(torch.arange(T, device=obs.device), C)  # (T, C)
        o = self._embed_obs(obs) + pe  # (B, T, C)
        a = self._embed_act(actions) + pe  # (B, T, C)
        x = self.drop(self.ln_emb(torch.stack((o, a), dim=2).view(B, 2 * T, C)))  # (B, L, C), L = 2T
        L = 2 * T
        causal = torch.triu(torch.full((L, L), float("-inf"), device=obs.device), diagonal=1)  # additive
        weights = []
        for block in self.blocks:
            assert isinstance(block, Block)
            q, k, v = block._qkv(x, None)  # 3 x (B, nh, L, hs)
            att = ((q @ k.transpose(-2, -1)) / math.sqrt(C // nh) + causal).softmax(dim=-1)  # (B, nh, L, L)
            weights.append(att)
            x = block._out(x, att @ v, None)
        logits = self.head(x).view(B, T, 2, self.n_actions)[:, :, 0]  # every token, then o_t's rows
        heads = self.supervised if probe is None else probe
        if not heads:
            return logits, None
        return logits, torch.stack([weights[i][:, h] for (i, h) in heads], dim=1)  # (B, S, L, L)


def pad_batch(batch: Batch, T: int) -> Batch:
    """The batch padded with zeros (mask False) to T steps, as the reference pads every episode."""
    B, T0 = batch.actions.shape
    if T < T0:
        raise ValueError(f"cannot pad a batch of {T0} steps to {T}")
    obs = np.zeros((B, T, *batch.obs.shape[2:]), dtype=batch.obs.dtype)
    actions = np.zeros((B, T), dtype=batch.actions.dtype)
    mask = np.zeros((B, T), dtype=bool)
    obs[:, :T0], actions[:, :T0], mask[:, :T0] = batch.obs, batch.actions, batch.mask
    return Batch(obs, actions, mask, batch.pairs, batch.index)


@torch.no_grad()
def evaluate(model: NaiveAttentionTuner, task: str, kwargs: dict[str, Any], episodes: int,
             seed_offset: int = 0) -> dict[str, float]:
    """One environment, episodes one after another; every step re-runs the whole history (greedy actions).

    Plays the same held-out seeds as ``attention_tuner.evaluation.evaluate`` and returns the same keys.
    """
    was_training = model.training
    model.eval()
    env = memory_tasks.make(task, obs_mode="symbolic", **kwargs)
    success, returns, lengths = [], [], []
    start, steps = time.perf_counter(), 0
    for seed in eval_seeds(episodes, seed_offset):
        env.reset(seed=seed)
        obs_hist: list[torch.Tensor] = []
        act_hist: list[int] = []
        ret, done = 0.0, False
        info: dict[str, Any] = {}
        while not done:
            obs_hist.append(torch.from_numpy(np.array(cast(Any, env.unwrapped).symbolic_obs)))
            obs = torch.stack(obs_hist)[None]  # (1, t + 1, 7, 7, 3)
            acts = torch.tensor(act_hist + [0])[None]  # a dummy last action, as the reference
            logits, _ = model(obs, acts)
            action = int(logits[0, -1].argmax())
            act_hist.append(action)
            _, r, term, trunc, info = env.step(action)
            ret += float(r)
            steps += 1
            done = term or trunc
        success.append(bool(info.get("success", False)))
        returns.append(ret)
        lengths.append(len(act_hist))
    env.close()
    model.train(was_training)
    elapsed = time.perf_counter() - start
    return {"success_rate": float(np.mean(success)), "mean_return": float(np.mean(returns)),
            "mean_length": float(np.mean(lengths)), "episodes": float(len(success)),
            "episodes_per_s": len(success) / elapsed, "steps_per_s": steps / elapsed}


@torch.no_grad()
def replay(model: NaiveAttentionTuner, episodes: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Decode recorded episodes (obs (T, 7, 7, 3), actions (T,)) the naive way; returns the seconds taken.

    Teacher-forced: the recorded actions enter the history, so episodes keep their recorded lengths.
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    for obs, actions in episodes:
        o, a = torch.from_numpy(obs), torch.from_numpy(actions)
        for t in range(len(actions)):
            acts = torch.cat((a[:t], torch.zeros(1, dtype=a.dtype)))[None]  # dummy action at step t
            model(o[None, : t + 1], acts)[0][0, -1].argmax()
    model.train(was_training)
    return time.perf_counter() - start
