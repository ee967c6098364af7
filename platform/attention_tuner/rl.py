"""The RL baseline: PPO with an LSTM (RLlib's new API stack) on the same tasks, from reward alone.

Beside the vanilla Transformer and AttentionTuner, which clone the expert's demonstrations, this trains a
recurrent policy with reinforcement learning (Memory Gym's own papers report PPO with an LSTM). It uses the
same ``memory_tasks`` environments and observation encodings: symbolic codes one-hot encoded exactly as the
Transformer's encoder does (20 channels per cell), pixels scaled to [0, 1]. The network is RLlib's default
recurrent module: an encoder (``rl.encoder``: an MLP over the flattened one-hot, or the Transformer's
convolutions), an LSTM, and policy and value heads. Trials report the same metric names, evaluated the same
way: greedy actions on the same held-out seeds (``datasets.eval_seeds``), many environments in one batch;
their budget is environment steps (``rl.env_steps``), reported as ``perf/env_steps`` with the wall time.

RLlib is an optional extra (``pip install -e '.[rllib]'`` in the checkout): this module imports it only inside its
functions, so the core install imports and validates everything without it. The algorithm runs inside the
trial's process (env runner and learner local: ``num_env_runners=0``, ``num_learners=0``), so a trial uses
exactly the resources the sweep gives it.

Checkpoints hold no pickle: the learner's module weights and optimiser state as tensors (``torch.save``,
loaded with ``weights_only=True``, checksummed, written atomically by ``checkpoint.save``), plus the
iteration, environment steps, history and configuration. A retried or extended trial rebuilds the algorithm
from its configuration and loads them; its environments restart with fresh episodes (RLlib seeded anew for the
iteration it resumes at, `run_seed`), so unlike the Transformer's loop a resumed PPO run is not bit-identical
to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import memory_tasks
from attention_tuner import checkpoint
from attention_tuner.config import EVAL_SEED_BASE, ConfigError, TrialConfig, build, to_dict
from attention_tuner.evaluation import closed_loop
from attention_tuner.model import N_COLORS, N_OBJECTS, N_STATES
from attention_tuner.observations import ObservationEncoder
from attention_tuner.training import check_resumable, pick_device, trained_seconds

Report = Callable[[dict[str, float], int, Path | None], None]
INSTALL_HINT = "install the extra from the checkout: .venv/bin/pip install -e '.[rllib]' (or make venv EXTRAS=dev,rllib)"
ENV_NAME = "attention_tuner_memory_task"
# The symbolic one-hot: object, colour and state codes in disjoint channel ranges, as SymbolicEncoder.forward
_OFFSETS = np.array([0, N_OBJECTS, N_OBJECTS + N_COLORS])
_HIGHEST = np.array([N_OBJECTS - 1, N_COLORS - 1, N_STATES - 1])
N_CHANNELS = N_OBJECTS + N_COLORS + N_STATES  # 20


class RLlibMissing(ConfigError):
    """The ppo_lstm baseline was asked for, but RLlib's extra dependencies are not installed."""


def require_rllib() -> None:
    """A one-line RLlibMissing error when RLlib's extra dependencies are missing (the core install lacks them)."""
    try:
        import ray.rllib.algorithms.ppo  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e).splitlines()[0]
        raise RLlibMissing(f"algorithm ppo_lstm needs RLlib, which is not installed here (no module {missing!r}): "
                          f"{INSTALL_HINT}") from None


# ------------------------------------------------------------------------------------- observations


def one_hot_symbolic(codes: np.ndarray) -> np.ndarray:
    """(..., 7, 7, 3) uint8 MiniGrid codes -> (..., 7, 7, 20) float32 one-hot (object | colour | state)."""
    idx = np.minimum(codes.astype(np.int64), _HIGHEST) + _OFFSETS  # (..., 7, 7, 3)
    out = np.zeros((*codes.shape[:-1], N_CHANNELS), dtype=np.float32)
    np.put_along_axis(out, idx, 1.0, axis=-1)
    return out


