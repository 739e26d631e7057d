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

__all__ = ["SCORERS", "CriticTower", "ModelConfig", "RecommenderTowers", "masked_logits"]

# Relations of a candidate besides one per response (see relation_inputs): the "shown"-weighted
# mean, the newest history item, the closest history item and the offer.
_OTHER_RELATIONS = 4
# Index of the CTR estimate among a candidate's scalars (Obs.CANDIDATE_SCALARS).
_CTR = 1

# Logit given to masked candidates: finite so that softmax and log-probs never produce NaN.
MASKED_LOGIT = -1e9


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def masked_logits(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M) scores with masked candidates pushed to MASKED_LOGIT (probability 0)."""
    return torch.where(mask > 0, scores, torch.full_like(scores, MASKED_LOGIT))


def _user_vector(
    tower: nn.Module, obs: dict[str, torch.Tensor], candidates: torch.Tensor
) -> torch.Tensor:
    """(B, D) ``tower.user`` of the encoded history, the context and (with candidate_context)
    the masked mean of the (B, M, d + S) candidate inputs."""
    history = torch.cat([obs[Obs.HISTORY_FEATURES], obs[Obs.HISTORY_RESPONSES]], dim=-1)
    encoded = tower.encoder(history.float(), obs[Obs.HISTORY_MASK].float())
    user_inputs = [encoded, obs[Obs.CONTEXT].float()]
    if tower.config.candidate_context:
        user_inputs.append(RecommenderTowers.pooled_items(candidates, obs[Obs.ACTION_MASK]))
    return tower.user(torch.cat(user_inputs, dim=-1))


def _user_layers(
    observation_space: gym.spaces.Dict, config: ModelConfig
) -> tuple[nn.Module, nn.Module]:
    """The history encoder and the user MLP over [encoding, context, offer]."""
    h, d = observation_space[Obs.HISTORY_FEATURES].shape
    n_resp = observation_space[Obs.HISTORY_RESPONSES].shape[-1]
    n_scalar = observation_space[Obs.CANDIDATE_SCALARS].shape[-1]
    n_ctx = observation_space[Obs.CONTEXT].shape[-1]
    encoder = make_encoder(config.encoder, d + n_resp, config.hidden, h)
    n_offer = d + n_scalar if config.candidate_context else 0
    return encoder, _mlp(encoder.out_dim + n_ctx + n_offer, config.hidden, config.hidden)


class CriticTower(nn.Module):
    """A value function with layers of its own (``model.separate_critic``): a user tower like the
    policy's and an MLP over [user vector, masked mean of the candidates' inputs] -> (B,) values.
    It scores no candidate, so it costs a fraction of the policy's towers."""

    def __init__(self, observation_space: gym.spaces.Dict, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.user = _user_layers(observation_space, config)
        d = observation_space[Obs.CANDIDATE_FEATURES].shape[-1]
        n_in = config.hidden + d + observation_space[Obs.CANDIDATE_SCALARS].shape[-1]
        self.head = _mlp(n_in, config.value_hidden, 1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) state values."""
        candidates = RecommenderTowers.candidate_inputs(obs)
        offer = RecommenderTowers.pooled_items(candidates, obs[Obs.ACTION_MASK])
        user = _user_vector(self, obs, candidates)
        return self.head(torch.cat([user, offer], dim=-1)).squeeze(-1)


class RecommenderTowers(nn.Module):
    """User tower, item tower and scorer over rayrec's observation dict."""

    def __init__(self, observation_space: gym.spaces.Dict, config: ModelConfig) -> None:
        super().__init__()
        d = observation_space[Obs.HISTORY_FEATURES].shape[-1]
        n_resp = observation_space[Obs.HISTORY_RESPONSES].shape[-1]
        n_scalar = observation_space[Obs.CANDIDATE_SCALARS].shape[-1]
        n_ctx = observation_space[Obs.CONTEXT].shape[-1]
        self.config = config
        self.encoder, self.user = _user_layers(observation_space, config)
        self.item = _mlp(d + n_scalar, config.hidden, config.hidden)
        if config.scorer == "mlp":
            self.scorer: nn.Module | None = _mlp(3 * config.hidden, config.hidden, 1)
        else:
            self.scorer = None
        self.item_bias = nn.Linear(config.hidden, 1)
        if config.relations:
            # Relations, the candidate's scalars, logit(CTR) and the context.
            n_in = (n_resp + _OTHER_RELATIONS) + n_scalar + 1 + n_ctx
            self.relation: nn.Module | None = _mlp(n_in, config.hidden, 1)
        else:
            self.relation = None
        self.out_dim = config.hidden

    def forward(
        self, obs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns user (B, D), items (B, M, D) and unmasked scores (B, M)."""
        candidates = self.candidate_inputs(obs)
        user = self.user_vector(obs, candidates)
        items = self.item(candidates)
        if self.scorer is None:
            scores = torch.einsum("bd,bmd->bm", user, items) / self.out_dim**0.5
        else:
            pair = torch.cat(
                [user.unsqueeze(1).expand_as(items), items, user.unsqueeze(1) * items], dim=-1
            )
            scores = self.scorer(pair).squeeze(-1)
        scores = scores + self.item_bias(items).squeeze(-1)
        if self.relation is not None:
            scores = scores + self.relation(self.relation_inputs(obs)).squeeze(-1)
        return user, items, scores

    @staticmethod
    def candidate_inputs(obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, d + S) each candidate's features and scalars, the item tower's input."""
        return torch.cat([obs[Obs.CANDIDATE_FEATURES], obs[Obs.CANDIDATE_SCALARS]], dim=-1).float()

    def user_vector(self, obs: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """(B, D) the user tower's output for the (B, M, d + S) candidate inputs."""
        return _user_vector(self, obs, candidates)

    @staticmethod
    def relation_inputs(obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, R) per-candidate relations to the history and the offer, its scalars, the logit
        of its CTR estimate (scalar 1) and the context.

        Relations, from the (B, M, H) dot products s of candidates with history items: the mean of
        s weighted by each response (click, watch, like, skip) and by "shown" over the valid
        history, s with the newest history item, the largest s, and the dot product with the
        masked mean of the candidates. All are parameter-free, so the head learns only how much
        each matters."""
        cand = obs[Obs.CANDIDATE_FEATURES].float()
        hist = obs[Obs.HISTORY_FEATURES].float()
        hmask = obs[Obs.HISTORY_MASK].float()
        responses = obs[Obs.HISTORY_RESPONSES].float() * hmask.unsqueeze(-1)
        scalars = obs[Obs.CANDIDATE_SCALARS].float()
        sim = torch.einsum("bmd,bhd->bmh", cand, hist)
        count = hmask.sum(dim=1).clamp(min=1.0)[:, None, None]
        weighted = torch.einsum("bmh,bhr->bmr", sim, torch.cat([responses, hmask[..., None]], -1))
        closest = torch.where(hmask[:, None, :] > 0, sim, torch.full_like(sim, -1.0)).amax(-1)
        offer = RecommenderTowers.pooled_items(cand, obs[Obs.ACTION_MASK])
        ctr = scalars[..., _CTR].clamp(1e-4, 1 - 1e-4)
        m = cand.shape[1]
        context = obs[Obs.CONTEXT].float().unsqueeze(1).expand(-1, m, -1)
        return torch.cat(
            [
                weighted / count,
                sim[..., -1:],
                closest.unsqueeze(-1),
                torch.einsum("bmd,bd->bm", cand, offer).unsqueeze(-1),
                scalars,
                torch.logit(ctr).unsqueeze(-1),
                context,
            ],
            dim=-1,
        )

    @staticmethod
    def pooled_items(items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, D) masked mean of candidate embeddings: what is on offer, for value heads."""
        m = mask.float().unsqueeze(-1)
        return (items * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
