"""memory_tasks: the five partially observable memory tasks of the AttentionTuner paper.

Importing the package registers the gymnasium ids::

    memory_tasks/Hallway-v0       LTMB Hallway        (length=30)
    memory_tasks/Ordering-v0      LTMB Ordering       (length=50)
    memory_tasks/Counting-v0      LTMB Counting       (length=20, test_freq=0.3, empty_freq=0.1)
    memory_tasks/MortarMayhem-v0  Memory Gym grid     (commands=10)
    memory_tasks/MysteryPath-v0   Memory Gym grid     (size=7, max_steps=128)

Each accepts ``obs_mode="symbolic" | "pixels"``. After ``reset``, ``env.unwrapped.make_expert()`` gives the
scripted expert whose ``act(obs)`` returns ``(action, recalled_timesteps)``; :func:`rollout` plays it.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

import gymnasium as gym

from memory_tasks.core import OBS_MODES, Episode, Expert, rollout

__all__ = ["ACTION_NAMES", "OBS_MODES", "PIXEL_STYLE", "TASKS", "Episode", "Expert", "make", "resolve_task", "rollout", "short_name", "source_digest"]

# short name -> (gymnasium id, entry point)
TASKS: dict[str, tuple[str, str]] = {
    "Hallway": ("memory_tasks/Hallway-v0", "memory_tasks.hallway:HallwayEnv"),
    "Ordering": ("memory_tasks/Ordering-v0", "memory_tasks.ordering:OrderingEnv"),
    "Counting": ("memory_tasks/Counting-v0", "memory_tasks.counting:CountingEnv"),
    "MortarMayhem": ("memory_tasks/MortarMayhem-v0", "memory_tasks.mortar_mayhem:MortarMayhemEnv"),
    "MysteryPath": ("memory_tasks/MysteryPath-v0", "memory_tasks.mystery_path:MysteryPathEnv"),
}

# How pixel observations are drawn from the symbolic codes (see gridworld.render_batch).
PIXEL_STYLE: dict[str, str] = {
    "memory_tasks/Hallway-v0": "ltmb",
    "memory_tasks/Ordering-v0": "ltmb",
    "memory_tasks/Counting-v0": "ltmb",
    "memory_tasks/MortarMayhem-v0": "arena",
    "memory_tasks/MysteryPath-v0": "arena",
}

# The names of each task's actions, by index (each task module's docstring says what they do there).
_MINIGRID_ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
_ARENA_ACTIONS = ("no-op", "turn left", "turn right", "forward")
ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "memory_tasks/Hallway-v0": _MINIGRID_ACTIONS,
    "memory_tasks/Ordering-v0": _MINIGRID_ACTIONS,
    "memory_tasks/Counting-v0": _MINIGRID_ACTIONS,
    "memory_tasks/MortarMayhem-v0": _ARENA_ACTIONS,
    "memory_tasks/MysteryPath-v0": _ARENA_ACTIONS,
}

for _name, (_id, _entry) in TASKS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry)


def resolve_task(name: str) -> str:
    """'hallway', 'Hallway', 'Hallway-v0' or 'memory_tasks/Hallway-v0' -> 'memory_tasks/Hallway-v0'."""
    key = str(name).removeprefix("memory_tasks/").removesuffix("-v0").lower()
    for short, (env_id, _) in TASKS.items():
        if short.lower() == key:
            return env_id
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")


def short_name(name: str) -> str:
    """Any spelling `resolve_task` takes -> the task's short name ('hallway', 'memory_tasks/Hallway-v0' -> 'Hallway')."""
    env_id = resolve_task(name)
    return next(short for short, (i, _) in TASKS.items() if i == env_id)


def make(name: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` for a task given by short name or id, with its keyword arguments."""
    return gym.make(resolve_task(name), **kwargs)


@functools.cache
def source_digest(name: str) -> str:
    """A digest of the code that makes a task's episodes: its own module, every shared module of this package
    (all but the other tasks' modules), and the versions of gymnasium and minigrid. Datasets are keyed by it,
    so a change to a task or its expert regenerates that task's demonstrations instead of reusing stale ones;
    a change to another task's module leaves them alone."""
    env_id = resolve_task(name)
    others = {entry.split(":")[0].rsplit(".", 1)[-1] for i, entry in TASKS.values() if i != env_id}
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem not in others:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("gymnasium", "minigrid"):
        h.update(f"{dist}=={metadata.version(dist)}\0".encode())
    return h.hexdigest()[:16]
