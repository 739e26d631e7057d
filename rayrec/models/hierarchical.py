"""RLModules of the two levels of ``HierarchicalSessionEnv`` (``docs/hierarchical.md``).

- :class:`OptionPolicyModule` (high level): history encoder + lifetime topic statistics + context
  -> masked logits (B, K) over the options, and a value head.
- :class:`OptionCandidateModule` (low level): rayrec's candidate scorer
  (:class:`CandidatePolicyModule`) whose user tower also reads the active option (one-hot) and its
  remaining budget, so the same candidates score differently under different options.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import HierObs, Obs
from rayrec.models.encoders import make_encoder
from rayrec.models.policy_module import CandidatePolicyModule
from rayrec.models.towers import RecommenderTowers, masked_logits

__all__ = ["OptionCandidateModule", "OptionConditionedTowers", "OptionPolicyModule"]


class OptionConditionedTowers(nn.Module):
    """:class:`RecommenderTowers` whose context is extended by the option keys.

    The low observation's ``option`` (B, K) and ``option_remaining`` (B, 1) are appended to
    ``context`` (B, C), so the user tower (and with it every candidate's score) depends on the
    option; the item tower is unchanged.
    """

    def __init__(self, observation_space: gym.spaces.Dict, config: ModelConfig) -> None:
        super().__init__()
        extra = (
            observation_space[HierObs.OPTION].shape[-1]
            + observation_space[HierObs.OPTION_REMAINING].shape[-1]
        )
        context = observation_space[Obs.CONTEXT]
        widened = dict(observation_space.spaces)
        widened[Obs.CONTEXT] = gym.spaces.Box(
            -np.inf, np.inf, (context.shape[-1] + extra,), np.float32
        )
        self.towers = RecommenderTowers(gym.spaces.Dict(widened), config)
        self.out_dim = self.towers.out_dim

    def forward(
        self, obs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns user (B, D), items (B, M, D) and unmasked scores (B, M)."""
        context = torch.cat(
            [
                obs[Obs.CONTEXT].float(),
                obs[HierObs.OPTION].float(),
                obs[HierObs.OPTION_REMAINING].float(),
            ],
            dim=-1,
        )
        return self.towers({**obs, Obs.CONTEXT: context})


class OptionCandidateModule(CandidatePolicyModule):
    """The low level: candidate scoring conditioned on the active option (same heads, same
    distribution, same ``model_config`` as :class:`CandidatePolicyModule`)."""

    @override(CandidatePolicyModule)
    def setup(self) -> None:
        super().setup()
        self.towers = OptionConditionedTowers(self.observation_space, self.rayrec_config)


class OptionPolicyModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """The high level: masked logits (B, K) over options from the high observation.

    Reads ``history_features`` (B, H, d) and ``history_responses`` (B, H, 4) through the configured
    history encoder, ``topic_shown`` and ``topic_click_rate`` (B, T) and ``context`` (B, C); options
    outside their initiation set (``action_mask`` (B, K) = 0) get logit -1e9. ``model_config``
    holds the fields of :class:`ModelConfig` (``scorer`` is unused: options are not candidates).
    """

    @override(TorchRLModule)
    def get_inference_action_dist_cls(self) -> type:
        return TorchCategorical

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self) -> type:
        return TorchCategorical

    @override(TorchRLModule)
    def get_train_action_dist_cls(self) -> type:
        return TorchCategorical

    @override(TorchRLModule)
    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"OptionPolicyModule needs a Discrete action space (the options), "
                f"got {self.action_space}"
            )
        space = self.observation_space
        cfg = self.rayrec_config = ModelConfig.from_module_config(self.model_config)
        h, d = space[Obs.HISTORY_FEATURES].shape
        n_resp = space[Obs.HISTORY_RESPONSES].shape[-1]
        topics = space[HierObs.TOPIC_SHOWN].shape[-1]
        n_ctx = space[Obs.CONTEXT].shape[-1]
        self.encoder = make_encoder(cfg.encoder, d + n_resp, cfg.hidden, h)
        self.body = nn.Sequential(
            nn.Linear(self.encoder.out_dim + 2 * topics + n_ctx, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
        )
        self.logits = nn.Linear(cfg.hidden, int(self.action_space.n))
        if not self.inference_only:
            self.value_head = nn.Sequential(
                nn.Linear(cfg.hidden, cfg.value_hidden), nn.ReLU(), nn.Linear(cfg.value_hidden, 1)
            )

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["value_head"]

    def _embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, hidden) state embedding shared by the logits and the value head."""
        history = torch.cat([obs[Obs.HISTORY_FEATURES], obs[Obs.HISTORY_RESPONSES]], dim=-1)
        encoded = self.encoder(history.float(), obs[Obs.HISTORY_MASK].float())
        x = torch.cat(
            [
                encoded,
                obs[HierObs.TOPIC_SHOWN].float(),
                obs[HierObs.TOPIC_CLICK_RATE].float(),
                obs[Obs.CONTEXT].float(),
            ],
            dim=-1,
        )
        return self.body(x)

    def _logits(self, obs: dict[str, torch.Tensor], embedding: torch.Tensor) -> torch.Tensor:
        return masked_logits(self.logits(embedding), obs[Obs.ACTION_MASK])

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        return {Columns.ACTION_DIST_INPUTS: self._logits(obs, self._embed(obs))}

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        embedding = self._embed(obs)
        return {
            Columns.ACTION_DIST_INPUTS: self._logits(obs, embedding),
            Columns.EMBEDDINGS: embedding,
        }

    @override(ValueFunctionAPI)
    def compute_values(
        self, batch: dict[str, Any], embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        if embeddings is None:
            embeddings = self._embed(batch[Columns.OBS])
        return self.value_head(embeddings).squeeze(-1)
