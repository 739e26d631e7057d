"""Data-against-simulation statistics of the calibrated simulator (rayrec.nextitem.calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rayrec.evaluation.baselines import make_baseline
from rayrec.nextitem.calibration import (
    gini,
    interaction_stats,
    simulated_interactions,
    top_share,
)
from rayrec.nextitem.models import GRU4Rec
from rayrec.nextitem.protocol import build_sequences
from rayrec.sim import SimConfig

SMALL = SimConfig(num_items=200, num_topics=4, num_candidates=8, embed_dim=4, history_len=4)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [([3, 3, 3, 3], 0.0), ([0, 0, 0, 8], 0.75), ([1, 2, 3, 4], 0.25), ([0, 0], 0.0)],
)
def test_gini_on_hand_worked_counts(counts, expected) -> None:
    # [1, 2, 3, 4]: sum_i (2i - 5) x_i = -3 - 2 + 3 + 12 = 10, over n * sum = 40.
    assert gini(np.array(counts)) == pytest.approx(expected)


def test_top_share_and_bad_input() -> None:
    assert top_share(np.array([10, 0, 0, 0, 0, 0, 0, 0, 0, 10]), 0.1) == 0.5
    assert top_share(np.arange(1, 5), 0.5) == pytest.approx(7 / 10)
    with pytest.raises(ValueError, match="counts"):
        gini(np.array([1, -1]))
    with pytest.raises(ValueError, match="fraction"):
        top_share(np.ones(3), 0.0)


def test_simulated_interactions_are_each_users_clicks_in_order() -> None:
    inter = simulated_interactions(make_baseline("heuristic"), SMALL, 50, seed=0)
    assert list(inter.columns) == ["user_id", "item_id", "timestamp"]
    assert inter["user_id"].nunique() <= 50 and inter["user_id"].max() < 50
    assert inter["item_id"].between(1, SMALL.num_items).all()
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    again = simulated_interactions(make_baseline("heuristic"), SMALL, 50, seed=0)
    pd.testing.assert_frame_equal(inter, again)


def test_stats_count_items_users_and_genres() -> None:
    inter = pd.DataFrame(
        {"user_id": [1, 1, 1, 2], "item_id": [1, 2, 1, 3], "timestamp": [1, 2, 3, 1]}
    )
    genre = np.array([0, 1, 1, 0])  # item ids 1..4
    s = interaction_stats(inter, genre, ("a", "b"))
    assert s["interactions"] == 4 and s["users"] == 2
    assert s["genre_share"] == {"a": 0.5, "b": 0.5}  # items 1, 1 in a; 2, 3 in b
    assert s["items_never"] == 0.25
    assert s["gini"] == pytest.approx(gini(np.array([2, 1, 1, 0])))
    with pytest.raises(ValueError, match="item_id"):
        interaction_stats(inter.assign(item_id=9), genre, ("a", "b"))


def test_next_item_metrics_use_the_models_item_index() -> None:
    """Item ids missing from the simulated table keep their index (a model trained on the data
    scores all of them)."""
    inter = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2, 2], "item_id": [5, 7, 5, 7, 5, 7], "timestamp": [1, 2, 3] * 2}
    )
    data = build_sequences(inter, item_ids=np.arange(1, 11))
    assert data.num_items == 10
    assert data.test.target.tolist() == [5, 7]
    torch.manual_seed(0)
    model = GRU4Rec(10, data.max_len)
    s = interaction_stats(inter, np.zeros(10, dtype=np.int64), ("all",), model)
    assert s["next_item"]["examples"] == 2
    assert 0.0 <= s["next_item"]["hit@10"] <= 1.0
    with pytest.raises(ValueError, match="outside item_ids"):
        build_sequences(inter, item_ids=np.arange(1, 6))
