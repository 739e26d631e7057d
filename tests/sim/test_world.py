"""The world: catalog generation, the user population, and candidate retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.sim import CandidateRetriever, ItemCatalog, SimConfig, UserPopulation

CONFIG = SimConfig(num_items=3000, num_topics=12, embed_dim=8, clickbait_fraction=0.2)


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.generate(CONFIG, np.random.default_rng(0))


def test_embeddings_are_unit_vectors_near_their_topic_centre(catalog: ItemCatalog) -> None:
    np.testing.assert_allclose(np.linalg.norm(catalog.embedding, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(catalog.topic_centres, axis=1), 1.0, rtol=1e-5)
    own = np.einsum("nd,nd->n", catalog.embedding, catalog.topic_centres[catalog.topic])
    nearest = (catalog.embedding @ catalog.topic_centres.T).argmax(axis=1)
    # Centre plus N(0, spread^2 I_d) noise: cosine to the centre about 1 / sqrt(1 + spread^2 d).
    assert own.mean() == pytest.approx(1 / np.sqrt(1 + 0.35**2 * CONFIG.embed_dim), abs=0.03)
    assert np.mean(nearest == catalog.topic) > 0.5


def test_topics_are_balanced(catalog: ItemCatalog) -> None:
    counts = np.bincount(catalog.topic, minlength=CONFIG.num_topics)
    assert set(counts) == {CONFIG.num_items // CONFIG.num_topics}


def test_clickbait_has_high_appeal_and_low_quality(catalog: ItemCatalog) -> None:
    bait = catalog.clickbait
    assert abs(bait.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / CONFIG.num_items)
    assert catalog.appeal[bait].mean() - catalog.appeal[~bait].mean() == pytest.approx(1.5, abs=0.1)
    assert catalog.quality[bait].mean() == pytest.approx(0.15, abs=0.02)
    assert catalog.quality[~bait].mean() == pytest.approx(4 / 7, abs=0.02)
    assert ((catalog.quality >= 0) & (catalog.quality <= 1)).all()


def test_index_groups_items_by_topic_most_popular_first(catalog: ItemCatalog) -> None:
    for_topic = np.split(catalog.topic_items, catalog.topic_start[1:-1])
    assert [set(catalog.topic[items]) for items in for_topic] == [
        {t} for t in range(CONFIG.num_topics)
    ]
    assert all(np.all(np.diff(catalog.log_popularity[items]) <= 0) for items in for_topic)
    assert np.all(np.diff(catalog.log_popularity[catalog.popular_items]) <= 0)
    assert np.all(np.diff(catalog.age_days[catalog.fresh_items]) >= 0)


def test_new_users_are_valid(catalog: ItemCatalog) -> None:
    population = UserPopulation.generate(CONFIG, np.random.default_rng(1))
    users = population.sample(500, CONFIG, catalog.topic_centres, np.random.default_rng(2))
    np.testing.assert_allclose(np.linalg.norm(users.interest, axis=1), 1.0, rtol=1e-5)
    assert ((users.segment >= 0) & (users.segment < CONFIG.num_segments)).all()
    assert (users.base_budget > 0).all()
    assert (users.appeal_sensitivity > 0).all()


def test_retrieved_pools_mark_repeats_and_recent_items_invalid(catalog: ItemCatalog) -> None:
    retriever = CandidateRetriever(CONFIG, catalog)
    rng = np.random.default_rng(3)
    interest = catalog.topic_centres[rng.integers(0, CONFIG.num_topics, 200)]
    history = np.full((200, 4), -1)
    history[:, 0] = catalog.topic_items[catalog.topic_start[:-1]][rng.integers(0, 12, 200)]
    pool, valid = retriever.retrieve(interest, history, rng)
    assert pool.shape == valid.shape == (200, CONFIG.pool_size)
    assert ((pool >= 0) & (pool < CONFIG.num_items)).all()
    np.testing.assert_array_equal(valid, _first_unseen(pool, history))
    assert not valid.all()


def _first_unseen(pool: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Reference: a slot is valid when its item is neither in the history nor earlier in the row."""
    out = np.zeros(pool.shape, dtype=bool)
    for r, (row, past) in enumerate(zip(pool.tolist(), history.tolist(), strict=True)):
        seen = set(past)
        for c, item in enumerate(row):
            out[r, c] = item not in seen
            seen.add(item)
    return out


def test_personal_retrieval_probes_the_users_best_topic(catalog: ItemCatalog) -> None:
    config = SimConfig(
        **{
            **CONFIG.to_dict(),
            "personal_fraction": 1.0,
            "popular_fraction": 0.0,
            "retrieval_probe": 1,
            "retrieval_noise": 0.0,
        }
    )
    retriever = CandidateRetriever(config, catalog)
    rng = np.random.default_rng(4)
    interest = rng.standard_normal((100, CONFIG.embed_dim)).astype(np.float32)
    interest /= np.linalg.norm(interest, axis=1, keepdims=True)
    pool, _ = retriever.retrieve(interest, np.full((100, 1), -1), rng)
    best = (interest @ catalog.topic_centres.T).argmax(axis=1)
    np.testing.assert_array_equal(catalog.topic[pool], np.repeat(best[:, None], pool.shape[1], 1))
