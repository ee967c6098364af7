"""LTMB Hallway: remember an object from the start room, then enter the one hallway that holds its twin.

Description
-----------
A faithful port of ``ltmb/envs/hallway.py`` (github: WilliamYue37/LTMB) onto gymnasium + minigrid, with
its randomness drawn from the env's ``np_random`` and a plain-array observation. The grid is square, of
side ``4 * length + 5``; ``c = side // 2`` is the corridor row. Layout (x to the right, y downwards)::

    start room   x 1..3, y c-1..c+1 (walls on rows c-2 and c+2, x 1..4, and at (4, c-1), (4, c+1))
    target       at (1, c-1): a ball, key or box in one of the 6 MiniGrid colours
    agent        at (2, c), facing east
    corridor     row c, x 4..side-2 (walls on rows c-1 and c+1 from x = 5)
    hallway k    (k = 0..length-1) at column x = 7 + 4k: a closed door of random colour at (x, c-1) and
                 (x, c+1), an object behind each at (x, c-2) and (x, c+2), walled in on three sides

Exactly one of the ``2 * length`` hallway objects is identical (type and colour) to the target; every
other hallway object that would be identical is re-coloured (drawn among the 5 other colours). The target
hallway (uniform among ``length``) and side (upper or lower, 1/2 each) are drawn after the layout. The
draws are made in the same order as the original, so a seed gives the same layout as the original.
With ``see_through_walls=True`` the agent sees both hallway objects when standing at a door column
(view cells [1, 6] and [5, 6] when facing east), but, once in the corridor facing east, never the start
room: the target has to be remembered.

Action Space
------------
``Discrete(7)``, MiniGrid's actions: 0 left, 1 right, 2 forward, 3 pickup, 4 drop, 5 toggle, 6 done.
``pickup`` acts as ``toggle`` (nothing can be carried); ``drop`` and ``done`` do nothing.

Observation
-----------
``obs_mode="symbolic"`` (default): MiniGrid's egocentric 7x7x3 uint8 encoding (object, colour, state),
indexed ``[x, y]``, the agent at ``[3, 6]`` looking towards ``y = 0``; its own cell reads as empty, cells
outside the grid as walls (exactly what ``MiniGridEnv.gen_obs()["image"]`` gives; see ``_view``).
``obs_mode="pixels"``: ``symbolic_to_pixels(symbolic)``, MiniGrid's point-of-view render at 12-pixel
tiles, (84, 84, 3) uint8. ``env.symbolic_obs`` always holds the current symbolic view.

Rewards
-------
Entering the right door: ``1 - 0.9 * step_count / max_steps`` (MiniGrid's success reward). Otherwise 0.

Termination
-----------
Terminated as soon as the agent stands in a door cell (a door must be toggled open before it can be
entered): ``info["success"]`` is True for the door in front of the matching object, False for any other.
Truncated after ``max_steps = max(16, side + 20) = 4 * length + 25`` steps. ``info["success"]`` is present
in every step (False unless the episode just ended in success).

Registered configurations
-------------------------
``memory_tasks/Hallway-v0``: ``length=30`` (the paper's). Any ``length >= 1`` may be passed.

Expert and its pairs
--------------------
The LTMB expert: t=0 turn left (the target then shows at view [2, 5]); t=1 read the target and turn
right; then walk east; when the matching object shows beside it (view [1, 6] or [5, 6]) turn towards it,
toggle the door and go forward. Episode length ``10 + 4k`` for target hallway k (10..126 at length 30).
Pairs: the self-pair (t, t) at every step, and (1, t) at every step where a door is beside the agent
(view [2, 6] or [4, 6]): each door passed, and the one chosen, is a decision that recalls the frame in
which the target was seen (k + 1 non-self pairs). The turn, toggle and forward that follow a decision
have no door beside them and recall nothing else, as in the original.

Design decisions
----------------
- The original's ``info["success"]`` existed only when a door was entered; here it is always present.
- The symbolic view is cut from a padded array encoding of the grid, kept in step with the grid (only
  ``toggle`` changes a cell), instead of rebuilding MiniGrid ``Grid`` objects every step; it equals
  MiniGrid's ``gen_obs`` (tested). The walls are laid out once per env (one shared stateless ``Wall``);
  a reset only draws the doors and objects. Symbolic mode renders no pixels.
- Same seed, same episode as the original: the layouts, observations, expert actions, rewards and pairs
  were checked equal to ``ltmb`` for 600 seeded expert episodes (lengths 1, 3, 30).
- As in the original, toggling the start-room object when it is a box removes it (MiniGrid's box).
- Inherited from the original's geometry and kept: looking back west from x = 5..7 (up to the first door
  column) still shows the start room through the walls. The expert never does; from x >= 8 on no view
  of any heading contains the target's cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_NAMES, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Door, Key, Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv

from memory_tasks import core
from memory_tasks.gridworld import EMPTY, GREY, WALL, egocentric, ltmb_pixels

TASK = "Hallway"
MISSION = "Enter the hallway with the same object as the one in the start room"
DOOR = OBJECT_TO_IDX["door"]
VIEW = 7
PAD = VIEW - 1  # the view reaches at most 6 cells beyond the agent in any direction
WALL_CODE = (WALL, GREY, 0)
EMPTY_CODE = (EMPTY, 0, 0)


def _mission() -> str:  # a named function, not a lambda, so the env pickles
    return MISSION


def symbolic_to_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The (84, 84, 3) pixel observation of a symbolic view: MiniGrid's point-of-view render."""
    return ltmb_pixels(symbolic)


