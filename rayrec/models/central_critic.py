"""A PPO RLModule with a centralised critic (centralised training, decentralised execution).

The marketplace (``global_state: true``) appends the global state to every agent's flat
observation: ``obs = [local (L) | global (G)]``. The actor reads only the first L entries, so an
agent acts on its own view; the value head reads the whole vector, so the critic sees the state
of every party (Lowe et al. 2017, MADDPG's centralised critic, used here with PPO as in MAPPO,
Yu et al. 2022). ``model_config["local_dim"]`` is L; ``model_config["hidden"]`` the width.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchMultiCategorical,
)
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

__all__ = ["CentralCriticPPOModule"]


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, out_dim),
    )  # fmt: skip


class CentralCriticPPOModule(TorchRLModule, ValueFunctionAPI):
    """Actor on the local prefix of the observation, critic on all of it.

    Shapes: obs (B, L + G) -> action logits (B, sum(nvec)) or (B, n); values (B,).
    """

    @override(RLModule)
    def setup(self) -> None:
        obs_dim = int(self.observation_space.shape[0])
        local = int(self.model_config.get("local_dim", obs_dim))
        if not 1 <= local <= obs_dim:
            raise ValueError(f"model_config local_dim ({local}) must be in [1, {obs_dim}]")
        self.local_dim = local
        hidden = int(self.model_config.get("hidden", 64))
        space = self.action_space
        if isinstance(space, gym.spaces.MultiDiscrete):
            lens = [int(n) for n in space.nvec]
            self.action_dist_cls = TorchMultiCategorical.get_partial_dist_cls(input_lens=lens)
        elif isinstance(space, gym.spaces.Discrete):
            lens = [int(space.n)]
            self.action_dist_cls = TorchCategorical
        else:
            raise ValueError(f"CentralCriticPPOModule needs a discrete action space, got {space}")
        self.pi = _mlp(local, hidden, sum(lens))
        if not self.inference_only:
            self.vf = _mlp(obs_dim, hidden, 1)

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        return {Columns.ACTION_DIST_INPUTS: self.pi(obs[..., : self.local_dim])}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]).squeeze(-1)
