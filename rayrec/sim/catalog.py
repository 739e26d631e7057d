"""The item catalog: N items in a d-dimensional topic space, plus the retrieval index over them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rayrec.sim.config import SCALAR_LIMIT, SimConfig

__all__ = ["ItemCatalog", "world_catalog", "world_streams"]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Struct of arrays over N items; index ``j`` of every array is item ``j``.

    Latent attributes (``quality``, ``appeal``) drive the user model and are never observed by a
    policy directly: the observation carries the noisy estimates ``ctr_estimate`` and
    ``watch_estimate``, as a production system would carry logged statistics.
    """

    topic_centres: np.ndarray
    """(T, d) float32 unit vectors."""
    embedding: np.ndarray
    """(N, d) float32 unit vectors near their topic centre."""
    topic: np.ndarray
    """(N,) int32 topic of each item."""
    quality: np.ndarray
    """(N,) float32 in [0, 1]: how much watching it satisfies (latent)."""
    appeal: np.ndarray
    """(N,) float32: how tempting its thumbnail is (latent)."""
    clickbait: np.ndarray
    """(N,) bool: drawn from the clickbait distribution (latent; for analysis)."""
    duration: np.ndarray
    """(N,) float32 minutes."""
    creator: np.ndarray
    """(N,) int32 creator id."""
    advertiser: np.ndarray
    """(N,) int32 advertiser id, -1 for organic items."""
    log_popularity: np.ndarray
    """(N,) float32 popularity prior (z-scored log scale)."""
    age_days: np.ndarray
    """(N,) float32 days since publication."""
    scalars: np.ndarray
    """(N, NUM_CANDIDATE_SCALARS) float32 observable per-item statistics (see config)."""
    topic_items: np.ndarray
    """(N,) int32 item ids grouped by topic, each group sorted by popularity (descending)."""
    topic_start: np.ndarray
    """(T + 1,) int64 offsets of each topic's group in ``topic_items``."""
    popular_items: np.ndarray
    """(P_pop,) int32 the most popular items (the global popular pool)."""
    fresh_items: np.ndarray
    """(P_fresh,) int32 the newest items (the fresh pool)."""

    @property
    def num_items(self) -> int:
        return int(self.embedding.shape[0])

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits of a hash of what a policy and a user see of the items (embeddings,
        observable scalars, topics) and what drives users (quality, appeal, duration): two
        catalogs with one fingerprint are one world. A server and a traffic generator compare it."""
        digest = hashlib.sha256()
        arrays = (
            self.embedding,
            self.scalars,
            self.topic,
            self.quality,
            self.appeal,
            self.duration,
        )
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    @property
    def nbytes(self) -> int:
        return sum(
            getattr(self, name).nbytes
            for name in self.__dataclass_fields__
            if isinstance(getattr(self, name), np.ndarray)
        )

    @classmethod
    def generate(cls, config: SimConfig, rng: np.random.Generator) -> ItemCatalog:
        """Draw a catalog from ``config`` with its own generator (or calibrate it from the dataset
        that ``config.catalog`` names; the generator then draws only what the data lacks)."""
        if config.catalog != "synthetic":
            return cls._assemble(config, rng, *_calibrated(config, rng))
        n, d, t = config.num_items, config.embed_dim, config.num_topics
        centres = _unit_rows(rng.standard_normal((t, d))).astype(np.float32)
        # Balanced topics, shuffled: every topic has N // T or N // T + 1 items.
        topic = rng.permutation(np.arange(n) % t).astype(np.int32)
        emb = rng.standard_normal((n, d), dtype=np.float32)
        emb *= np.float32(config.topic_spread)
        emb += centres[topic]
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), np.float32(1e-12))

        clickbait = rng.random(n) < config.clickbait_fraction
        quality = rng.beta(4.0, 3.0, n)
        bait_q = np.clip(config.clickbait_quality + 0.08 * rng.standard_normal(n), 0.0, 1.0)
        quality = np.where(clickbait, bait_q, quality).astype(np.float32)
        appeal = config.appeal_std * rng.standard_normal(n)
        appeal = (appeal + np.where(clickbait, config.clickbait_appeal, 0.0)).astype(np.float32)
        duration, creator, advertiser = _drawn(config, rng, n)
        # Popularity follows appeal more than quality, as click counts do.
        log_pop = 0.8 * appeal + 0.6 * quality + rng.standard_normal(n)
        age_days = rng.exponential(60.0, n).astype(np.float32)
        return cls._assemble(
            config,
            rng,
            centres,
            emb,
            topic,
            quality,
            appeal,
            clickbait,
            duration,
            creator,
            advertiser,
            log_pop,
            age_days,
        )

    @classmethod
    def _assemble(
        cls,
        config: SimConfig,
        rng: np.random.Generator,
        centres: np.ndarray,
        emb: np.ndarray,
        topic: np.ndarray,
        quality: np.ndarray,
        appeal: np.ndarray,
        clickbait: np.ndarray,
        duration: np.ndarray,
        creator: np.ndarray,
        advertiser: np.ndarray,
        log_pop: np.ndarray,
        age_days: np.ndarray,
    ) -> ItemCatalog:
        """The observable statistics, the retrieval order and the pools of the given items."""
        n, t = len(topic), len(centres)
        log_pop = ((log_pop - log_pop.mean()) / max(log_pop.std(), 1e-6)).astype(np.float32)
        noise = config.observation_noise
        ctr_est = 1.0 / (1.0 + np.exp(-(appeal + noise * rng.standard_normal(n)) + 1.0))
        watch_est = np.clip(quality + noise * rng.standard_normal(n), 0.0, 1.0)
        scalars = np.stack(
            [
                log_pop,
                ctr_est,
                watch_est,
                duration / config.duration_mean - 1.0,
                np.exp(-age_days / 30.0),
                (advertiser >= 0).astype(np.float32),
            ],
            axis=1,
        ).astype(np.float32)
        np.clip(scalars, -SCALAR_LIMIT, SCALAR_LIMIT, out=scalars)

        order = np.lexsort((-log_pop, topic))
        topic_items = order.astype(np.int32)
        topic_start = np.zeros(t + 1, dtype=np.int64)
        topic_start[1:] = np.cumsum(np.bincount(topic, minlength=t))
        pool = max(config.pool_size, 1)
        n_pop = min(n, max(10 * pool, n // 100))
        popular_items = np.argsort(-log_pop, kind="stable")[:n_pop].astype(np.int32)
        fresh_items = np.argsort(age_days, kind="stable")[:n_pop].astype(np.int32)
        return cls(
            topic_centres=centres,
            embedding=emb,
            topic=topic,
            quality=quality,
            appeal=appeal,
            clickbait=clickbait,
            duration=duration,
            creator=creator,
            advertiser=advertiser,
            log_popularity=log_pop,
            age_days=age_days,
            scalars=scalars,
            topic_items=topic_items,
            topic_start=topic_start,
            popular_items=popular_items,
            fresh_items=fresh_items,
        )


def _drawn(
    config: SimConfig, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) durations, creators and advertisers (-1: organic), which no dataset here provides."""
    duration = (config.duration_mean * rng.lognormal(-0.18, 0.6, n)).astype(np.float32)
    creator = rng.integers(0, config.num_creators, n, dtype=np.int32)
    sponsored = rng.random(n) < config.sponsored_fraction
    adv = rng.integers(0, max(config.num_advertisers, 1), n, dtype=np.int32)
    return duration, creator, np.where(sponsored, adv, -1).astype(np.int32)