def encoder_of(cfg: TrialConfig) -> str:
    """mlp or cnn: rl.encoder with auto resolved by the observation mode."""
    if cfg.rl.encoder != "auto":
        return cfg.rl.encoder
    return "mlp" if cfg.task.obs_mode == "symbolic" else "cnn"


def policy_obs(obs: np.ndarray, obs_mode: str, flat: bool = False) -> np.ndarray:
    """What the recurrent policy sees: the symbolic one-hot (flattened for the MLP encoder), or pixels in
    [0, 1] (float32, channels last). obs: (..., H, W, 3) uint8."""
    if obs_mode == "symbolic":
        x = one_hot_symbolic(obs)
        return x.reshape(*x.shape[:-3], -1) if flat else x
    return obs.astype(np.float32) / 255.0


class PolicyObservation(gym.ObservationWrapper):
    """A memory task whose observations are encoded for RLlib's encoders (float32)."""

    def __init__(self, env: gym.Env, obs_mode: str, flat: bool):
        super().__init__(env)
        self.obs_mode, self.flat = obs_mode, flat
        h, w, _ = env.observation_space.shape  # type: ignore[misc]
        shape = (h, w, N_CHANNELS if obs_mode == "symbolic" else 3)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(np.prod(shape)),) if flat else shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return policy_obs(observation, self.obs_mode, self.flat)


def make_env(env_config: dict[str, Any]) -> gym.Env:
    """The env creator RLlib calls: {task, kwargs, obs_mode, encoder} -> the wrapped task."""
    env = memory_tasks.make(env_config["task"], obs_mode=env_config["obs_mode"], **env_config["kwargs"])
    return PolicyObservation(env, env_config["obs_mode"], flat=env_config["encoder"] == "mlp")


# Convolutions like the Transformer's observation encoders: [channels, kernel, stride, padding] (RLlib takes the
# padding too; its type hint names only the first three)
CONV_FILTERS: dict[str, Any] = {
    "symbolic": [[40, 3, 1, "same"], [80, 3, 1, "same"]],  # SymbolicEncoder
    "pixels": [[32, 8, 4, "valid"], [64, 4, 2, "valid"], [64, 3, 1, "valid"]],  # PixelEncoder (Nature DQN)
}


# ------------------------------------------------------------------------------------------ algorithm


def run_seed(cfg: TrialConfig, iteration: int) -> int:
    """The seed of RLlib (its environments' first resets, its random generators) for a run starting at
    ``iteration``: the trial seed from the start, another one per resume point, so that a resumed run plays new
    episodes instead of the ones it began with; always below the evaluation seeds."""
    if iteration == 0:
        return cfg.seed
    return (cfg.seed * 1_000_003 + iteration) % (EVAL_SEED_BASE - cfg.rl.num_envs)


