"""Invariants every registered task must keep (the per-task facts live in tests/test_task_<name>.py)."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import memory_tasks
from memory_tasks import TASKS, resolve_task, rollout
from memory_tasks.gridworld import egocentric, reference_arena_pixels, reference_ltmb_pixels, render_batch

IDS = [env_id for env_id, _ in TASKS.values()]
# Small sizes keep the generic checks fast; default sizes are covered by the success-rate test.
SMALL = {
    "memory_tasks/Hallway-v0": {"length": 3},
    "memory_tasks/Ordering-v0": {"length": 5},
    "memory_tasks/Counting-v0": {"length": 4},
    "memory_tasks/MortarMayhem-v0": {"commands": 3},
    "memory_tasks/MysteryPath-v0": {},
}
SIZE_PARAM = {
    "memory_tasks/Hallway-v0": "length",
    "memory_tasks/Ordering-v0": "length",
    "memory_tasks/Counting-v0": "length",
    "memory_tasks/MortarMayhem-v0": "commands",
    "memory_tasks/MysteryPath-v0": "max_steps",
}


def module_of(env_id: str):
    entry = str(gym.spec(env_id).entry_point)
    return importlib.import_module(entry.split(":")[0])


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_check_env(env_id, obs_mode):
    env = gym.make(env_id, obs_mode=obs_mode, **SMALL[env_id])
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8
    assert obs.shape == ((7, 7, 3) if obs_mode == "symbolic" else (84, 84, 3))


@pytest.mark.parametrize("env_id", IDS)
def test_pixels_are_a_render_of_the_symbolic_observation(env_id):
    env = gym.make(env_id, obs_mode="pixels", **SMALL[env_id])
    episode = rollout(env, seed=3)
    render = module_of(env_id).symbolic_to_pixels
    for t in range(0, episode.length, max(1, episode.length // 10)):
        np.testing.assert_array_equal(episode.observations[t], render(episode.symbolic[t]))
    style = memory_tasks.PIXEL_STYLE[env_id]
    batch = render_batch(episode.symbolic, style)
    np.testing.assert_array_equal(batch, episode.observations)
    # ... and the tile-table renderer draws exactly what MiniGrid's own Grid.render draws
    reference = reference_ltmb_pixels if style == "ltmb" else reference_arena_pixels
    for t in range(0, episode.length, max(1, episode.length // 6)):
        np.testing.assert_array_equal(episode.observations[t], reference(episode.symbolic[t]))
    sym = rollout(gym.make(env_id, obs_mode="symbolic", **SMALL[env_id]), seed=3)
    np.testing.assert_array_equal(sym.observations, episode.symbolic)
    np.testing.assert_array_equal(sym.actions, episode.actions)


@pytest.mark.parametrize("env_id", IDS)
def test_symbolic_codes_fit_the_model_encoder(env_id):
    episode = rollout(gym.make(env_id, obs_mode="symbolic", **SMALL[env_id]), seed=1)
    assert episode.observations[..., 0].max() <= 10
    assert episode.observations[..., 1].max() <= 5
    assert episode.observations[..., 2].max() <= 2


def test_a_rollout_refuses_codes_the_encoder_would_merge():
    """A task (a new one, say) whose symbolic codes leave MiniGrid's ranges is named when its expert's episode is
    recorded: the model's encoder would clamp the codes and train on merged observations."""
    from memory_tasks.core import check_symbolic

    codes = np.zeros((2, 7, 7, 3), np.uint8)
    check_symbolic("Flash", codes)
    codes[1, 3, 3] = (11, 5, 3)
    with pytest.raises(ValueError, match=r"Flash: a symbolic observation has codes out of MiniGrid's ranges: object "
                                         r"11 \(at most 10\), state 3 \(at most 2\)"):
        check_symbolic("Flash", codes)
    env = gym.make("memory_tasks/Hallway-v0", obs_mode="symbolic", length=2)
    real = env.unwrapped._view
    env.unwrapped._view = lambda: np.minimum(real() + 20, 255).astype(np.uint8)  # a broken encoding
    with pytest.raises(ValueError, match="memory_tasks/Hallway-v0: a symbolic observation has codes out of"):
        rollout(env, seed=0)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode_different_seed_different_episode(env_id):
    env = gym.make(env_id, **SMALL[env_id])
    a, b = rollout(env, seed=11), rollout(env, seed=11)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.pairs, b.pairs)
    others = [rollout(env, seed=s) for s in range(12, 17)]
    assert any(
        o.length != a.length or not np.array_equal(o.observations, a.observations) for o in others
    ), "five other seeds all gave the seed-11 episode"


