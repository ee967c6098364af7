"""Symbolic 7x7x3 encodings and their 84x84 RGB renders, shared by all five tasks.

Every task's pixel observation is a pure function of its symbolic observation (``symbolic_to_pixels``),
so datasets store the compact symbolic form and pixels are rendered when loading.

Encodings use MiniGrid's tables (object 0-10, colour 0-5, state 0-2; the model's one-hot encoder has
11 + 6 + 3 channels), indexed ``[x, y]`` as MiniGrid does.

- LTMB tasks: MiniGrid's egocentric view, the agent at ``[3, 6]`` looking up; pixels are MiniGrid's own
  point-of-view render (``get_pov_render``) at 12-pixel tiles.
- Memory Gym grid tasks (whole-arena views): ``agent`` cells carry the heading in the colour channel
  (0 east, 1 south, 2 west, 3 north: MiniGrid's direction order) because the state channel has only 3
  values; agent state 1 means "standing on a deadly / fall-off tile" and is drawn over lava. Everything
  else decodes with MiniGrid's world objects.
"""

from __future__ import annotations

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Lava, WorldObj

from memory_tasks.core import TILE_PIXELS

AGENT = OBJECT_TO_IDX["agent"]
EMPTY = OBJECT_TO_IDX["empty"]
WALL = OBJECT_TO_IDX["wall"]
LAVA = OBJECT_TO_IDX["lava"]
FLOOR = OBJECT_TO_IDX["floor"]
GOAL = OBJECT_TO_IDX["goal"]
GREY = COLOR_TO_IDX["grey"]

# Directions in MiniGrid order; the Memory Gym tasks start facing north.
EAST, SOUTH, WEST, NORTH = 0, 1, 2, 3
DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))

_ALL_VISIBLE = np.ones((7, 7), dtype=bool)


def ltmb_pixels(symbolic: np.ndarray) -> np.ndarray:
    """MiniGrid's point-of-view render of an egocentric 7x7x3 view (what ``get_pov_render`` draws)."""
    grid, _ = Grid.decode(symbolic)
    return grid.render(TILE_PIXELS, agent_pos=(3, 6), agent_dir=3, highlight_mask=_ALL_VISIBLE)


def arena_pixels(symbolic: np.ndarray) -> np.ndarray:
    """Render a whole-arena 7x7x3 encoding (Memory Gym grid tasks) at 12-pixel tiles -> (84, 84, 3)."""
    width, height, _ = symbolic.shape
    grid = Grid(width, height)
    agent_pos: tuple[int, int] = (-1, -1)
    agent_dir = 0
    for x in range(width):
        for y in range(height):
            kind, colour, state = (int(v) for v in symbolic[x, y])
            if kind == AGENT:
                agent_pos, agent_dir = (x, y), colour
                grid.set(x, y, Lava() if state == 1 else None)
            else:
                grid.set(x, y, WorldObj.decode(kind, colour, state))
    return grid.render(TILE_PIXELS, agent_pos=agent_pos, agent_dir=agent_dir)


def agent_code(direction: int, on_deadly: bool = False) -> tuple[int, int, int]:
    """The symbolic code of the agent's cell in a whole-arena view."""
    return (AGENT, int(direction), 1 if on_deadly else 0)
