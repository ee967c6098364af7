"""The training loop: behavioural cloning plus the memory loss. One readable function, no Ray, no MLflow.

Reporting is passed in (``report(metrics, epoch, checkpoint_path_or_None)``, called once per epoch after
any checkpoint is written), so the same loop runs standalone, under Ray Tune and in tests. Seeded end to end: model init from
``cfg.seed``, data order from ``(cfg.seed, epoch)``, dropout from the torch RNG whose state the checkpoint
keeps; a run resumed from a checkpoint continues exactly as the uninterrupted run would (bit for bit on the
CPU; on CUDA up to the last bits, as two fresh CUDA runs differ: some backward kernels add atomically).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import memory_tasks
from attention_tuner import checkpoint, datasets, losses
from attention_tuner.config import ConfigError, TrialConfig, build, memory_heads, supervised_heads, to_dict
from attention_tuner.evaluation import evaluate
from attention_tuner.model import AttentionTuner, settle_cpu_math
from attention_tuner.observations import ObservationEncoder

Report = Callable[[dict[str, float], int, Path | None], None]


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def build_model(cfg: TrialConfig, n_actions: int) -> AttentionTuner:
    m = cfg.model
    return AttentionTuner(obs_mode=cfg.task.obs_mode, n_actions=n_actions, d_model=m.d_model,
                          n_layers=m.n_layers, n_heads=m.n_heads, d_ff=m.d_ff, dropout=m.dropout,
                          supervised=supervised_heads(cfg))


def n_actions_of(task: str, kwargs: dict[str, Any]) -> int:
    env = memory_tasks.make(task, **kwargs)
    space = env.action_space
    env.close()
    assert isinstance(space, gym.spaces.Discrete)
    return int(space.n)


def decision_steps(pairs: np.ndarray, T: int) -> np.ndarray:
    """(T,) bool: steps at which the expert recalls something other than the current frame."""
    out = np.zeros(T, dtype=bool)
    non_self = pairs[pairs[:, 0] != pairs[:, 1]]
    out[non_self[:, 1]] = True
    return out


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether training autocasts to bfloat16: always under ``bf16``; under ``auto`` on GPUs with bfloat16
    arithmetic (Ampere and later: A10G, A100, H100), not on older ones (T4, V100), where torch emulates it
    much slower than float32."""
    if precision == "bf16":
        return True
    return precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


class Stepper:
    """Runs one batch through the model and the losses (train or measure) on the trial's device."""

    def __init__(self, cfg: TrialConfig, model: AttentionTuner, device: torch.device):
        self.cfg, self.model, self.device = cfg, model, device
        self.encode = ObservationEncoder(cfg.task.name, cfg.task.obs_mode, device)
        self.amp = uses_bf16(cfg.optim.precision, device)  # bfloat16 autocast
        # a model without supervised heads (vanilla: memory.weight 0 or no annotated demonstration) is measured on
        # memory.heads all the same (eval mode)
        self.probe = None if supervised_heads(cfg) else memory_heads(cfg)

    def __call__(self, batch: datasets.Batch) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        obs = self.encode(batch.obs)  # (B, T, ...) uint8
        actions = torch.from_numpy(batch.actions).to(dev)  # (B, T)
        mask = torch.from_numpy(batch.mask).to(dev)  # (B, T)
        annotated = torch.from_numpy(batch.annotated).to(dev)  # (B,)
        probe = None if self.model.training else self.probe
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.amp):
            logits, attn = self.model(obs, actions, mask, probe=probe)  # (B, T, A), (B, S, 2T, 2T) | None
        a_loss, acc = losses.action_loss(logits.float(), actions, mask)
        out = {"action_loss": a_loss, "accuracy": acc, "loss": a_loss}
        if attn is not None and batch.annotated.any():  # asked of the host's copy: no device sync
            E = losses.expert_matrix(batch.pairs, batch.obs.shape[1], dev)  # (B, 2T, 2T)
            if probe is None:
                m_loss = losses.memory_loss(attn, E, mask, annotated, cfg.memory.variant, cfg.memory.split)
                out["memory_loss"] = m_loss
                out["loss"] = a_loss + cfg.memory.weight * m_loss
            if not self.model.training:  # diagnostics, for `measure`
                for name, keys, rows in (  # every step on all expert keys; recall steps on the recalled frames
                        ("expert", E, losses.expert_rows(E, mask, annotated)),
                        ("recall", losses.earlier_keys(E), losses.recall_rows(E, mask, annotated))):
                    out[f"{name}_attention_mass"] = losses.expert_attention_mass(attn, keys, mask, annotated, rows)
                    out[f"{name}_rows"] = rows.sum()  # its average's count
        out["logits"] = logits
        return out


