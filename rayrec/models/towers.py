"""Two-tower candidate scoring shared by every rayrec RLModule.

A user tower encodes the history and context into a user vector; an item tower embeds each
candidate from its features; a scorer compares them. Nothing depends on the catalog size N, and
every per-candidate computation is the same function of that candidate, so scores are
permutation-equivariant over candidates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from rayrec.envs.observation import Obs
from rayrec.models.encoders import ENCODERS, make_encoder
from rayrec.sim.config import check_fields

__all__ = ["SCORERS", "ModelConfig", "RecommenderTowers", "masked_logits"]

SCORERS = ("dot", "mlp")
# Logit given to masked candidates: finite so that softmax and log-probs never produce NaN.
MASKED_LOGIT = -1e9


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section of a policy spec."""

    encoder: str = "mean"
    """History encoder: 'none', 'mean', 'gru' or 'attention'."""
    hidden: int = 64
    """Width of the user and item towers and of the history encoder."""
    scorer: str = "dot"
    """How a user vector meets a candidate: 'dot' (scaled dot product) or 'mlp'."""
    value_hidden: int = 64
    """Width of the value head."""
    candidate_context: bool = False
    """Feed the user tower the masked mean of the candidates' features: retrieval chose them for
    this user, so what is on offer is evidence of the user's interest beyond the short history."""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"model.encoder ({self.encoder!r}) must be one of {', '.join(ENCODERS)}"
            )
        if self.scorer not in SCORERS:
            raise ValueError(f"model.scorer ({self.scorer!r}) must be one of {', '.join(SCORERS)}")
        for name in ("hidden", "value_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise ValueError(f"model.{name} ({value!r}) must be an integer in [1, 4096]")
        if not isinstance(self.candidate_context, bool):
            raise ValueError(
                f"model.candidate_context ({self.candidate_context!r}) must be true or false"
            )

    @classmethod
    def from_module_config(cls, values: dict[str, Any] | None) -> ModelConfig:
        """From an RLModule's ``model_config``, which RLlib extends with keys of its own."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ModelConfig:
        """From a spec's ``model`` section; unknown keys are an error."""
        values = dict(values or {})
        check_fields(cls, values, "model")
        return cls(**values)


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
