"""Task-specific facts of Memory Gym Mystery Path (grid); the generic contract is in tests/test_tasks.py."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from memory_tasks import rollout
from memory_tasks.gridworld import AGENT, DIR_TO_VEC, EAST, EMPTY, NORTH, WALL, WEST
from memory_tasks.mystery_path import (
    FORWARD,
    LEFT,
    NOOP,
    RIGHT,
    MysteryPathEnv,
    neighbours,
    symbolic_to_pixels,
)

# Paths of the original code (memory_gym 1.0.3, MysteryPath in pygame_assets.py), start first, for the
# seeds given to the original env's reset: generation draws the same random numbers in the same order.
ORIGINAL_PATHS = {
    0: [(4, 6), (3, 6), (3, 5), (3, 4), (3, 3), (3, 2), (3, 1), (3, 0)],
    1: [(6, 3), (6, 4), (6, 5), (5, 5), (4, 5), (3, 5), (2, 5), (1, 5), (0, 5)],
    2: [(1, 6), (1, 5), (1, 4), (1, 3), (0, 3), (0, 2), (0, 1), (0, 0)],
}
# sha256 of repr([path for seeds 0..199]) (lists of (x, y) tuples, start first), from the original code.
ORIGINAL_DIGESTS = {
    7: "afe5e701ca602417aba48e9e809691b18e1fdd20d6448170c84bc6442c01decd",
    5: "431f6608d9922f69f6f4588db90f7333d3ebadecc47ba6742f2110584b5b1d69",
}


def turn_towards(env: MysteryPathEnv, cell: tuple[int, int]) -> list[tuple]:
    """Turn the agent to face the adjacent ``cell`` (right turns), then step into it; return the steps."""
    x, y = env.agent_pos
    heading = DIR_TO_VEC.index((cell[0] - x, cell[1] - y))
    steps = []
    while env.agent_dir != heading:
        steps.append(env.step(RIGHT))
    steps.append(env.step(FORWARD))
    return steps


def first_seed(condition, start: int = 0, **kwargs) -> int:
    """The first seed from ``start`` on whose episode satisfies ``condition(env)`` after reset."""
    env = MysteryPathEnv(**kwargs)
    return next(s for s in range(start, start + 5000) if env.reset(seed=s) and condition(env))


def agent_cell(symbolic: np.ndarray) -> tuple[tuple[int, int], tuple[int, ...]]:
    (x,), (y,) = np.nonzero(symbolic[..., 0] == AGENT)
    return (int(x), int(y)), tuple(int(v) for v in symbolic[x, y])


def test_generation_reproduces_the_original_paths():
    env = MysteryPathEnv()
    for seed, path in ORIGINAL_PATHS.items():
        env.reset(seed=seed)
        assert env.path == path and env.start == path[0] and env.goal == path[-1]
    for size, digest in ORIGINAL_DIGESTS.items():
        env = MysteryPathEnv(size=size)
        paths = [env.reset(seed=seed) and env.path for seed in range(200)]
        assert hashlib.sha256(repr(paths).encode()).hexdigest() == digest, f"size {size}"


@pytest.mark.parametrize("size", [3, 5, 7])
def test_path_joins_opposite_edges_cell_by_cell(size):
    env = MysteryPathEnv(size=size)
    edges_seen = set()
    for seed in range(200):
        env.reset(seed=seed)
        (sx, sy), (gx, gy), path = env.start, env.goal, env.path
        opposite = (sx == 0 and gx == size - 1, sx == size - 1 and gx == 0)
        opposite += (sy == 0 and gy == size - 1, sy == size - 1 and gy == 0)
        assert any(opposite), f"seed {seed}: start {env.start} and goal {env.goal} not on opposite edges"
        edges_seen.update(i for i, ok in enumerate(opposite) if ok)
        assert len(set(path)) == len(path), "the path visits a cell twice"
        for a, b in zip(path, path[1:], strict=False):
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1, f"seed {seed}: path jumps from {a} to {b}"
        assert env.on_path.sum() == len(path)
    assert edges_seen == {0, 1, 2, 3}


def test_observation_encodes_agent_and_heading_only():
    env = MysteryPathEnv(obs_mode="symbolic")
    obs, _ = env.reset(seed=4)
    pos, code = agent_cell(obs)
    assert pos == env.start and code == (AGENT, NORTH, 0)
    others = np.ones((7, 7), dtype=bool)
    others[pos] = False
    assert np.all(obs[others] == (EMPTY, 0, 0)), "only the agent may differ from an empty cell"
    obs, *_ = env.step(LEFT)
    assert agent_cell(obs)[1] == (AGENT, WEST, 0)  # turning left from north faces west
    obs, *_ = env.step(RIGHT)
    obs, *_ = env.step(RIGHT)
    assert agent_cell(obs)[1] == (AGENT, EAST, 0)


def test_smaller_grids_are_centred_in_walls_and_bad_sizes_refused():
    env = MysteryPathEnv(size=5, obs_mode="symbolic")
    obs, _ = env.reset(seed=0)
    assert np.all(obs[0, :, 0] == WALL) and np.all(obs[:, 6, 0] == WALL)
    assert agent_cell(obs)[0] == (env.start[0] + 1, env.start[1] + 1)
    for size in (2, 8):
        with pytest.raises(ValueError, match="size"):
            MysteryPathEnv(size=size)


def test_the_path_start_and_goal_are_never_visible():
    # Two seeds with the same start but different paths look the same while the agent does the same.
    env_a, env_b = MysteryPathEnv(), MysteryPathEnv()
    obs_a, _ = env_a.reset(seed=0)
    seed_b = first_seed(lambda e: e.start == env_a.start, start=1)
    obs_b, _ = env_b.reset(seed=seed_b)
    assert env_a.path != env_b.path
    np.testing.assert_array_equal(obs_a, obs_b)
    for action in (LEFT, LEFT, RIGHT, NOOP):  # turning in place: same agent state in both
        obs_a, *_ = env_a.step(action)
        obs_b, *_ = env_b.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)


def test_a_fall_shows_the_mark_for_one_step_then_resets_to_the_start():
    env = MysteryPathEnv(obs_mode="pixels")
    env.reset(seed=first_seed(lambda e: e.start[1] == 6))  # a start on the south edge
    off = next(c for c in neighbours(env.start, 7) if not env.on_path[c])
    *_, (obs, reward, terminated, truncated, info) = turn_towards(env, off)
    heading = env.agent_dir
    assert agent_cell(env.symbolic_obs) == (off, (AGENT, heading, 1)), "the mark is shown on the cell"
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
    np.testing.assert_array_equal(obs, symbolic_to_pixels(env.symbolic_obs))
    unmarked = env.symbolic_obs.copy()
    unmarked[off] = (AGENT, heading, 0)
    assert not np.array_equal(obs, symbolic_to_pixels(unmarked)), "the mark must show in pixels"
    obs, reward, terminated, truncated, info = env.step(FORWARD)  # ignored: the agent is put back
    assert agent_cell(env.symbolic_obs) == (env.start, (AGENT, heading, 0)), "on the start, heading kept"
    assert (reward, terminated, info["success"]) == (0.0, False, False)
    env.step(NOOP)
    assert agent_cell(env.symbolic_obs) == (env.start, (AGENT, heading, 0)), "the mark lasts one step"


def test_reaching_the_goal_is_success_with_reward_one():
    env = MysteryPathEnv(obs_mode="pixels")
    env.reset(seed=1)
    results = [result for cell in env.path[1:] for result in turn_towards(env, cell)]
    rewards = [r for _, r, *_ in results]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0
    _, _, terminated, truncated, info = results[-1]
    assert terminated and not truncated and info["success"]
    assert not any(info["success"] for *_, info in results[:-1])
    with pytest.raises(RuntimeError):
        env.step(NOOP)


def test_time_limit_truncates_without_success():
    env = MysteryPathEnv(max_steps=5)
    env.reset(seed=0)
    outcomes = [env.step(NOOP)[2:] for _ in range(5)]
    assert [o[:2] for o in outcomes] == [(False, False)] * 4 + [(False, True)]
    assert not outcomes[-1][2]["success"]


def expected_pairs(episode, size: int) -> list[set[int]]:
    """Re-derive the pairs of each step from the recorded trajectory alone, as the docstring defines them."""
    T = episode.length
    agent = [agent_cell(s) for s in episode.symbolic]
    pos = [p for p, _ in agent]
    fell = [code[2] == 1 for _, code in agent]
    first_safe: dict = {}
    fell_at: dict = {}
    expected = []
    for t in range(T):
        if fell[t]:
            fell_at.setdefault(pos[t], t)
            expected.append({t})
            continue
        first_safe.setdefault(pos[t], t)
        # The cell entered at the next forward move, and the cell it is entered from.
        cell, heading = pos[t], agent[t][1][1]
        for a in episode.actions[t:]:
            if a == FORWARD:
                origin, cell = cell, (cell[0] + DIR_TO_VEC[heading][0], cell[1] + DIR_TO_VEC[heading][1])
                break
            heading = (heading + (a == RIGHT) - (a == LEFT)) % 4
        if cell in first_safe:
            expected.append({first_safe[cell], t})
        else:
            expected.append({t} | {fell_at[c] for c in neighbours(origin, size) if c in fell_at})
    return expected


@pytest.mark.parametrize("seed", range(12))
def test_expert_pairs_follow_their_definition(seed):
    env = MysteryPathEnv(obs_mode="symbolic")
    episode = rollout(env, seed=seed)
    got: list[set[int]] = [set() for _ in range(episode.length)]
    for p, q in episode.pairs:
        got[q].add(int(p))
    assert got == expected_pairs(episode, env.size)
    # It never walks into a cell it has seen it fall from, so each fall is on a new cell.
    falls = [agent_cell(s)[0] for s in episode.symbolic if agent_cell(s)[1][2] == 1]
    assert len(falls) == len(set(falls))


def test_expert_has_no_privileged_knowledge_of_the_path():
    # Same start, different paths: the expert acts the same until its observations differ.
    env_a, env_b = MysteryPathEnv(obs_mode="symbolic"), MysteryPathEnv(obs_mode="symbolic")
    a = rollout(env_a, seed=0)
    seeds = [s for s in range(1, 2000) if env_b.reset(seed=s) and env_b.start == env_a.start][:5]
    for seed in seeds:
        b = rollout(env_b, seed=seed)
        n = min(a.length, b.length)
        same = np.all(a.symbolic[:n] == b.symbolic[:n], axis=(1, 2, 3))
        k = int(np.argmin(same)) if not same.all() else n  # first differing observation
        np.testing.assert_array_equal(a.actions[:k], b.actions[:k])


def test_expert_solves_at_least_99_percent_of_seeds_0_to_999_at_defaults():
    env = MysteryPathEnv(obs_mode="symbolic")
    episodes = [rollout(env, seed=s) for s in range(1000)]
    assert sum(e.success for e in episodes) >= 990
    assert np.mean([e.length for e in episodes]) < 50


def test_a_memoryless_policy_does_far_worse():
    # Without memory a policy cannot tell which cells carried it: all it can do is wander. Random policies
    # solve 1% (uniform) to 6% (forward 70%, the best we tried) of seeds 0-999; the expert 100%.
    env = MysteryPathEnv(obs_mode="symbolic")
    rng = np.random.default_rng(0)
    solved = 0
    for seed in range(300):
        env.reset(seed=seed)
        while True:
            *_, terminated, truncated, info = env.step(int(rng.choice(4, p=[0.0, 0.15, 0.15, 0.7])))
            if terminated or truncated:
                break
        solved += info["success"]
    assert solved / 300 < 0.15


@pytest.mark.parametrize("size", [3, 4, 5, 6])
def test_expert_solves_smaller_grids(size):
    env = MysteryPathEnv(size=size, obs_mode="symbolic")
    assert sum(rollout(env, seed=s).success for s in range(100)) >= 99