def _calibrated(config: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The items of ``config.catalog``'s dataset (rayrec.datasets.worlds), in ``_assemble``'s order.

    Embeddings, topics, popularity and age come from the data. Quality (the shrunk mean rating) is
    mapped by rank onto the synthetic world's Beta(4, 3) draws, so the watch and satisfaction
    equations see the range they were written for; appeal is ``appeal_std`` times how much more a
    movie is watched than its rating predicts, and the ``clickbait_fraction`` most over-watched for
    their quality get ``clickbait_appeal`` on top. Durations, creators and advertisers are drawn.
    """
    # Imported here, not at the top: it loads pandas (0.5 s), which a synthetic world never needs.
    from rayrec.datasets.worlds import load_world

    world = load_world(config.catalog, config.embed_dim, config.num_topics)
    n = config.num_items
    emb, topic, centres = world.embedding.copy(), world.topic.copy(), world.topic_centres.copy()
    rank = np.argsort(np.argsort(world.quality, kind="stable"), kind="stable")
    quality = np.sort(rng.beta(4.0, 3.0, n))[rank].astype(np.float32)
    appeal = config.appeal_std * world.overwatched
    bait_score = world.overwatched - (world.quality - world.quality.mean()) / world.quality.std()
    n_bait = round(config.clickbait_fraction * n)
    clickbait = np.zeros(n, dtype=bool)
    if n_bait:
        clickbait[np.argsort(-bait_score, kind="stable")[:n_bait]] = True
    appeal = (appeal + np.where(clickbait, config.clickbait_appeal, 0.0)).astype(np.float32)
    duration, creator, advertiser = _drawn(config, rng, n)
    return (
        centres,
        emb,
        topic,
        quality,
        appeal,
        clickbait,
        duration,
        creator,
        advertiser,
        world.log_count,
        world.age_days.copy(),
    )


def world_streams(config: SimConfig) -> tuple[np.random.Generator, np.random.Generator]:
    """The generators of the catalog and of the user population, from ``config.world_seed``."""
    catalog_seq, population_seq = np.random.SeedSequence(config.world_seed).spawn(2)
    return np.random.default_rng(catalog_seq), np.random.default_rng(population_seq)


def world_catalog(config: SimConfig) -> ItemCatalog:
    """The catalog of ``config``'s world: the same items the simulator of ``config`` has."""
    return ItemCatalog.generate(config, world_streams(config)[0])
