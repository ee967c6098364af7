"""What every memory task shares: the expert protocol, the episode record, a rollout, input checks.

A task module (``hallway.py``, ``ordering.py``, ...) holds one environment and its scripted expert. The
environment is a ``gymnasium.Env`` whose unwrapped instance offers:

- ``make_expert()`` -> an :class:`Expert` for the episode that the last ``reset`` started;
- ``symbolic_obs`` -> the current observation in the symbolic encoding (7, 7, 3) uint8, whatever
  ``obs_mode`` is; in ``obs_mode="pixels"`` the observation is exactly ``symbolic_to_pixels(symbolic_obs)``
  of the task module, so a dataset can store the compact symbolic form and render pixels when loading;
- ``info["success"]`` in every ``step`` info.

Experts may read the environment's state (as the LTMB experts do); *what they recall* is what matters:
``act`` returns the action and the timesteps p <= t whose observations the decision at t depends on
(the memory dependency pairs (p, t), always including the self-pair (t, t)).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, Protocol, cast

import gymnasium as gym
import numpy as np

OBS_MODES = ("symbolic", "pixels")
SYMBOLIC_SHAPE = (7, 7, 3)
# Codes per channel of a symbolic cell: MiniGrid's objects, colours and states (the model's one-hot widths).
SYMBOLIC_CODES = (11, 6, 3)
PIXEL_SHAPE = (84, 84, 3)
TILE_PIXELS = 12  # 7 tiles x 12 px = 84 px


class Expert(Protocol):
    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        """Return (action, recalled timesteps p <= t, including t itself) for the current step t."""
        ...


class MemoryTask(Protocol):
    """What the unwrapped environment of every task offers (the module docstring)."""

    symbolic_obs: np.ndarray

    def make_expert(self) -> Expert: ...


@dataclass(frozen=True)
class Episode:
    """One expert episode in timestep space. Observation t is what the expert saw before action t."""

    observations: np.ndarray  # (T, *obs_shape) uint8, in the env's obs_mode
    symbolic: np.ndarray  # (T, 7, 7, 3) uint8, always (the compact lossless form)
    actions: np.ndarray  # (T,) int64
    rewards: np.ndarray  # (T,) float32, reward received after action t
    pairs: np.ndarray  # (N, 2) int64 rows (p, q), p <= q < T, sorted by (q, p), unique
    success: bool
    seed: int

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


def rollout(env: gym.Env, seed: int, max_steps: int | None = None) -> Episode:
    """Play the task's expert for one episode from ``env.reset(seed=seed)`` and record it."""
    obs, _ = env.reset(seed=int(seed))
    base = cast(MemoryTask, env.unwrapped)
    expert = base.make_expert()
    observations: list[np.ndarray] = []
    symbolic: list[np.ndarray] = []
    actions: list[int] = []
    rewards: list[float] = []
    pairs: list[tuple[int, int]] = []
    success = False
    t = 0
    while True:
        action, recalled = expert.act(obs)
        observations.append(obs)
        symbolic.append(base.symbolic_obs)
        actions.append(int(action))
        pairs.extend((int(p), t) for p in set(recalled))
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        success = bool(info.get("success", False))
        t += 1
        if terminated or truncated or (max_steps is not None and t >= max_steps):
            break
    pair_array = np.array(sorted(pairs, key=lambda pq: (pq[1], pq[0])), dtype=np.int64).reshape(-1, 2)
    codes = np.stack(symbolic).astype(np.uint8)
    check_symbolic(env.spec.id if env.spec is not None else type(base).__name__, codes)
    return Episode(
        observations=np.stack(observations).astype(np.uint8),
        symbolic=codes,
        actions=np.array(actions, dtype=np.int64),
        rewards=np.array(rewards, dtype=np.float32),
        pairs=pair_array,
        success=success,
        seed=int(seed),
    )


def check_symbolic(task: str, codes: np.ndarray) -> None:
    """A ValueError when a task's symbolic observations (T, 7, 7, 3) leave MiniGrid's code ranges
    (SYMBOLIC_CODES): the model's encoder would clamp such codes and train on merged observations."""
    over = codes.reshape(-1, 3).max(axis=0) if codes.size else np.zeros(3, np.uint8)
    bad = [f"{name} {int(top)} (at most {n - 1})" for name, top, n in zip(("object", "colour", "state"), over,
                                                                         SYMBOLIC_CODES, strict=True) if top >= n]
    if bad:
        raise ValueError(f"{task}: a symbolic observation has codes out of MiniGrid's ranges: {', '.join(bad)}")


# ---- input checks shared by the task constructors: a user mistake is a ValueError naming the parameter


def reject_unknown(task: str, unknown: dict[str, Any], env_class: type | None = None) -> None:
    """A ValueError for parameters the task does not have, naming those it has (``env_class``'s keyword
    parameters other than obs_mode and render_mode)."""
    if unknown:
        names = ", ".join(sorted(unknown))
        known = ""
        if env_class is not None:
            import inspect

            params = [p for p in inspect.signature(env_class).parameters.values()
                      if p.kind is p.KEYWORD_ONLY and p.name not in ("obs_mode", "render_mode")]
            known = "; it has: " + ", ".join(f"{p.name} (default {p.default!r})" for p in params)
        raise ValueError(f"{task}: unknown parameter(s) {names}{known}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 4, 60, 60


def short_repr(value: Any) -> str:
    """repr for error messages, cut short (a YAML alias can make a value of millions of elements)."""
    return _REPR.repr(value)


def check_int(task: str, name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{task}: parameter {name} must be an integer, got {short_repr(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{task}: parameter {name} must be {bound}, got {value}")
    return int(value)


def check_prob(task: str, name: str, value: Any) -> float:
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    if not real or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{task}: parameter {name} must be a probability in [0, 1], got {short_repr(value)}")
    return float(value)


def check_render_mode(task: str, value: Any, modes: tuple[str, ...]) -> str | None:
    if value is not None and value not in modes:
        raise ValueError(f"{task}: parameter render_mode must be None or one of {', '.join(modes)}, got {short_repr(value)}")
    return value


def check_action(task: str, action: Any, n: int) -> int:
    """An action id in [0, n) as an int: Python or NumPy integers (0-d arrays too), never a bool or a float."""
    if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
        action = action.item()
    if isinstance(action, bool | np.bool_) or not isinstance(action, int | np.integer) or not 0 <= action < n:
        raise ValueError(f"{task}: action must be an integer in [0, {n}), got {short_repr(action)}")
    return int(action)


def check_obs_mode(task: str, value: Any) -> str:
    if value not in OBS_MODES:
        raise ValueError(f"{task}: parameter obs_mode must be one of {', '.join(OBS_MODES)}, got {short_repr(value)}")
    return str(value)


def observation_space(obs_mode: str) -> gym.spaces.Box:
    shape = SYMBOLIC_SHAPE if obs_mode == "symbolic" else PIXEL_SHAPE
    return gym.spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)
