"""LTMB Hallway: layout, dynamics, the expert and its pairs, and what is (not) observable without memory."""

from __future__ import annotations

import numpy as np
import pytest
from minigrid.core.actions import Actions
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.core.world_object import Ball, Box, Door, Key
from minigrid.minigrid_env import MiniGridEnv

from memory_tasks import hallway
from memory_tasks.core import rollout
from memory_tasks.hallway import HallwayEnv

LEFT, RIGHT, FORWARD, PICKUP, TOGGLE = (
    int(a) for a in (Actions.left, Actions.right, Actions.forward, Actions.pickup, Actions.toggle)
)


def hallway_objects(env: HallwayEnv) -> list[tuple[tuple[int, int], object]]:
    c = env.size // 2
    return [((x, y), env.grid.get(x, y)) for x in range(7, env.size - 1, 4) for y in (c - 2, c + 2)]


def enter_door(env: HallwayEnv, k: int, upper: bool, toggle: int = TOGGLE) -> tuple[bool, float, bool]:
    """Walk to hallway k, turn to the upper/lower door, open it, step in: (success, reward, terminated)."""
    for _ in range(5 + 4 * k):  # from x = 2 to x = 7 + 4k
        env.step(FORWARD)
    env.step(LEFT if upper else RIGHT)
    env.step(toggle)
    _, reward, terminated, _, info = env.step(FORWARD)
    return info["success"], reward, terminated


def target_in_view(env: HallwayEnv) -> bool:
    return bool(env.in_view(*env.start_target_pos))


# ---- layout


@pytest.mark.parametrize("length", [1, 3, 30])
def test_layout(length):
    env = HallwayEnv(length=length)
    side = 4 * length + 5
    c = side // 2
    assert (env.width, env.height, env.max_steps) == (side, side, 4 * length + 25)
    assert env.see_through_walls and env.action_space.n == 7
    for seed in range(20):
        env.reset(seed=seed)
        assert tuple(env.agent_pos) == (2, c) and env.agent_dir == 0
        target = env.grid.get(1, c - 1)
        assert (1, c - 1) == env.start_target_pos and type(target) in (Ball, Key, Box)
        for x in range(7, side - 1, 4):  # one hallway every 4 columns, a closed door on each side
            for dy in (-1, 1):
                door = env.grid.get(x, c + dy)
                assert isinstance(door, Door) and not door.is_open and not door.is_locked
                assert type(env.grid.get(x, c + 2 * dy)) in (Ball, Key, Box)
                assert env.grid.get(x, c + 3 * dy).type == "wall"
                assert env.grid.get(x - 1, c + dy).type == env.grid.get(x + 1, c + dy).type == "wall"
        assert len(hallway_objects(env)) == 2 * length
        assert all(env.grid.get(x, c) is None for x in range(1, side - 1))  # the corridor is open


