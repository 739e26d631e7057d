"""The two levels' observations, built from a session observation: the one builder that
``HierarchicalSessionEnv`` and the Serve app (for a two-level checkpoint) both call.

The high level sees the history and context (no candidates), the share of the lifetime's shown
items per topic, the click rate per topic and which options it may start; the low level sees the
whole session observation plus the active option (one-hot) and the share of its step budget left.
"""

from __future__ import annotations

import numpy as np

from rayrec.contracts.observation import HierObs, Obs

__all__ = ["HIGH_KEYS", "high_observation", "history_topic_counts", "low_observation"]

HIGH_KEYS = (
    Obs.HISTORY_ITEMS,
    Obs.HISTORY_FEATURES,
    Obs.HISTORY_RESPONSES,
    Obs.HISTORY_MASK,
    Obs.CONTEXT,
)
"""The session observation's keys that the high level sees."""


def high_observation(
    session: dict[str, np.ndarray],
    topic_shown: np.ndarray,
    topic_clicks: np.ndarray,
    initiation: np.ndarray,
) -> dict[str, np.ndarray]:
    """One user's high-level observation.

    Args:
        session: the user's session observation (unbatched).
        topic_shown: (T,) items shown per topic so far; topic_clicks: (T,) clicks per topic.
        initiation: (K,) bool, the options that may start now.
    """
    obs = {key: session[key] for key in HIGH_KEYS}
    total = max(float(topic_shown.sum()), 1.0)
    obs[HierObs.TOPIC_SHOWN] = (topic_shown / total).astype(np.float32)
    rate = np.divide(
        topic_clicks,
        topic_shown,
        out=np.zeros(topic_clicks.shape, dtype=np.float64),
        where=topic_shown > 0,
    )
    obs[HierObs.TOPIC_CLICK_RATE] = np.clip(rate, 0.0, 1.0).astype(np.float32)
    obs[Obs.ACTION_MASK] = initiation.astype(np.int8)
    return obs


def low_observation(
    session: dict[str, np.ndarray],
    num_options: int,
    option: int | None,
    option_steps: int,
    option_budget: int,
) -> dict[str, np.ndarray]:
    """One user's low-level observation under ``option`` (None: no option active), after
    ``option_steps`` of its ``option_budget`` steps."""
    obs = dict(session)
    onehot = np.zeros(num_options, dtype=np.float32)
    remaining = 0.0
    if option is not None:
        onehot[option] = 1.0
        remaining = 1.0 - option_steps / option_budget
    obs[HierObs.OPTION] = onehot
    obs[HierObs.OPTION_REMAINING] = np.array([max(remaining, 0.0)], dtype=np.float32)
    return obs


def history_topic_counts(
    history_items: np.ndarray, history_responses: np.ndarray, item_topic: np.ndarray, topics: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shown and clicked items per topic in one user's history window, and the history's topics
    and clicks: what a server knows of a user's lifetime is the history the request brings.

    Returns:
        (T,) shown counts, (T,) click counts, (H,) topic per entry (-1 padding), (H,) clicked.
    """
    known = history_items >= 0
    history_topics = np.where(known, item_topic.take(np.maximum(history_items, 0)), -1)
    clicked = (history_responses[:, 0] > 0) & known
    shown = np.bincount(history_topics[known], minlength=topics).astype(np.float64)
    clicks = np.bincount(history_topics[clicked], minlength=topics).astype(np.float64)
    return shown, clicks, history_topics.astype(np.int64), clicked
