"""Slate distributions for k > 1: Plackett-Luce over candidate logits.

A slate (a_1, ..., a_k) is drawn by sequential selection without replacement:
P(slate) = prod_i exp(s_{a_i}) / sum_{j not in a_<i} exp(s_j) (Plackett 1975, Luce 1959).
Sampling uses the Gumbel-top-k trick (Kool et al. 2019), which draws exactly this distribution.
The entropy and the KL of a Plackett-Luce distribution have no closed form: both are computed
along the distribution's own most likely prefix (the sum of the per-position categorical
entropies / KLs given the top-ranked items so far), a standard surrogate for the regulariser.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.distribution.distribution import Distribution
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic
from ray.rllib.utils.annotations import override

__all__ = ["PlackettLuce", "plackett_luce"]

_REMOVED = -1e9


class PlackettLuce(Distribution):
    """Plackett-Luce over (B, M) logits; samples are (B, k) int64 slates of distinct indices."""

    slate_size: int = 2

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    # ---- helpers -------------------------------------------------------------------------------
    def _sequential_log_probs(self, slate: torch.Tensor) -> torch.Tensor:
        """(B, k) log-probabilities of each position given the items before it."""
        logits = self.logits
        chosen = torch.gather(logits, 1, slate)
        out = []
        removed = torch.zeros_like(logits, dtype=torch.bool)
        for i in range(slate.shape[1]):
            rest = logits.masked_fill(removed, _REMOVED)
            out.append(chosen[:, i] - torch.logsumexp(rest, dim=1))
            removed = removed.scatter(1, slate[:, i : i + 1], True)
        return torch.stack(out, dim=1)

    def _prefix_conditionals(self, other: PlackettLuce | None = None) -> torch.Tensor:
        """(B,) sum over positions of the conditional entropy (or KL to ``other``)."""
        top = torch.topk(self.logits, self.slate_size, dim=1).indices
        removed = torch.zeros_like(self.logits, dtype=torch.bool)
        total = self.logits.new_zeros(self.logits.shape[0])
        for i in range(self.slate_size):
            logp = torch.log_softmax(self.logits.masked_fill(removed, _REMOVED), dim=1)
            p = logp.exp()
            if other is None:
                total = total - (p * logp).sum(dim=1)
            else:
                logq = torch.log_softmax(other.logits.masked_fill(removed, _REMOVED), dim=1)
                total = total + (p * (logp - logq)).sum(dim=1)
            removed = removed.scatter(1, top[:, i : i + 1], True)
        return total

    # ---- Distribution API ----------------------------------------------------------------------
    @override(Distribution)
    def logp(self, value: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self._sequential_log_probs(value.long()).sum(dim=1)

    @override(Distribution)
    def entropy(self) -> torch.Tensor:
        return self._prefix_conditionals()

    @override(Distribution)
    def kl(self, other: Distribution) -> torch.Tensor:
        assert isinstance(other, PlackettLuce)
        return self._prefix_conditionals(other)

    @override(Distribution)
    def sample(self, *, sample_shape: Any = None, **kwargs: Any) -> torch.Tensor:
        u = torch.rand_like(self.logits).clamp_(1e-12, 1.0 - 1e-7)
        gumbel = self.logits - torch.log(-torch.log(u))
        return torch.topk(gumbel, self.slate_size, dim=1).indices

    @override(Distribution)
    def rsample(self, *, sample_shape: Any = None, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError("Plackett-Luce slates are discrete: no reparameterised sample")

    @classmethod
    @override(Distribution)
    def from_logits(cls, logits: torch.Tensor, **kwargs: Any) -> PlackettLuce:
        return cls(logits)

    @staticmethod
    @override(Distribution)
    def required_input_dim(space: gym.Space, **kwargs: Any) -> int:
        return int(space.nvec[0])

    def to_deterministic(self) -> TorchDeterministic:
        """The most likely slate: the top-k logits in order."""
        return TorchDeterministic(loc=torch.topk(self.logits, self.slate_size, dim=1).indices)


def plackett_luce(slate_size: int) -> type[PlackettLuce]:
    """A Plackett-Luce class for slates of ``slate_size`` (RLlib builds it from logits alone)."""
    if slate_size < 2:
        raise ValueError(f"slate_size ({slate_size}) must be >= 2 for a slate distribution")
    return type(f"PlackettLuce{slate_size}", (PlackettLuce,), {"slate_size": slate_size})
