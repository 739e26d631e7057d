"""Gymnasium / RLlib environments over :mod:`rayrec.sim`; importing this package registers the ids."""

import gymnasium as gym

from rayrec.envs.observation import Obs, action_space, observation_space, observe
from rayrec.envs.session import SessionEnv, SessionVectorEnv

__all__ = [
    "SESSION_ENV_ID",
    "Obs",
    "SessionEnv",
    "SessionVectorEnv",
    "action_space",
    "observation_space",
    "observe",
    "register_envs",
]

SESSION_ENV_ID = "rayrec/Session-v0"


def register_envs() -> None:
    """Register rayrec's Gymnasium ids (idempotent)."""
    if SESSION_ENV_ID not in gym.registry:
        gym.register(
            SESSION_ENV_ID,
            entry_point="rayrec.envs.session:SessionEnv",
            vector_entry_point="rayrec.envs.session:SessionVectorEnv",
            disable_env_checker=False,
        )


register_envs()
