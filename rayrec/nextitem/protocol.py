"""RecBole 1.2.1's sequential evaluation protocol, rebuilt without RecBole (docs/data.md).

Every rating is an interaction. Each user's interactions are ordered by time exactly as RecBole
orders them: RecBole min-max normalises the float ``timestamp`` field of ML-100k
(``normalize_all: True`` in its ``ml-100k.yaml``), stores it as float32 and sorts stably by
(user, normalised time), so equal (and float32-equal) times keep the file's order. Every prefix
becomes an example: the history is the previous items (at most ``MAX_ITEM_LIST_LENGTH``), the target
is the next item. Per user the last example is the test example, the one before the validation
example, the rest are training examples (RecBole's ``{'LS': 'valid_and_test'}``; a user with only
two examples gives one training and one test example, a user with one gives a training example).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MAX_ITEM_LIST_LENGTH",
    "PAD",
    "NextItemData",
    "Split",
    "TrainingWindows",
    "build_sequences",
    "training_windows",
]

MAX_ITEM_LIST_LENGTH = 50
"""RecBole's ``MAX_ITEM_LIST_LENGTH`` (ml-100k.yaml): histories keep the last 50 items."""
PAD = 0
"""Item index of padding; real items are 1..num_items."""


@dataclass(frozen=True)
class Split:
    """Next-item examples: predict ``target`` from ``history``."""

    history: np.ndarray
    """(N, L) int64 item indices, right-aligned (oldest first, ``PAD`` at the start)."""
    target: np.ndarray
    """(N,) int64 item index of the next item, in 1..num_items."""
    user: np.ndarray
    """(N,) int64 raw user id."""

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class NextItemData:
    """The three splits of one dataset and its item index."""

    train: Split
    valid: Split
    test: Split
    item_ids: np.ndarray
    """(num_items,) raw item id of item index 1..num_items (position i holds index i + 1)."""
    train_sequences: tuple[np.ndarray, ...]
    """Per user, the items up to the last training target (the targets of ``train`` and the
    items before them), oldest first; the same examples as ``train``, one array per user."""

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def max_len(self) -> int:
        return self.train.history.shape[1]


def _recbole_time_key(timestamp: pd.Series) -> np.ndarray:
    """RecBole's sort key: min-max normalised in float64, then stored as float32."""
    t = timestamp.to_numpy(dtype=np.float64)
    lo, hi = t.min(), t.max()
    scaled = np.ones_like(t) if hi == lo else (t - lo) / (hi - lo)
    return scaled.astype(np.float32)


def build_sequences(
    inter: pd.DataFrame, max_len: int = MAX_ITEM_LIST_LENGTH, item_ids: np.ndarray | None = None
) -> NextItemData:
    """Split ``inter`` (user_id, item_id, timestamp; in file order) into leave-one-out examples.

    Items are indexed by ``item_ids`` (sorted raw ids, index ``i + 1`` for ``item_ids[i]``; default:
    the ids in ``inter``): pass a model's index to score other interactions with it.
    """
    if max_len < 1:
        raise ValueError(f"max_len ({max_len}) must be >= 1")
    for column in ("user_id", "item_id", "timestamp"):
        if column not in inter.columns:
            raise ValueError(f"inter has no column {column!r}; columns: {list(inter.columns)}")
    if item_ids is None:
        item_ids = np.sort(inter["item_id"].unique())
    elif not np.isin(inter["item_id"].to_numpy(), item_ids).all():
        raise ValueError("inter has item ids outside item_ids")
    frame = pd.DataFrame(
        {
            "user": inter["user_id"].to_numpy(),
            "item": np.searchsorted(item_ids, inter["item_id"].to_numpy()) + 1,
            "time": _recbole_time_key(inter["timestamp"]),
            "row": np.arange(len(inter)),
        }
    )
    frame = frame.sort_values(["user", "time", "row"], kind="stable")
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        "train": [],
        "valid": [],
        "test": [],
    }
    sequences: list[np.ndarray] = []
    for user, items in frame.groupby("user", sort=True)["item"]:
        seq = items.to_numpy(dtype=np.int64)
        padded = np.concatenate([np.full(max_len, PAD, dtype=np.int64), seq])
        # Window p is padded[p : p + max_len] = the (at most max_len) items before seq[p].
        windows = np.lib.stride_tricks.sliding_window_view(padded, max_len)[1 : len(seq)]
        targets = seq[1:]
        n = len(targets)
        held_out = min(2, n - 1)  # RecBole's legal_leave_one_num
        cut = n - held_out
        users = np.full(n, user, dtype=np.int64)
        parts["train"].append((windows[:cut], targets[:cut], users[:cut]))
        sequences.append(seq[: cut + 1])
        if held_out == 2:
            parts["valid"].append((windows[cut : cut + 1], targets[cut : cut + 1], users[:1]))
        if held_out >= 1:
            parts["test"].append((windows[n - 1 :], targets[n - 1 :], users[:1]))

    def stack(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Split:
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return Split(np.zeros((0, max_len), dtype=np.int64), empty, empty)
        history, target, user = (np.concatenate(column) for column in zip(*rows, strict=True))
        return Split(np.ascontiguousarray(history), target, user)

    return NextItemData(
        train=stack(parts["train"]),
        valid=stack(parts["valid"]),
        test=stack(parts["test"]),
        item_ids=item_ids,
        train_sequences=tuple(sequences),
    )


@dataclass(frozen=True)
class TrainingWindows:
    """Training sequences cut into left-aligned windows, for training on every position at once."""

    inputs: np.ndarray
    """(W, L) item indices, left-aligned (``PAD`` at the end)."""
    targets: np.ndarray
    """(W, L) the item after each input (``PAD`` where there is none)."""
    loss_mask: np.ndarray
    """(W, L) bool: the positions whose target this window trains on (each target exactly once)."""

    def __len__(self) -> int:
        return len(self.inputs)


def training_windows(
    sequences: tuple[np.ndarray, ...], length: int = MAX_ITEM_LIST_LENGTH, stride: int = 10
) -> TrainingWindows:
    """Windows of ``length`` inputs every ``stride`` items of each sequence.

    A window trains on the targets that no earlier window trained on, so every training target is
    predicted once per epoch, from at least ``length - stride`` previous items (or all of them when
    fewer exist) and at most ``length``: close to the protocol's histories of up to 50 items,
    at a ``length / stride`` fraction of the cost of one pass per prefix.
    """
    if not 1 <= stride <= length:
        raise ValueError(f"stride ({stride}) must be in [1, length ({length})]")
    inputs, targets, masks = [], [], []
    position = np.arange(length)
    for seq in sequences:
        m = len(seq)
        if m < 2:
            continue
        offset = 0
        while True:
            chunk = seq[offset : offset + length + 1]
            x = np.full(length, PAD, dtype=np.int64)
            y = np.full(length, PAD, dtype=np.int64)
            x[: len(chunk) - 1] = chunk[:-1]
            y[: len(chunk) - 1] = chunk[1:]
            fresh = position >= (0 if offset == 0 else length - stride)
            inputs.append(x)
            targets.append(y)
            masks.append(fresh & (y != PAD))
            if offset + length >= m - 1:
                break
            offset += stride
    return TrainingWindows(np.stack(inputs), np.stack(targets), np.stack(masks))
