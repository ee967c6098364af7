"""LTMB Counting: pass a chain of rooms, choosing doors by the parity of identical objects seen before.

## Description

The agent walks through a chain of ``length`` rooms, one at a time. Each room is the same 5x5 MiniGrid
area (walls around a 3x3 floor); when the agent steps into an open door the room is cleared and the next
one is generated in its place, with the agent back at (2, 3) facing north. From there the agent sees the
whole room (``see_through_walls=True``) and nothing of the rooms before it.

- **Normal room** (always the first one): each of the 6 object cells (1,1), (3,1), (1,2), (3,2), (1,3),
  (3,3) holds, with probability ``1 - empty_freq``, an object of random type (ball, key, box) and random
  colour (the 6 MiniGrid colours); a closed blue door at (2, 0) leads on.
- **Test room** (each room after the first with probability ``test_freq``): one random object at (2, 1),
  a closed green door at (1, 0) and a closed red door at (3, 0). The green door is right if the number of
  objects *identical in type and colour* to this object among all normal rooms so far is even (zero
  included), otherwise the red door is.

Every object of a normal room is seen: the whole room is in view at the room's first step. Test-room
objects are not counted (as in the original).

## Action Space

``Discrete(7)``, MiniGrid's actions: 0 left, 1 right, 2 forward, 3 pickup, 4 drop, 5 toggle, 6 done.
``pickup`` acts as ``toggle`` (objects cannot be carried); ``drop`` and ``done`` do nothing. Toggling a
closed door opens it (again: closes it); toggling a box removes it, as in MiniGrid (the count is unaffected).

## Observation

``obs_mode="symbolic"`` (default): MiniGrid's egocentric 7x7x3 uint8 view (object, colour, state), agent at
``[3, 6]`` looking up; cells outside the room read as grey walls, the agent's own cell as empty.
``obs_mode="pixels"``: the agent's point-of-view render of that view at 12-pixel tiles, (84, 84, 3) uint8,
exactly :func:`symbolic_to_pixels` of ``env.unwrapped.symbolic_obs``.

## Rewards

1 for passing the door of the last room, 0 otherwise.

## Termination

Terminated on entering a test room's wrong door (failure) or on passing the ``length``-th room's door
(success, ``info["success"] = True``). Truncated after ``7 * length`` steps (failure).

## Registered configurations

- ``memory_tasks/Counting-v0``: ``length=20, test_freq=0.3, empty_freq=0.1`` (the paper's setting).

## Expert and its pairs

At the first step of a normal room it records, for every object in view cells (2,4), (4,4), (2,5), (4,5),
(2,6), (4,6), the timestep at which it was seen, then plays forward, forward, toggle, forward (4 steps).
At the first step of a test room it looks up the object at view (3, 4), recalls every recorded timestep
of an identical object (pairs (p, t); two identical objects seen in one room give one pair) and takes the
door given by the parity of the number of identical objects with a fixed 7-action script: turn towards the
door, forward, turn back, forward, forward, toggle, forward. Every step also emits the self-pair (t, t).
The other steps of the scripts emit only the self-pair, as in the original expert. The expert reads
``symbolic_obs``, so it plays in either observation mode.

## Design decisions (where the original is silent or not reproducible)

- All randomness comes from ``np_random``. Per object cell: type, colour, then whether the cell is filled
  (``random() >= empty_freq``); per room change: whether it is a test room (``random() < test_freq``).
- Truncation is a failure; the original marks any truncated episode a success (a bug).
- For speed, the symbolic view is a slice of a wall-padded numpy copy of the room (re-encoded only when a
  room is generated or something is toggled), not MiniGrid's per-cell ``gen_obs_grid`` (about 30x faster);
  ``step`` is written out rather than calling ``MiniGridEnv.step``, with the same dynamics for these rooms.
  The tests check the view against MiniGrid's own encoding.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Door, Key
from minigrid.minigrid_env import MiniGridEnv

from memory_tasks import core, gridworld

TASK = "Counting"
ROOM = 5  # the room is 5x5 cells including its walls
PAD = 6  # wall padding so that any 7x7 view of the room is a plain slice
OBJECT_CELLS = ((1, 1), (3, 1), (1, 2), (3, 2), (1, 3), (3, 3))
OBJECT_TYPES = (Ball, Key, Box)
START, START_DIR = (2, 3), 3  # facing north
BLUE_DOOR, GREEN_DOOR, RED_DOOR, TEST_OBJECT = (2, 0), (1, 0), (3, 0), (2, 1)
WALL_CODE = (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0)
EMPTY_CODE = (OBJECT_TO_IDX["empty"], 0, 0)
DOOR = OBJECT_TO_IDX["door"]
OBJECT_CODES = frozenset(OBJECT_TO_IDX[name] for name in ("ball", "key", "box"))
# The object cells as seen from the start (agent at view [3, 6] facing north): world (x, y) -> view (x+1, y+3)
VIEW_OBJECT_CELLS = tuple((x + 1, y + 3) for x, y in OBJECT_CELLS)
VIEW_BLUE_DOOR, VIEW_TEST_OBJECT = (3, 3), (3, 4)
MISSION = (
    "go through the green door if an even number of objects identical to the one in this room were seen "
    "before, otherwise through the red door"
)

symbolic_to_pixels = gridworld.ltmb_pixels


class CountingEnv(MiniGridEnv):
    """LTMB Counting (see the module docstring)."""

    def __init__(
        self,
        *,
        length: int = 20,
        test_freq: float = 0.3,
        empty_freq: float = 0.1,
        obs_mode: str = "symbolic",
        render_mode: str | None = None,
        **unknown: Any,
    ):
        core.reject_unknown(TASK, unknown, type(self))
        self.length = core.check_int(TASK, "length", length, 1)
        self.test_freq = core.check_prob(TASK, "test_freq", test_freq)
        self.empty_freq = core.check_prob(TASK, "empty_freq", empty_freq)
        self.obs_mode = core.check_obs_mode(TASK, obs_mode)
        core.check_render_mode(TASK, render_mode, ("human", "rgb_array"))  # MiniGrid's
        super().__init__(
            mission_space=MissionSpace(mission_func=self._gen_mission),
            width=ROOM,
            height=ROOM,
            max_steps=7 * self.length,
            see_through_walls=True,
            render_mode=render_mode,
        )
        self.observation_space = core.observation_space(self.obs_mode)
        self._padded = np.empty((ROOM + 2 * PAD, ROOM + 2 * PAD, 3), dtype=np.uint8)
        self._padded[...] = WALL_CODE
        self._counts = np.zeros((len(OBJECT_TYPES), len(COLOR_NAMES)), dtype=np.int64)
        self.room = 0  # index of the room the agent is in
        self.correct_door: tuple[int, int] | None = None  # None in a normal room
        self.symbolic_obs = np.zeros(core.SYMBOLIC_SHAPE, dtype=np.uint8)

    @staticmethod
    def _gen_mission() -> str:
        return MISSION

    @property
    def is_test_room(self) -> bool:
        return self.correct_door is not None

    # ---- rooms

    def _gen_grid(self, width: int, height: int) -> None:
        self.mission = MISSION
        self._counts[...] = 0
        self.room = 0
        self._new_room(test=False)

    def _new_room(self, test: bool) -> None:
        self.grid = Grid(ROOM, ROOM)
        self.grid.wall_rect(0, 0, ROOM, ROOM)
        self.agent_pos, self.agent_dir = START, START_DIR
        rng = self.np_random
        if test:
            kind, colour = int(rng.integers(len(OBJECT_TYPES))), int(rng.integers(len(COLOR_NAMES)))
            self.grid.set(*TEST_OBJECT, OBJECT_TYPES[kind](COLOR_NAMES[colour]))
            self.grid.set(*GREEN_DOOR, Door("green"))
            self.grid.set(*RED_DOOR, Door("red"))
            self.correct_door = GREEN_DOOR if self._counts[kind, colour] % 2 == 0 else RED_DOOR
        else:
            for x, y in OBJECT_CELLS:
                kind, colour = int(rng.integers(len(OBJECT_TYPES))), int(rng.integers(len(COLOR_NAMES)))
                if rng.random() >= self.empty_freq:
                    self.grid.set(x, y, OBJECT_TYPES[kind](COLOR_NAMES[colour]))
                    self._counts[kind, colour] += 1
            self.grid.set(*BLUE_DOOR, Door("blue"))
            self.correct_door = None
        self._encode_room()

    def _encode_room(self) -> None:
        self._padded[PAD : PAD + ROOM, PAD : PAD + ROOM] = self.grid.encode()

    # ---- gymnasium API

    def gen_obs(self) -> np.ndarray:
        top_x, top_y, _, _ = self.get_view_exts()
        view = self._padded[PAD + top_x : PAD + top_x + 7, PAD + top_y : PAD + top_y + 7]
        # MiniGrid rotates the slice left (agent_dir + 1) times so that the agent looks up.
        view = gridworld.egocentric(view, self.agent_dir)
        view[3, 6] = EMPTY_CODE  # the agent's own cell (it never carries anything)
        self.symbolic_obs = view
        return view if self.obs_mode == "symbolic" else symbolic_to_pixels(view)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = core.check_action(TASK, action, len(Actions))  # MiniGrid's Discrete(7)
        self.step_count += 1
        if action == Actions.pickup:
            action = Actions.toggle
        if action == Actions.left:
            self.agent_dir = (self.agent_dir - 1) % 4
        elif action == Actions.right:
            self.agent_dir = (self.agent_dir + 1) % 4
        elif action in (Actions.forward, Actions.toggle):
            fx, fy = self.agent_pos[0] + self.dir_vec[0], self.agent_pos[1] + self.dir_vec[1]
            cell = self.grid.get(fx, fy)
            if action == Actions.forward and (cell is None or cell.can_overlap()):
                self.agent_pos = (int(fx), int(fy))
            elif action == Actions.toggle and cell is not None:
                cell.toggle(self, (fx, fy))
                self._encode_room()
        elif action not in (Actions.drop, Actions.done):
            raise ValueError(f"{TASK}: unknown action {action}")

        reward, terminated, success = 0.0, False, False
        if self.agent_pos[1] == 0:  # walked into an open door
            if self.correct_door is not None and tuple(self.agent_pos) != self.correct_door:
                terminated = True
            elif self.room + 1 == self.length:
                terminated, success, reward = True, True, 1.0
            else:
                self.room += 1
                self._new_room(test=bool(self.np_random.random() < self.test_freq))
        truncated = self.step_count >= self.max_steps
        if self.render_mode == "human":
            self.render()
        return self.gen_obs(), reward, terminated, truncated, {"success": success}

    def make_expert(self) -> CountingExpert:
        return CountingExpert(self)


class CountingExpert:
    """The LTMB counting expert: remembers when each (type, colour) was seen, answers by parity."""

    def __init__(self, env: CountingEnv):
        self.env = env
        self.t = 0
        self.seen: dict[tuple[int, int], list[int]] = {}  # (type, colour) -> timesteps, once per object
        self.script: deque[int] = deque()

    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        view = self.env.symbolic_obs
        t, self.t = self.t, self.t + 1
        recalled = [t]
        if not self.script:  # first step of a room
            if view[VIEW_BLUE_DOOR][0] == DOOR:  # normal room: the blue door straight ahead
                for cell in VIEW_OBJECT_CELLS:
                    kind, colour, _ = (int(v) for v in view[cell])
                    if kind in OBJECT_CODES:
                        self.seen.setdefault((kind, colour), []).append(t)
                self.script.extend([Actions.forward, Actions.forward, Actions.toggle, Actions.forward])
            else:  # test room: doors at view (2, 3) and (4, 3)
                kind, colour, _ = (int(v) for v in view[VIEW_TEST_OBJECT])
                times = self.seen.get((kind, colour), [])
                recalled += times
                turn, back = (
                    (Actions.left, Actions.right) if len(times) % 2 == 0 else (Actions.right, Actions.left)
                )
                self.script.extend(
                    [
                        turn,
                        Actions.forward,
                        back,
                        Actions.forward,
                        Actions.forward,
                        Actions.toggle,
                        Actions.forward,
                    ]
                )
        return int(self.script.popleft()), recalled
