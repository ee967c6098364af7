"""Memory Gym Mortar Mayhem (grid variant): memorise a sequence of moves, then walk it.

Description
-----------
A 5x5 arena. The agent spawns on a uniformly random tile, facing north. A sequence of ``commands`` moves
is drawn, each uniformly from those of {right, down, left, up, stay} that keep the target inside the arena;
each moves a hidden target tile relative to the previous target, the first one relative to the agent's
spawn tile (as in the original, ``endless-memory-gym/memory_gym/mortar_mayhem_grid.py``).

Clue phase: command i is shown in observations o_{4i}, o_{4i+1}, o_{4i+2}; o_{4i+3} is blank. The agent
is drawn on its spawn tile facing north throughout. Actions a_0 .. a_{4n-2} are ignored; a_{4n-1} (taken
on the last, blank clue frame) already moves the agent, as in the original (its reset shows the first
clue frame, so its list of 4n clue frames is used up after 4n - 1 steps).

Execution: command i is checked on the position after action a_{4n+5+8i}, i.e. the position shown in
observation o_{4n+6+8i}. That observation and the next, o_{4n+7+8i}, show every tile but the target as
deadly; the agent must be on the target in both (in the original, 6 steps with the tiles off, then 2 with
them on). The action taken on the second deadly frame is not checked and already moves towards the next
target, so each command gets 7 moving actions, a_{4n-1+8i} .. a_{4n+5+8i} (the first on a blank or deadly
frame), and the 6 frames in between show nothing. Passing the last check ends the episode at once: a
perfect agent finishes n commands in 12n - 2 steps (118 for n = 10); its last observation shows the
deadly tiles of the last check.

Action Space
------------
``Discrete(4)``: 0 no-op, 1 turn left, 2 turn right, 3 move forward one cell (into the arena's edge: stay).

Observation
-----------
``obs_mode="pixels"`` (default, as in the paper): (84, 84, 3) uint8 = ``symbolic_to_pixels(symbolic_obs)``,
the whole 7x7 area at 12-pixel tiles. ``obs_mode="symbolic"``: the (7, 7, 3) uint8 encoding, indexed
``[x, y]`` (x to the right, y down), arena cell (ax, ay) at ``[ax + 1, ay + 1]``:

- border ring: wall ``(2, 5, 0)`` (grey); arena floor: empty ``(1, 0, 0)``;
- the shown command (clue frames only): the five border walls along the side it points to turn yellow,
  ``(2, 4, 0)``: right -> ``[6, 1..5]``, down -> ``[1..5, 6]``, left -> ``[0, 1..5]``, up -> ``[1..5, 0]``;
  stay -> all four sides (20 cells). Corners stay grey. Blank frames: all walls grey. (The original draws
  an arrow / a circle over the arena's centre tile; the agent may stand there, so we use the border.)
- deadly tiles (the two frames after each check): lava ``(9, 0, 0)`` on every arena tile but the target;
- the agent: ``gridworld.agent_code(direction, on_deadly)`` = ``(10, direction, 1 if on lava else 0)``,
  direction in MiniGrid order (0 east, 1 south, 2 west, 3 north).

The target tile is never encoded or drawn; like the original, the deadly frames reveal it (as the only
safe tile) once it has been checked.

Rewards
-------
+0.1 for each command passed (1.0 for a perfect episode with n = 10); nothing else, failure costs nothing.

Termination
-----------
Failure: not on the target at a check or on the frame after it (``info["success"] = False``). Success:
the last command passed. No truncation is needed: an episode lasts at most 12n - 2 steps.
``info`` also holds ``commands_passed``.

Registered configurations
-------------------------
``memory_tasks/MortarMayhem-v0``: ``commands=10``, ``obs_mode="pixels"``.

Expert and its pairs
--------------------
During the clue phase it does nothing (pairs: the self-pair only). From t = 4n - 1 on, it serves command
i = (t - 4n + 1) // 8: if not on target i it turns towards it (right, or left for both left and about
turns) and moves forward -- at most 3 of the 7 moving actions, since each target is at most one cell from
the previous one -- then waits (no-op) through the check and the deadly frame. Pairs at each of those
steps: (4i, t), (4i+1, t), (4i+2, t) -- the frames that showed command i -- and (t, t). The reference
point of each move (the previous target, where the agent stands) is read from the current frame.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX

from memory_tasks import core
from memory_tasks.gridworld import DIR_TO_VEC, EMPTY, GREY, LAVA, NORTH, WALL, agent_code, arena_pixels

TASK = "MortarMayhem"
ARENA = 5  # arena side in tiles
SHOW, BLANK = 3, 1  # clue frames per command: shown, then blank
REACH, DEADLY = 6, 2  # execution frames per command: tiles off, then deadly (the first is the check)
PERIOD = REACH + DEADLY
CLUE = SHOW + BLANK
REWARD = 0.1
NOOP, TURN_LEFT, TURN_RIGHT, FORWARD = 0, 1, 2, 3

COMMANDS = ("right", "down", "left", "up", "stay")  # indices 0-3 equal MiniGrid directions
DELTAS = ((1, 0), (0, 1), (-1, 0), (0, -1), (0, 0))
YELLOW = COLOR_TO_IDX["yellow"]
RED = COLOR_TO_IDX["red"]


def _side(command: int) -> list[tuple[int, int]]:
    """Border cells lit while ``command`` is shown."""
    if command == 4:
        return [cell for c in range(4) for cell in _side(c)]
    dx, dy = DELTAS[command]
    if dx:
        x = 6 if dx > 0 else 0
        return [(x, y) for y in range(1, 6)]
    y = 6 if dy > 0 else 0
    return [(x, y) for x in range(1, 6)]


_SIDES = tuple(tuple(np.array(cells).T) for cells in map(_side, range(len(COMMANDS))))  # (xs, ys) each
_BASE = np.zeros((7, 7, 3), dtype=np.uint8)
_BASE[:, :, 0] = WALL
_BASE[:, :, 1] = GREY
_BASE[1:6, 1:6] = (EMPTY, 0, 0)


def symbolic_to_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The (84, 84, 3) RGB image of a symbolic observation: ``gridworld.arena_pixels`` (a tile-table lookup)."""
    return arena_pixels(symbolic)


