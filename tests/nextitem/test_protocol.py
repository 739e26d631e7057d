"""RecBole's leave-one-out protocol: ordering, truncation, split sizes, training windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rayrec.datasets import data_root, load_ml100k
from rayrec.nextitem.protocol import PAD, build_sequences, training_windows


@pytest.fixture(scope="module")
def ml100k():
    if not (data_root() / "ml-100k" / "ml-100k.inter").is_file():
        pytest.fail(f"ML-100k is not fetched into {data_root()}; run: make data")
    return build_sequences(load_ml100k().inter)


def _frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_split_sizes_on_ml100k(ml100k) -> None:
    # 100,000 interactions, 943 users: 99,057 prefixes; one validation and one test per user.
    assert (len(ml100k.train), len(ml100k.valid), len(ml100k.test)) == (97_171, 943, 943)
    assert ml100k.num_items == 1682 and ml100k.max_len == 50
    assert sorted(ml100k.valid.user) == sorted(ml100k.test.user) == list(range(1, 944))
    lengths = (ml100k.test.history != PAD).sum(axis=1)
    assert lengths.max() == 50 and lengths.min() >= 18  # every ML-100k user has >= 20 ratings


def test_order_ties_and_truncation_by_hand() -> None:
    # User 7 in file order: (a, t=5), (b, t=3), (c, t=3), (d, t=9), (e, t=9), (f, t=10).
    # Stable time order keeps b before c and d before e: b c a d e f.
    inter = _frame([(7, 10, 5), (7, 20, 3), (7, 30, 3), (7, 40, 9), (7, 50, 9), (7, 60, 10)])
    data = build_sequences(inter, max_len=2)
    a, b, c, d, e, f = (
        int(np.searchsorted(data.item_ids, i)) + 1 for i in (10, 20, 30, 40, 50, 60)
    )
    assert data.train.target.tolist() == [c, a, d]
    assert data.train.history.tolist() == [[PAD, b], [b, c], [c, a]]
    assert data.valid.history.tolist() == [[a, d]] and data.valid.target.tolist() == [e]
    assert data.test.history.tolist() == [[d, e]] and data.test.target.tolist() == [f]
    assert [s.tolist() for s in data.train_sequences] == [[b, c, a, d]]


def test_short_users_follow_recbole_leave_one_out() -> None:
    # Two prefixes: one training, one test (no validation); one prefix: training only.
    inter = _frame([(1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 1, 1), (2, 2, 2)])
    data = build_sequences(inter)
    assert data.train.user.tolist() == [1, 2] and data.test.user.tolist() == [1]
    assert len(data.valid) == 0


def test_float32_time_ties_keep_file_order() -> None:
    # RecBole min-max scales time and stores float32: 1e9 and 1e9 - 1 become equal, so the file
    # order (item 5 before item 6) decides, although item 6 is one second earlier.
    inter = _frame([(1, 9, 0), (1, 5, 1_000_000_000), (1, 6, 999_999_999), (1, 7, 1_000_000_001)])
    data = build_sequences(inter)
    assert [data.item_ids[s - 1].tolist() for s in data.train_sequences] == [[9, 5]]
    assert data.item_ids[data.valid.target - 1].tolist() == [6]


@pytest.mark.parametrize("stride", [10, 50])
def test_windows_predict_every_training_target_once(ml100k, stride: int) -> None:
    w = training_windows(ml100k.train_sequences, 50, stride)
    assert np.array_equal(np.sort(w.targets[w.loss_mask]), np.sort(ml100k.train.target))
    # Each trained position sees at least 50 - stride previous items, or all that exist.
    seen = np.broadcast_to(np.arange(50) + 1, w.inputs.shape)[w.loss_mask]
    full = np.concatenate([np.arange(1, len(s)) for s in ml100k.train_sequences])
    assert (
        seen.min() >= 1
        and (seen >= 50 - stride).sum() == (np.minimum(full, 50) >= 50 - stride).sum()
    )


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"max_len \(0\) must be >= 1"):
        build_sequences(_frame([(1, 1, 1)]), max_len=0)
    with pytest.raises(ValueError, match="no column 'timestamp'"):
        build_sequences(pd.DataFrame({"user_id": [1], "item_id": [1]}))
    with pytest.raises(ValueError, match=r"stride \(60\) must be in \[1, length \(50\)\]"):
        training_windows((np.arange(1, 5),), 50, 60)
