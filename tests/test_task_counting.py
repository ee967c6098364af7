"""LTMB Counting: room layouts, the parity rule, door outcomes, the expert's pairs, information hiding."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.actions import Actions
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.minigrid_env import MiniGridEnv

import memory_tasks  # noqa: F401  (registers the ids)
from memory_tasks import rollout
from memory_tasks.counting import CountingEnv

ENV_ID = "memory_tasks/Counting-v0"
OBJECTS = {OBJECT_TO_IDX[name] for name in ("ball", "key", "box")}
DOOR = OBJECT_TO_IDX["door"]
GREEN, RED = (1, 0), (3, 0)
A = Actions
TO_DOOR = {  # from the start (2, 3) facing north, through a test room's door
    GREEN: [A.left, A.forward, A.right, A.forward, A.forward, A.toggle, A.forward],
    RED: [A.right, A.forward, A.left, A.forward, A.forward, A.toggle, A.forward],
}
THROUGH_BLUE = [A.forward, A.forward, A.toggle, A.forward]


def room_objects(env: CountingEnv) -> list[tuple[int, ...]]:
    """(type, colour) of every object in the current room, read from the world grid."""
    cells = [env.grid.get(x, y) for x in range(1, 4) for y in range(1, 4)]
    return [tuple(int(v) for v in c.encode()[:2]) for c in cells if c is not None]


def play(env: CountingEnv, actions) -> tuple[float, bool, bool, dict]:
    for a in actions:
        _, reward, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
    return reward, terminated, truncated, info


def expert_episode(seed: int, **kwargs):
    """Play the expert, recording per step: room index, is-test, and the room's objects at its first step."""
    env = CountingEnv(**kwargs)
    env.reset(seed=seed)
    expert = env.make_expert()
    steps: list[dict[str, Any]] = []
    while True:
        first = not steps or steps[-1]["room"] != env.room
        steps.append(dict(room=env.room, test=env.is_test_room, first=first, objects=room_objects(env)))
        if first and env.is_test_room:
            steps[-1]["snapshot"] = copy.deepcopy(env)
        action, recalled = expert.act(env.symbolic_obs)
        steps[-1].update(action=action, recalled=sorted(set(recalled)), view=env.symbolic_obs.copy())
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return steps, info["success"]


def test_expert_solves_every_seed_0_999_at_default_size():
    env = gym.make(ENV_ID)
    lengths, nonself = [], []
    for seed in range(1000):
        ep = rollout(env, seed)
        assert ep.success, f"seed {seed}"
        assert ep.total_return == 1.0
        lengths.append(ep.length)
        nonself.append(int(np.sum(ep.pairs[:, 0] != ep.pairs[:, 1])))
    # The original expert at L=20: length mean 97 (83-116), 10.7 non-self pairs on average.
    assert 94 < np.mean(lengths) < 100 and 80 <= min(lengths) and max(lengths) <= 7 * 20
    assert 9.5 < np.mean(nonself) < 12.5


def test_view_equals_minigrids_own_egocentric_encoding():
    env = CountingEnv(length=6, test_freq=0.5)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    directions = set()
    for _ in range(600):
        grid, vis = MiniGridEnv.gen_obs_grid(env)
        np.testing.assert_array_equal(env.symbolic_obs, grid.encode(vis))
        directions.add(env.agent_dir)
        # mostly forward/toggle so that doors get opened and rooms change
        _, _, terminated, truncated, _ = env.step(int(rng.choice(7, p=[0.2, 0.2, 0.3, 0.05, 0, 0.25, 0])))
        if terminated or truncated:
            env.reset()
    assert directions == {0, 1, 2, 3}


def test_room_layouts_follow_the_spec():
    for seed in range(30):
        steps, _ = expert_episode(seed)
        assert not steps[0]["test"]
        for s in steps:
            if not s["first"]:
                continue
            view = s["view"]
            assert view[3, 6].tolist() == [OBJECT_TO_IDX["empty"], 0, 0]  # agent cell
            kinds = view[..., 0]
            if s["test"]:  # green (1,0) -> view (2,3), red (3,0) -> view (4,3), object (2,1) -> view (3,4)
                assert view[2, 3].tolist() == [DOOR, 1, 1] and view[4, 3].tolist() == [DOOR, 0, 1]
                assert kinds[3, 4] in OBJECTS and np.isin(kinds, list(OBJECTS)).sum() == 1
            else:
                assert view[3, 3].tolist() == [DOOR, 2, 1]  # closed blue door straight ahead
                object_cells = {(2, 4), (4, 4), (2, 5), (4, 5), (2, 6), (4, 6)}
                for x, y in zip(*np.nonzero(np.isin(kinds, list(OBJECTS))), strict=True):
                    assert (x, y) in object_cells
    env = CountingEnv()
    env.reset(seed=1)
    assert env.agent_pos == (2, 3) and env.agent_dir == 3 and env.max_steps == 140


