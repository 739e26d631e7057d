"""The user population: segments, and sampling of new users' latent state."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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
    real_interest: np.ndarray | None = None
    """Calibrated worlds: (U, d) unit tastes of real users; a new user copies a random one (plus
    noise) instead of mixing favourite topics."""
    real_budget: np.ndarray | None = None
    """Calibrated worlds: (U,) budget multiplier of each real user (activity ** exponent)."""

    @classmethod
    def generate(cls, config: SimConfig, rng: np.random.Generator) -> UserPopulation:
        s, t = config.num_segments, config.num_topics
        real_interest = real_budget = None
        if config.catalog != "synthetic":
            # Imported here: it loads pandas, which a synthetic world never needs (see catalog.py).
            from rayrec.datasets.worlds import load_world

            world = load_world(config.catalog, config.embed_dim, config.num_topics)
            real_interest = world.user_interest
            real_budget = (world.user_activity**config.activity_exponent).astype(np.float32)
        return cls(
            topic_preference=rng.dirichlet(np.ones(t), size=s),
            appeal_sensitivity=np.linspace(0.6, 1.4, s) if s > 1 else np.ones(1),
            budget_scale=rng.lognormal(0.0, 0.25, s),
            loyalty=rng.normal(0.0, 0.4, s),
            peak_hour=rng.uniform(0.0, 24.0, s),
            weights=rng.dirichlet(np.full(s, 5.0)),
            real_interest=real_interest,
            real_budget=real_budget,
        )

    @cached_property
    def _segment_cdf(self) -> np.ndarray:
        """(S,) cumulative segment shares, normalised."""
        cdf = np.cumsum(self.weights)
        return cdf / cdf[-1]

    @cached_property
    def _topic_cdf(self) -> np.ndarray:
        """(S * T,) each segment's topic CDF shifted up by its segment index (one sorted array)."""
        cdf = np.cumsum(self.topic_preference, axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        return (cdf + np.arange(len(cdf))[:, None]).ravel()

    def sample(
        self, n: int, config: SimConfig, centres: np.ndarray, rng: np.random.Generator
    ) -> NewUsers:
        """Draw ``n`` new users; ``centres`` are the catalog's (T, d) topic centres."""
        s, (t, d) = len(self.weights), centres.shape
        u = rng.random((n, 1 + _FAVOURITES))
        seg = np.minimum(np.searchsorted(self._segment_cdf, u[:, 0], side="right"), s - 1)
        # A few favourite topics drawn from the segment's taste, weighted by Gamma(concentration)
        # draws (a Dirichlet over the favourites); cheaper than a Dirichlet over all T topics.
        # Inverse-CDF sampling of all users' favourites in one search: segment s's CDF is
        # shifted to [s, s + 1] in the concatenated array.
        fav = np.searchsorted(self._topic_cdf, u[:, 1:] + seg[:, None], side="right")
        fav -= (seg * t)[:, None]
        # (Only rounding of u + seg up to seg + 1 can overshoot; earlier segments' CDFs all end
        # at or below seg, so fav >= 0.)
        np.minimum(fav, t - 1, out=fav)
        shape = config.interest_concentration * _FAVOURITES
        # float32 draws are cheaper; tiny shapes need float64 not to underflow to all zeros.
        mix = rng.standard_gamma(shape, (n, _FAVOURITES), np.float32 if shape >= 0.05 else None)
        mix /= np.maximum(mix.sum(axis=1, keepdims=True), np.finfo(mix.dtype).tiny)
        interest = np.einsum("nf,nfd->nd", mix, centres.take(fav, axis=0))
        budget: np.ndarray | float = 1.0
        if self.real_interest is not None and self.real_budget is not None:
            # A real user's taste and activity (the segment still sets appeal, loyalty, hours).
            count = len(self.real_interest)
            who = np.minimum((u[:, 1] * count).astype(np.intp), count - 1)
            interest = self.real_interest[who].copy()
            budget = self.real_budget[who]
        z = rng.standard_normal((n, d + 4), dtype=np.float32)
        interest += np.float32(0.15) * z[:, :d]
        norm = np.sqrt(np.einsum("nd,nd->n", interest, interest))
        interest /= np.maximum(norm, 1e-12)[:, None]
        # Per-user scalars around their segment: LogNormal(0, 0.1) appeal sensitivity,
        # LogNormal(0, 0.2) budget, N(0, 0.3) loyalty and N(0, 0.2) initial satisfaction.
        z = z[:, d:].T
        return NewUsers(
            segment=seg.astype(np.int32),
            interest=interest.astype(np.float32, copy=False),
            appeal_sensitivity=(self.appeal_sensitivity[seg] * np.exp(0.1 * z[0])).astype(
                np.float32
            ),
            base_budget=(
                config.session_budget * self.budget_scale[seg] * np.exp(0.2 * z[1]) * budget
            ).astype(np.float32),
            loyalty=(self.loyalty[seg] + 0.3 * z[2]).astype(np.float32),
            satisfaction=(config.satisfaction_init + 0.2 * z[3]).astype(np.float32),
            peak_hour=self.peak_hour[seg].astype(np.float32),
        )
