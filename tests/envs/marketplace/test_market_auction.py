"""Auction prices and allocations against hand-computed cases (docs/marketplace.md, "Auction")."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.envs.marketplace.auction import run_auction


@pytest.mark.parametrize(
    ("bids", "slots", "reserve", "kind", "weights", "winners", "prices"),
    [
        # GSP, 2 slots: ranked 2.0, 1.0, 0.5; slot 1 pays the 2nd bid, slot 2 the 3rd.
        ([1.0, 2.0, 0.5, 0.1], 2, 0.2, "gsp", None, [1, 0], [1.0, 0.5]),
        # GSP, 3 slots: the last winner pays the reserve (the 0.1 bid is below it, not a bidder).
        ([1.0, 2.0, 0.5, 0.1], 3, 0.2, "gsp", None, [1, 0, 2], [1.0, 0.5, 0.2]),
        # More slots than eligible bidders: only the eligible ones win.
        ([1.0, 2.0, 0.5, 0.1], 5, 0.2, "gsp", None, [1, 0, 2], [1.0, 0.5, 0.2]),
        # The next bid is below the reserve's price: the price is the reserve.
        ([1.0, 0.3], 1, 0.5, "gsp", None, [0], [0.5]),
        # Second price sells one slot whatever is offered; the winner pays the second bid.
        ([1.0, 2.0, 0.5], 3, 0.2, "second_price", None, [1], [1.0]),
        # A lone bidder pays the reserve.
        ([1.0], 1, 0.3, "second_price", None, [0], [0.3]),
        # Ties go to the lower index, who pays the tied bid.
        ([1.0, 1.0], 1, 0.2, "gsp", None, [0], [1.0]),
        # Quality-weighted GSP: scores 0.5*2=1.0, 1*1.5=1.5, 2*0.4=0.8.
        # Slot 1 (bidder 1) pays 1.0/1 = 1.0; slot 2 (bidder 0) pays 0.8/0.5 = 1.6.
        ([2.0, 1.5, 0.4], 2, 0.1, "gsp", [0.5, 1.0, 2.0], [1, 0], [1.0, 1.6]),
        # No slot offered, or nobody above the reserve: nothing sold.
        ([1.0, 2.0], 0, 0.2, "gsp", None, [], []),
        ([0.1, 0.15], 2, 0.2, "gsp", None, [], []),
        # A zero bid never wins, even with a zero reserve.
        ([0.0, 0.7], 2, 0.0, "gsp", None, [1], [0.0]),
    ],
)
def test_hand_computed_cases(bids, slots, reserve, kind, weights, winners, prices):
    result = run_auction(np.array(bids), slots, reserve, kind, weights)
    np.testing.assert_array_equal(result.winners, winners)
    np.testing.assert_allclose(result.prices, prices)


@pytest.mark.parametrize("kind", ["gsp", "second_price"])
def test_prices_between_reserve_and_bid(kind):
    rng = np.random.default_rng(0)
    for _ in range(200):
        bids = rng.uniform(0, 2, rng.integers(1, 8))
        reserve = float(rng.uniform(0, 1))
        r = run_auction(bids, int(rng.integers(0, 5)), reserve, kind)
        assert (r.prices >= reserve - 1e-12).all()
        assert (r.prices <= bids[r.winners] + 1e-12).all()
        # Winners are in descending bid order and prices never increase down the slots.
        assert (np.diff(bids[r.winners]) <= 0).all()
        assert (np.diff(r.prices) <= 1e-12).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bids": [-1.0], "num_slots": 1, "reserve": 0.0}, "bids"),
        ({"bids": [1.0], "num_slots": -1, "reserve": 0.0}, "num_slots"),
        ({"bids": [1.0], "num_slots": 1, "reserve": -0.1}, "reserve"),
        ({"bids": [1.0], "num_slots": 1, "reserve": 0.0, "kind": "vcg"}, "kind"),
        ({"bids": [1.0], "num_slots": 1, "reserve": 0.0, "weights": [0.0]}, "weights"),
    ],
)
def test_invalid_inputs_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_auction(**kwargs)
