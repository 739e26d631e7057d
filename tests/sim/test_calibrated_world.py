"""The simulator's world calibrated from ML-100k (catalog: ml-100k): items and users from the data."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.datasets.worlds import load_world
from rayrec.sim import SessionSimulator, SimConfig
from rayrec.sim.catalog import world_catalog

ML = {"catalog": "ml-100k", "num_items": 1682, "num_topics": 19, "popular_fraction": 0.0}


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(**ML)


@pytest.fixture(scope="module")
def world(config):
    return load_world("ml-100k", config.embed_dim, config.num_topics)


def test_items_carry_the_datas_embeddings_topics_and_popularity(config, world) -> None:
    catalog = world_catalog(config)
    assert np.array_equal(catalog.embedding, world.embedding)
    assert np.array_equal(catalog.topic, world.topic)
    # Observed popularity orders items as their rating counts do.
    order = np.argsort(-catalog.log_popularity, kind="stable")
    assert (np.diff(world.item_counts[order]) <= 0).all()
    # Quality keeps the order of the shrunk mean rating.
    assert np.array_equal(
        np.argsort(catalog.quality, kind="stable"), np.argsort(world.quality, kind="stable")
    )
    assert catalog.clickbait.sum() == round(config.clickbait_fraction * config.num_items)
    # Clickbait is over-watched for its quality: more appeal, less quality than the rest.
    bait, rest = catalog.clickbait, ~catalog.clickbait
    assert catalog.appeal[bait].mean() > catalog.appeal[rest].mean() + 1.0
    assert catalog.quality[bait].mean() < catalog.quality[rest].mean()


def test_same_world_seed_same_catalog(config) -> None:
    assert world_catalog(config).fingerprint == world_catalog(config).fingerprint
    other = SimConfig(**{**ML, "world_seed": 1})
    # The data's items stay; what the data lacks (durations, quality draws) is redrawn.
    assert np.array_equal(world_catalog(other).embedding, world_catalog(config).embedding)
    assert world_catalog(other).fingerprint != world_catalog(config).fingerprint


def test_new_users_copy_a_real_users_taste_and_activity(config, world) -> None:
    sim = SessionSimulator(config, 500, seed=0)
    sim.reset()
    # A copied taste plus the simulator's N(0, 0.15) noise per dimension (norm ~0.6 in 16-d).
    closest = (sim.interest @ world.user_interest.T).max(axis=1)
    rng = np.random.default_rng(0)
    unrelated = rng.standard_normal((500, config.embed_dim))
    unrelated /= np.linalg.norm(unrelated, axis=1, keepdims=True)
    chance = (unrelated @ world.user_interest.T).max(axis=1)
    assert closest.mean() > 0.8 and closest.mean() > chance.mean() + 0.2, (closest, chance)
    # Budgets follow the copied user's activity: with activity ignored they spread less.
    flat = SessionSimulator(SimConfig(**{**ML, "activity_exponent": 0.0}), 500, seed=0)
    flat.reset()
    assert np.log(sim.base_budget).std() > 1.5 * np.log(flat.base_budget).std()


def test_synthetic_worlds_do_not_change() -> None:
    """The refactor that added calibrated catalogs keeps synthetic catalogs bit for bit."""
    assert world_catalog(SimConfig()).fingerprint == "5b27bf186dafc7cb"