def shown_command(symbolic: np.ndarray) -> int | None:
    """Decode the command displayed in a symbolic observation (index into ``COMMANDS``), None if blank."""
    lit = symbolic[:, :, 1] == YELLOW
    for command, (xs, ys) in enumerate(_SIDES):
        if lit.sum() == len(xs) and lit[xs, ys].all():
            return command
    return None


class MortarMayhemEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 6}

    def __init__(
        self, *, commands: int = 10, obs_mode: str = "pixels", render_mode: str | None = None, **unknown: Any
    ) -> None:
        core.reject_unknown(TASK, unknown, type(self))
        self.commands = core.check_int(TASK, "commands", commands, 1)
        self.obs_mode = core.check_obs_mode(TASK, obs_mode)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"{TASK}: parameter render_mode must be None or 'rgb_array', got {core.short_repr(render_mode)}"
            )
        self.render_mode = render_mode
        self.observation_space = core.observation_space(self.obs_mode)
        self.action_space = gym.spaces.Discrete(4)
        self.clue_steps = CLUE * self.commands  # o_0 .. o_{4n-1}
        self.first_check = self.clue_steps + REACH  # observation index of command 0's check
        self.max_steps = self.first_check + PERIOD * (self.commands - 1)  # 12n - 2

    # ---- episode state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        x, y = divmod(int(rng.integers(ARENA * ARENA)), ARENA)
        self.spawn = (x, y)
        ids, targets = [], []
        for _ in range(self.commands):
            valid = [c for c, (dx, dy) in enumerate(DELTAS) if 0 <= x + dx < ARENA and 0 <= y + dy < ARENA]
            command = valid[int(rng.integers(len(valid)))]
            x, y = x + DELTAS[command][0], y + DELTAS[command][1]
            ids.append(command)
            targets.append((x, y))
        self.command_ids: tuple[int, ...] = tuple(ids)
        self.targets: tuple[tuple[int, int], ...] = tuple(targets)
        self.pos, self.dir = self.spawn, NORTH
        self.t = 0  # index of the current observation (= number of steps taken)
        self.passed = 0
        self.finished = False
        self._observe()
        return self._obs(), {"success": False, "commands_passed": 0}

    def deadly_command(self, s: int) -> int | None:
        """The command whose deadly frames include observation ``s`` (None while the tiles are off)."""
        k = s - self.first_check
        return k // PERIOD if k >= 0 and k % PERIOD < DEADLY else None

    def step(self, action):
        if self.finished:
            raise RuntimeError(f"{TASK}: step() after the episode ended; call reset()")
        action = core.check_action(TASK, action, 4)
        if self.t >= self.clue_steps - 1:  # clue-phase actions are ignored
            self._move(int(action))
        self.t += 1
        reward, success = 0.0, False
        i = self.deadly_command(self.t)
        if i is not None:
            if self.pos != self.targets[i]:
                self.finished = True
            elif self.t == self.first_check + PERIOD * i:  # the check itself
                reward, self.passed = REWARD, i + 1
                success = self.finished = self.passed == self.commands
        self._observe()
        info = {"success": success, "commands_passed": self.passed}
        return self._obs(), reward, self.finished, False, info

    def _move(self, action: int) -> None:
        if action == TURN_LEFT:
            self.dir = (self.dir - 1) % 4
        elif action == TURN_RIGHT:
            self.dir = (self.dir + 1) % 4
        elif action == FORWARD:
            dx, dy = DIR_TO_VEC[self.dir]
            x, y = self.pos[0] + dx, self.pos[1] + dy
            if 0 <= x < ARENA and 0 <= y < ARENA:
                self.pos = (x, y)

    # ---- observations

    def _observe(self) -> None:
        obs = _BASE.copy()
        s = self.t
        if s < self.clue_steps and s % CLUE < SHOW:
            obs[_SIDES[self.command_ids[s // CLUE]]] = (WALL, YELLOW, 0)
        i = self.deadly_command(s)
        on_deadly = False
        if i is not None:
            target = self.targets[i]
            obs[1:6, 1:6] = (LAVA, RED, 0)
            obs[target[0] + 1, target[1] + 1] = (EMPTY, 0, 0)
            on_deadly = self.pos != target
        obs[self.pos[0] + 1, self.pos[1] + 1] = agent_code(self.dir, on_deadly)
        self.symbolic_obs = obs

    def _obs(self) -> np.ndarray:
        return (
            self.symbolic_obs.copy() if self.obs_mode == "symbolic" else symbolic_to_pixels(self.symbolic_obs)
        )

    def render(self) -> np.ndarray | None:  # type: ignore[override]  # gymnasium's hint is a free TypeVar
        return symbolic_to_pixels(self.symbolic_obs) if self.render_mode == "rgb_array" else None

    def make_expert(self) -> MortarMayhemExpert:
        return MortarMayhemExpert(self)


class MortarMayhemExpert:
    """Walks to each target as soon as its command is due, then waits there (see the module docstring)."""

    def __init__(self, env: MortarMayhemEnv) -> None:
        self.env = env

    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        env = self.env
        t = env.t
        if t < env.clue_steps - 1:
            return NOOP, [t]
        i = (t - env.clue_steps + 1) // PERIOD
        recalled = [CLUE * i + k for k in range(SHOW)] + [t]
        return walk_towards(env.pos, env.dir, env.targets[i]), recalled


def walk_towards(pos: tuple[int, int], direction: int, target: tuple[int, int]) -> int:
    """One action of a shortest turn-and-forward walk from ``pos`` (facing ``direction``) to ``target``."""
    dx, dy = target[0] - pos[0], target[1] - pos[1]
    if dx == dy == 0:
        return NOOP
    want = DIR_TO_VEC.index((int(np.sign(dx)), 0) if dx else (0, int(np.sign(dy))))
    if want == direction:
        return FORWARD
    return TURN_RIGHT if want == (direction + 1) % 4 else TURN_LEFT
