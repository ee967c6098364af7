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
    return render_batch(symbolic, "ltmb")


def arena_pixels(symbolic: np.ndarray) -> np.ndarray:
    """Render a whole-arena 7x7x3 encoding (Memory Gym grid tasks) at 12-pixel tiles -> (84, 84, 3)."""
    return render_batch(symbolic, "arena")


def reference_ltmb_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The same picture drawn by MiniGrid's own Grid.render (slow; the tests compare against it)."""
    grid, _ = Grid.decode(symbolic)
    return grid.render(TILE_PIXELS, agent_pos=(3, 6), agent_dir=3, highlight_mask=_ALL_VISIBLE)


def reference_arena_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The whole-arena picture drawn cell by cell with MiniGrid's Grid.render (slow; for the tests)."""
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


def egocentric(window: np.ndarray, agent_dir: int) -> np.ndarray:
    """MiniGrid's egocentric view of the (7, 7, 3) window in front of the agent: the slice rotated left
    (agent_dir + 1) times, as a new array; the same as ``np.rot90(window, -(agent_dir + 1)).copy()`` with
    plain slicing (np.rot90 alone was half the cost of a Hallway step)."""
    k = (agent_dir + 1) % 4  # rotations to the right: new[j, 6 - i] = old[i, j] for one
    if k == 0:
        view = window
    elif k == 1:
        view = window.swapaxes(0, 1)[:, ::-1]
    elif k == 2:
        view = window[::-1, ::-1]
    else:
        view = window.swapaxes(0, 1)[::-1]
    return np.array(view, order="C")  # always a copy (the window may be contiguous)


def agent_code(direction: int, on_deadly: bool = False) -> tuple[int, int, int]:
    """The symbolic code of the agent's cell in a whole-arena view."""
    return (AGENT, int(direction), 1 if on_deadly else 0)


# ---- fast batch rendering: every 12x12 tile depends only on its cell's code (and, in the LTMB view, on
# whether it is the agent's cell), so a table of all tiles turns a batch of codes into pixels by indexing.

_TABLES: dict[str, np.ndarray] = {}


def tile_table(style: str) -> np.ndarray:
    """(2, 11, 6, 3, 12, 12, 3) uint8: [slot, object, colour, state] -> tile; slot 1 = LTMB agent cell."""
    if style not in _TABLES:
        table = np.zeros((2, 11, 6, 3, TILE_PIXELS, TILE_PIXELS, 3), dtype=np.uint8)
        for kind in range(11):
            for colour in range(6):
                for state in range(3):
                    for slot in range(2):
                        table[slot, kind, colour, state] = _tile(style, slot, kind, colour, state)
        _TABLES[style] = table
    return _TABLES[style]


def _tile(style: str, slot: int, kind: int, colour: int, state: int) -> np.ndarray:
    obj: WorldObj | None
    agent_dir: int | None
    if style == "arena" and kind == AGENT:
        obj, agent_dir = (Lava() if state == 1 else None), colour % 4
    else:
        try:
            obj = WorldObj.decode(kind, colour, state)
        except (AssertionError, KeyError):
            obj = None
        agent_dir = 3 if (style == "ltmb" and slot == 1) else None
    return Grid.render_tile(obj, agent_dir=agent_dir, highlight=style == "ltmb", tile_size=TILE_PIXELS)


def slot_map(style: str) -> np.ndarray:
    """(7, 7) slot per cell: 1 at the LTMB agent cell [3, 6], else 0."""
    slots = np.zeros((7, 7), dtype=np.int64)
    if style == "ltmb":
        slots[3, 6] = 1
    return slots


def render_batch(codes: np.ndarray, style: str) -> np.ndarray:
    """(..., 7, 7, 3) symbolic codes -> (..., 84, 84, 3) pixels, equal to the per-observation renders."""
    lead = codes.shape[:-3]
    c = codes.reshape(-1, 7, 7, 3).astype(np.int64)
    tiles = tile_table(style)[slot_map(style), c[..., 0], c[..., 1], c[..., 2]]  # (N, x, y, 12, 12, 3)
    img = tiles.transpose(0, 2, 3, 1, 4, 5).reshape(-1, 7 * TILE_PIXELS, 7 * TILE_PIXELS, 3)
    return img.reshape(*lead, 7 * TILE_PIXELS, 7 * TILE_PIXELS, 3)
