"""MarketplaceConfig validation and the marketplace's specs (Ray-free)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.errors import SpecError
from rayrec.envs.marketplace import MARKETPLACE_ENV_ID
from rayrec.envs.marketplace.config import MarketplaceConfig
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_users": 0}, r"num_users \(0\) must be in"),
        ({"auction": "vcg"}, "auction"),
        ({"objective": "selfish"}, "objective"),
        ({"learning_roles": ("platform", "buyer")}, "learning_roles"),
        ({"learning_roles": ()}, "learning_roles"),
        ({"ad_load_cap": 5, "slate_size": 5}, r"ad_load_cap \(5\) must be < slate_size"),
        ({"value_min": 2.0, "value_max": 1.0}, "value_min"),
        ({"welfare_weights": (1.0, 1.0)}, "welfare_weights"),
        ({"learning_roles": ("advertiser",), "num_advertisers": 0}, "num_advertisers"),
        ({"num_strategic_users": 100, "num_users": 10}, "num_strategic_users"),
        ({"reserve_price": -1.0}, "reserve_price"),
    ],
)
def test_invalid_fields_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        MarketplaceConfig(**values)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"unknown marketplace field.*bogus"):
        MarketplaceConfig.from_dict({"bogus": 1})


def test_round_trip_through_dict():
    cfg = MarketplaceConfig(learning_roles=("platform", "user"), welfare_weights=(1, 2, 3, 4))
    assert MarketplaceConfig.from_dict(cfg.to_dict()) == cfg


def test_preset_specs_load():
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "marketplace.yaml"))
    assert env.id == MARKETPLACE_ENV_ID
    assert isinstance(env.config, MarketplaceConfig)
    assert EnvSpec.from_dict(env.to_dict()) == env
    for name in ("marketplace_ppo", "marketplace_appo"):
        policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{name}.yaml"))
        assert policy.multi_agent["shared_within_role"] is True
        assert PolicySpec.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"shared": True}, "unknown key multi_agent.shared"),
        ({"centralized_critic": "yes"}, "multi_agent.centralized_critic must be true or false"),
        ([1], "'multi_agent' must be a mapping"),
    ],
)
def test_multi_agent_section_errors(section, message):
    with pytest.raises(SpecError, match=message):
        PolicySpec.from_dict({"algorithm": "PPO", "multi_agent": section})


def test_centralized_critic_is_for_ppo():
    with pytest.raises(SpecError, match="centralized_critic is for PPO, not APPO"):
        PolicySpec.from_dict({"algorithm": "APPO", "multi_agent": {"centralized_critic": True}})


def test_marketplace_env_spec_errors_name_the_field():
    with pytest.raises(SpecError, match="ad_load_cap"):
        EnvSpec.from_dict({"id": MARKETPLACE_ENV_ID, "config": {"ad_load_cap": 99}})
