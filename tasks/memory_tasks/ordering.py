"""LTMB Ordering: memorise the order of 18 objects, then say which of two came first, L times.

## Description

The agent stands still in a 7x7 room with walls around it and watches. For the first 18 steps a random
permutation of all 18 objects (ball, key, box x the 6 MiniGrid colours) is shown, one per step, at the
centre of the room (3, 3). Then come ``length`` choice steps; each shows two different random objects, one
at (2, 3) (left) and one at (4, 3) (right). The right answer is ``left`` if the left object came earlier in
the sequence, else ``right``. Nothing in a choice view tells when the objects were shown: the answer must be
recalled from the first 18 observations.

Faithful to LTMB (github: WilliamYue37/LTMB, ``ltmb/envs/ordering.py``), except where marked (*).

## Mission Space

"Memorize the order of the first 18 colored objects to appear. When shown two objects, select the one that
appeared first."

## Action Space

The 7 MiniGrid actions (``Discrete(7)``). The agent never moves: every action is executed as ``drop`` (which
does nothing, the agent carries nothing). During the first 18 steps any action is accepted; at a choice step
the answer is the action itself, ``0`` (left) or ``1`` (right); any other action is a wrong answer.

| Num | Name   | At a choice step       |
|-----|--------|------------------------|
| 0   | left   | "the left came first"  |
| 1   | right  | "the right came first" |
| 2-6 | others | wrong answer           |

## Observation

MiniGrid's egocentric 7x7x3 uint8 encoding ``(OBJECT_IDX, COLOR_IDX, STATE)``, indexed ``[x, y]``. The agent
is at (3, 6) facing north (as in the original), so its view is exactly the room: view cell ``[x, y]`` is
room cell (x, y). Walls on the border (*), the agent's own cell ``[3, 6]`` empty (the agent stands in a gap
of the south wall, since MiniGrid refuses to start it on a wall; the original room has no walls at all);
the shown object at ``[3, 3]`` (memorisation) or ``[2, 3]`` and ``[4, 3]`` (choice); everything else empty.
Objects: ball 6, key 5, box 7 (state 0); colours 0-5.

``obs_mode="pixels"`` gives MiniGrid's point-of-view render at 12-pixel tiles, (84, 84, 3) uint8, which is
exactly :func:`symbolic_to_pixels` of ``symbolic_obs``.

## Rewards

+1 after the last correct answer, -1 for a wrong answer, 0 otherwise (the original's values).

## Termination

1. A wrong answer at a choice step (failure).
2. All ``length`` choices answered correctly (success): the episode lasts exactly 18 + ``length`` steps.

No truncation is needed (the episode cannot run longer). After the end the room is shown empty (*: the
original draws one more pair); stepping a finished episode raises ``RuntimeError``: call ``reset``.

## Registered Configurations

- ``memory_tasks/Ordering-v0`` (``length=50``, the paper's setting)

## Expert and its pairs

The expert records, from its observations, the timestep at which each object was shown at the centre
(t = 0..17, the object at t is the t-th of the permutation). At choice step t with the left object seen at
step i and the right at step j it answers ``left`` if i < j, else ``right``, and recalls
(i, t), (j, t) and (t, t): 2 non-self pairs per choice, 2L per episode (100 at L = 50), as the original
expert. During memorisation it plays ``forward`` (ignored, as in the original) with only the self-pair.

## Design decisions (*)

- All randomness from ``np_random``; the choice pairs are drawn at ``reset`` as positions (i, j) in the
  sequence, uniform over ordered pairs with i != j: the same law as the original's ``random.sample`` of two
  objects. So exactly half of all choices are ``left`` in expectation, and a memoryless policy is at chance.
- The symbolic view is built directly with numpy (it equals MiniGrid's ``gen_obs`` image, which a test
  checks); the grid is kept up to date only for ``render``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Key
from minigrid.minigrid_env import MiniGridEnv

from memory_tasks import core
from memory_tasks.gridworld import EMPTY, GREY, WALL, ltmb_pixels

TASK = "Ordering"
N_OBJECTS = 18  # 3 types x 6 colours; also the number of memorisation steps
TYPES = (Ball, Key, Box)
CENTRE, LEFT_CELL, RIGHT_CELL = (3, 3), (2, 3), (4, 3)
AGENT_POS, AGENT_DIR = (3, 6), 3  # facing north: the 7x7 view is the room itself
MISSION = (
    "Memorize the order of the first 18 colored objects to appear. "
    "When shown two objects, select the one that appeared first."
)

# Object id k in 0..17 -> type TYPES[k // 6], colour COLOR_NAMES[k % 6] (alphabetical, not the index order).
CODES = np.array(
    [(OBJECT_TO_IDX[t.__name__.lower()], COLOR_TO_IDX[c], 0) for t in TYPES for c in COLOR_NAMES],
    dtype=np.uint8,
)  # (18, 3)


def _empty_room_view() -> np.ndarray:
    view = np.zeros((7, 7, 3), dtype=np.uint8)
    view[:, :, 0] = EMPTY
    for border in (view[0, :], view[6, :], view[:, 0], view[:, 6]):
        border[:] = (WALL, GREY, 0)
    view[AGENT_POS] = (EMPTY, 0, 0)  # MiniGrid shows the agent's own cell as empty (it carries nothing)
    return view


EMPTY_VIEW = _empty_room_view()

def symbolic_to_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The (84, 84, 3) render of a symbolic view: ``gridworld.ltmb_pixels`` (a tile-table lookup)."""
    return ltmb_pixels(np.asarray(symbolic, dtype=np.uint8))


