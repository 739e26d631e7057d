"""HierarchicalSessionEnv: RLlib's multi-agent check, option timing, termination, initiation
sets, the reward identity against the flat SessionEnv, and seeded determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rayrec.contracts.observation import Obs
from rayrec.envs import SessionEnv
from rayrec.envs.hierarchical import HIGH, LOW, HierarchicalSessionEnv, HierInfo, HierObs

SMALL = {"num_items": 300, "num_topics": 6, "num_candidates": 8, "embed_dim": 4, "history_len": 4}


def _env(hierarchy: dict[str, Any] | None = None, **sim: Any) -> HierarchicalSessionEnv:
    return HierarchicalSessionEnv({**SMALL, **sim, "hierarchy": hierarchy or {}})


class RandomAgents:
    """High: a uniformly random available option (or ``option`` when given); low: a random valid
    candidate (or ``low_action`` when given)."""

    def __init__(self, seed: int, option: int | None = None, low_action: Any = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.option, self.low_action = option, low_action

    def __call__(self, obs: dict[str, Any], env: HierarchicalSessionEnv) -> dict[str, Any]:
        if HIGH in obs:
            if self.option is not None:
                return {HIGH: self.option}
            return {HIGH: int(self.rng.choice(np.flatnonzero(obs[HIGH][Obs.ACTION_MASK])))}
        if self.low_action is not None:
            return {LOW: self.low_action}
        valid = np.flatnonzero(obs[LOW][Obs.ACTION_MASK])
        k = env.config.slate_size
        return {LOW: self.rng.choice(valid, size=k, replace=False) if k > 1 else int(valid[0])}


def _play(env: HierarchicalSessionEnv, agents: RandomAgents, seed: int, max_calls: int = 2000):
    """Steps of one episode: (action dict, obs, rewards, terminateds, truncateds, infos)."""
    obs, _ = env.reset(seed=seed)
    steps = []
    for _ in range(max_calls):
        action = agents(obs, env)
        obs, rewards, terms, truncs, infos = env.step(action)
        steps.append((action, obs, rewards, terms, truncs, infos))
        if terms["__all__"] or truncs["__all__"]:
            return steps
    raise AssertionError("episode did not end")


def _options(steps: list) -> list[list[dict[str, Any]]]:
    """Low-step infos grouped by option."""
    out: list[list[dict[str, Any]]] = []
    for action, *_, infos in steps:
        if HIGH in action:
            out.append([])
        else:
            out[-1].append(infos.get(LOW) or infos[HIGH])
    return out


@pytest.mark.parametrize(
    "sim", [pytest.param({}, id="feed"), pytest.param({"slate_size": 3}, id="slate3")]
)
def test_rllib_multiagent_env_check(sim: dict[str, Any]) -> None:
    check_multiagent_environments(_env(**sim))


def test_observations_stay_in_their_spaces() -> None:
    env = _env(slate_size=2)
    for action, obs, *_ in _play(env, RandomAgents(0), seed=3):
        assert set(obs) <= {HIGH, LOW}
        for agent, value in obs.items():
            assert env.observation_spaces[agent].contains(value), agent
        assert len(action) == 1


def test_high_acts_only_when_no_option_is_active_and_low_otherwise() -> None:
    env = _env()
    obs, _ = env.reset(seed=0)
    assert set(obs) == {HIGH}
    with pytest.raises(ValueError, match="needs 'high'"):
        env.step({LOW: 0})
    obs, rewards, *_ = env.step({HIGH: 2})
    assert set(obs) == {LOW} and rewards == {}
    with pytest.raises(ValueError, match="needs 'low'"):
        env.step({HIGH: 2})


@pytest.mark.parametrize("budget", [1, 3, 7])
def test_an_option_lasts_exactly_its_budget_unless_the_session_ends(budget: int) -> None:
    hierarchy = {"option_budget": budget, "skip_streak": 0, "terminate_outside_initiation": False}
    env = _env(hierarchy)
    diversify = [o.name for o in env.options].index("diversify")
    groups = _options(_play(env, RandomAgents(0, option=diversify), seed=1))
    assert any(group[-1][HierInfo.TERMINATED_BY] == "budget" for group in groups)
    for group in groups:
        assert [i[HierInfo.OPTION_STEP] for i in group] == list(range(1, len(group) + 1))
        reasons = [i[HierInfo.TERMINATED_BY] for i in group]
        assert reasons[:-1] == [None] * (len(group) - 1)
        if reasons[-1] == "budget":
            assert len(group) == budget
        else:
            assert reasons[-1] == "session_end" and len(group) <= budget


def test_low_observation_carries_the_option_and_its_remaining_budget() -> None:
    env = _env({"option_budget": 4, "skip_streak": 0, "terminate_outside_initiation": False})
    env.reset(seed=0)
    obs, *_ = env.step({HIGH: 2})
    remaining = []
    for _ in range(3):
        onehot = obs[LOW][HierObs.OPTION]
        assert onehot.sum() == 1 and onehot[2] == 1
        remaining.append(float(obs[LOW][HierObs.OPTION_REMAINING][0]))
        obs, *_ = env.step({LOW: int(np.flatnonzero(obs[LOW][Obs.ACTION_MASK])[0])})
        if HIGH in obs:
            break
    assert remaining == [1.0, 0.75, 0.5][: len(remaining)]


@pytest.mark.parametrize("streak", [1, 2, 4])
def test_a_skip_streak_terminates_the_option(streak: int) -> None:
    # Out-of-range choices show nothing: every step is a miss, so the streak decides.
    env = _env({"option_budget": 20, "skip_streak": streak})
    diversify = [o.name for o in env.options].index("diversify")
    steps = _play(env, RandomAgents(0, option=diversify, low_action=-1), seed=2)
    groups = _options(steps)
    assert len(groups) >= 2
    for group in groups[:-1]:
        assert len(group) == streak
        assert group[-1][HierInfo.TERMINATED_BY] == "skip_streak"
        assert not any(i["clicked"] for i in group)


def test_the_session_end_terminates_the_option_and_returns_control() -> None:
    env = _env({"option_budget": 1000, "skip_streak": 0, "terminate_outside_initiation": False})
    steps = _play(env, RandomAgents(5, option=2), seed=5)
    for action, obs, rewards, _, _, infos in steps:
        if LOW not in action:
            continue
        info = infos.get(LOW) or infos[HIGH]
        ended = info["session_ended"]
        assert (info[HierInfo.TERMINATED_BY] == "session_end") == ended
        assert (HIGH in obs) == ended and (HIGH in rewards) == ended
    *_, last_obs, last_rewards, terms, truncs, _ = steps[-1]
    assert set(last_obs) == {HIGH, LOW} and set(last_rewards) == {HIGH, LOW}
    assert terms["__all__"] or truncs["__all__"]
    assert terms[HIGH] == terms[LOW] == terms["__all__"]


def test_leaving_the_initiation_set_terminates_the_option() -> None:
    env = _env({"option_budget": 50, "skip_streak": 0})
    agents = RandomAgents(4)
    obs, _ = env.reset(seed=4)
    reasons = []
    for _ in range(300):
        obs, _, terms, truncs, infos = env.step(agents(obs, env))
        if LOW not in infos or HierInfo.TERMINATED_BY not in infos[LOW]:
            info = infos.get(HIGH, {})
        else:
            info = infos[LOW]
        reason = info.get(HierInfo.TERMINATED_BY)
        if reason is not None:
            reasons.append(reason)
            # Right after the step, the option's initiation set no longer holds, and only then.
            available = env.initiation_mask(fallback=False)[info[HierInfo.OPTION]]
            assert (reason == "initiation") == (not available and reason != "session_end")
        if terms["__all__"] or truncs["__all__"]:
            obs, _ = env.reset()
    assert "initiation" in reasons


def test_unavailable_options_are_masked_and_rejected() -> None:
    env = _env({"on_unavailable": "raise"})
    obs, _ = env.reset(seed=0)
    mask = obs[HIGH][Obs.ACTION_MASK]
    names = [o.name for o in env.options]
    # An empty history: nothing to exploit yet.
    assert mask[names.index("exploit")] == 0
    with pytest.raises(ValueError, match="'exploit' is outside its initiation set"):
        env.step({HIGH: names.index("exploit")})
    # Topic options are available exactly for the topics of the valid candidates.
    offered = set(env.sim.catalog.topic[obs_candidates(env)].tolist())
    for t in range(env.config.num_topics):
        assert mask[names.index(f"topic_{t}")] == (t in offered)


def obs_candidates(env: HierarchicalSessionEnv) -> np.ndarray:
    return env.sim.candidates[0][env.sim.candidate_valid[0]]


def test_fallback_starts_the_first_available_option_and_says_so() -> None:
    env = _env()
    obs, _ = env.reset(seed=0)
    names = [o.name for o in env.options]
    first = int(np.flatnonzero(obs[HIGH][Obs.ACTION_MASK])[0])
    _, _, _, _, infos = env.step({HIGH: names.index("exploit")})
    assert infos[LOW][HierInfo.REJECTED] and infos[LOW][HierInfo.OPTION] == first
    assert env.option == first


@pytest.mark.parametrize(
    ("seed", "sim"),
    [
        pytest.param(0, {}, id="feed-0"),
        pytest.param(1, {}, id="feed-1"),
        pytest.param(2, {"slate_size": 3, "choice_model": "cascade"}, id="slate3-cascade"),
        pytest.param(3, {"reward_watch": 1.0, "reward_skip": -0.5}, id="shaped-engagement"),
    ],
)
def test_per_level_rewards_add_up_to_the_flat_return(seed: int, sim: dict[str, Any]) -> None:
    hierarchy = {"following_weight": 0.7, "continuation_weight": 0.05, "return_weight": 2.0}
    env = _env(hierarchy, **sim)
    steps = _play(env, RandomAgents(seed), seed=seed)
    low_actions = [a[LOW] for a, *_ in steps if LOW in a]
    infos = [s[-1].get(LOW) or s[-1][HIGH] for s in steps if LOW in s[0]]
    low = sum(s[2].get(LOW, 0.0) for s in steps)
    high = sum(s[2].get(HIGH, 0.0) for s in steps)
    following = sum(i[HierInfo.FOLLOWING] for i in infos)
    long_term = sum(i[HierInfo.LONG_TERM] for i in infos)

    flat = SessionEnv(**SMALL, **sim)
    flat.reset(seed=seed)
    flat_rewards = []
    for action in low_actions:
        _, reward, terminated, truncated, _ = flat.step(action)
        flat_rewards.append(reward)
    assert terminated or truncated
    assert flat_rewards == [i[HierInfo.FLAT_REWARD] for i in infos]
    flat_return = sum(flat_rewards)
    assert low - 0.7 * following == pytest.approx(flat_return, abs=1e-6)
    assert high - long_term == pytest.approx(flat_return, abs=1e-6)
    assert long_term > 0 and following > 0


def test_a_seed_fixes_the_episode() -> None:
    def run(seed: int) -> list:
        steps = _play(_env(), RandomAgents(0), seed=seed)
        return [
            (a, r, [(k, v.tolist()) for o in obs.values() for k, v in o.items()])
            for a, obs, r, *_ in steps
        ]

    assert run(7) == run(7)
    assert run(7) != run(8)
