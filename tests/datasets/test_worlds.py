"""The ML-100k world the calibrated simulator is built from (rayrec.datasets.worlds)."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.datasets import data_root, load_ml100k
from rayrec.datasets.worlds import build_world, load_world
from rayrec.sim.config import CATALOGS


@pytest.fixture(scope="module")
def world():
    return load_world("ml-100k", 16, 19)


def test_items_users_and_genres_are_the_data(world) -> None:
    n = CATALOGS["ml-100k"]
    assert world.embedding.shape == (n, 16)
    assert np.allclose(np.linalg.norm(world.embedding, axis=1), 1.0, atol=1e-5)
    assert world.user_interest.shape == (943, 16)
    assert np.allclose(np.linalg.norm(world.user_interest, axis=1), 1.0, atol=1e-5)
    assert world.item_counts.sum() == world.user_counts.sum() == 100_000
    assert np.median(world.user_activity) == 1.0
    assert len(world.genre_names) == 19 and world.genre_names[0] == "Drama"
    # Toy Story (movie id 1) is Animation, Children's and Comedy: its rarest genre is Animation.
    assert world.genre_names[world.genre[0]] == "Animation"
    inter = load_ml100k().inter
    counts = inter.groupby("item_id").size()
    assert world.item_counts[counts.index.to_numpy() - 1].tolist() == counts.tolist()


def test_topics_are_clusters_of_the_embeddings(world) -> None:
    assert sorted(np.unique(world.topic)) == list(range(19))
    assert np.allclose(np.linalg.norm(world.topic_centres, axis=1), 1.0, atol=1e-5)
    # Every item sits in the cluster whose centre is nearest (k-means converged).
    nearest = (world.embedding @ world.topic_centres.T).argmax(axis=1)
    assert (nearest == world.topic).mean() > 0.99


def test_a_users_taste_is_closer_to_what_they_rated_than_to_the_catalog(world) -> None:
    inter = load_ml100k().inter
    user = inter["user_id"].to_numpy() - 1
    item = inter["item_id"].to_numpy() - 1
    own = np.einsum("nd,nd->n", world.user_interest[user], world.embedding[item]).mean()
    every = (world.user_interest @ world.embedding.T).mean()
    assert own > every + 0.3, (own, every)


def test_same_arguments_same_world() -> None:
    a = build_world.__wrapped__(data_root(), "ml-100k", 8, 5)
    b = build_world.__wrapped__(data_root(), "ml-100k", 8, 5)
    for name in ("embedding", "topic", "topic_centres", "user_interest", "overwatched"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ml-1m", 16, 19), "world .* must be one of ml-100k"),
        (("ml-100k", 943, 19), r"embed_dim \(943\) must be in \[1, 942\]"),
        (("ml-100k", 16, 0), r"num_topics \(0\) must be in \[1, 1682\]"),
    ],
)
def test_bad_sizes_are_named(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_world(*args)