class HallwayEnv(MiniGridEnv):
    """LTMB Hallway (see the module docstring)."""

    def __init__(
        self,
        *,
        length: int = 30,
        obs_mode: str = "symbolic",
        render_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        core.reject_unknown(TASK, unknown, type(self))
        self.length = core.check_int(TASK, "length", length, 1)
        self.obs_mode = core.check_obs_mode(TASK, obs_mode)
        core.check_render_mode(TASK, render_mode, ("human", "rgb_array"))  # MiniGrid's
        self.size = 4 * self.length + 5
        super().__init__(
            mission_space=MissionSpace(mission_func=_mission),
            width=self.size,
            height=self.size,
            max_steps=max(16, self.size + 20),
            see_through_walls=True,
            agent_view_size=VIEW,
            render_mode=render_mode,
            tile_size=core.TILE_PIXELS,
        )
        self.observation_space = core.observation_space(self.obs_mode)
        self.symbolic_obs = np.zeros(core.SYMBOLIC_SHAPE, dtype=np.uint8)
        self._walls, self._wall_codes = self._static_layout()
        self._codes = self._wall_codes.copy()

    # ---- layout

    def _static_layout(self) -> tuple[Grid, np.ndarray]:
        """The walls, the same in every episode: a grid and its padded symbolic codes, built once."""
        n, c = self.size, self.size // 2
        grid = Grid(n, n)
        codes = np.empty((n + 2 * PAD, n + 2 * PAD, 3), dtype=np.uint8)
        codes[:] = WALL_CODE  # the padding reads as walls, as MiniGrid's out-of-grid cells do
        codes[PAD + 1 : PAD + n - 1, PAD + 1 : PAD + n - 1] = EMPTY_CODE
        wall = Wall()  # walls are stateless: one instance serves every wall cell
        cells = [(i, 0) for i in range(n)] + [(i, n - 1) for i in range(n)]
        cells += [(0, j) for j in range(n)] + [(n - 1, j) for j in range(n)]
        cells += [(x, c + dy) for x in range(1, 5) for dy in (-2, 2)] + [(4, c - 1), (4, c + 1)]  # start room
        cells += [(x, c + dy) for x in range(5, n - 2) for dy in (-1, 1)]  # corridor
        for x in range(6, n - 2, 4):  # hallway k at x + 1 = 7 + 4k: walled left, right and at the back
            cells += [(wx, c + dy) for wx in (x, x + 2) for dy in (-3, -2, 2, 3)]
            cells += [(x + 1, c - 3), (x + 1, c + 3)]
        for x, y in cells:
            grid.set(x, y, wall)
            codes[PAD + x, PAD + y] = WALL_CODE
        return grid, codes

    def _put(self, x: int, y: int, obj: WorldObj | None) -> None:
        """Set a grid cell and its symbolic code together."""
        self.grid.set(x, y, obj)
        self._codes[PAD + x, PAD + y] = EMPTY_CODE if obj is None else obj.encode()

    def _rand_obj(self) -> WorldObj:
        """A random hallway object, re-coloured if it would be identical to the target."""
        kind = self._rand_elem([Ball, Key, Box])
        colour = self._rand_elem(COLOR_NAMES)
        if kind == self.target_obj and colour == self.target_color:
            colour = self._rand_elem([c for c in COLOR_NAMES if c != self.target_color])
        return kind(colour)

    def _gen_grid(self, width: int, height: int) -> None:
        # Random draws in the original's order (same seed, same layout): target, then per hallway the
        # upper and lower door colours and objects, then the target hallway and side.
        self.mission = MISSION
        self.grid = Grid(width, height)
        self.grid.grid = list(self._walls.grid)  # the walls, then the drawn doors and objects on top
        self._codes[:] = self._wall_codes
        self.target_color = self._rand_elem(COLOR_NAMES)
        self.target_obj = self._rand_elem([Key, Ball, Box])
        c = height // 2
        for x in range(7, width - 1, 4):
            self._put(x, c - 1, Door(self._rand_elem(COLOR_NAMES)))
            self._put(x, c + 1, Door(self._rand_elem(COLOR_NAMES)))
            self._put(x, c - 2, self._rand_obj())
            self._put(x, c + 2, self._rand_obj())

        self.agent_pos = (2, c)
        self.agent_dir = 0
        self.start_target_pos = (1, c - 1)
        self._put(*self.start_target_pos, self.target_obj(self.target_color))

        self.target_hallway = int(self._rand_int(0, self.length))
        side = -1 if self._rand_int(0, 2) == 0 else 1  # upper (y = c - 1) or lower door
        x = 7 + 4 * self.target_hallway
        self.target_pos = (x, c + 2 * side)
        self.success_pos = (x, c + side)
        self._put(*self.target_pos, self.target_obj(self.target_color))

    # ---- observation

    def _view(self) -> np.ndarray:
        """The egocentric 7x7x3 view, equal to ``MiniGridEnv.gen_obs()["image"]``."""
        top_x, top_y, _, _ = self.get_view_exts()
        window = self._codes[PAD + top_x : PAD + top_x + VIEW, PAD + top_y : PAD + top_y + VIEW]
        # MiniGrid rotates the slice left (agent_dir + 1) times: new[j, 6 - i] = old[i, j]
        view = egocentric(window, self.agent_dir)
        view[VIEW // 2, VIEW - 1] = EMPTY_CODE  # the agent's own cell (it never carries anything)
        return view

    def gen_obs(self) -> np.ndarray:  # type: ignore[override]
        self.symbolic_obs = self._view()
        if self.obs_mode == "pixels":
            return symbolic_to_pixels(self.symbolic_obs)
        return self.symbolic_obs

    # ---- dynamics

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = core.check_action(TASK, action, len(Actions))  # MiniGrid's Discrete(7)
        if action == Actions.pickup:
            action = Actions.toggle
        if action == Actions.toggle:  # the only action that changes a cell: do it here, keep its code in step
            fx, fy = self.front_pos
            cell = self.grid.get(fx, fy)
            if cell is not None:
                cell.toggle(self, (fx, fy))
                self._put(fx, fy, self.grid.get(fx, fy))
            action = Actions.done  # a no-op for MiniGrid, which still counts the step and builds the obs
        obs: np.ndarray
        obs, reward, terminated, truncated, info = super().step(action)
        info["success"] = False
        if isinstance(self.grid.get(*self.agent_pos), Door):  # entered a hallway
            terminated = True
            if tuple(self.agent_pos) == self.success_pos:
                reward = self._reward()
                info["success"] = True
        return obs, float(reward), terminated, truncated, info

    def make_expert(self) -> HallwayExpert:
        return HallwayExpert(self)


class HallwayExpert:
    """The LTMB Hallway expert; reads the symbolic view, so it plays either observation mode."""

    def __init__(self, env: HallwayEnv) -> None:
        self.env = env
        self.t = 0
        self.target: tuple[int, int] | None = None  # (object, colour) codes, read at t = 1
        self.queue: list[int] = []

    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        view = self.env.symbolic_obs
        t = self.t
        self.t += 1
        recalled = [t]
        if self.queue:
            return self.queue.pop(0), recalled
        if t == 0:
            return int(Actions.left), recalled
        if t == 1:
            self.target = (int(view[2, 5, 0]), int(view[2, 5, 1]))
            return int(Actions.right), recalled
        if view[2, 6, 0] == DOOR or view[4, 6, 0] == DOOR:
            recalled.append(1)
        for vx, turn in ((1, Actions.left), (5, Actions.right)):
            if (int(view[vx, 6, 0]), int(view[vx, 6, 1])) == self.target:
                self.queue = [int(Actions.toggle), int(Actions.forward)]
                return int(turn), recalled
        return int(Actions.forward), recalled
