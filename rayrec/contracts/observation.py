"""Observation layouts: the keys (and per-user shapes) of the dicts that envs build, models read
and the Serve app builds from requests. The builder is :func:`rayrec.envs.observation.observe`."""

from __future__ import annotations

__all__ = ["HIGH", "LEVELS", "LOW", "HierObs", "Obs"]


class Obs:
    """Keys of the observation dict (shapes per user)."""

    HISTORY_ITEMS = "history_items"
    """(H,) int64 item ids, oldest first, -1 = padding."""
    HISTORY_FEATURES = "history_features"
    """(H, d) float32 embeddings of those items, zeros for padding."""
    HISTORY_RESPONSES = "history_responses"
    """(H, 4) float32 click, watch fraction, like, skip."""
    HISTORY_MASK = "history_mask"
    """(H,) float32, 1 where the history entry exists."""
    CANDIDATE_ITEMS = "candidate_items"
    """(M,) int64 item ids."""
    CANDIDATE_FEATURES = "candidate_features"
    """(M, d) float32 item embeddings."""
    CANDIDATE_SCALARS = "candidate_scalars"
    """(M, 6) float32 log-popularity, CTR estimate, watch estimate, duration, freshness, sponsored."""
    CONTEXT = "context"
    """(5,) float32 session index, step in session, sin/cos hour of day, log gap."""
    ACTION_MASK = "action_mask"
    """(M,) int8, 1 where the candidate may be chosen."""


HIGH = "high"
"""Agent id of the high level (picks options)."""
LOW = "low"
"""Agent id of the low level (picks items under the active option)."""

LEVELS = (HIGH, LOW)
"""The two levels of a hierarchical agent, high first."""


class HierObs:
    """Keys the hierarchical env adds to the session observation (shapes per user)."""

    OPTION = "option"
    """(K,) float32 one-hot of the active option (low level)."""
    OPTION_REMAINING = "option_remaining"
    """(1,) float32 remaining step budget of the active option / option_budget (low level)."""
    TOPIC_SHOWN = "topic_shown"
    """(T,) float32 share of the lifetime's shown items per topic (high level)."""
    TOPIC_CLICK_RATE = "topic_click_rate"
    """(T,) float32 clicks / shows per topic over the lifetime, 0 where never shown (high)."""
