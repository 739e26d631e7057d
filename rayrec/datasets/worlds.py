"""Simulator worlds calibrated from real data: the arrays a catalog and a user population are built
from (docs/data.md, "A simulator calibrated from ML-100k").

For MovieLens-100k (``ml-100k``):

- **Items** are the 1,682 movies, item ``j`` is movie id ``j + 1`` (the next-item protocol's item
  index ``j + 1``). Their **embeddings** are matrix-factorisation factors of the user x item
  interaction matrix: right singular vectors 2..d+1 of ``D_u^-1/2 R D_i^-1/2`` (``R`` the 943 x
  1,682 0/1 matrix of who rated what, ``D`` the row and column counts), each row scaled to unit
  length. The first factor, on which every user loads, is popularity, which the simulator models
  apart; without it a user's taste has affinity 0.37 on average with the movies they rated and
  -0.05 with all movies.
- **Topics** (what the simulator's retrieval index probes) are ``T`` clusters of the embeddings
  (spherical k-means, seeded), as an IVF index over learned embeddings would have. **Genres** are
  kept apart for calibration: each movie's rarest genre (``Toy Story``: Animation rather than
  Comedy), 19 of them, so the big genres (Drama, Comedy) do not swallow the specific ones. (Genres
  as retrieval topics spread a user's candidates evenly over 19 genres of very different sizes:
  under a random policy Drama got 3.5% of simulated interactions against 13% of ratings.)
- **Popularity** is the log number of ratings; **quality** is the movie's mean rating shrunk toward
  the global mean (10 pseudo-ratings); **appeal** is how much more often a movie is rated than its
  quality predicts (the residual of log count on shrunk rating), and the ``share`` most over-watched
  for their quality are flagged as clickbait. **Age** is days from the release year to April 1998
  (the end of the data).
- **Users** start from real users: a new simulated user copies a uniformly drawn real user's taste
  (the unit mean embedding of everything they rated) and their activity (ratings relative to the
  median user), which scales their session budget.

Computed from the cached files in about a second and kept per process (``load_world``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rayrec.datasets.ml100k import load_ml100k
from rayrec.datasets.registry import data_root

__all__ = ["WORLDS", "RealWorld", "build_world", "load_world"]

# Ratings a movie's mean is shrunk with toward the global mean (a Bayesian average).
_PRIOR_RATINGS = 10.0
# The last rating of ML-100k is from April 1998.
_DATA_END_YEAR = 1998.3


WORLDS = ("ml-100k",)


@dataclass(frozen=True, eq=False)
class RealWorld:
    """Per-item and per-user arrays of a dataset (row ``j`` of an item array is item ``j``)."""

    genre_names: tuple[str, ...]
    """(G,) name of each genre id, the most common first."""
    genre: np.ndarray
    """(N,) int32 genre id (the rarest of the movie's genres) of each item."""
    embedding: np.ndarray
    """(N, d) float32 unit item factors."""
    topic: np.ndarray
    """(N,) int32 topic (embedding cluster) of each item."""
    topic_centres: np.ndarray
    """(T, d) float32 unit cluster centres."""
    log_count: np.ndarray
    """(N,) float64 log(1 + ratings of the item)."""
    quality: np.ndarray
    """(N,) float64 shrunk mean rating, 1..5."""
    overwatched: np.ndarray
    """(N,) float64 residual of log count on shrunk rating (z-scored): popularity beyond quality."""
    age_days: np.ndarray
    """(N,) float32 days from release to the end of the data."""
    user_interest: np.ndarray
    """(U, d) float32 unit mean item factor of each real user's ratings."""
    user_activity: np.ndarray
    """(U,) float64 ratings of each real user divided by the median user's."""
    user_counts: np.ndarray
    """(U,) int64 ratings of each real user."""
    item_counts: np.ndarray
    """(N,) int64 ratings of each item."""


def _rarest_genre(classes: list[list[str]]) -> tuple[np.ndarray, tuple[str, ...]]:
    counts: dict[str, int] = {}
    for genres in classes:
        for g in genres:
            counts[g] = counts.get(g, 0) + 1
    names = tuple(sorted(counts, key=lambda g: (-counts[g], g)))
    index = {g: i for i, g in enumerate(names)}
    topic = [min((index[g] for g in genres), key=lambda i: counts[names[i]]) for genres in classes]
    return np.asarray(topic, dtype=np.int32), names


def _spherical_kmeans(
    x: np.ndarray, k: int, seed: int = 0, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) cluster of each unit row of ``x`` and the (k, d) unit centres (k-means++ start, cosine
    assignment; an emptied cluster takes the row farthest from its centre)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):
        gap = np.maximum(1.0 - (x @ np.asarray(centres).T).max(axis=1), 0.0)
        centres.append(x[rng.choice(n, p=gap / gap.sum()) if gap.sum() > 0 else rng.integers(n)])
    c = np.asarray(centres)
    label = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        sim = x @ c.T
        label = sim.argmax(axis=1)
        for j in range(k):
            members = x[label == j]
            if len(members) == 0:
                far = int(sim[np.arange(n), label].argmin())
                label[far], members = j, x[far : far + 1]
            c[j] = members.sum(axis=0)
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return label, c


