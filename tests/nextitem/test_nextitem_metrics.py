"""HR/NDCG/MRR@k against hand-computed values on tiny rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rayrec.nextitem.metrics import metrics_from_ranks, ranks_from_scores
from rayrec.nextitem.names import metric_keys


def test_ranks_count_higher_scores_and_earlier_ties() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.3],  # target 2: only item 1 is higher -> rank 1
            [0.1, 0.9, 0.5, 0.3],  # target 1: best -> rank 0
            [0.1, 0.9, 0.5, 0.3],  # target 0: worst -> rank 3
            [1.0, 1.0, 1.0, 0.0],  # target 2: ties with items 0 and 1 before it -> rank 2
            [1.0, 1.0, 1.0, 0.0],  # target 0: ties, but lowest index -> rank 0
        ]
    )
    target = torch.tensor([2, 1, 0, 2, 0])
    assert ranks_from_scores(scores, target).tolist() == [1, 0, 3, 2, 0]


def test_metrics_match_hand_computed_values() -> None:
    # ranks 0, 1, 9 are in the top 10; 10 and 19 in the top 20 only; 25 in neither.
    m = metrics_from_ranks(np.array([0, 1, 9, 10, 19, 25]))
    assert list(m) == metric_keys()
    assert m["hit@10"] == pytest.approx(3 / 6)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 6)
    assert m["ndcg@10"] == pytest.approx((1 + 0.6309298 + 0.2890648) / 6)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 6)
    assert m["hit@20"] == pytest.approx(5 / 6)
    assert m["ndcg@20"] == pytest.approx((1 + 0.6309298 + 0.2890648 + 0.2789429 + 0.2276702) / 6)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 20) / 6)


def test_perfect_and_hopeless_rankings() -> None:
    assert set(metrics_from_ranks(np.zeros(4)).values()) == {1.0}
    assert set(metrics_from_ranks(np.full(4, 20)).values()) == {0.0}


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        metrics_from_ranks(np.zeros(0))
    with pytest.raises(ValueError, match=r"must be \(B, N\)"):
        ranks_from_scores(torch.zeros(3), torch.zeros(3, dtype=torch.long))
