"""Two-tower candidate scoring shared by every rayrec RLModule.

A user tower encodes the history and context into a user vector; an item tower embeds each
candidate from its features; a scorer compares them. Nothing depends on the catalog size N, and
every per-candidate computation is the same function of that candidate, so scores are
permutation-equivariant over candidates.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rayrec.contracts.model_config import SCORERS, ModelConfig
from rayrec.contracts.observation import Obs
from rayrec.models.encoders import make_encoder

__all__ = ["SCORERS", "ModelConfig", "RecommenderTowers", "masked_logits"]

# Logit given to masked candidates: finite so that softmax and log-probs never produce NaN.
MASKED_LOGIT = -1e9


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def masked_logits(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M) scores with masked candidates pushed to MASKED_LOGIT (probability 0)."""
    return torch.where(mask > 0, scores, torch.full_like(scores, MASKED_LOGIT))


class RecommenderTowers(nn.Module):
    """User tower, item tower and scorer over rayrec's observation dict."""

    def __init__(self, observation_space: gym.spaces.Dict, config: ModelConfig) -> None:
        super().__init__()
        h, d = observation_space[Obs.HISTORY_FEATURES].shape
        n_resp = observation_space[Obs.HISTORY_RESPONSES].shape[-1]
        n_scalar = observation_space[Obs.CANDIDATE_SCALARS].shape[-1]
        n_ctx = observation_space[Obs.CONTEXT].shape[-1]
        self.config = config
        self.encoder = make_encoder(config.encoder, d + n_resp, config.hidden, h)
        n_offer = d + n_scalar if config.candidate_context else 0
        self.user = _mlp(self.encoder.out_dim + n_ctx + n_offer, config.hidden, config.hidden)
        self.item = _mlp(d + n_scalar, config.hidden, config.hidden)
        if config.scorer == "mlp":
            self.scorer: nn.Module | None = _mlp(3 * config.hidden, config.hidden, 1)
        else:
            self.scorer = None
        self.item_bias = nn.Linear(config.hidden, 1)
        self.out_dim = config.hidden

    def forward(
        self, obs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns user (B, D), items (B, M, D) and unmasked scores (B, M)."""
        history = torch.cat([obs[Obs.HISTORY_FEATURES], obs[Obs.HISTORY_RESPONSES]], dim=-1)
        encoded = self.encoder(history.float(), obs[Obs.HISTORY_MASK].float())
        candidates = torch.cat(
            [obs[Obs.CANDIDATE_FEATURES], obs[Obs.CANDIDATE_SCALARS]], dim=-1
        ).float()
        user_inputs = [encoded, obs[Obs.CONTEXT].float()]
        if self.config.candidate_context:
            user_inputs.append(self.pooled_items(candidates, obs[Obs.ACTION_MASK]))
        user = self.user(torch.cat(user_inputs, dim=-1))
        items = self.item(candidates)
        if self.scorer is None:
            scores = torch.einsum("bd,bmd->bm", user, items) / self.out_dim**0.5
        else:
            pair = torch.cat(
                [user.unsqueeze(1).expand_as(items), items, user.unsqueeze(1) * items], dim=-1
            )
            scores = self.scorer(pair).squeeze(-1)
        return user, items, scores + self.item_bias(items).squeeze(-1)

    @staticmethod
    def pooled_items(items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, D) masked mean of candidate embeddings: what is on offer, for value heads."""
        m = mask.float().unsqueeze(-1)
        return (items * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