@torch.no_grad()
def measure(step: Stepper, demos: datasets.Demonstrations, index: np.ndarray, batch_size: int) -> dict[str, float]:
    """Action loss/accuracy, decision-step accuracy and the attention mass of the supervised (or, vanilla, the
    memory.heads) heads on the expert's keys, on ``index`` (eval mode): expert_attention_mass over every step,
    self-pairs included; recall_attention_mass over the decision steps, on the recalled frames only."""
    if len(index) == 0:
        return {}
    step.model.eval()
    chosen = set(index.tolist())
    pairs = [demos.pairs[i] if i in chosen else None for i in range(len(demos))]
    sums: dict[str, float] = {"action_loss": 0.0, "correct": 0.0, "steps": 0.0, "dec_correct": 0.0,
                              "dec_steps": 0.0, "expert": 0.0, "expert_n": 0.0, "recall": 0.0, "recall_n": 0.0}
    for batch in datasets.batches(demos, index, pairs, batch_size):
        out = step(batch)
        n = float(batch.mask.sum())
        sums["action_loss"] += float(out["action_loss"]) * n
        sums["steps"] += n
        pred = out["logits"].argmax(-1).cpu().numpy()
        right = (pred == batch.actions) & batch.mask
        sums["correct"] += float(right.sum())
        for b, i in enumerate(batch.index):
            dec = decision_steps(demos.pairs[i], int(batch.mask[b].sum()))
            sums["dec_correct"] += float(right[b, : len(dec)][dec].sum())
            sums["dec_steps"] += float(dec.sum())
        for name in ("expert", "recall"):  # pooled over their rows, whatever the batch size
            if f"{name}_attention_mass" in out and not torch.isnan(out[f"{name}_attention_mass"]):
                rows = float(out[f"{name}_rows"])
                sums[name] += float(out[f"{name}_attention_mass"]) * rows
                sums[f"{name}_n"] += rows
    step.model.train()
    res = {"action_loss": sums["action_loss"] / sums["steps"], "accuracy": sums["correct"] / sums["steps"]}
    if sums["dec_steps"]:
        res["decision_accuracy"] = sums["dec_correct"] / sums["dec_steps"]
    for name in ("expert", "recall"):
        if sums[f"{name}_n"]:
            res[f"{name}_attention_mass"] = sums[name] / sums[f"{name}_n"]
    return res


# How the annotated subset is drawn, saved in checkpoints: among the training episodes (since 2026-12-03; before,
# among all episodes, held-out ones included, and checkpoints had no such key).
ANNOTATED_AMONG = "training episodes"


def check_resumable(state: dict[str, Any], cfg: TrialConfig, path: Path) -> None:
    """Refuse (CheckpointError) to resume ``cfg`` from a checkpoint's ``state`` another configuration saved
    (only the budgets may differ), or one whose annotated subset was drawn another way (fraction below 1)."""
    try:
        saved = to_dict(build(TrialConfig, state["config"]))  # fields added since it was saved: their defaults
    except ConfigError as e:
        raise checkpoint.CheckpointError(f"{path}: saved configuration is not valid here ({e})") from None
    checkpoint.check_compatible(saved, to_dict(cfg), path)
    fraction = cfg.data.annotation_fraction
    if cfg.algorithm != "ppo_lstm" and 0 < fraction < 1 and state.get("annotated_among") != ANNOTATED_AMONG:
        raise checkpoint.CheckpointError(
            f"{path}: saved by an older version, which drew the annotated {fraction:g} of the episodes among all "
            f"of them, held-out ones included; resuming would change the annotated set mid-run (delete the "
            f"checkpoint folder to start the run anew)")


def trained_seconds(history: list[dict[str, float]]) -> float:
    """Seconds of training a run's history holds (its last epoch's perf/train_s; 0 for none)."""
    return float(history[-1].get("perf/train_s", 0.0)) if history else 0.0


def out_of_time(cfg: TrialConfig, trained_s: float) -> bool:
    """Whether a run has used its time budget (optim.time_budget_s; 0: none)."""
    return 0 < cfg.optim.time_budget_s <= trained_s


