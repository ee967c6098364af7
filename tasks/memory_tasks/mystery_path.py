"""Memory Gym Mystery Path (grid): find an invisible path across the grid by falling off it.

## Description

A ``size`` x ``size`` grid (7 x 7 in the paper). An invisible path joins a start cell on one edge to a goal
cell on the opposite edge. The agent starts on the start cell facing north and may walk onto any cell of the
grid; a cell off the path makes it fall: that cell shows a fall-off mark for one step, and on the next step
the agent is put back on the start whatever its action. Reaching the goal is success. Since the path, the
start and the goal are never drawn, the agent must remember which cells carried it and which made it fall.

Faithful to Memory Gym's ``GridMysteryPathEnv`` (github: MarcoMeter/endless-memory-gym,
``memory_gym/mystery_path_grid.py`` and ``MysteryPath`` in ``pygame_assets.py``, default reset parameters
of version 1.0.3), except where marked (*). The path generation draws the same random numbers in the same
order as the original, so a seed gives the original's start, goal and path (checked against the original
code on 3,000 seeds). Generation, as in the original:

1. The start edge is drawn from west, east, north, south; the start is a uniform cell of that edge and the
   goal a uniform cell of the opposite edge.
2. Each cell (x, y) with 0 < x < size-2 and 0 < y < size-2 is blocked with probability 0.33 (the original's
   bounds: the last two rows and columns are never blocked).
3. 4 or 8 (even odds) border cells are blocked, drawn from the border cells that are not the start or the
   goal, not 4-adjacent to them and not 8-adjacent to a blocked cell.
4. A randomised A* (step costs uniform in 1..8, Euclidean heuristic) runs from start to goal around the
   blocked cells; its path is the mystery path (10 cells on average at size 7, 7 to 15). The original's
   quirks are kept: the open-set pick takes the first node cheaper than the first one, and a cheaper route
   to an open node only re-links it (its cost is not updated).

## Action Space

``Discrete(4)``: 0 no-op, 1 turn left, 2 turn right, 3 move forward one cell. Moving forward into the edge
of the grid leaves the agent where it is.

## Observation

The whole arena. ``obs_mode="symbolic"``: a (7, 7, 3) uint8 array of MiniGrid codes
``(OBJECT_IDX, COLOR_IDX, STATE)`` indexed ``[x, y]`` (x to the right, y down):

- every grid cell is empty ``(1, 0, 0)``: the path, the start and the goal are not shown;
- the agent's cell is ``gridworld.agent_code(direction, on_deadly)`` = ``(10, direction, state)``, with the
  heading in the colour channel (0 east, 1 south, 2 west, 3 north) and state 1 while the agent stands on the
  fall-off mark (the step after falling), else 0;
- (*) a grid smaller than 7 is centred in the 7 x 7 view (offset ``(7 - size) // 2``) and the cells around
  it are grey walls ``(2, 5, 0)``; sizes above 7 do not fit the view and are refused.

``obs_mode="pixels"`` (default, as in the paper): ``symbolic_to_pixels(symbolic_obs)``, MiniGrid's render
at 12-pixel tiles (84 x 84 x 3 uint8): black floor, the agent as a red triangle pointing its heading, drawn
over lava while on the fall-off mark (the original draws a red cross over the agent on black).

## Rewards

1 for reaching the goal, 0 otherwise (the original's defaults: no fall-off, progress or step rewards).

## Termination

- Success: the agent enters the goal cell (terminated, ``info["success"]`` True).
- Truncation after ``max_steps`` steps (128). (*) The original reports the time limit as ``done``; here it
  is ``truncated``, gymnasium style. Stepping a finished episode raises ``RuntimeError``: call ``reset``.

## Registered Configurations

- ``memory_tasks/MysteryPath-v0`` (``size=7``, ``max_steps=128``, the paper's setting)

## Expert and its pairs

The expert (ours; the original publishes none) knows nothing of the path. What it uses is what a person
sees: its own cell and heading, the fall-off mark, and the rule that the goal lies on the edge opposite the
start edge (the start edge is where it stands at t = 0; a corner start leaves two candidate goal edges).
It explores depth-first: a stack of cells found on the path, the top being the deepest cell that still has
untried neighbours (neither known safe nor known to make it fall). Of these it tries first the one that
brings it nearer the goal edge (for a corner start: nearer either, then nearer both), then the one nearer
the middle of the goal edge (the goal is uniform along it), then the one it can face in fewer actions. It
walks there by the shortest action sequence (turns included: breadth-first over cell x heading) through
cells known to be safe; after a fall it waits out the reset step (its action is ignored), then walks back.

Pairs at step t: (t, t); if the cell it is about to enter next (its next forward move, turns included) is
known safe, (p, t) for the timestep p at which that cell was first observed safe (0 for the start); if it is
a cell being tried, (p, t) for every neighbour of the cell it tries from that is known off the path, p being
the step whose observation showed the fall-off mark on that neighbour. On the reset step after a fall only
(t, t). At size 7 and 128 steps it solves all of seeds 0-999 (99.95% of seeds 0-9999) in 38.7 steps on
average (at most 125), with 26 non-self pairs per episode; random memoryless policies solve 1-6%.

## Design decisions (*)

- After a fall the agent keeps its heading when put back on the start (as the original does); only
  ``reset`` faces it north.
- Start and goal are hidden as in version 1.0.3 (``show_origin`` and ``show_goal`` default to False; earlier
  versions, before August 2023, drew them).
- The original raises when A* finds no path. That seems impossible (row and column size-2 are never
  blocked and border blockers keep clear of blocked cells); none occurred in 100,000 seeds at size 7 or
  20,000 at sizes 3-6. Should it happen, generation draws again from the same generator.
- ``render()`` (``render_mode="rgb_array"``) returns the pixel observation, as the original's does.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from memory_tasks import core
from memory_tasks.gridworld import DIR_TO_VEC, EMPTY, GREY, NORTH, WALL, agent_code, arena_pixels

TASK = "MysteryPath"
VIEW = 7
NOOP, LEFT, RIGHT, FORWARD = 0, 1, 2, 3
Cell = tuple[int, int]

def symbolic_to_pixels(symbolic: np.ndarray) -> np.ndarray:
    """The (84, 84, 3) render of a symbolic view: ``gridworld.arena_pixels`` (a tile-table lookup)."""
    return arena_pixels(np.asarray(symbolic, dtype=np.uint8))


def neighbours(cell: Cell, size: int) -> list[Cell]:
    """4-neighbours inside the grid, in the original's order: east, west, south, north."""
    x, y = cell
    candidates = ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1))
    return [(a, b) for a, b in candidates if 0 <= a < size and 0 <= b < size]


