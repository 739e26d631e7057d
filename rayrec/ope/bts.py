"""Bernoulli Thompson Sampling as an evaluation policy, its action distribution by Monte Carlo.

For every impression Bernoulli TS draws theta_a ~ Beta(alpha_a, beta_a) for every item and shows
the items of the ``len_list`` largest draws, largest in slot 0 (OBP's ``BernoulliTS.select_action``
with ``is_zozotown_prior=True``: no online updates, the production priors only). The probability
of item a in slot j is estimated from ``n_sim`` seeded draws, as OBP's
``compute_batch_action_dist(n_sim=100000)``; it does not depend on the context.

Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bts_action_dist"]


def bts_action_dist(
    alpha: np.ndarray,
    beta: np.ndarray,
    len_list: int,
    n_sim: int = 100_000,
    seed: int = 0,
    chunk: int = 10_000,
) -> np.ndarray:
    """(A, len_list) frequency of item a in slot j over ``n_sim`` Thompson draws; columns sum to 1."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.shape != beta.shape or alpha.ndim != 1:
        raise ValueError(f"alpha {alpha.shape} and beta {beta.shape} must be equal 1-D shapes")
    if not np.all((alpha > 0) & (beta > 0)):
        raise ValueError("alpha and beta must be > 0")
    num_actions = len(alpha)
    if not 1 <= len_list <= num_actions:
        raise ValueError(f"len_list ({len_list}) must be in [1, {num_actions}] (the items)")
    if n_sim < 1:
        raise ValueError(f"n_sim ({n_sim}) must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB75]))
    counts = np.zeros(num_actions * len_list, dtype=np.int64)
    slots = np.arange(len_list)
    done = 0
    while done < n_sim:
        m = min(chunk, n_sim - done)
        theta = rng.beta(alpha, beta, size=(m, num_actions))
        top = np.argpartition(-theta, len_list - 1, axis=1)[:, :len_list]
        order = np.argsort(-np.take_along_axis(theta, top, 1), axis=1)
        ranked = np.take_along_axis(top, order, 1)
        counts += np.bincount((ranked * len_list + slots).ravel(), minlength=counts.size)
        done += m
    return counts.reshape(num_actions, len_list) / n_sim