def test_correct_door_follows_parity_and_wrong_door_fails():
    checked = {GREEN: 0, RED: 0}
    for seed in range(60):
        seen: dict[tuple[int, int], int] = {}
        steps, success = expert_episode(seed)
        assert success
        for s in steps:
            if not s["first"]:
                continue
            if not s["test"]:
                for key in s["objects"]:
                    seen[key] = seen.get(key, 0) + 1
                continue
            (key,) = s["objects"]
            right = GREEN if seen.get(key, 0) % 2 == 0 else RED
            wrong = RED if right == GREEN else GREEN
            assert s["action"] == TO_DOOR[right][0]  # the expert turns towards the right door
            reward, terminated, _, info = play(copy.deepcopy(s["snapshot"]), TO_DOOR[wrong])
            assert terminated and not info["success"] and reward == 0.0
            ok = s["snapshot"]
            reward, terminated, _, info = play(ok, TO_DOOR[right])
            if s["room"] == ok.length - 1:
                assert terminated and info["success"] and reward == 1.0
            else:
                assert not terminated and ok.room == s["room"] + 1 and ok.agent_pos == (2, 3)
            checked[right] += 1
    assert checked[GREEN] > 20 and checked[RED] > 20


def test_test_room_pairs_point_at_frames_showing_identical_objects():
    for seed in range(40):
        steps, _ = expert_episode(seed)
        for t, s in enumerate(steps):
            if not (s["test"] and s["first"]):
                assert s["recalled"] == [t], f"seed {seed} t {t}: only the self-pair expected"
                continue
            kind, colour = s["view"][3, 4, :2].tolist()
            expected = {
                p
                for p in range(t)
                if steps[p]["first"]
                and not steps[p]["test"]
                and any(
                    (int(k), int(c)) == (kind, colour) for k, c in steps[p]["view"][..., :2].reshape(-1, 2)
                )
            }
            assert set(s["recalled"]) == expected | {t}
            for p in expected:  # the identical object is really in view at p, in an object cell
                cells = steps[p]["view"][[2, 4, 2, 4, 2, 4], [4, 4, 5, 5, 6, 6], :2].tolist()
                assert [kind, colour] in cells


def test_test_rooms_hide_earlier_rooms_and_memoryless_guessing_is_near_chance():
    green_right: list[int] = []
    by_object: dict[tuple[int, int], list[int]] = {}
    for seed in range(300):
        steps, _ = expert_episode(seed)
        for s in steps:
            if not (s["test"] and s["first"]):
                continue
            view = s["view"]
            assert np.isin(view[..., 0], list(OBJECTS)).sum() == 1  # nothing of the earlier rooms shows
            _, terminated, _, info = play(s["snapshot"], TO_DOOR[GREEN])
            right = int(info["success"] or not terminated)
            green_right.append(right)
            by_object.setdefault(tuple(view[3, 4, :2].tolist()), []).append(right)
    # Always green: the parity of a small count leans even, so green is right a bit more than half the time.
    assert len(green_right) > 1000 and 0.45 < np.mean(green_right) < 0.62, np.mean(green_right)
    # The best guess from the current view (its object) is no better: fit a door per object on half the data.
    fit = {k: np.mean(v[::2]) >= 0.5 for k, v in by_object.items()}
    held = [r if fit[k] else 1 - r for k, v in by_object.items() for r in v[1::2]]
    assert 0.4 < np.mean(held) < 0.62, np.mean(held)


def test_pickup_acts_as_toggle_and_idling_truncates_as_failure():
    a, b = CountingEnv(length=3), CountingEnv(length=3)
    a.reset(seed=4)
    b.reset(seed=4)
    play(a, [A.forward, A.forward, A.toggle, A.forward])
    play(b, [A.forward, A.forward, A.pickup, A.forward])
    assert a.room == b.room == 1 and b.carrying is None
    np.testing.assert_array_equal(a.symbolic_obs, b.symbolic_obs)
    env = CountingEnv(length=3)
    env.reset(seed=0)
    for t in range(1, 22):
        _, reward, terminated, truncated, info = env.step(A.drop)
        assert not terminated and truncated == (t == 21) and not info["success"] and reward == 0.0


def test_frequencies_shape_the_episode():
    # no test rooms: always L normal rooms of 4 steps
    ep = rollout(gym.make(ENV_ID, length=7, test_freq=0.0), seed=2)
    assert ep.success and ep.length == 28 and np.all(ep.pairs[:, 0] == ep.pairs[:, 1])
    # all cells empty, every later room a test room: the count is always 0, green is always right
    steps, success = expert_episode(3, length=6, test_freq=1.0, empty_freq=1.0)
    assert success and len(steps) == 4 + 5 * 7
    assert all(s["action"] == A.left for s in steps if s["test"] and s["first"])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"test_freq": 1.5}, "test_freq"), ({"empty_freq": -0.1}, "empty_freq"), ({"length": 0}, "length")],
)
def test_bad_parameters_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CountingEnv(**kwargs)
