"""The two-level agent for RLlib: ``build_hierarchical_config`` turns an env spec with a
``hierarchy`` section and a policy spec with ``levels`` into RLlib's multi-agent PPO.

Agent ids ``high`` and ``low`` map to module ids of the same name
(:class:`rayrec.models.hierarchical.OptionPolicyModule` and
:class:`~rayrec.models.hierarchical.OptionCandidateModule`); ``levels.<level>.training`` become
RLlib's ``algorithm_config_overrides_per_module``, ``levels.<level>.model`` the module's model.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

from rayrec.algorithms.hierarchical import PerModuleGammaPPOLearner
from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import HIGH, LEVELS, LOW
from rayrec.envs import SESSION_ENV_ID
from rayrec.envs.hierarchical import HierarchicalSessionEnv
from rayrec.experiment.sections import (
    algorithm_config_class,
    apply_sections,
    seeded_and_validated,
)
from rayrec.models.hierarchical import OptionCandidateModule, OptionPolicyModule
from rayrec.specs import SpecError

__all__ = [
    "HIERARCHICAL_RLLIB_ENV_NAME",
    "build_hierarchical_config",
    "level_model_config",
    "make_hierarchical_env",
    "map_level",
]

HIERARCHICAL_RLLIB_ENV_NAME = "rayrec_hierarchical"


def make_hierarchical_env(env_config: dict[str, Any]) -> Any:
    """RLlib env creator: an env spec's dict ``{"id", "config", "hierarchy"}`` ->
    ``HierarchicalSessionEnv``. Runs inside every EnvRunner process (imports rayrec itself)."""
    return HierarchicalSessionEnv(
        {**dict(env_config.get("config", {})), "hierarchy": env_config.get("hierarchy") or {}}
    )


def map_level(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: each level (agent id) has its own module of the same id."""
    return agent_id


def level_model_config(policy: Any, level: str) -> dict[str, Any]:
    """The policy spec's ``model`` with ``levels.<level>.model`` on top (a module's model_config)."""
    base = policy.model.to_dict()
    base.update((policy.levels or {}).get(level, {}).get("model", {}))
    return ModelConfig.from_dict(base).to_dict()


def build_hierarchical_config(env: Any, policy: Any, seed: int = 0) -> Any:
    """The multi-agent PPO AlgorithmConfig of a hierarchical preset (``levels``) on ``env``."""
    if policy.algorithm != "PPO":
        raise SpecError(
            f"policy spec: a hierarchical preset (levels) trains with algorithm PPO only, "
            f"not {policy.algorithm}"
        )
    if env.id != SESSION_ENV_ID or env.hierarchy is None:
        raise SpecError(
            "env spec: a hierarchical preset (levels) needs a session env spec with a "
            "'hierarchy' section (e.g. envs/hierarchical.yaml)"
        )
    register_env(HIERARCHICAL_RLLIB_ENV_NAME, make_hierarchical_env)
    probe = HierarchicalSessionEnv({**env.config.to_dict(), "hierarchy": env.hierarchy})
    classes = {HIGH: OptionPolicyModule, LOW: OptionCandidateModule}
    specs = {
        level: RLModuleSpec(
            module_class=classes[level],
            observation_space=probe.observation_spaces[level],
            action_space=probe.action_spaces[level],
            model_config=level_model_config(policy, level),
        )
        for level in LEVELS
    }
    levels = policy.levels or {}
    config = algorithm_config_class(policy.algorithm)()
    config.environment(HIERARCHICAL_RLLIB_ENV_NAME, env_config=env.to_dict())
    apply_sections(config, policy)
    # An ordered tuple, not a set: RLlib orders the modules (and so their draws from the seeded
    # RNGs) as given, and a set of strings iterates in an order that changes with PYTHONHASHSEED.
    config.multi_agent(policies=LEVELS, policy_mapping_fn=map_level, policies_to_train=list(LEVELS))
    config.rl_module(
        rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs),
        algorithm_config_overrides_per_module={
            level: dict(levels.get(level, {}).get("training", {})) for level in LEVELS
        },
    )
    config.learners(learner_class=PerModuleGammaPPOLearner)
    return seeded_and_validated(config, seed)
