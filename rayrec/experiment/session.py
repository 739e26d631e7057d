"""The flat session env for RLlib: the vectorised env creator, the module spec, the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

import rayrec.envs  # noqa: F401  (registers the Gymnasium ids in every env runner process)
from rayrec.algorithms import fast_paths
from rayrec.algorithms.apex import APEX_KEY, ApexEnvRunner
from rayrec.algorithms.env_runner import VectorEnvRunner
from rayrec.algorithms.faults import CrashOnceVectorEnv
from rayrec.algorithms.replay import configure_fast_replay
from rayrec.data.offline import check_propensities, configure_offline
from rayrec.experiment.sections import (
    algorithm_config_class,
    apply_sections,
    seeded_and_validated,
)
from rayrec.models import (
    CandidateAPPOModule,
    CandidatePolicyModule,
    CandidateQModule,
    SlateQModule,
)
from rayrec.models.q_module import head_width
from rayrec.specs import ALGORITHMS, EnvSpec, PolicySpec, SpecError

__all__ = ["RLLIB_ENV_NAME", "build_session_config", "make_vector_env", "module_spec"]

RLLIB_ENV_NAME = "rayrec_env"


def make_vector_env(env_config: dict[str, Any]) -> gym.vector.VectorEnv:
    """RLlib env creator: a vectorised rayrec env from ``{"id", "config", "num_envs"}``.

    Runs inside every EnvRunner process; this module imports rayrec.envs (that registers the ids).
    An optional ``fault_injection: {marker, after_steps}`` entry makes the first env runner to
    reach ``after_steps`` crash, once (chaos testing, see :mod:`rayrec.algorithms.faults`).
    """
    fast_paths.install()
    env = gym.make_vec(
        env_config["id"],
        num_envs=int(env_config.get("num_envs", 1)),
        vectorization_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
        **dict(env_config.get("config", {})),
    )
    fault = env_config.get("fault_injection")
    if fault:
        env = CrashOnceVectorEnv(env, fault["marker"], fault.get("after_steps", 100))
    return env


def module_spec(policy: PolicySpec) -> Any:
    """The RLModuleSpec of the rayrec module family the algorithm uses."""
    family = ALGORITHMS[policy.algorithm]
    classes = {
        "policy": CandidatePolicyModule,
        "appo": CandidateAPPOModule,
        "q": CandidateQModule,
        "slateq": SlateQModule,
    }
    model: dict[str, Any] = policy.model.to_dict()
    if policy.apex is not None:
        model[APEX_KEY] = [policy.apex["epsilon"], policy.apex["alpha"]]
    return RLModuleSpec(module_class=classes[family], model_config=model)


def build_session_config(
    env: EnvSpec, policy: PolicySpec, seed: int = 0, data: str | Path | None = None
) -> Any:
    """The AlgorithmConfig of a flat agent on the session env; offline ones read ``data``."""
    register_env(RLLIB_ENV_NAME, make_vector_env)
    config = algorithm_config_class(policy.algorithm)()
    config.environment(RLLIB_ENV_NAME, env_config=env.to_dict())
    config.env_runners(gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)
    if data is not None:
        configure_offline(config, data, env)
    apply_sections(config, policy)
    if data is not None:
        check_propensities(config, data)
    config.rl_module(rl_module_spec=module_spec(policy))
    if policy.apex is not None:
        config.env_runners(env_runner_cls=ApexEnvRunner)
    elif data is None:
        config.env_runners(env_runner_cls=VectorEnvRunner)
    if data is None:
        configure_fast_replay(config, seed)
    config = seeded_and_validated(config, seed)
    if ALGORITHMS[policy.algorithm] == "q":
        # C51's support (num_atoms, v_min, v_max) reaches the Q module only through RLlib's
        # config, which does not check it: fail here, before Ray starts, not in every EnvRunner.
        try:
            head_width(config.model_config)
        except ValueError as e:
            raise SpecError(f"policy spec: training: {e}") from e
    return config
