"""The marketplace env against RLlib's and PettingZoo's checkers, and seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rayrec.envs.marketplace.config import ROLES, MarketplaceConfig
from rayrec.envs.marketplace.env import MarketplaceEnv, role_agents
from rayrec.envs.marketplace.metrics import period_welfare
from rayrec.envs.marketplace.pettingzoo import MarketplaceParallelEnv

SETUPS = [
    {"learning_roles": ["platform"]},
    {"learning_roles": ["creator"], "min_exposure": 0.5},
    {"learning_roles": ["advertiser"], "auction": "second_price"},
    {"learning_roles": ["user"], "num_strategic_users": 3},
    {"learning_roles": list(ROLES), "global_state": True, "objective": "mixed"},
    {"learning_roles": ["platform", "creator"], "objective": "cooperative"},
]


def _rollout(env: MarketplaceEnv, seed: int, action_seed: int) -> list:
    obs, _ = env.reset(seed=seed)
    for aid in env.possible_agents:
        env.action_spaces[aid].seed(action_seed + len(aid))
    trace = [obs]
    done = False
    while not done:
        actions = {aid: env.action_spaces[aid].sample() for aid in obs}
        obs, rew, _, trunc, _ = env.step(actions)
        trace.append((obs, rew))
        done = trunc["__all__"]
    return trace


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: "+".join(s["learning_roles"]))
def test_rllib_multi_agent_checks(setup):
    check_multiagent_environments(MarketplaceEnv({**setup, "num_periods": 5}))


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: "+".join(s["learning_roles"]))
def test_pettingzoo_parallel_api(setup):
    parallel_api_test(MarketplaceParallelEnv(**setup, num_periods=5, seed=0), num_cycles=30)


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: "+".join(s["learning_roles"]))
def test_observations_in_space_and_episode_length(setup):
    env = MarketplaceEnv({**setup, "num_periods": 6})
    trace = _rollout(env, seed=1, action_seed=2)
    assert len(trace) == 7
    for step in trace[1:]:
        obs, rew = step
        assert set(obs) == set(env.possible_agents) == set(rew)
        for aid, o in obs.items():
            assert env.observation_spaces[aid].contains(o), aid
    assert env.agents == []


def test_same_seed_same_trajectory_other_seed_differs():
    setup = {"learning_roles": list(ROLES), "global_state": True}
    a = _rollout(MarketplaceEnv(setup), seed=7, action_seed=3)
    b = _rollout(MarketplaceEnv(setup), seed=7, action_seed=3)
    c = _rollout(MarketplaceEnv(setup), seed=8, action_seed=3)

    def flat(trace):
        out = [np.concatenate([v for _, v in sorted(trace[0].items())])]
        for obs, rew in trace[1:]:
            out.append(np.concatenate([v for _, v in sorted(obs.items())]))
            out.append(np.array([v for _, v in sorted(rew.items())]))
        return np.concatenate(out)

    np.testing.assert_array_equal(flat(a), flat(b))
    assert not np.array_equal(flat(a), flat(c))


def test_constructor_seed_is_used_by_the_first_reset():
    a = MarketplaceEnv({"seed": 5})
    b = MarketplaceEnv({"seed": 5})
    np.testing.assert_array_equal(a.reset()[0]["platform"], b.reset()[0]["platform"])
    act = {"platform": np.array([1, 1, 1])}
    assert a.step(act)[1] == b.step(act)[1]


def test_global_state_is_a_suffix_after_the_local_view():
    plain = MarketplaceEnv({"learning_roles": list(ROLES)})
    full = MarketplaceEnv({"learning_roles": list(ROLES), "global_state": True})
    o_plain, _ = plain.reset(seed=3)
    o_full, _ = full.reset(seed=3)
    for aid in plain.possible_agents:
        assert plain.obs_dim(aid) == plain.local_dim(aid)
        assert full.obs_dim(aid) == full.local_dim(aid) + full.global_dim
        np.testing.assert_array_equal(o_full[aid][: full.local_dim(aid)], o_plain[aid])


@pytest.mark.parametrize("objective", ["competitive", "cooperative", "mixed"])
def test_objectives(objective):
    cfg = {"learning_roles": list(ROLES), "objective": objective, "cooperation": 0.25}
    env = MarketplaceEnv(cfg)
    obs, _ = env.reset(seed=0)
    actions = {aid: env.action_spaces[aid].sample() for aid in obs}
    _, rew, _, _, _ = env.step(actions)
    own = env.own_rewards(env.game.last)
    total = period_welfare(env.game.last, env.config.welfare_weights)["total"]
    for aid, r in rew.items():
        expected = {
            "competitive": own[aid],
            "cooperative": total,
            "mixed": 0.75 * own[aid] + 0.25 * total / len(own),
        }[objective]
        assert r == pytest.approx(expected)


def test_agent_ids_by_role():
    cfg = MarketplaceConfig(num_creators=2, num_advertisers=1, num_strategic_users=2)
    assert role_agents(cfg, "creator") == ["creator_0", "creator_1"]
    env = MarketplaceEnv({"learning_roles": ["user", "platform"], "num_strategic_users": 2})
    assert env.possible_agents == ["platform", "user_0", "user_1"]