@pytest.mark.parametrize("env_id", IDS)
def test_no_global_random_state_used(env_id):
    env = gym.make(env_id, **SMALL[env_id])
    np.random.seed(0)
    a = rollout(env, seed=5)
    np.random.seed(123)
    import random

    random.seed(123)
    b = rollout(env, seed=5)
    np.testing.assert_array_equal(a.observations, b.observations)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", IDS)
def test_expert_success_and_pairs_on_1000_seeds_at_default_size(env_id):
    env = gym.make(env_id, obs_mode="symbolic")
    successes = 0
    for seed in range(1000):
        ep = rollout(env, seed=seed)
        successes += ep.success
        T = ep.length
        p, q = ep.pairs[:, 0], ep.pairs[:, 1]
        assert np.all(p <= q) and np.all(q < T) and np.all(p >= 0), f"seed {seed}: pair out of range"
        self_pairs = set(q[p == q].tolist())
        assert self_pairs == set(range(T)), f"seed {seed}: self-pair missing"
        assert len({(int(a), int(b)) for a, b in ep.pairs}) == len(ep.pairs), "duplicate pairs"
    required = 990 if env_id == "memory_tasks/MysteryPath-v0" else 1000
    assert successes >= required, f"{env_id}: expert solved {successes}/1000"


@pytest.mark.parametrize("env_id", IDS)
def test_bad_parameters_raise_value_error_naming_them(env_id):
    with pytest.raises(ValueError, match="no_such_option"):
        gym.make(env_id, no_such_option=1)
    with pytest.raises(ValueError, match="obs_mode"):
        gym.make(env_id, obs_mode="rgb")
    size = SIZE_PARAM[env_id]
    with pytest.raises(ValueError, match=size):
        gym.make(env_id, **{size: 0})
    with pytest.raises(ValueError, match=size):
        gym.make(env_id, **{size: "ten"})
    with pytest.raises(ValueError, match="render_mode"), pytest.warns(UserWarning, match="render_mode='foo'"):
        gym.make(env_id, render_mode="foo")  # gymnasium warns, the task refuses


@pytest.mark.parametrize("env_id", IDS)
def test_every_task_takes_integer_actions_only(env_id):
    """Python and NumPy integers (0-d arrays too) in range; a bool, a float or an id out of range is a ValueError
    in every task alike (one had run 2.5 as 2, three had run True as 1)."""
    env = gym.make(env_id, **SMALL[env_id]).unwrapped
    n = int(env.action_space.n)
    for bad in (2.5, True, np.bool_(True), -1, n, "1", np.array([1])):
        env.reset(seed=0)
        with pytest.raises(ValueError, match="action must be an integer"):
            env.step(bad)
    for good in (0, np.int64(1), np.array(1)):
        env.reset(seed=0)
        env.step(good)


def test_probabilities_may_be_numpy_numbers():
    env = gym.make("memory_tasks/Counting-v0", length=3, test_freq=np.float32(0.5), empty_freq=np.float64(0.25))
    assert env.unwrapped.test_freq == 0.5 and env.unwrapped.empty_freq == 0.25


def test_resolve_task_names():
    assert resolve_task("hallway") == "memory_tasks/Hallway-v0"
    assert resolve_task("memory_tasks/MortarMayhem-v0") == "memory_tasks/MortarMayhem-v0"
    assert resolve_task("MysteryPath-v0") == "memory_tasks/MysteryPath-v0"
    with pytest.raises(ValueError, match="unknown task 'Maze'"):
        resolve_task("Maze")
    assert memory_tasks.make("ordering", length=2).unwrapped.__class__.__name__ == "OrderingEnv"


@pytest.mark.parametrize("agent_dir", range(4))
def test_egocentric_view_is_minigrids_rotation_and_a_copy(agent_dir):
    grid = np.random.default_rng(agent_dir).integers(0, 255, (9, 9, 3), dtype=np.uint8)
    for window in (grid[:7, :7], grid[1:8, 2:9], grid[:7, :7].copy()):  # slices, and a contiguous array
        view = egocentric(window, agent_dir)
        np.testing.assert_array_equal(view, np.rot90(window, k=-(agent_dir + 1) % 4))
        assert view.flags.c_contiguous and not np.shares_memory(view, window)


@pytest.mark.parametrize("env_id", IDS)
def test_every_action_of_every_task_has_a_name(env_id):
    env = memory_tasks.make(env_id)
    names = memory_tasks.ACTION_NAMES[env_id]
    assert len(names) == int(env.action_space.n) and len(set(names)) == len(names)