def ppo_config(cfg: TrialConfig, seed: int | None = None) -> Any:
    """RLlib's PPOConfig for the trial: new API stack, encoder -> LSTM -> policy and value heads, the env
    runner and the learner in this process (on the trial's device); ``seed``: `run_seed` (default cfg.seed)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_env)
    rl = cfg.rl
    device = pick_device(cfg.device).type
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config={"task": cfg.task.name, "kwargs": dict(cfg.task.kwargs),
                                            "obs_mode": cfg.task.obs_mode, "encoder": encoder_of(cfg)})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=rl.num_envs,
                     rollout_fragment_length=max(1, rl.rollout_steps // rl.num_envs))
        .learners(num_learners=0, num_gpus_per_learner=1 if device == "cuda" else 0)
        .training(lr=rl.lr, gamma=rl.gamma, lambda_=rl.gae_lambda, clip_param=rl.clip,
                  entropy_coeff=rl.entropy_coeff, vf_loss_coeff=rl.vf_coeff,
                  grad_clip=rl.grad_clip or None, train_batch_size_per_learner=rl.rollout_steps,
                  minibatch_size=rl.minibatch_size, num_epochs=rl.num_epochs)
        .rl_module(model_config=DefaultModelConfig(
            conv_filters=CONV_FILTERS[cfg.task.obs_mode], conv_activation="relu",
            fcnet_hiddens=[2 * rl.lstm_cell_size], fcnet_activation="relu",  # the mlp encoder's layer
            use_lstm=True, lstm_cell_size=rl.lstm_cell_size, max_seq_len=rl.max_seq_len,
            vf_share_layers=True))
        .debugging(seed=cfg.seed if seed is None else seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=max(rl.num_envs, 20))
    )


# ---------------------------------------------------------------------------------------- evaluation


class RecurrentPolicy:
    """The PPO module acting greedily, its LSTM state carried per environment (evaluation.BatchPolicy)."""

    def __init__(self, module: Any, cfg: TrialConfig):
        self.module, self.obs_mode, self.flat = module, cfg.task.obs_mode, encoder_of(cfg) == "mlp"
        self.encode = ObservationEncoder(cfg.task.name, cfg.task.obs_mode)  # codes -> the env's own obs
        self.zero = module.get_initial_state()  # {h, c}: (layers, hidden) each

    def start(self, n: int, max_steps: int | None) -> None:
        self.state = {k: v[None].repeat(n, *([1] * v.dim())) for k, v in self.zero.items()}  # (n, layers, H)

    def act(self, codes: np.ndarray) -> list[int]:
        x = torch.from_numpy(policy_obs(self.encode(codes).numpy(), self.obs_mode, self.flat))[:, None]  # (n, 1, ..)
        out = self.module.forward_inference({"obs": x, "state_in": self.state})
        self.state = out["state_out"]
        return out["action_dist_inputs"][:, 0].argmax(-1).tolist()

    def keep(self, rows: torch.Tensor) -> None:
        self.state = {k: v.index_select(0, rows) for k, v in self.state.items()}


def evaluate(module: Any, cfg: TrialConfig, kwargs: dict[str, Any], episodes: int, num_envs: int = 32,
             seed_offset: int = 0) -> dict[str, float]:
    """Success rate, mean return and length of the greedy recurrent policy of trial ``cfg`` on the held-out
    seeds, the task built with ``kwargs``: the same loop, seeds and keys as the Transformer's evaluation."""
    with torch.no_grad():
        return closed_loop(RecurrentPolicy(module, cfg), cfg.task.name, kwargs, episodes, num_envs, seed_offset)


def load_module(path: str | Path) -> tuple[Any, TrialConfig]:
    """The recurrent policy of a ppo_lstm checkpoint (the learner's weights), ready to evaluate, and its
    configuration; one-line errors for a checkpoint of the Transformer or a damaged file."""
    require_rllib()
    from ray.rllib.core import DEFAULT_MODULE_ID

    state = checkpoint.load(path)
    cfg = build(TrialConfig, state["config"])
    if cfg.algorithm != "ppo_lstm":
        raise checkpoint.CheckpointError(f"{checkpoint.resolve(path)}: a {cfg.algorithm} checkpoint, not ppo_lstm")
    config = ppo_config(dataclasses.replace(cfg, device="cpu"))  # evaluated on the CPU, wherever it trained
    module = config.get_rl_module_spec(env=make_env(config.env_config)).build()
    module.set_state(state["model"]["learner_group"]["learner"]["rl_module"][DEFAULT_MODULE_ID])
    module.eval()
    return module, cfg


# ------------------------------------------------------------------------------------------- training


def _to_tensors(x: Any) -> Any:
    """RLlib state -> tensors and plain data only (numpy arrays become tensors), loadable with weights_only."""
    if isinstance(x, dict):
        return {k: _to_tensors(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_to_tensors(v) for v in x]
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, np.generic):
        return x.item()
    return x


def _learner_state(algo: Any) -> dict[str, Any]:
    """The module weights and the optimiser state of the (local) learner."""
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_LEARNER_GROUP,
        COMPONENT_OPTIMIZER,
        COMPONENT_RL_MODULE,
    )

    path = f"{COMPONENT_LEARNER_GROUP}/{COMPONENT_LEARNER}/"
    state = algo.get_state(components=[path + COMPONENT_RL_MODULE, path + COMPONENT_OPTIMIZER])
    return _to_tensors(state)


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    """The namespaced metrics of one PPO iteration from RLlib's result dict."""
    runners = result.get("env_runners", {})
    learner = result.get("learners", {}).get("default_policy", {})
    out = {
        "train/episode_return_mean": runners.get("episode_return_mean"),
        "train/episode_len_mean": runners.get("episode_len_mean"),
        "train/policy_loss": learner.get("policy_loss"),
        "train/vf_loss": learner.get("vf_loss"),
        "train/entropy": learner.get("entropy"),
        "train/mean_kl": learner.get("mean_kl_loss"),
    }
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float | np.number)}


