"""The user population: segments, and sampling of new users' latent state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.sim.config import SimConfig

__all__ = ["NewUsers", "UserPopulation"]

_FAVOURITES = 3


@dataclass(frozen=True)
class NewUsers:
    """Latent state of freshly sampled users (row i is one user)."""

    segment: np.ndarray
    """(n,) int32 segment id."""
    interest: np.ndarray
    """(n, d) float32 unit interest vectors."""
    appeal_sensitivity: np.ndarray
    """(n,) float32 multiplier on appeal in the click utility."""
    base_budget: np.ndarray
    """(n,) float32 mean session budget in minutes."""
    loyalty: np.ndarray
    """(n,) float32 offset on the logit of returning."""
    satisfaction: np.ndarray
    """(n,) float32 initial satisfaction."""
    peak_hour: np.ndarray
    """(n,) float32 hour of day the user usually starts sessions."""


@dataclass(frozen=True, eq=False)
class UserPopulation:
    """Segment-level parameters; users are sampled around their segment."""

    topic_preference: np.ndarray
    """(S, T) Dirichlet base measure of each segment's topic mixture."""
    appeal_sensitivity: np.ndarray
    """(S,) how strongly each segment is drawn by appeal (clickbait susceptibility)."""
    budget_scale: np.ndarray
    """(S,) multiplier on the mean session budget."""
    loyalty: np.ndarray
    """(S,) offset on the return logit."""
    peak_hour: np.ndarray
    """(S,) preferred hour of day."""
    weights: np.ndarray
    """(S,) share of users in each segment."""

    @classmethod
    def generate(cls, config: SimConfig, rng: np.random.Generator) -> UserPopulation:
        s, t = config.num_segments, config.num_topics
        return cls(
            topic_preference=rng.dirichlet(np.ones(t), size=s),
            appeal_sensitivity=np.linspace(0.6, 1.4, s) if s > 1 else np.ones(1),
            budget_scale=rng.lognormal(0.0, 0.25, s),
            loyalty=rng.normal(0.0, 0.4, s),
            peak_hour=rng.uniform(0.0, 24.0, s),
            weights=rng.dirichlet(np.full(s, 5.0)),
        )

    def sample(
        self, n: int, config: SimConfig, centres: np.ndarray, rng: np.random.Generator
    ) -> NewUsers:
        """Draw ``n`` new users; ``centres`` are the catalog's (T, d) topic centres."""
        seg = np.searchsorted(np.cumsum(self.weights), rng.random(n) * self.weights.sum())
        seg = np.minimum(seg, len(self.weights) - 1).astype(np.int32)
        # A few favourite topics drawn from the segment's taste, weighted by Gamma(concentration)
        # draws (a Dirichlet over the favourites); cheaper than a Dirichlet over all T topics.
        cdf = np.cumsum(self.topic_preference, axis=1)[seg]
        u = rng.random((n, _FAVOURITES))
        fav = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), centres.shape[0] - 1)
        mix = rng.gamma(config.interest_concentration * _FAVOURITES, size=(n, _FAVOURITES))
        mix /= np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)
        interest = np.einsum("nf,nfd->nd", mix, centres[fav])
        interest += 0.15 * rng.standard_normal((n, centres.shape[1]))
        interest /= np.maximum(np.linalg.norm(interest, axis=1, keepdims=True), 1e-12)
        return NewUsers(
            segment=seg,
            interest=interest.astype(np.float32),
            appeal_sensitivity=(self.appeal_sensitivity[seg] * rng.lognormal(0.0, 0.1, n)).astype(
                np.float32
            ),
            base_budget=(
                config.session_budget * self.budget_scale[seg] * rng.lognormal(0.0, 0.2, n)
            ).astype(np.float32),
            loyalty=(self.loyalty[seg] + 0.3 * rng.standard_normal(n)).astype(np.float32),
            satisfaction=(config.satisfaction_init + 0.2 * rng.standard_normal(n)).astype(
                np.float32
            ),
            peak_hour=self.peak_hour[seg].astype(np.float32),
        )
