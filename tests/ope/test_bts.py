"""Bernoulli Thompson Sampling's Monte Carlo action distribution."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.ope.bts import bts_action_dist


def test_two_items_match_the_closed_form():
    # theta_0 ~ Beta(1, 1), theta_1 ~ Beta(2, 1): P(theta_1 > theta_0) = int_0^1 2x * x dx = 2/3.
    dist = bts_action_dist(np.array([1.0, 2.0]), np.array([1.0, 1.0]), len_list=1, seed=0)
    assert dist[1, 0] == pytest.approx(2 / 3, abs=0.005)
    assert dist[:, 0].sum() == pytest.approx(1.0)


def test_slots_are_ranked_by_the_draws_and_seeded():
    alpha = np.array([1000.0, 1.0, 1.0, 500.0])
    beta = np.array([1.0, 1000.0, 1000.0, 500.0])  # item 0 near 1, item 3 near 0.5
    dist = bts_action_dist(alpha, beta, len_list=2, n_sim=2000, seed=3)
    assert dist[0, 0] == 1.0 and dist[3, 1] == 1.0
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    again = bts_action_dist(alpha, beta, len_list=2, n_sim=2000, seed=3)
    assert np.array_equal(dist, again)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"len_list": 5}, r"len_list \(5\) must be in \[1, 4\]"),
        ({"len_list": 1, "n_sim": 0}, "n_sim"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bts_action_dist(np.ones(4), np.ones(4), **kwargs)