def train(cfg: TrialConfig, run_dir: str | Path | None = None, report: Report | None = None) -> dict[str, float]:
    """PPO iterations until ``cfg.rl.env_steps`` environment steps; resumed from ``run_dir``/checkpoint.

    ``report(metrics, iteration, checkpoint_or_None)`` every iteration, like the Transformer's loop.
    """
    require_rllib()
    import ray

    for name in ("ray.rllib", "ray.tune"):  # RLlib's notices about its API versions, not about this trial
        logging.getLogger(name).setLevel(logging.ERROR)
    started = not ray.is_initialized()
    if started:  # the CLI: RLlib needs a Ray instance, even with everything in this process; a quiet one
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ckpt_dir = Path(run_dir) / "checkpoint" if run_dir is not None else None
    state = None
    if ckpt_dir is not None and checkpoint.resolve(ckpt_dir).is_file():  # read once, checked before RLlib starts
        state = checkpoint.load(ckpt_dir)
        check_resumable(state, cfg, checkpoint.resolve(ckpt_dir))
    seed = run_seed(cfg, int(state["epoch"]) if state is not None else 0)
    torch.manual_seed(seed)
    algo = ppo_config(cfg, seed).build_algo()
    try:
        return _train(algo, cfg, ckpt_dir, state, report)
    finally:
        algo.stop()
        # outside Tune, RLlib's Trainable makes a log folder under ~/ray_results that nothing writes to
        with contextlib.suppress(OSError):
            Path(algo.logdir).rmdir()
        if started:
            ray.shutdown()


def _train(algo: Any, cfg: TrialConfig, ckpt_dir: Path | None, state: dict[str, Any] | None,
           report: Report | None) -> dict[str, float]:
    """The iterations of `train`, resumed from the checkpoint ``state`` (already checked) when given."""
    iteration, env_steps, trained_s, history = 0, 0, 0.0, []
    if state is not None:
        algo.set_state(state["model"])  # the learner's weights and optimiser; RLlib syncs the env runner
        iteration, env_steps = int(state["epoch"]), int(state["env_steps"])
        history = list(state["history"])
        trained_s = trained_seconds(history)
    metrics: dict[str, float] = history[-1] if history else {}
    kwargs = cfg.eval_task_kwargs
    while env_steps < cfg.rl.env_steps:
        t0 = time.perf_counter()
        result = algo.train()
        elapsed = time.perf_counter() - t0
        sampled = int(result.get("env_runners", {}).get("num_env_steps_sampled", cfg.rl.rollout_steps))
        env_steps += sampled
        trained_s += elapsed
        iteration += 1
        metrics = _metrics(result)
        metrics.update({"perf/env_steps": float(env_steps), "perf/env_steps_per_s": sampled / elapsed,
                        "perf/epoch_s": elapsed, "perf/train_s": trained_s})
        last = env_steps >= cfg.rl.env_steps
        if cfg.eval.episodes and (iteration % cfg.eval.every == 0 or last):
            result = evaluate(algo.get_module(), cfg, kwargs, cfg.eval.episodes, cfg.eval.num_envs)
            metrics.update({f"eval/{k}": v for k, v in result.items()})
        metrics["epoch"] = float(iteration)
        history.append(metrics)
        path = None
        if ckpt_dir is not None and (iteration % cfg.checkpoint_every == 0 or last):
            path = checkpoint.save(ckpt_dir, {"model": _learner_state(algo), "epoch": iteration,
                                              "env_steps": env_steps, "config": to_dict(cfg),
                                              "history": history})
        if report is not None:
            report(metrics, iteration, path)
    return metrics