def _mission() -> str:  # module level (not a lambda) so that the env pickles
    return MISSION


class OrderingEnv(MiniGridEnv):
    """LTMB Ordering (see the module docstring)."""

    def __init__(
        self,
        *,
        length: int = 50,
        obs_mode: str = "symbolic",
        render_mode: str | None = None,
        **unknown: Any,
    ):
        core.reject_unknown(TASK, unknown, type(self))
        self.length = core.check_int(TASK, "length", length, 1)
        self.obs_mode = core.check_obs_mode(TASK, obs_mode)
        core.check_render_mode(TASK, render_mode, ("human", "rgb_array"))  # MiniGrid's
        super().__init__(
            mission_space=MissionSpace(mission_func=_mission),
            width=7,
            height=7,
            max_steps=N_OBJECTS + self.length,
            see_through_walls=True,
            render_mode=render_mode,
            tile_size=core.TILE_PIXELS,
        )
        self.observation_space = core.observation_space(self.obs_mode)
        # One world object per object id, reused in the grid (left and right are always different ids).
        self._objects = [t(colour) for t in TYPES for colour in COLOR_NAMES]
        self._perm = np.zeros(N_OBJECTS, dtype=np.int64)  # object id shown at memorisation step t
        self._left = np.zeros(self.length, dtype=np.int64)  # choice k: sequence position of the left object
        self._right = np.zeros(self.length, dtype=np.int64)
        self._over = True
        self.symbolic_obs = EMPTY_VIEW.copy()

    # ---- episode generation

    def _gen_grid(self, width: int, height: int) -> None:
        self.mission = MISSION
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.grid.set(*AGENT_POS, None)  # MiniGrid asserts the start cell is free
        self.agent_pos = AGENT_POS
        self.agent_dir = AGENT_DIR
        rng = self.np_random
        self._perm = rng.permutation(N_OBJECTS)
        self._left = rng.integers(0, N_OBJECTS, size=self.length)
        right = rng.integers(0, N_OBJECTS - 1, size=self.length)
        self._right = right + (right >= self._left)  # uniform over positions != left
        self._over = False
        self._show(0)

    def _shown(self, t: int) -> list[tuple[tuple[int, int], int]]:
        """[(cell, object id)] on view at timestep t."""
        if self._over:
            return []
        if t < N_OBJECTS:
            return [(CENTRE, int(self._perm[t]))]
        k = t - N_OBJECTS
        return [(LEFT_CELL, int(self._perm[self._left[k]])), (RIGHT_CELL, int(self._perm[self._right[k]]))]

    def _show(self, t: int) -> None:
        """Put the objects of timestep t in the grid (for ``render``) and in ``symbolic_obs``."""
        view = EMPTY_VIEW.copy()
        for cell in (CENTRE, LEFT_CELL, RIGHT_CELL):
            self.grid.set(*cell, None)
        for cell, obj in self._shown(t):
            self.grid.set(*cell, self._objects[obj])
            view[cell] = CODES[obj]
        self.symbolic_obs = view

    def gen_obs(self) -> np.ndarray:
        if self.obs_mode == "pixels":
            return symbolic_to_pixels(self.symbolic_obs)
        return self.symbolic_obs

    def correct_action(self, t: int) -> int:
        """The right answer at choice step t >= 18 (``left`` if the left object was shown earlier)."""
        k = t - N_OBJECTS
        return int(Actions.left if self._left[k] < self._right[k] else Actions.right)

    # ---- dynamics

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise RuntimeError(f"{TASK}: the episode is over; call reset()")
        action = core.check_action(TASK, action, 7)
        t = self.step_count
        self.step_count += 1
        reward, terminated, success = 0.0, False, False
        if t >= N_OBJECTS:  # every action counts as `drop`, which does nothing: only the answer matters
            if int(action) != self.correct_action(t):
                reward, terminated = -1.0, True
            elif self.step_count == N_OBJECTS + self.length:
                reward, terminated, success = 1.0, True, True
        self._over = terminated
        self._show(self.step_count)
        if self.render_mode == "human":
            self.render()
        return self.gen_obs(), reward, terminated, False, {"success": success}

    def make_expert(self) -> OrderingExpert:
        return OrderingExpert(self)


class OrderingExpert:
    """Memorises when each object was shown; answers by comparing the two recalled timesteps."""

    def __init__(self, env: OrderingEnv):
        self.env = env
        self.seen_at: dict[bytes, int] = {}  # symbolic code of an object -> timestep it was shown

    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        env = self.env
        t = env.step_count
        view = env.symbolic_obs  # what `obs` shows, in symbolic form whatever the obs_mode
        if t < N_OBJECTS:
            self.seen_at[view[CENTRE].tobytes()] = t
            return int(Actions.forward), [t]
        i = self.seen_at[view[LEFT_CELL].tobytes()]
        j = self.seen_at[view[RIGHT_CELL].tobytes()]
        return int(Actions.left if i < j else Actions.right), [i, j, t]