def generate(rng: np.random.Generator, size: int) -> tuple[Cell, Cell, list[Cell]]:
    """Draw (start, goal, path from start to goal) as the original does, random draw for random draw."""
    n = size
    origin = int(rng.choice(4))  # start edge: west, east, north, south
    r1, r2 = int(rng.integers(0, n)), int(rng.integers(0, n))
    ends = (((0, r1), (n - 1, r2)), ((n - 1, r1), (0, r2)), ((r1, 0), (r2, n - 1)), ((r1, n - 1), (r2, 0)))
    start, goal = ends[origin]
    while True:  # the original draws once and raises if there is no path (never seen to happen)
        blocked = np.zeros((n, n), dtype=bool)
        for x in range(1, n - 2):
            for y in range(1, n - 2):
                blocked[x, y] = rng.integers(0, 100) < 33
        near = np.zeros((n + 2, n + 2), dtype=bool)  # 8-adjacent to (or on) a blocked cell, padded by 1
        for x, y in zip(*np.nonzero(blocked), strict=True):
            near[x : x + 3, y : y + 3] = True
        excluded = {start, goal, *neighbours(start, n), *neighbours(goal, n)}
        border = [
            (x, y)
            for x in range(n)
            for y in range(n)
            if (x in (0, n - 1) or y in (0, n - 1)) and (x, y) not in excluded and not near[x + 1, y + 1]
        ]
        for _ in range((4, 8)[int(rng.integers(0, 2))]):
            if border:
                blocked[border.pop(int(rng.integers(0, len(border))))] = True
        path = _a_star(rng, n, start, goal, blocked)
        if path is not None:
            return start, goal, path


def _a_star(
    rng: np.random.Generator, n: int, start: Cell, goal: Cell, blocked: np.ndarray
) -> list[Cell] | None:
    g: dict[Cell, int] = {start: 0}
    f: dict[Cell, float] = {start: 0.0}
    previous: dict[Cell, Cell | None] = {start: None}
    open_list, closed = [start], set()
    while open_list:
        pick = 0
        for i, cell in enumerate(open_list):  # the original's pick: the first cell cheaper than the first
            if f[cell] < f[open_list[0]]:
                pick = i
                break
        current = open_list[pick]
        if current == goal:
            path: list[Cell] = []
            step: Cell | None = goal
            while step is not None:
                path.append(step)
                step = previous[step]
            return path[::-1]
        open_list.pop(pick)
        closed.add(current)
        for nb in neighbours(current, n):
            if nb in closed or blocked[nb]:
                continue
            cost = g[current] + int(rng.integers(1, 9))
            if nb in open_list:
                if cost < g[nb]:
                    previous[nb] = current  # the original sets a misspelt `g`: cost and f stay as they were
            else:
                g[nb], previous[nb] = cost, current
                f[nb] = cost + math.hypot(nb[0] - goal[0], nb[1] - goal[1])
                open_list.append(nb)
    return None


