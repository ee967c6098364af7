"""Mortar Mayhem (grid): the task-specific facts (the generic contract is in tests/test_tasks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from memory_tasks.core import rollout
from memory_tasks.gridworld import AGENT, DIR_TO_VEC, EMPTY, LAVA, NORTH, WALL, agent_code, arena_pixels
from memory_tasks.mortar_mayhem import (
    DELTAS,
    FORWARD,
    NOOP,
    MortarMayhemEnv,
    shown_command,
    symbolic_to_pixels,
    walk_towards,
)

CHECKS = [45 + 8 * i for i in range(10)]  # actions after which commands 0..9 are checked (n = 10)


def play(env: MortarMayhemEnv, seed: int, policy) -> tuple[list[np.ndarray], list[float], dict]:
    """Run ``policy(env, t) -> action`` to the end; return the symbolic frames, rewards and last info."""
    env.reset(seed=seed)
    frames, rewards, t = [env.symbolic_obs], [], 0
    while True:
        _, reward, terminated, truncated, info = env.step(policy(env, t))
        frames.append(env.symbolic_obs)
        rewards.append(reward)
        t += 1
        if terminated or truncated:
            return frames, rewards, info


def expert_then(action_at: dict[int, int]):
    """The expert's policy, except for the given {t: action} overrides."""

    def policy(env: MortarMayhemEnv, t: int) -> int:
        return action_at[t] if t in action_at else env.make_expert().act(env.symbolic_obs)[0]

    return policy


