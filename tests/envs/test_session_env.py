"""SessionEnv: Gymnasium's checker, seeding, episode ends and invalid actions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rayrec  # noqa: F401  (registers rayrec/Session-v0)
from rayrec.contracts.observation import Obs
from rayrec.envs import SESSION_ENV_ID, SessionEnv
from rayrec.specs import load_yaml

SMALL = {"num_items": 300, "num_topics": 6, "num_candidates": 8, "embed_dim": 4, "history_len": 4}
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="default"),
        pytest.param({**SMALL, "slate_size": 3}, id="slate3"),
        pytest.param({**SMALL, "slate_size": 3, "choice_model": "cascade"}, id="cascade"),
        # The simulator calibrated from MovieLens-100k (the data is fetched by make data).
        pytest.param(load_yaml(ROOT / "envs" / "ml100k.yaml")["config"], id="ml100k"),
    ],
)
def test_check_env_passes_without_warnings(kwargs: dict[str, Any]) -> None:
    env = gym.make(SESSION_ENV_ID, **kwargs).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


def test_make_returns_the_session_env() -> None:
    env = gym.make(SESSION_ENV_ID, **SMALL)
    assert isinstance(env.unwrapped, SessionEnv)
    assert env.unwrapped.config.num_items == 300


@pytest.mark.parametrize("slate_size", [1, 3])
def test_observations_stay_in_the_space(slate_size: int) -> None:
    env = gym.make(SESSION_ENV_ID, **SMALL, slate_size=slate_size)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    observations = [obs]
    for _ in range(60):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    assert all(env.observation_space.contains(o) for o in observations)


def test_latent_state_is_not_observed() -> None:
    env = SessionEnv(**SMALL)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {
        Obs.HISTORY_ITEMS,
        Obs.HISTORY_FEATURES,
        Obs.HISTORY_RESPONSES,
        Obs.HISTORY_MASK,
        Obs.CANDIDATE_ITEMS,
        Obs.CANDIDATE_FEATURES,
        Obs.CANDIDATE_SCALARS,
        Obs.CONTEXT,
        Obs.ACTION_MASK,
    }


def _rollout(seed: int, steps: int = 40) -> list[tuple[Any, ...]]:
    env = SessionEnv(**SMALL, slate_size=2)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [tuple(obs.values())]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        out.append((*obs.values(), reward, terminated, truncated, info["clicked"]))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(tuple(obs.values()))
    return out


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(sa, sb, strict=True))
        for sa, sb in zip(a, b, strict=True)
    )


def test_same_seed_gives_identical_trajectories() -> None:
    assert _same(_rollout(seed=11), _rollout(seed=11))


def test_different_seeds_give_different_trajectories() -> None:
    assert not _same(_rollout(seed=11), _rollout(seed=12))


def test_constructor_seed_is_used_by_the_first_reset() -> None:
    a, _ = SessionEnv(seed=5, **SMALL).reset()
    b, _ = SessionEnv(**SMALL).reset(seed=5)
    assert all(np.array_equal(a[key], b[key]) for key in a)


def test_world_seed_fixes_the_catalog_across_seeds() -> None:
    a, _ = SessionEnv(**SMALL).reset(seed=1)
    b, _ = SessionEnv(**SMALL).reset(seed=2)
    assert not np.array_equal(a[Obs.CANDIDATE_ITEMS], b[Obs.CANDIDATE_ITEMS])
    # The same item has the same features whichever run observes it.
    env_a, env_b = SessionEnv(**SMALL), SessionEnv(**SMALL)
    env_a.reset(seed=1)
    env_b.reset(seed=2)
    np.testing.assert_array_equal(env_a.sim.catalog.embedding, env_b.sim.catalog.embedding)


def test_episode_is_truncated_at_max_sessions() -> None:
    # Every step ends the session and the user always returns: the third step hits the bound.
    env = SessionEnv(**SMALL, max_sessions=3, leave_bias=50.0, return_bias=50.0)
    env.reset(seed=0)
    ends = [env.step(0)[2:5] for _ in range(3)]
    assert [(terminated, truncated) for terminated, truncated, _ in ends] == [
        (False, False),
        (False, False),
        (False, True),
    ]
    assert [info["session_index"] for _, _, info in ends] == [1, 2, 2]
    assert all(info["session_ended"] for _, _, info in ends)


def test_episode_terminates_when_the_user_does_not_return() -> None:
    env = SessionEnv(**SMALL, leave_bias=50.0, return_bias=-50.0)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(0)
    assert (terminated, truncated) == (True, False)
    assert info["session_ended"]


@pytest.mark.parametrize("action", [-1, 8, 1000])
def test_out_of_range_action_shows_nothing(action: int) -> None:
    env = SessionEnv(**SMALL, no_click_utility=-50.0)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(action)
    assert not info["clicked"]
    assert reward == 0.0
    assert obs[Obs.HISTORY_ITEMS][-1] == -1
    assert obs[Obs.HISTORY_MASK][-1] == 0.0


def test_valid_action_is_shown_and_clicked_when_click_is_certain() -> None:
    env = SessionEnv(**SMALL, no_click_utility=-50.0)
    obs, _ = env.reset(seed=0)
    action = int(np.argmax(obs[Obs.ACTION_MASK]))
    chosen = obs[Obs.CANDIDATE_ITEMS][action]
    obs, reward, _, _, info = env.step(action)
    assert info["clicked"]
    assert info["item"] == chosen
    assert reward == 1.0
    assert obs[Obs.HISTORY_ITEMS][-1] == chosen
