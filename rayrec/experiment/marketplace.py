"""The marketplace for RLlib's multi-agent API.

Modules are mapped by role (``platform``, ``creator``, ...): one module shared by every agent of a
role (parameter sharing), or one module per agent (``shared_within_role: false``, independent
learners). ``centralized_critic: true`` (PPO) uses :class:`CentralCriticPPOModule` on
observations carrying the global state. The ``multi_agent`` section of a policy spec holds these.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

from rayrec.algorithms.ordered import sorted_learner
from rayrec.envs.marketplace.config import training_market_config, validate_multi_agent
from rayrec.envs.marketplace.env import MarketplaceEnv, agent_role
from rayrec.experiment.sections import (
    algorithm_config_class,
    apply_sections,
    seeded_and_validated,
    validate_sections,
)
from rayrec.models.central_critic import CentralCriticPPOModule
from rayrec.specs import SpecError

__all__ = [
    "MARKETPLACE_RLLIB_ENV_NAME",
    "build_marketplace_config",
    "make_marketplace_env",
]

MARKETPLACE_RLLIB_ENV_NAME = "rayrec_marketplace"


def make_marketplace_env(env_config: dict[str, Any]) -> MarketplaceEnv:
    """RLlib env creator: ``{"id", "config"}`` (an env spec's dict) -> MarketplaceEnv."""
    return MarketplaceEnv(dict(env_config.get("config", {})))


def map_by_role(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: every agent of a role shares the role's module."""
    return agent_role(agent_id)


# The marketplace's agents use RLlib's default modules (an MLP over their own observation).
MARKETPLACE_REFUSED = {
    "QRDQN": "its quantile loss needs rayrec's candidate Q module; use DQN (num_atoms > 1 for "
    "C51), PPO or APPO",
    "SlateQ": "its slate values need rayrec's session observation (candidates and history); use "
    "PPO or APPO",
    "DiscreteCQL": "offline algorithms train on session logs (--data)",
    "BC": "offline algorithms train on session logs (--data)",
    "MARWIL": "offline algorithms train on session logs (--data)",
    "TopKReinforce": "offline algorithms train on session logs (--data)",
}


def map_by_agent(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: one module per agent (independent learners)."""
    return agent_id


def build_marketplace_config(env_spec: Any, policy: Any, seed: int = 0) -> Any:
    """The RLlib multi-agent AlgorithmConfig for a marketplace env spec x policy spec."""
    if policy.algorithm in MARKETPLACE_REFUSED:
        raise SpecError(
            f"policy spec: algorithm {policy.algorithm} does not train on the marketplace env: "
            f"{MARKETPLACE_REFUSED[policy.algorithm]}"
        )
    validate_sections(policy)
    multi = policy.multi_agent or validate_multi_agent(None, policy.algorithm)
    market = training_market_config(env_spec.config, multi)
    register_env(MARKETPLACE_RLLIB_ENV_NAME, make_marketplace_env)
    probe = MarketplaceEnv(market.to_dict())
    shared = multi["shared_within_role"]
    module_of = {aid: agent_role(aid) if shared else aid for aid in probe.possible_agents}
    hidden = policy.model.hidden
    specs = {}
    for aid, mid in module_of.items():
        if mid in specs:
            continue
        if multi["centralized_critic"]:
            specs[mid] = RLModuleSpec(
                module_class=CentralCriticPPOModule,
                observation_space=probe.observation_spaces[aid],
                action_space=probe.action_spaces[aid],
                model_config={"local_dim": probe.local_dim(aid), "hidden": hidden},
            )
        else:
            specs[mid] = RLModuleSpec(
                observation_space=probe.observation_spaces[aid],
                action_space=probe.action_spaces[aid],
                model_config={"fcnet_hiddens": [hidden, hidden], "fcnet_activation": "tanh"},
            )
    config = algorithm_config_class(policy.algorithm)()
    config.environment(MARKETPLACE_RLLIB_ENV_NAME, env_config={"config": market.to_dict()})
    apply_sections(config, policy)
    config.multi_agent(
        policies=set(specs),
        policy_mapping_fn=map_by_role if shared else map_by_agent,
        policies_to_train=sorted(specs),
    )
    config.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
    sorted_learner(config)
    return seeded_and_validated(config, seed)