def test_exactly_one_object_matches_the_target():
    env = HallwayEnv(length=30)
    sides, hallways, door_colours = set(), set(), set()
    for seed in range(300):
        env.reset(seed=seed)
        target = env.grid.get(*env.start_target_pos)
        matches = [
            pos for pos, obj in hallway_objects(env) if (obj.type, obj.color) == (target.type, target.color)
        ]
        assert matches == [env.target_pos]
        x, y = env.success_pos
        assert x == env.target_pos[0] and abs(y - env.target_pos[1]) == 1  # the door in front of it
        sides.add(y < env.size // 2)
        hallways.add(env.target_hallway)
        door_colours.update(
            env.grid.get(x, env.size // 2 + d).color for x in range(7, 40, 4) for d in (-1, 1)
        )
    assert sides == {True, False} and len(hallways) > 25 and len(door_colours) == 6


def test_seeds():
    env = HallwayEnv(length=10)
    a, b, c = (rollout(env, s) for s in (7, 7, 8))
    assert np.array_equal(a.symbolic, b.symbolic) and np.array_equal(a.actions, b.actions)
    assert not np.array_equal(a.symbolic[1], c.symbolic[1]) or a.length != c.length


# ---- dynamics


def test_view_equals_minigrid_gen_obs():
    """The array-cut view is MiniGrid's own egocentric encoding, through moves, turns and toggles."""
    env = HallwayEnv(length=3)
    rng = np.random.default_rng(0)
    for seed in range(60):
        env.reset(seed=seed)
        for action in rng.choice([LEFT, RIGHT, FORWARD, FORWARD, PICKUP, TOGGLE, 4, 6], size=60):
            assert np.array_equal(env.symbolic_obs, MiniGridEnv.gen_obs(env)["image"])
            _, _, terminated, truncated, info = env.step(int(action))
            assert isinstance(info["success"], bool)
            if terminated or truncated:
                break
        assert np.array_equal(env.symbolic_obs, MiniGridEnv.gen_obs(env)["image"])


@pytest.mark.parametrize("toggle", [TOGGLE, PICKUP])
def test_right_door_succeeds_wrong_doors_fail(toggle):
    length = 3
    env = HallwayEnv(length=length)
    for seed in range(10):
        for k in range(length):
            for upper in (True, False):
                env.reset(seed=seed)
                right = env.success_pos == (7 + 4 * k, env.size // 2 + (-1 if upper else 1))
                success, reward, terminated = enter_door(env, k, upper, toggle)
                assert terminated and success == right
                assert reward == (pytest.approx(1 - 0.9 * env.step_count / env.max_steps) if right else 0.0)
                assert env.carrying is None


def test_closed_door_blocks_and_time_limit_truncates():
    env = HallwayEnv(length=1)
    env.reset(seed=0)
    for _ in range(5):
        env.step(FORWARD)
    env.step(LEFT)
    _, _, terminated, _, info = env.step(FORWARD)  # into the closed door: no move
    assert tuple(env.agent_pos) == (7, env.size // 2) and not terminated and info["success"] is False
    steps, truncated = env.step_count, False
    while not truncated:
        _, _, terminated, truncated, info = env.step(LEFT)
        steps += 1
        assert not terminated and info["success"] is False
    assert steps == env.max_steps == 29


def test_toggling_a_start_room_box_removes_it_from_the_view():
    env = HallwayEnv(length=1)
    for seed in range(50):
        env.reset(seed=seed)
        if env.target_obj is Box:
            break
    env.step(LEFT)
    env.step(FORWARD)  # now at (2, c-1) facing north; the box is to the west
    env.step(LEFT)
    assert env.symbolic_obs[3, 5, 0] == OBJECT_TO_IDX["box"]
    env.step(TOGGLE)
    assert env.symbolic_obs[3, 5, 0] == OBJECT_TO_IDX["empty"]
    assert np.array_equal(env.symbolic_obs, MiniGridEnv.gen_obs(env)["image"])


# ---- the expert and its pairs


@pytest.mark.parametrize(("length", "seeds"), [(30, 1000), (1, 100), (3, 200), (10, 300)])
def test_expert_always_succeeds_with_the_documented_pairs(length, seeds):
    env = HallwayEnv(length=length)
    for seed in range(seeds):
        ep = rollout(env, seed)
        k = env.target_hallway
        assert ep.success and ep.length == 10 + 4 * k and ep.rewards[-1] > 0
        assert ep.actions[:2].tolist() == [LEFT, RIGHT] and ep.actions[-2:].tolist() == [TOGGLE, FORWARD]
        self_pairs = ep.pairs[ep.pairs[:, 0] == ep.pairs[:, 1]]
        recalls = ep.pairs[ep.pairs[:, 0] != ep.pairs[:, 1]]
        assert self_pairs[:, 0].tolist() == list(range(ep.length))
        # (1, t) exactly at the k + 1 door columns passed, the chosen one included (t = 7 + 4j)
        assert recalls.tolist() == [[1, 7 + 4 * j] for j in range(k + 1)]
        door = OBJECT_TO_IDX["door"]
        beside = [t for t in range(ep.length) if door in (ep.symbolic[t, 2, 6, 0], ep.symbolic[t, 4, 6, 0])]
        assert beside == [7 + 4 * j for j in range(k + 1)]


def test_expert_plays_pixels_the_same():
    sym, pix = HallwayEnv(length=3), HallwayEnv(length=3, obs_mode="pixels")
    for seed in range(5):
        a, b = rollout(sym, seed), rollout(pix, seed)
        assert b.success and np.array_equal(a.actions, b.actions) and np.array_equal(a.pairs, b.pairs)
        assert np.array_equal(a.symbolic, b.symbolic) and b.observations.shape[1:] == (84, 84, 3)
        for t in (0, 1, b.length - 1):
            assert np.array_equal(b.observations[t], hallway.symbolic_to_pixels(b.symbolic[t]))


def test_symbolic_mode_renders_no_pixels(monkeypatch):
    def fail(_):
        raise AssertionError("rendered pixels in symbolic mode")

    monkeypatch.setattr(hallway, "symbolic_to_pixels", fail)
    assert rollout(HallwayEnv(length=3), 0).success


# ---- information hiding: only o_1 shows the target


def test_target_only_seen_at_t1_along_the_expert_path():
    env = HallwayEnv(length=10)
    for seed in range(50):
        ep = rollout(env, seed)
        env.reset(seed=seed)
        seen = []
        for action in ep.actions:
            seen.append(target_in_view(env))
            env.step(int(action))
        assert seen[1] and not seen[0] and not any(seen[2:])
        assert tuple(ep.symbolic[1, 2, 5]) == env.grid.get(*env.start_target_pos).encode()  # view [2, 5]


def test_start_room_swap_changes_only_o1():
    """Replace the start-room object: along the expert's actions only the observation at t = 1 changes."""
    env = HallwayEnv(length=10)
    for seed in range(20):
        ep = rollout(env, seed)
        env.reset(seed=seed)
        env._put(*env.start_target_pos, Key("grey") if env.target_obj is not Key else Ball("grey"))
        env.gen_obs()
        for t, action in enumerate(ep.actions):
            assert np.array_equal(env.symbolic_obs, ep.symbolic[t]) == (t != 1)
            env.step(int(action))


def test_no_corridor_view_past_the_first_hallway_shows_the_start_room():
    env = HallwayEnv(length=5)
    env.reset(seed=0)
    c = env.size // 2
    for x in range(5, env.size - 1):
        for direction in range(4):
            env.agent_pos, env.agent_dir = (x, c), direction
            # facing east never; looking back west only up to the first door column (x <= 7), see docstring
            assert target_in_view(env) == (direction == 2 and x <= 7)


def test_memoryless_door_choice_is_at_chance():
    """Without the start-room frame a policy can only guess: each door is right 1/(2L) of the time."""
    length, seeds = 3, 400
    env = HallwayEnv(length=length)
    rates = []
    for k in range(length):
        for upper in (True, False):
            wins = 0
            for seed in range(seeds):
                env.reset(seed=seed)
                wins += enter_door(env, k, upper)[0]
            rates.append(wins / seeds)
    chance = 1 / (2 * length)
    assert abs(sum(rates) - 1) < 1e-9  # exactly one door is right in every episode
    assert max(rates) < chance + 0.08 and min(rates) > chance - 0.08  # best fixed choice ~ chance
    rng = np.random.default_rng(0)
    wins = 0
    for seed in range(seeds):
        env.reset(seed=seed)
        wins += enter_door(env, int(rng.integers(length)), bool(rng.integers(2)))[0]
    assert abs(wins / seeds - chance) < 0.08


# ---- parameters


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"length": 0}, "length"),
        ({"length": 2.5}, "length"),
        ({"length": True}, "length"),
        ({"obs_mode": "rgb"}, "obs_mode"),
        ({"size": 3}, "size"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HallwayEnv(**kwargs)
