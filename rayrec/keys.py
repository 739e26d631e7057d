"""Names of metrics and logged columns, in one place (like RLlib's ``Columns``)."""

from __future__ import annotations

__all__ = ["Metrics"]


class Metrics:
    """Keys of an evaluation's metrics dict (``results.json`` and the comparison tables)."""

    USERS = "users"
    RETURN_MEAN = "return_mean"
    RETURN_CI95 = "return_ci95"
    CLICKS_MEAN = "clicks_mean"
    CLICKS_CI95 = "clicks_ci95"
    CLICK_RATE = "click_rate"
    STEPS_MEAN = "steps_mean"
    SESSION_LENGTH_MEAN = "session_length_mean"
    SESSIONS_PER_USER = "sessions_per_user"
    SESSIONS_CI95 = "sessions_ci95"
    RETURN_RATE = "return_rate"
    WATCH_MEAN = "watch_mean"
    CLICKBAIT_SHARE = "clickbait_share"
    DIVERSITY_SLATE = "diversity_slate"
    DIVERSITY_TEMPORAL = "diversity_temporal"
    TOPICS_PER_USER = "topics_per_user"
    COVERAGE = "coverage"

    REQUIRED = (
        RETURN_MEAN,
        RETURN_CI95,
        CLICKS_MEAN,
        SESSION_LENGTH_MEAN,
        SESSIONS_PER_USER,
        COVERAGE,
    )
    """Keys every metrics dict carries (the contract of results.json)."""
