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
import importlib
import inspect
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym

from memory_tasks.core import OBS_MODES, Episode, Expert, rollout

__all__ = ["ACTION_NAMES", "OBS_MODES", "PIXEL_STYLE", "TASKS", "Episode", "Expert", "make", "parameters", "resolve_task", "rollout", "short_name", "source_digest"]

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
    _missing = [table for table, entries in (("PIXEL_STYLE", PIXEL_STYLE), ("ACTION_NAMES", ACTION_NAMES))
                if _id not in entries]
    if _missing:  # a task registered in TASKS alone: said here, not as a KeyError deep in rendering or training
        raise ImportError(f"memory_tasks: task {_name} ({_id}) has no entry in {' and '.join(_missing)}")
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


def parameters(name: str) -> dict[str, Any]:
    """A task's parameters with their defaults, e.g. ``parameters("Hallway") == {"length": 30}``: its
    environment class's keyword-only arguments other than obs_mode and render_mode (as `core.reject_unknown`
    lists them; not shared with it, since a change to ``core`` would make every task's datasets stale)."""
    module, _, cls = TASKS[short_name(name)][1].partition(":")
    signature = inspect.signature(getattr(importlib.import_module(module), cls))
    return {p.name: p.default for p in signature.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in ("obs_mode", "render_mode")}


def make(name: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` for a task given by short name or id, with its keyword arguments."""
    return gym.make(resolve_task(name), **kwargs)


@functools.cache
def source_digest(name: str) -> str:
    """A digest of the code that makes a task's episodes: its own module, the modules of this package it
    imports (transitively), ``core`` (whose `rollout` records the episodes), its registry entry, and the
    versions of gymnasium and minigrid. Datasets are keyed by it, so a change to a task or its expert
    regenerates that task's demonstrations instead of reusing stale ones; a change to another task's module,
    a new task, or this file's tables leave them alone."""
    env_id = resolve_task(name)
    entry = next(e for i, e in TASKS.values() if i == env_id)
    folder = Path(__file__).parent
    h = hashlib.sha256(f"{env_id}={entry}\0".encode())
    for stem in sorted(package_imports(folder, entry.split(":")[0].rsplit(".", 1)[-1]) | {"core"}):
        path = folder / f"{stem}.py"
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("gymnasium", "minigrid"):
        h.update(f"{dist}=={metadata.version(dist)}\0".encode())
    return h.hexdigest()[:16]


def package_imports(folder: Path, stem: str) -> set[str]:
    """``stem`` and the modules of this package (files in ``folder``) it imports, directly or through them:
    ``from memory_tasks import core``, ``from memory_tasks.gridworld import ...``, ``import memory_tasks.x``
    and the relative forms. The package's ``__init__`` (registry and plumbing) is not followed."""
    import ast

    package = "memory_tasks"  # as the modules name it (not __name__: a copy of the package may load under another)
    found: set[str] = set()
    todo = [stem]
    while todo:
        name = todo.pop()
        if name in found or not (folder / f"{name}.py").is_file():
            continue
        found.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}.")]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if (node.level == 0 and module == package) or (node.level == 1 and not module):
                    todo += [a.name for a in node.names]  # from memory_tasks import core, gridworld
                elif node.level == 0 and module.startswith(f"{package}."):
                    todo.append(module.split(".")[1])
                elif node.level == 1:
                    todo.append(module.split(".")[0])
    return found