class MysteryPathEnv(gym.Env):
    """Memory Gym Mystery Path, grid variant (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 3}

    def __init__(
        self,
        *,
        size: int = 7,
        max_steps: int = 128,
        obs_mode: str = "pixels",
        render_mode: str | None = None,
        **unknown: Any,
    ):
        core.reject_unknown(TASK, unknown, type(self))
        self.size = core.check_int(TASK, "size", size, 3, VIEW)
        self.max_steps = core.check_int(TASK, "max_steps", max_steps, 1)
        self.obs_mode = core.check_obs_mode(TASK, obs_mode)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"{TASK}: parameter render_mode must be None or 'rgb_array', got {core.short_repr(render_mode)}"
            )
        self.render_mode = render_mode
        self.observation_space = core.observation_space(self.obs_mode)
        self.action_space = gym.spaces.Discrete(4)
        self.offset = (VIEW - self.size) // 2
        self._background = np.zeros((VIEW, VIEW, 3), dtype=np.uint8)
        self._background[...] = (WALL, GREY, 0)
        o, n = self.offset, self.size
        self._background[o : o + n, o : o + n] = (EMPTY, 0, 0)
        self.start: Cell = (0, 0)
        self.goal: Cell = (0, 0)
        self.path: list[Cell] = []
        self.on_path = np.zeros((n, n), dtype=bool)
        self.agent_pos: Cell = (0, 0)
        self.agent_dir = NORTH
        self.fallen = False  # on the fall-off mark: the next step puts the agent back on the start
        self.step_count = 0
        self._over = True
        self.symbolic_obs = self._background.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.start, self.goal, self.path = generate(self.np_random, self.size)
        self.on_path[...] = False
        for cell in self.path:
            self.on_path[cell] = True
        self.agent_pos, self.agent_dir, self.fallen = self.start, NORTH, False
        self.step_count = 0
        self._over = False
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise RuntimeError(f"{TASK}: the episode is over; call reset()")
        action = core.check_action(TASK, action, 4)
        if self.fallen:  # put back on the start; the action is ignored, the heading kept
            self.agent_pos = self.start
        elif action == LEFT:
            self.agent_dir = (self.agent_dir - 1) % 4
        elif action == RIGHT:
            self.agent_dir = (self.agent_dir + 1) % 4
        elif action == FORWARD:
            dx, dy = DIR_TO_VEC[self.agent_dir]
            x, y = self.agent_pos[0] + dx, self.agent_pos[1] + dy
            if 0 <= x < self.size and 0 <= y < self.size:
                self.agent_pos = (x, y)
        self.step_count += 1
        success = self.agent_pos == self.goal
        self.fallen = not success and not self.on_path[self.agent_pos]
        truncated = not success and self.step_count >= self.max_steps
        self._over = success or truncated
        return self._observe(), float(success), success, truncated, {"success": success}

    def _observe(self) -> np.ndarray:
        view = self._background.copy()
        x, y = self.agent_pos
        view[x + self.offset, y + self.offset] = agent_code(self.agent_dir, self.fallen)
        self.symbolic_obs = view
        return symbolic_to_pixels(view) if self.obs_mode == "pixels" else view

    def render(self) -> Any:  # (84, 84, 3) uint8 for render_mode 'rgb_array', else None
        if self.render_mode == "rgb_array":
            return symbolic_to_pixels(self.symbolic_obs)
        return None

    def make_expert(self) -> MysteryPathExpert:
        return MysteryPathExpert(self)


class MysteryPathExpert:
    """Depth-first search for the path from what it has seen: safe cells, falls, its start and heading."""

    def __init__(self, env: MysteryPathEnv):
        self.env = env
        self.size = n = env.size
        sx, sy = env.start  # seen: where it stands at t = 0
        # Candidate goal edges, opposite the start edge (two for a corner start): (axis, coordinate) of
        # the edge line, e.g. (0, n - 1) is the east edge x = n - 1.
        self.goal_edges: list[tuple[int, int]] = []
        if sx in (0, n - 1):
            self.goal_edges.append((0, n - 1 - sx))
        if sy in (0, n - 1):
            self.goal_edges.append((1, n - 1 - sy))
        self.safe: dict[Cell, int] = {}  # cell -> timestep it was first observed safe (standing on it)
        self.fell: dict[Cell, int] = {}  # cell -> timestep its fall-off mark was observed
        self.stack: list[Cell] = [env.start]  # depth-first stack of safe cells
        # The actions up to and including the next try, each with the cell that the agent enters next.
        self.plan: list[tuple[int, Cell | None]] = []
        self.tip: Cell = env.start

    def rank(self, cell: Cell, tip: Cell, cost: int) -> tuple[float, ...]:
        """Sort key of a neighbour ``cell`` of ``tip`` to try, reached after ``cost`` actions: lowest first.

        Nearer the goal edge first; for a corner start, nearer both candidate edges; then nearer the middle
        of the goal edge (the goal is uniform along it); then fewer actions.
        """
        middle = (self.size - 1) / 2
        across = [abs(cell[axis] - line) for axis, line in self.goal_edges]
        lateral = min(abs(cell[1 - axis] - middle) for axis, _ in self.goal_edges)
        tip_across = min(abs(tip[axis] - line) for axis, line in self.goal_edges)
        return (min(across) - tip_across, sum(across), lateral, cost)

    def act(self, obs: np.ndarray) -> tuple[int, list[int]]:
        env = self.env
        t, pos = env.step_count, env.agent_pos
        if env.fallen:
            self.fell.setdefault(pos, t)
            self.plan = []
            return NOOP, [t]
        if pos not in self.safe:
            self.safe[pos] = t
            if t > 0:
                self.stack.append(pos)
            self.plan = []
        if not self.plan:
            self.plan = self._make_plan(pos, env.agent_dir)
        action, entered = self.plan.pop(0)
        if entered in self.safe:
            return action, [self.safe[entered], t]
        ruled_out = [self.fell[c] for c in neighbours(self.tip, self.size) if c in self.fell]
        return action, [*ruled_out, t]

    def _untried(self, cell: Cell) -> list[Cell]:
        return [c for c in neighbours(cell, self.size) if c not in self.safe and c not in self.fell]

    def _make_plan(self, pos: Cell, heading: int) -> list[tuple[int, Cell | None]]:
        while len(self.stack) > 1 and not self._untried(self.stack[-1]):
            self.stack.pop()
        self.tip = tip = self.stack[-1]
        options = self._untried(tip)
        if not options:  # cannot happen: the path always leads on to the goal
            return [(NOOP, None)]
        parent = self._search(pos, heading)

        def facing(cell: Cell) -> tuple[Cell, int]:
            return tip, DIR_TO_VEC.index((cell[0] - tip[0], cell[1] - tip[1]))

        target = min(options, key=lambda c: self.rank(c, tip, parent[facing(c)][2]))
        actions, state = [FORWARD], facing(target)
        while (link := parent[state])[0] is not None:
            state, action, _ = link
            actions.append(action)
        return self._label(pos, heading, actions[::-1])

    def _search(self, pos: Cell, heading: int) -> dict[tuple[Cell, int], tuple[Any, int, int]]:
        """Breadth-first over (cell, heading) through safe cells: state -> (previous state, action, steps)."""
        parent: dict[tuple[Cell, int], tuple[Any, int, int]] = {(pos, heading): (None, NOOP, 0)}
        queue = deque([(pos, heading)])
        while queue:
            state = queue.popleft()
            (x, y), d = state
            steps = parent[state][2] + 1
            dx, dy = DIR_TO_VEC[d]
            moves = [(LEFT, ((x, y), (d - 1) % 4)), (RIGHT, ((x, y), (d + 1) % 4))]
            if (x + dx, y + dy) in self.safe:
                moves.insert(0, (FORWARD, ((x + dx, y + dy), d)))
            for action, nxt in moves:
                if nxt not in parent:
                    parent[nxt] = (state, action, steps)
                    queue.append(nxt)
        return parent

    def _label(self, pos: Cell, heading: int, actions: list[int]) -> list[tuple[int, Cell | None]]:
        """Pair each action with the cell the agent enters at this or its next forward move."""
        entered: list[Cell | None] = []
        (x, y), d = pos, heading
        for action in actions:
            if action == FORWARD:
                x, y = x + DIR_TO_VEC[d][0], y + DIR_TO_VEC[d][1]
            d = (d + (action == RIGHT) - (action == LEFT)) % 4
            entered.append((x, y) if action == FORWARD else None)
        upcoming = None
        for i in reversed(range(len(actions))):
            upcoming = entered[i] = entered[i] or upcoming
        return list(zip(actions, entered, strict=True))
