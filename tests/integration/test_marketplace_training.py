"""Multi-agent RLlib training on the marketplace: role mapping, centralised critic, APPO."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("policy_file", "multi_agent", "env_config", "modules"),
    [
        (
            "marketplace_ppo",
            {"centralized_critic": True},
            {"learning_roles": ["platform", "creator", "advertiser", "user"]},
            {"platform", "creator", "advertiser", "user"},
        ),
        (
            "marketplace_appo",
            {"shared_within_role": False},
            {"learning_roles": ["advertiser"], "objective": "mixed"},
            {"advertiser_0", "advertiser_1", "advertiser_2"},
        ),
    ],
    ids=["ppo-central-critic-all-roles", "appo-independent-advertisers"],
)
def test_one_training_iteration(ray_session, policy_file, multi_agent, env_config, modules):
    env = load_yaml(ROOT / "envs" / "marketplace.yaml")
    env["config"].update(env_config, num_periods=10)
    policy = load_yaml(ROOT / "policies" / f"{policy_file}.yaml")
    policy["multi_agent"] = multi_agent
    policy["training"]["train_batch_size_per_learner"] = 100
    if "minibatch_size" in policy["training"]:
        policy["training"]["minibatch_size"] = 50
    config = build_config(EnvSpec.from_dict(env), PolicySpec.from_dict(policy), seed=0)
    assert set(config.policies) == modules
    algo = config.build_algo()
    try:
        result = algo.train()
        returns = result["env_runners"]["agent_episode_returns_mean"]
        roles = env_config["learning_roles"]
        assert returns and all(agent.split("_")[0] in roles for agent in returns)
    finally:
        algo.stop()
