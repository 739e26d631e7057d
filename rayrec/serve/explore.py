"""Safe exploration in serving: the exploration budget and the fallback policy.

- :class:`ExplorationBudget` caps the share of sampled (``mode: sample``) slates a replica
  serves; requests beyond it are served greedily (docs/serving.md, "Exploration budget").
- :func:`fallback_scores` ranks candidates by one of their observable scalars when the model
  cannot: it raised, or its scores are not finite (docs/serving.md, "Fallback policy").

The propensity floor lives with the slate draw itself (:func:`rayrec.serve.policy.choose_slate`).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rayrec.sim import ItemCatalog

__all__ = [
    "EXPLORE_WINDOW",
    "FALLBACKS",
    "ExplorationBudget",
    "fallback_name",
    "fallback_scores",
    "unsupported",
]

EXPLORE_WINDOW = 1000
"""Slates over which a replica's sampled share is counted (the last ones it served)."""

FALLBACKS = {"popular": 0, "ctr": 1}
"""Fallback policy -> its column of the candidate scalars (``Obs.CANDIDATE_SCALARS``: observable
log-popularity, CTR estimate, ...; the columns :class:`rayrec.evaluation.baselines.PopularPolicy`
ranks by)."""


class ExplorationBudget:
    """At most ``budget`` of the last ``window`` slates of a replica are sampled.

    A sliding window over slates rather than a token bucket over time: the budget is a share of
    the *log* (what off-policy evaluation and offline training read), not a rate, so it must not
    depend on traffic volume or on a clock; a window also caps every prefix, so a freshly started
    replica does not spend a burst of sampled slates first. The rule is deterministic: a request
    that asks to sample is sampled iff the sampled share of the window, this slate included,
    stays <= ``budget``. Each replica counts its own slates: with several replicas every one is
    within the budget, so their union is too.
    """

    def __init__(self, budget: float | None, window: int = EXPLORE_WINDOW) -> None:
        self.budget = 1.0 if budget is None else float(budget)
        self._window: deque[bool] = deque(maxlen=window)
        self._sampled = 0

    def take(self, wants_sample: bool) -> bool:
        """Record one slate; True when it may be sampled (it asked to, and the budget allows)."""
        full = len(self._window) == self._window.maxlen
        leaving = bool(full and self._window[0])
        size = len(self._window) + (0 if full else 1)
        sampled = self._sampled - leaving + 1
        # A tiny tolerance: budget * size is a float (0.1 * 10 = 1.0000000000000002).
        allowed = wants_sample and sampled <= self.budget * size + 1e-9
        self._window.append(allowed)
        self._sampled += int(allowed) - int(leaving)
        return allowed

    @property
    def share(self) -> float:
        """The sampled share of the window (0 before any slate)."""
        return self._sampled / len(self._window) if self._window else 0.0


def fallback_name(fallback: str) -> str:
    """The ``policy`` a fallback's slates are logged under."""
    return f"fallback/{fallback}"


def fallback_scores(catalog: ItemCatalog, candidates: np.ndarray, fallback: str) -> np.ndarray:
    """(m,) scores of ``candidates`` under the fallback policy: their observable scalar."""
    return catalog.scalars[candidates, FALLBACKS[fallback]].astype(np.float32)


def unsupported(scores: np.ndarray) -> str | None:
    """Why a request is outside the model's support, or None: a score that is not finite (NaN
    or +-inf: broken weights, an overflow) leaves the slate and its propensities undefined."""
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        return f"{bad} of {len(scores)} candidate scores are not finite"
    return None
