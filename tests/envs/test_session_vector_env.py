"""SessionVectorEnv through gymnasium.make_vec: spaces, next-step autoreset, seeding."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import rayrec  # noqa: F401  (registers rayrec/Session-v0)
from rayrec.contracts.observation import Obs
from rayrec.envs import SESSION_ENV_ID, SessionVectorEnv

SMALL = {"num_items": 300, "num_topics": 6, "num_candidates": 8, "embed_dim": 4, "history_len": 4}
B = 6


def make_vec(num_envs: int = B, **kwargs: Any) -> SessionVectorEnv:
    env = gym.make_vec(
        SESSION_ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )
    assert isinstance(env, SessionVectorEnv)
    return env


def first_valid(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) the first valid candidate of every slot (so every step shows an item)."""
    return obs[Obs.ACTION_MASK].argmax(axis=1)


def test_make_vec_builds_batched_spaces() -> None:
    env = make_vec(**SMALL, slate_size=2)
    assert env.num_envs == B
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.single_action_space == gym.spaces.MultiDiscrete([8, 8])
    assert env.action_space.shape == (B, 2)
    obs, _ = env.reset(seed=0)
    assert obs[Obs.CANDIDATE_ITEMS].shape == (B, 8)
    assert obs[Obs.HISTORY_FEATURES].shape == (B, 4, 4)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("slate_size", [1, 3])
def test_step_outputs_have_the_right_types_and_stay_in_the_space(slate_size: int) -> None:
    env = make_vec(**SMALL, slate_size=slate_size)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    observations = [obs]
    for _ in range(40):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
    assert reward.shape == (B,)
    assert reward.dtype == np.float32
    assert terminated.dtype == bool
    assert truncated.dtype == bool
    assert all(env.observation_space.contains(o) for o in observations)


def test_next_step_autoreset() -> None:
    # Users never leave on their own; slot 0's budget is spent, so only it ends, and it churns.
    env = make_vec(
        **SMALL, leave_bias=-50.0, return_bias=-50.0, session_budget=1e4, max_steps_per_session=1000
    )
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(first_valid(obs))
    old_user = env.sim.user_id.copy()
    env.sim.budget[0] = 0.0

    obs, reward, terminated, truncated, _ = env.step(first_valid(obs))  # step t: slot 0 is done
    np.testing.assert_array_equal(terminated, [True] + [False] * (B - 1))
    assert not truncated.any()
    assert obs[Obs.HISTORY_MASK][0].sum() == 2  # the final observation of the old user

    obs, reward, terminated, truncated, _ = env.step(first_valid(obs))  # t + 1: slot 0 restarts
    assert reward[0] == 0.0
    assert not terminated[0]
    assert not truncated[0]
    assert env.sim.user_id[0] != old_user[0]
    np.testing.assert_array_equal(env.sim.user_id[1:], old_user[1:])
    assert obs[Obs.HISTORY_MASK][0].sum() == 0  # a fresh user has no history
    np.testing.assert_array_equal(obs[Obs.HISTORY_MASK][1:].sum(axis=1), 3)
    assert obs[Obs.CONTEXT][0, 1] == 0.0  # step in session

    obs, _, terminated, _, _ = env.step(first_valid(obs))  # t + 2: slot 0 is an ordinary user
    assert not terminated.any()
    assert obs[Obs.HISTORY_MASK][0].sum() == 1
    assert env.observation_space.contains(obs)


def test_truncated_slot_restarts_on_the_next_step() -> None:
    env = make_vec(**SMALL, max_sessions=2, leave_bias=50.0, return_bias=50.0)
    env.reset(seed=0)
    actions = np.zeros(B, dtype=np.int64)
    truncated = [env.step(actions)[3].copy() for _ in range(4)]
    # Sessions end every step: a lifetime of two sessions is two steps, then one reset step.
    np.testing.assert_array_equal(np.stack(truncated)[:, 0], [False, True, False, False])


def _rollout(reset_seed: int | None, steps: int = 30, **kwargs: Any) -> list[np.ndarray]:
    env = make_vec(**SMALL, slate_size=2, **kwargs)
    obs, _ = env.reset(seed=reset_seed)
    env.action_space.seed(123)
    out = [obs[Obs.CANDIDATE_ITEMS]]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out += [obs[Obs.CANDIDATE_ITEMS], obs[Obs.HISTORY_RESPONSES], reward, terminated, truncated]
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_same_seed_gives_identical_trajectories() -> None:
    assert _same(_rollout(reset_seed=7), _rollout(reset_seed=7))


def test_different_seeds_give_different_trajectories() -> None:
    assert not _same(_rollout(reset_seed=7), _rollout(reset_seed=8))


def test_constructor_seed_seeds_the_first_reset() -> None:
    assert _same(_rollout(reset_seed=None, seed=9), _rollout(reset_seed=9))
    assert not _same(_rollout(reset_seed=None, seed=9), _rollout(reset_seed=None, seed=10))
