"""Candidate retrieval: a coarse, IVF-style index over topics, plus popular and fresh pools.

Retrieval never scores all N items: it scores the T topic centres against a noisy view of the
user's interest, samples topics from a softmax over those scores, and takes consecutive items of
each chosen topic's popularity-sorted bucket from a random start. Popular and fresh items fill the
rest. Each user's pool of P items is retrieved at session start and every ``refresh_every`` steps;
each step shows a window of M of them.
"""

from __future__ import annotations

import numpy as np

from rayrec.sim.catalog import ItemCatalog
from rayrec.sim.config import SimConfig

__all__ = ["CandidateRetriever"]

_PERSONAL, _POPULAR, _FRESH = 0, 1, 2


def _interleave(counts: list[int]) -> np.ndarray:
    """Source of each pool slot, spread so every window holds about the same mix."""
    total = sum(counts)
    keys = np.concatenate([(np.arange(c) + 0.5) / c if c else np.zeros(0) for c in counts])
    sources = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    return sources[np.argsort(keys, kind="stable")].astype(np.int8)[:total]


class CandidateRetriever:
    """Retrieves each user's pool of candidate items in batch."""

    def __init__(self, config: SimConfig, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.pool_size = config.pool_size
        n_personal = round(config.personal_fraction * self.pool_size)
        n_popular = min(
            round(config.popular_fraction * self.pool_size), self.pool_size - n_personal
        )
        n_fresh = self.pool_size - n_personal - n_popular
        self.source = _interleave([n_personal, n_popular, n_fresh])
        self.n_personal, self.n_popular, self.n_fresh = n_personal, n_popular, n_fresh
        self.temperature = config.retrieval_temperature
        self.noise = config.retrieval_noise
        self.bucket_size = np.diff(catalog.topic_start)
        self.num_probe = config.retrieval_probe

    def retrieve(
        self, interest: np.ndarray, history: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pools for n users.

        Args:
            interest: (n, d) the users' interest vectors.
            history: (n, H) recently consumed item ids (-1 = none); they are masked out.
            rng: the retriever's generator.

        Returns:
            (n, P) int32 item ids and (n, P) bool validity (duplicates and recent items are False).
        """
        n = interest.shape[0]
        cat = self.catalog
        pool = np.empty((n, self.pool_size), dtype=np.int32)
        if n == 0:
            return pool, np.zeros((0, self.pool_size), dtype=bool)
        if self.n_personal:
            pool[:, self.source == _PERSONAL] = self._personal(interest, rng)
        if self.n_popular:
            pick = rng.integers(0, len(cat.popular_items), (n, self.n_popular))
            pool[:, self.source == _POPULAR] = cat.popular_items[pick]
        if self.n_fresh:
            pick = rng.integers(0, len(cat.fresh_items), (n, self.n_fresh))
            pool[:, self.source == _FRESH] = cat.fresh_items[pick]
        return pool, self._valid(pool, history)

    def _personal(self, interest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cat = self.catalog
        n = interest.shape[0]
        noisy = interest + self.noise * rng.standard_normal(interest.shape, dtype=np.float32)
        scores = noisy @ cat.topic_centres.T
        # Probe the best few topics (IVF's nprobe), then split the slots among them by a softmax.
        probe = min(self.num_probe, scores.shape[1])
        top = (
            np.argpartition(-scores, probe - 1, axis=1)[:, :probe]
            if probe < scores.shape[1]
            else (np.broadcast_to(np.arange(probe), (n, probe)))
        )
        logits = np.take_along_axis(scores, top, 1) / self.temperature
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        counts = rng.multinomial(self.n_personal, weights)
        # Rows of `topics` list each probed topic `count` times, so equal topics are contiguous.
        topics = np.repeat(top.ravel(), counts.ravel()).reshape(n, self.n_personal)
        first = np.repeat(np.cumsum(counts, axis=1) - counts, counts.ravel()).reshape(topics.shape)
        rank = np.arange(self.n_personal) - first
        # Start near the top of each bucket (popular first), at a random depth: U^2 favours the top.
        size = self.bucket_size[topics]
        depth = np.repeat(rng.random(counts.shape) ** 2, counts.ravel()).reshape(topics.shape)
        offset = ((size * depth).astype(np.int64) + rank) % size
        return cat.topic_items[cat.topic_start[topics] + offset]

    @staticmethod
    def _valid(pool: np.ndarray, history: np.ndarray) -> np.ndarray:
        """False for the second and later copies of an item in a row, and for recent items.

        One sort per row over history and pool together: the key encodes the item and a code
        that puts history entries (codes 0..H-1) before pool slots (codes H..H+P-1), so a pool
        entry equal to its predecessor in sorted order is either a repeat or a recent item.
        Sorting values is several times faster than argsort.
        """
        n, p = pool.shape
        h = history.shape[1]
        width = p + h
        key = np.empty((n, width), dtype=np.int64)
        key[:, :h] = history * width + np.arange(h)
        key[:, h:] = pool.astype(np.int64) * width + np.arange(h, width)
        key.sort(axis=1)
        item, code = np.divmod(key, width)
        dup = (item[:, 1:] == item[:, :-1]) & (code[:, 1:] >= h)
        valid = np.ones_like(pool, dtype=bool)
        rows = np.broadcast_to(np.arange(n)[:, None], dup.shape)
        valid[rows[dup], code[:, 1:][dup] - h] = False
        return valid