def test_expert_solves_every_seed_in_exactly_118_steps_with_the_specified_pairs():
    env = MortarMayhemEnv(obs_mode="symbolic")
    for seed in range(1000):
        ep = rollout(env, seed)
        assert ep.success and ep.length == 118, seed
        assert np.isclose(ep.total_return, 1.0)
        assert np.flatnonzero(ep.rewards).tolist() == CHECKS
        assert np.allclose(ep.rewards[CHECKS], 0.1)
        expected = {(t, t) for t in range(118)}
        expected |= {(4 * ((t - 39) // 8) + k, t) for t in range(39, 118) for k in range(3)}
        assert set(map(tuple, ep.pairs.tolist())) == expected
        for i, command in enumerate(env.command_ids):  # the frames recalled for command i show it
            assert [shown_command(ep.symbolic[4 * i + k]) for k in range(3)] == [command] * 3


@pytest.mark.parametrize("commands", [1, 2, 5])
def test_episode_length_and_return_scale_with_commands(commands):
    env = MortarMayhemEnv(commands=commands, obs_mode="symbolic")
    for seed in range(20):
        ep = rollout(env, seed)
        assert ep.success and ep.length == 12 * commands - 2
        assert np.isclose(ep.total_return, 0.1 * commands)


def test_commands_follow_the_previous_target_and_stay_in_the_arena():
    env = MortarMayhemEnv(obs_mode="symbolic")
    spawns, counts = set(), np.zeros(5)
    for seed in range(500):
        env.reset(seed=seed)
        spawns.add(env.spawn)
        previous = env.spawn
        for command, target in zip(env.command_ids, env.targets, strict=True):
            assert target == (previous[0] + DELTAS[command][0], previous[1] + DELTAS[command][1])
            assert 0 <= target[0] < 5 and 0 <= target[1] < 5
            counts[command] += 1
            previous = target
    assert len(spawns) == 25
    assert np.all(counts / counts.sum() > 0.15)  # every command drawn (stay is likelier at the edges)


def test_clue_phase_shows_commands_agent_frozen_and_ignores_actions():
    env = MortarMayhemEnv(obs_mode="symbolic")
    seed = next(s for s in range(100) if env.reset(seed=s) and env.spawn[1] > 0)  # north of spawn is free
    rng = np.random.default_rng(0)
    noisy = {t: int(rng.integers(4)) for t in range(39)}
    frames, _, _ = play(env, seed, expert_then({**noisy, 39: FORWARD, 40: NOOP, 41: NOOP}))
    reference, _, _ = play(env, seed, expert_then({39: FORWARD, 40: NOOP, 41: NOOP}))
    x, y = env.spawn
    for t in range(40):
        assert np.array_equal(frames[t], reference[t])
        assert tuple(frames[t][x + 1, y + 1]) == agent_code(NORTH)
        expected = env.command_ids[t // 4] if t % 4 < 3 else None
        assert shown_command(frames[t]) == expected
    assert shown_command(frames[40]) is None
    assert tuple(frames[40][x + 1, y]) == agent_code(NORTH)  # a_39 already moved the agent


def test_target_is_never_drawn_except_as_the_only_safe_tile_of_deadly_frames():
    env = MortarMayhemEnv(obs_mode="symbolic")
    rng = np.random.default_rng(1)
    for seed in range(60):
        policy = expert_then({}) if seed % 2 else (lambda env, t: int(rng.integers(4)))
        frames, _, _ = play(env, seed, policy)
        for s, frame in enumerate(frames):
            assert set(frame[[0, 6], :, 0].ravel()) | set(frame[:, [0, 6], 0].ravel()) == {WALL}
            arena = frame[1:6, 1:6, 0]
            assert (arena == AGENT).sum() == 1
            i = env.deadly_command(s)
            if i is None:
                assert np.all((arena == EMPTY) | (arena == AGENT))
            else:
                tx, ty = env.targets[i]
                safe = np.ones((5, 5), bool)
                safe[tx, ty] = False
                assert arena[tx, ty] in (EMPTY, AGENT)
                assert np.all((arena[safe] == LAVA) | (arena[safe] == AGENT))


def test_absent_at_the_check_fails():
    env = MortarMayhemEnv(obs_mode="symbolic")
    seed = next(s for s in range(100) if env.reset(seed=s) and env.command_ids[0] != 4)
    frames, rewards, info = play(env, seed, lambda env, t: NOOP)
    assert len(rewards) == 46 and sum(rewards) == 0 and not info["success"]
    x, y = env.spawn
    assert tuple(frames[-1][x + 1, y + 1]) == agent_code(NORTH, on_deadly=True)


def test_leaving_the_target_during_the_deadly_frames_fails_and_afterwards_is_free():
    env = MortarMayhemEnv(obs_mode="symbolic")

    def can_step_off(seed: int) -> bool:  # after the expert's first check, forward leads off the target
        env.reset(seed=seed)
        for _ in range(46):
            env.step(env.make_expert().act(env.symbolic_obs)[0])
        dx, dy = DIR_TO_VEC[env.dir]
        return 0 <= env.pos[0] + dx < 5 and 0 <= env.pos[1] + dy < 5

    seed = next(s for s in range(100) if can_step_off(s))
    frames, rewards, info = play(env, seed, expert_then({46: FORWARD}))
    assert len(rewards) == 47 and np.isclose(sum(rewards), 0.1) and not info["success"]
    assert (frames[-1][:, :, 0] == AGENT).sum() == 1 and frames[-1][env.pos[0] + 1, env.pos[1] + 1, 2] == 1
    # The action on the second deadly frame is not checked: stepping off then is survived.
    frames, rewards, info = play(env, seed, expert_then({47: FORWARD}))
    assert info["success"] and len(rewards) == 118
    assert not (frames[48][:, :, 0] == LAVA).any()


def test_memoryless_policies_fail():
    """Without memory, the current frame says nothing about the target: per-command success stays near
    the chance of a 'stay' command, where the expert (which recalls the clue frames) always succeeds."""
    env = MortarMayhemEnv(obs_mode="symbolic")
    rng = np.random.default_rng(2)
    policies = {"stay": lambda env, t: NOOP, "random": lambda env, t: int(rng.integers(4))}
    for name, policy in policies.items():
        passed = attempted = successes = 0
        for seed in range(300):
            _, _, info = play(env, seed, policy)
            passed += info["commands_passed"]
            attempted += min(info["commands_passed"] + 1, 10)
            successes += info["success"]
        assert successes == 0, name
        assert passed / attempted < 0.4, (name, passed / attempted)


def test_walk_reaches_any_neighbour_within_three_of_the_seven_moving_actions():
    for direction in range(4):
        for delta in DELTAS:
            pos, facing, target = (2, 2), direction, (2 + delta[0], 2 + delta[1])
            for _ in range(3):
                action = walk_towards(pos, facing, target)
                if action == 1:
                    facing = (facing - 1) % 4
                elif action == 2:
                    facing = (facing + 1) % 4
                elif action == FORWARD:
                    pos = (pos[0] + DIR_TO_VEC[facing][0], pos[1] + DIR_TO_VEC[facing][1])
            assert pos == target and walk_towards(pos, facing, target) == NOOP


def test_pixels_are_arena_pixels_and_every_command_looks_different():
    env = MortarMayhemEnv(obs_mode="pixels")
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        frames, done, t = [(obs, env.symbolic_obs)], False, 0
        while not done:  # the expert for one command, then forward (onto lava at the latest at t = 54)
            action = env.make_expert().act(obs)[0] if t < 47 else FORWARD
            obs, _, done, _, _ = env.step(action)
            frames.append((obs, env.symbolic_obs))
            t += 1
        assert (frames[-1][1][:, :, 0] == LAVA).any()
        for obs, symbolic in frames:
            assert np.array_equal(obs, symbolic_to_pixels(symbolic))
            assert np.array_equal(obs, arena_pixels(symbolic))
    borders = set()
    for command in [None, 0, 1, 2, 3, 4]:
        frame = _first_frame_showing(command)
        assert shown_command(frame) == command
        image = symbolic_to_pixels(frame)
        borders.add(
            image[:12].tobytes() + image[-12:].tobytes() + image[:, :12].tobytes() + image[:, -12:].tobytes()
        )
    assert len(borders) == 6  # the command can be read from the border alone


def _first_frame_showing(command: int | None) -> np.ndarray:
    env = MortarMayhemEnv(obs_mode="symbolic")
    for seed in range(200):
        env.reset(seed=seed)
        if command is None:
            for _ in range(3):
                env.step(NOOP)
            return env.symbolic_obs
        if env.command_ids[0] == command:
            return env.symbolic_obs
    raise AssertionError(command)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="commands"):
        MortarMayhemEnv(commands=0)
    with pytest.raises(ValueError, match="obs_mode"):
        MortarMayhemEnv(obs_mode="rgb")
    with pytest.raises(ValueError, match="size"):
        MortarMayhemEnv(size=5)
    env = MortarMayhemEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(4)
