"""Specs -> RLlib ``AlgorithmConfig``, for every env kind: the flat session env, the two-level
(hierarchical) agent and the multi-agent marketplace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayrec.experiment.hierarchical import build_hierarchical_config
from rayrec.experiment.marketplace import build_marketplace_config
from rayrec.experiment.sections import (
    algorithm_config_class,
    apply_sections,
    check_data,
    seeded_and_validated,
    validate_sections,
)
from rayrec.experiment.session import (
    RLLIB_ENV_NAME,
    build_session_config,
    make_vector_env,
    module_spec,
)
from rayrec.experiment.tools import learner_devices, sampling_rate, save_untrained_run
from rayrec.specs import MARKETPLACE_ENV_ID, EnvSpec, PolicySpec

__all__ = [
    "RLLIB_ENV_NAME",
    "algorithm_config_class",
    "apply_sections",
    "build_config",
    "check_data",
    "env_kind",
    "learner_devices",
    "make_vector_env",
    "module_spec",
    "sampling_rate",
    "save_untrained_run",
    "seeded_and_validated",
    "validate_sections",
]


def env_kind(env: EnvSpec, policy: PolicySpec) -> str:
    """'marketplace', 'hierarchical' (a policy with ``levels``) or 'session' (a flat agent)."""
    if env.id == MARKETPLACE_ENV_ID:
        return "marketplace"
    return "hierarchical" if policy.levels is not None else "session"


def build_config(
    env: EnvSpec, policy: PolicySpec, seed: int = 0, data: str | Path | None = None
) -> Any:
    """The RLlib AlgorithmConfig for ``env`` x ``policy`` (seeded); offline ones read ``data``."""
    validate_sections(policy)
    check_data(policy, data)
    kind = env_kind(env, policy)
    if kind == "marketplace":
        return build_marketplace_config(env, policy, seed)
    if kind == "hierarchical":
        return build_hierarchical_config(env, policy, seed)
    return build_session_config(env, policy, seed, data)
