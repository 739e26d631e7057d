"""Training the marketplace with RLlib's multi-agent API, and evaluating what was learned.

Modules are mapped by role (``platform``, ``creator``, ...): one module shared by every agent of a
role (parameter sharing), or one module per agent (``shared_within_role: false``, independent
learners). ``centralized_critic: true`` (PPO) uses :class:`CentralCriticPPOModule` on
observations carrying the global state. The ``multi_agent`` section of a policy spec holds these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rayrec.envs.marketplace.config import MarketplaceConfig, validate_multi_agent
from rayrec.envs.marketplace.env import MarketplaceEnv, agent_role
from rayrec.envs.marketplace.metrics import episode_metrics

__all__ = [
    "MARKETPLACE_RLLIB_ENV_NAME",
    "build_marketplace_config",
    "evaluate_market",
    "make_marketplace_env",
    "module_actor",
    "scripted_actor",
]

MARKETPLACE_RLLIB_ENV_NAME = "rayrec_marketplace"

Actor = Callable[[dict[str, np.ndarray], MarketplaceEnv], dict[str, Any]]
"""Maps the agents' observations (and the env, for scripted play) to their actions."""


def make_marketplace_env(env_config: dict[str, Any]) -> MarketplaceEnv:
    """RLlib env creator: ``{"id", "config"}`` (an env spec's dict) -> MarketplaceEnv."""
    return MarketplaceEnv(dict(env_config.get("config", {})))


def map_by_role(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: every agent of a role shares the role's module."""
    return agent_role(agent_id)


def map_by_agent(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: one module per agent (independent learners)."""
    return agent_id


def _market_config(env_spec: Any, centralized: bool) -> MarketplaceConfig:
    config = env_spec.config
    if centralized and not config.global_state:
        values = config.to_dict()
        values["global_state"] = True
        config = MarketplaceConfig.from_dict(values)
    return config


def build_marketplace_config(env_spec: Any, policy: Any, seed: int = 0) -> Any:
    """The RLlib multi-agent AlgorithmConfig for a marketplace env spec x policy spec."""
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    from rayrec.experiment import (
        _algorithm_config_class,
        apply_sections,
        seeded_and_validated,
        validate_sections,
    )

    validate_sections(policy)
    multi = policy.multi_agent or validate_multi_agent(None, policy.algorithm)
    market = _market_config(env_spec, multi["centralized_critic"])
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
            from rayrec.models.central_critic import CentralCriticPPOModule

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
    config = _algorithm_config_class(policy.algorithm)()
    config.environment(MARKETPLACE_RLLIB_ENV_NAME, env_config={"config": market.to_dict()})
    apply_sections(config, policy)
    config.multi_agent(
        policies=set(specs),
        policy_mapping_fn=map_by_role if shared else map_by_agent,
        policies_to_train=sorted(specs),
    )
    config.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
    return seeded_and_validated(config, seed)


# ---- evaluation ----------------------------------------------------------------------------------
def scripted_actor(obs: dict[str, np.ndarray], env: MarketplaceEnv) -> dict[str, Any]:
    """Every agent plays the game's scripted rule of its role (greedy platform by default)."""
    game, cfg = env.game, env.config
    creators, bids = game.scripted_creators(), game.scripted_bids()
    out: dict[str, Any] = {}
    for aid in obs:
        role = agent_role(aid)
        i = int(aid.rsplit("_", 1)[1]) if role != "platform" else 0
        if role == "platform":
            out[aid] = game.scripted_platform()
        elif role == "creator":
            out[aid] = creators[i]
        elif role == "advertiser":
            out[aid] = int(bids[i])
        else:
            out[aid] = cfg.pickiness_levels // 2
    return out


def module_actor(
    modules: dict[str, Any], fallback: Actor = scripted_actor, greedy: bool = True
) -> Actor:
    """Actions from RLModules ({module id: module}, ids by role or agent); agents without a
    module play ``fallback``. Greedy takes each sub-action's argmax."""
    import torch
    from ray.rllib.core.columns import Columns

    def act(obs: dict[str, np.ndarray], env: MarketplaceEnv) -> dict[str, Any]:
        out = fallback(obs, env)
        for aid, o in obs.items():
            module = modules.get(aid) or modules.get(agent_role(aid))
            if module is None:
                continue
            batch = {Columns.OBS: torch.from_numpy(o[None].astype(np.float32))}
            with torch.no_grad():
                logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0]
            space = env.action_spaces[aid]
            nvec = list(space.nvec) if hasattr(space, "nvec") else [space.n]
            parts = torch.split(logits, [int(n) for n in nvec])
            if greedy:
                choice = [int(p.argmax()) for p in parts]
            else:
                choice = [int(torch.multinomial(torch.softmax(p, -1), 1)) for p in parts]
            out[aid] = np.array(choice) if hasattr(space, "nvec") else choice[0]
        return out

    return act


def evaluate_market(
    config: MarketplaceConfig, actor: Actor, episodes: int, seed: int = 12345
) -> dict[str, Any]:
    """Mean and 95% CI over ``episodes`` seeded episodes of every market metric, plus the mean
    return of each agent. Episode e uses seed ``seed + e`` (the same users for every actor)."""
    env = MarketplaceEnv(config.to_dict())
    rows, returns = [], {aid: [] for aid in env.possible_agents}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total = dict.fromkeys(env.possible_agents, 0.0)
        done = False
        while not done:
            obs, rew, _, trunc, _ = env.step(actor(obs, env))
            for aid, r in rew.items():
                total[aid] += r
            done = trunc["__all__"]
        rows.append(episode_metrics(env.totals, config.welfare_weights))
        for aid, r in total.items():
            returns[aid].append(r)
    out: dict[str, Any] = {"episodes": episodes}
    for key in rows[0]:
        values = np.array([r[key] for r in rows])
        out[key] = float(values.mean())
        out[key + "_ci95"] = float(1.96 * values.std(ddof=1) / np.sqrt(episodes))
    out["returns"] = {aid: float(np.mean(v)) for aid, v in returns.items()}
    return out