def trial_data(cfg: TrialConfig, demos: datasets.Demonstrations
               ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """(training indices, held-out indices, per-episode pairs) of a trial: the annotated fraction is of the
    training episodes (a seed-determined subset, nested across fractions); held-out episodes get None."""
    train_idx, val_idx = datasets.split(demos, cfg.data.val_fraction)
    pairs = datasets.annotated_pairs(demos, cfg.data.annotation_fraction, cfg.seed, cfg.data.noise, among=train_idx)
    return train_idx, val_idx, pairs


def train(
    cfg: TrialConfig,
    demos: datasets.Demonstrations,
    run_dir: str | Path | None = None,
    report: Report | None = None,
) -> dict[str, float]:
    """Train ``cfg`` on ``demos``; checkpoints go to ``run_dir`` (resumed from there when present).

    Returns the metrics of the last epoch. ``report`` receives namespaced metrics every epoch.
    """
    device = pick_device(cfg.device)
    n_actions = n_actions_of(cfg.task.name, cfg.task.kwargs)
    settle_cpu_math()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, n_actions).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    train_idx, val_idx, pairs = trial_data(cfg, demos)
    step = Stepper(cfg, model, device)

    start_epoch, history = 0, []
    ckpt_dir = Path(run_dir) / "checkpoint" if run_dir is not None else None
    if ckpt_dir is not None and checkpoint.resolve(ckpt_dir).is_file():
        # on the CPU: load_state_dict moves weights and Adam's moments to the device and keeps Adam's step
        # counters on the CPU, as a fresh run has them (on CUDA, each would cost a sync per parameter per step)
        state = checkpoint.load(ckpt_dir, map_location="cpu")
        check_resumable(state, cfg, checkpoint.resolve(ckpt_dir))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        start_epoch, history = int(state["epoch"]), list(state["history"])

    metrics: dict[str, float] = history[-1] if history else {}
    trained_s = trained_seconds(history)
    if out_of_time(cfg, trained_s):  # it stopped on its time budget: run again, it stays done
        return metrics
    for epoch in range(start_epoch, cfg.optim.epochs):
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        # float64 on the device: a CUDA step waits for no result of the one before (the same sums as Python
        # floats would give)
        sums: dict[str, torch.Tensor] = {}
        counted = {"steps": 0.0, "mem_batches": 0.0}
        t0 = time.perf_counter()
        for batch in datasets.batches(demos, train_idx, pairs, cfg.optim.batch_size, rng,
                                      bucket=cfg.optim.bucket_by_length):
            out = step(batch)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            n_steps = float(batch.mask.sum())
            counted["steps"] += n_steps
            for key in ("loss", "action_loss", "accuracy"):  # per real step, as the held-out ones
                sums[key] = sums.get(key, 0.0) + out[key].detach().double() * n_steps
            if "memory_loss" in out:
                counted["mem_batches"] += 1
                sums["memory_loss"] = sums.get("memory_loss", 0.0) + out["memory_loss"].detach().double()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        trained_s += elapsed
        metrics = {f"train/{k}": float(v) / counted["steps"] for k, v in sums.items() if k != "memory_loss"}
        if counted["mem_batches"]:
            metrics["train/memory_loss"] = float(sums["memory_loss"]) / counted["mem_batches"]
        metrics["perf/samples_per_s"] = counted["steps"] / elapsed
        metrics["perf/epoch_s"] = elapsed
        metrics["perf/train_s"] = trained_s
        metrics.update({f"val/{k}": v for k, v in measure(step, demos, val_idx, cfg.optim.batch_size).items()})
        stop = out_of_time(cfg, trained_s)
        last = epoch + 1 == cfg.optim.epochs or stop
        if cfg.eval.episodes and ((epoch + 1) % cfg.eval.every == 0 or last):
            kwargs = cfg.eval_task_kwargs
            result = evaluate(model, cfg.task.name, kwargs, cfg.eval.episodes, cfg.eval.num_envs, device=device)
            metrics.update({f"eval/{k}": v for k, v in result.items()})
        metrics["epoch"] = float(epoch + 1)
        history.append(metrics)
        path = None
        if ckpt_dir is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
            path = checkpoint.save(ckpt_dir, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                "config": to_dict(cfg), "n_actions": n_actions, "history": history,
                "annotated_among": ANNOTATED_AMONG,
                # the dataset it trains on: a resumed run keeps it, also once the task's code has changed
                "dataset_key": demos.manifest.get("request", {}).get("key"),
            })
        if report is not None:
            report(metrics, epoch + 1, path)
        if stop:
            break
    return metrics


def load_policy(path: str | Path, device: str = "cpu") -> tuple[AttentionTuner, TrialConfig, dict[str, Any]]:
    """The model of a checkpoint, ready to evaluate, with its configuration."""
    state = checkpoint.load(path, map_location=device)
    cfg = build(TrialConfig, state["config"])
    try:
        model = build_model(cfg, int(state["n_actions"])).to(device)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # weights of another shape, keys missing
        if type(e) is RuntimeError and "state_dict" not in str(e):
            raise  # not a mismatch (e.g. out of memory on the device)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise checkpoint.CheckpointError(f"{checkpoint.resolve(path)}: its weights do not match its configuration "
                                         f"({detail})") from None
    model.eval()
    return model, cfg, state
