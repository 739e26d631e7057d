"""Policy + value RLModule for the policy-gradient family (PPO, APPO, IMPALA) and the offline
policy learners (BC, MARWIL, TopKReinforce, whose module also has a behaviour head)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.apis.target_network_api import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import Obs
from rayrec.models.slate import plackett_luce
from rayrec.models.towers import CriticTower, RecommenderTowers, masked_logits

__all__ = [
    "BEHAVIOR_HEAD_KEY",
    "BEHAVIOR_LOGITS",
    "BehaviorHead",
    "CandidateAPPOModule",
    "CandidatePolicyModule",
]

BEHAVIOR_HEAD_KEY = "behavior_head"
"""``model_config`` key: true builds the behaviour head (TopKReinforce's config sets it)."""
BEHAVIOR_LOGITS = "behavior_logits"
"""``forward_train`` output: (B, M) masked logits of the behaviour head."""


class BehaviorHead(nn.Module):
    """Scores of the behaviour policy beta(a|s), estimated as in Chen et al. 2019: a dot product
    of the user vector with candidate embeddings of the head's own item tower, plus a
    per-candidate bias. The user vector is detached, so the head's gradient does not reach the
    shared user tower (the paper's blocked gradient): the behaviour estimate does not shape the
    policy's state."""

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int) -> None:
        super().__init__()
        d = observation_space[Obs.CANDIDATE_FEATURES].shape[-1]
        n_scalar = observation_space[Obs.CANDIDATE_SCALARS].shape[-1]
        self.item = nn.Sequential(
            nn.Linear(d + n_scalar, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.bias = nn.Linear(hidden, 1)

    def forward(self, user: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(B, M) unmasked scores of (B, D) user vectors and (B, M, d + S) candidate inputs."""
        items = self.item(candidates)
        scores = torch.einsum("bd,bmd->bm", user.detach(), items) / items.shape[-1] ** 0.5
        return scores + self.bias(items).squeeze(-1)


class CandidatePolicyModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """Scores the M candidates of each observation; logits (B, M) feed a categorical (k = 1) or a
    Plackett-Luce slate distribution (k > 1).

    ``model_config`` holds the fields of :class:`rayrec.models.towers.ModelConfig`. Masked candidates
    get logit -1e9 (probability 0), so they are never sampled. With ``behavior_head`` in the
    model config, training forward passes also return the :class:`BehaviorHead`'s logits.
    """

    @override(TorchRLModule)
    def get_inference_action_dist_cls(self) -> type:
        return self._dist_cls

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self) -> type:
        return self._dist_cls

    @override(TorchRLModule)
    def get_train_action_dist_cls(self) -> type:
        return self._dist_cls

    @override(TorchRLModule)
    def setup(self) -> None:
        if isinstance(self.action_space, gym.spaces.Discrete):
            self._dist_cls = TorchCategorical
        elif isinstance(self.action_space, gym.spaces.MultiDiscrete):
            self._dist_cls = plackett_luce(len(self.action_space.nvec))
        else:
            raise ValueError(
                f"CandidatePolicyModule needs a Discrete or MultiDiscrete action space, "
                f"got {self.action_space}"
            )
        self.rayrec_config = ModelConfig.from_module_config(self.model_config)
        self.towers = RecommenderTowers(self.observation_space, self.rayrec_config)
        if not self.inference_only:
            if self.rayrec_config.separate_critic:
                self.critic = CriticTower(self.observation_space, self.rayrec_config)
            else:
                hidden = self.rayrec_config.value_hidden
                self.value_head = nn.Sequential(
                    nn.Linear(2 * self.towers.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)
                )
            if self.model_config.get(BEHAVIOR_HEAD_KEY):
                self.behavior = BehaviorHead(self.observation_space, self.rayrec_config.hidden)

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        critic = ["critic" if self.rayrec_config.separate_critic else "value_head"]
        return critic + (["behavior"] if self.model_config.get(BEHAVIOR_HEAD_KEY) else [])

    def _scores(
        self, obs: dict[str, torch.Tensor], towers: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        user, items, scores = (towers or self.towers)(obs)
        mask = obs[Obs.ACTION_MASK]
        embedding = torch.cat([user, RecommenderTowers.pooled_items(items, mask)], dim=-1)
        return masked_logits(scores, mask), embedding

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logits, _ = self._scores(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits}

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        logits, embedding = self._scores(obs)
        out = {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: embedding}
        if hasattr(self, "behavior"):
            # The embedding starts with the user vector (see _scores).
            user = embedding[:, : self.towers.out_dim]
            scores = self.behavior(user, RecommenderTowers.candidate_inputs(obs))
            out[BEHAVIOR_LOGITS] = masked_logits(scores, obs[Obs.ACTION_MASK])
        return out

    @override(ValueFunctionAPI)
    def compute_values(
        self, batch: dict[str, Any], embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.rayrec_config.separate_critic:
            return self.critic(batch[Columns.OBS])
        if embeddings is None:
            _, embeddings = self._scores(batch[Columns.OBS])
        return self.value_head(embeddings).squeeze(-1)


class CandidateAPPOModule(CandidatePolicyModule, TargetNetworkAPI):
    """The policy module plus the target ("old") policy network APPO's surrogate loss needs."""

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self._old_towers = make_target_network(self.towers)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.towers, self._old_towers)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        logits, _ = self._scores(batch[Columns.OBS], towers=self._old_towers)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: logits}

    @override(CandidatePolicyModule)
    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "_old_towers"]