def load_world(name: str, embed_dim: int, num_topics: int) -> RealWorld:
    """The world ``name`` with ``embed_dim``-dimensional factors in ``num_topics`` clusters, from
    the dataset cache (``data_root()``); computed once per process and arguments. ``DatasetError``
    if its files are missing or corrupt; ``ValueError`` for an unknown name or sizes the data
    cannot give."""
    if name not in WORLDS:
        raise ValueError(f"world ({name!r}) must be one of {', '.join(WORLDS)}")
    return build_world(data_root(), name, embed_dim, num_topics)


@lru_cache(maxsize=4)
def build_world(root: Path, name: str, embed_dim: int, num_topics: int) -> RealWorld:
    """``load_world`` from the cache folder ``root`` (cached per arguments)."""
    data = load_ml100k(root)
    inter, item = data.inter, data.item.sort_values("item_id")
    n = len(item)
    if not np.array_equal(item["item_id"].to_numpy(), np.arange(1, n + 1)):
        raise ValueError(f"{name}: item ids are not 1..{n}")
    users = np.unique(inter["user_id"].to_numpy())
    if not 1 <= embed_dim < len(users):
        raise ValueError(f"embed_dim ({embed_dim}) must be in [1, {len(users) - 1}] for {name}")
    u_index = np.searchsorted(users, inter["user_id"].to_numpy())
    i_index = inter["item_id"].to_numpy() - 1
    r = np.zeros((len(users), n))
    r[u_index, i_index] = 1.0
    user_counts, item_counts = r.sum(axis=1), r.sum(axis=0)
    x = r / np.sqrt(user_counts)[:, None] / np.sqrt(np.maximum(item_counts, 1.0))[None, :]
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    # The first factor is how much everyone watches an item (every user loads on it): popularity,
    # which the simulator models apart (log popularity, appeal). Taste is the next embed_dim.
    emb = vt[1 : embed_dim + 1].T.copy()
    # A singular vector's sign is arbitrary: fix it so the factors do not depend on the LAPACK build.
    emb *= np.where(emb.sum(axis=0) < 0, -1.0, 1.0)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    if not 1 <= num_topics <= n:
        raise ValueError(f"num_topics ({num_topics}) must be in [1, {n}] for {name}")
    topic, centres = _spherical_kmeans(emb, num_topics)
    interest = (r @ emb) / user_counts[:, None]
    interest /= np.maximum(np.linalg.norm(interest, axis=1, keepdims=True), 1e-12)

    rating = inter["rating"].to_numpy(dtype=np.float64)
    sums = np.bincount(i_index, weights=rating, minlength=n)
    quality = (sums + _PRIOR_RATINGS * rating.mean()) / (item_counts + _PRIOR_RATINGS)
    log_count = np.log1p(item_counts)
    design = np.stack([np.ones(n), quality], axis=1)
    coef, *_ = np.linalg.lstsq(design, log_count, rcond=None)
    resid = log_count - design @ coef
    overwatched = (resid - resid.mean()) / max(resid.std(), 1e-12)
    classes = [str(c).split() if isinstance(c, str) else ["unknown"] for c in item["class"]]
    genre, names = _rarest_genre(classes)
    year = np.asarray(item["release_year"].map(_year), dtype=np.float64)
    year = np.where(np.isnan(year), np.nanmedian(year), year)
    age_days = np.maximum(_DATA_END_YEAR - year, 0.0) * 365.0
    return RealWorld(
        genre_names=names,
        genre=genre,
        embedding=emb.astype(np.float32),
        topic=topic.astype(np.int32),
        topic_centres=centres.astype(np.float32),
        log_count=log_count,
        quality=quality,
        overwatched=overwatched,
        age_days=age_days.astype(np.float32),
        user_interest=interest.astype(np.float32),
        user_activity=user_counts / np.median(user_counts),
        user_counts=user_counts.astype(np.int64),
        item_counts=item_counts.astype(np.int64),
    )


def _year(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
