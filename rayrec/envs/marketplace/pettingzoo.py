"""A PettingZoo ``ParallelEnv`` view of :class:`MarketplaceEnv` (same game, same agents).

PettingZoo is optional (``pip install rayrec[test]``); importing this module needs it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from rayrec.envs.marketplace.env import MarketplaceEnv

__all__ = ["MarketplaceParallelEnv"]


class MarketplaceParallelEnv(ParallelEnv):
    """The marketplace as a PettingZoo parallel env (RLlib's ``__all__`` keys removed).

    Args:
        **config: fields of :class:`MarketplaceConfig`, and optionally ``seed``.
    """

    metadata: dict[str, Any] = {"name": "rayrec_marketplace_v0", "render_modes": []}  # noqa: RUF012

    def __init__(self, **config: Any) -> None:
        self.env = MarketplaceEnv(config)
        self.possible_agents = list(self.env.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None

    def observation_space(self, agent: str) -> gym.Space:
        return self.env.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.Space:
        return self.env.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        terminated.pop("__all__", None)
        truncated.pop("__all__", None)
        self.agents = list(self.env.agents)
        return obs, rewards, terminated, truncated, infos

    def state(self) -> np.ndarray:
        """The global state (as in the observation's global part, computed whatever the flag)."""
        return self.env._global_state().astype(np.float32)
