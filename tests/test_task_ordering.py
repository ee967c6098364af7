"""Task-specific facts of LTMB Ordering (the generic contract is checked in test_tasks.py)."""

from __future__ import annotations

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.minigrid_env import MiniGridEnv

import memory_tasks
from memory_tasks.core import rollout
from memory_tasks.gridworld import EMPTY, GREY, WALL, ltmb_pixels
from memory_tasks.ordering import EMPTY_VIEW, OrderingEnv, symbolic_to_pixels

LEFT, RIGHT, FORWARD = 0, 1, 2
ALL_OBJECTS = {
    (OBJECT_TO_IDX[kind], COLOR_TO_IDX[colour], 0)
    for kind in ("ball", "key", "box")
    for colour in COLOR_TO_IDX
}


def objects_in(view: np.ndarray) -> dict[tuple[int, int], tuple[int, ...]]:
    """{(x, y): code} of every view cell that is not wall or empty."""
    kinds = view[:, :, 0]
    return {
        (int(x), int(y)): tuple(int(v) for v in view[x, y])
        for x, y in zip(*np.nonzero((kinds != EMPTY) & (kinds != WALL)), strict=True)
    }


@pytest.fixture(scope="module")
def episodes():
    env = OrderingEnv()
    return [rollout(env, seed) for seed in range(1000)]


def test_expert_always_succeeds_in_exactly_18_plus_L_steps(episodes):
    for ep in episodes:
        assert ep.success, ep.seed
        assert ep.length == 68
        assert ep.rewards[-1] == 1.0 and np.all(ep.rewards[:-1] == 0.0)
    short = rollout(OrderingEnv(length=3), seed=7)
    assert short.success and short.length == 21


def test_room_walls_and_agent_cell():
    env = OrderingEnv()
    env.reset(seed=0)
    view = env.symbolic_obs
    border = np.ones((7, 7), dtype=bool)
    border[1:6, 1:6] = False
    border[3, 6] = False  # the agent's own cell
    assert np.all(view[border] == (WALL, GREY, 0))
    assert tuple(view[3, 6]) == (EMPTY, 0, 0)


def test_memorisation_shows_a_permutation_of_all_18_objects_at_the_centre(episodes):
    orders = set()
    for ep in episodes[:200]:
        shown = []
        for t in range(18):
            objects = objects_in(ep.symbolic[t])
            assert list(objects) == [(3, 3)], (ep.seed, t)
            shown.append(objects[(3, 3)])
        assert set(shown) == ALL_OBJECTS
        orders.add(tuple(shown))
    assert len(orders) == 200  # a fresh random order every episode


def test_choice_steps_show_two_different_objects_left_and_right(episodes):
    for ep in episodes[:200]:
        for t in range(18, ep.length):
            objects = objects_in(ep.symbolic[t])
            assert sorted(objects) == [(2, 3), (4, 3)], (ep.seed, t)
            assert objects[(2, 3)] != objects[(4, 3)]


def test_expert_pairs_point_at_the_steps_where_the_objects_were_shown(episodes):
    for ep in episodes[:200]:
        shown_at = {tuple(int(v) for v in ep.symbolic[t][3, 3]): t for t in range(18)}
        by_q: dict[int, set[int]] = {}
        for p, q in ep.pairs:
            by_q.setdefault(int(q), set()).add(int(p))
        for t in range(18):
            assert by_q[t] == {t}
        for t in range(18, ep.length):
            i = shown_at[tuple(int(v) for v in ep.symbolic[t][2, 3])]
            j = shown_at[tuple(int(v) for v in ep.symbolic[t][4, 3])]
            assert by_q[t] == {i, j, t}
            assert ep.actions[t] == (LEFT if i < j else RIGHT)
        assert len(ep.pairs) == ep.length + 2 * 50


def test_wrong_answer_gives_minus_one_and_ends_the_episode():
    env = OrderingEnv()
    for wrong in ("other_side", FORWARD, 6):
        env.reset(seed=3)
        for _ in range(18):  # any action is accepted while memorising
            _, reward, terminated, truncated, info = env.step(int(env.np_random.integers(7)))
            assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
        correct = env.correct_action(18)
        action = 1 - correct if wrong == "other_side" else wrong
        _, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated, info["success"]) == (-1.0, True, False, False)
        assert objects_in(env.symbolic_obs) == {}  # the finished room is shown empty
        with pytest.raises(RuntimeError):
            env.step(LEFT)


def test_choice_view_hides_when_the_objects_were_seen(episodes):
    # A choice view is the empty room plus the two objects: nothing else depends on the episode.
    for ep in episodes[:200]:
        for t in range(18, ep.length):
            view = EMPTY_VIEW.copy()
            view[2, 3], view[4, 3] = ep.symbolic[t][2, 3], ep.symbolic[t][4, 3]
            assert np.array_equal(ep.symbolic[t], view)


def test_memoryless_policies_are_at_chance(episodes):
    def choices(eps):
        for ep in eps:
            for t in range(18, ep.length):
                yield ep.symbolic[t].tobytes(), int(ep.actions[t])  # the expert's action is the right one

    train, held_out = episodes[:500], episodes[500:]
    votes: dict[bytes, list[int]] = {}
    for key, action in choices(train):
        votes.setdefault(key, [0, 0])[action] += 1
    best_fixed = {key: int(np.argmax(v)) for key, v in votes.items()}
    answers = list(choices(held_out))
    n = len(answers)  # 25,000 choices: a 4-sigma band around 1/2 is +-0.013
    band = 4 * 0.5 / np.sqrt(n)
    always_left = np.mean([a == LEFT for _, a in answers])
    mapping = np.mean([best_fixed.get(key, LEFT) == a for key, a in answers])
    assert abs(always_left - 0.5) < band
    assert abs(mapping - 0.5) < band


def test_symbolic_view_is_minigrids_own_encoding_and_pixels_its_pov_render():
    env = OrderingEnv(obs_mode="pixels")
    obs, _ = env.reset(seed=11)
    for t in range(25):
        assert np.array_equal(env.symbolic_obs, MiniGridEnv.gen_obs(env)["image"])
        assert np.array_equal(obs, symbolic_to_pixels(env.symbolic_obs))
        assert np.array_equal(obs, ltmb_pixels(env.symbolic_obs))
        assert np.array_equal(obs, env.get_pov_render(12))
        obs, *_ = env.step(env.correct_action(t) if t >= 18 else FORWARD)


def test_same_seed_same_episode_and_modes_agree():
    a = rollout(OrderingEnv(), seed=5)
    b = rollout(memory_tasks.make("Ordering"), seed=5)
    c = rollout(OrderingEnv(obs_mode="pixels"), seed=5)
    d = rollout(OrderingEnv(), seed=6)
    assert np.array_equal(a.symbolic, b.symbolic) and np.array_equal(a.pairs, b.pairs)
    assert np.array_equal(a.symbolic, c.symbolic) and np.array_equal(a.actions, c.actions)
    assert not np.array_equal(a.symbolic, d.symbolic)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"length": 0}, "length"), ({"length": "5"}, "length"), ({"length": True}, "length"),
     ({"obs_mode": "rgb"}, "obs_mode"), ({"size": 7}, "size")],
)
def test_bad_parameters_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OrderingEnv(**kwargs)
