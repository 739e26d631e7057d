"""Names of metrics and logged columns, in one place (like RLlib's ``Columns``)."""

from __future__ import annotations

__all__ = ["MarketMetrics", "Metrics", "TrialMetrics"]


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


class MarketMetrics:
    """Keys of a marketplace metrics dict (results.json and the learning test)."""

    WELFARE_PLATFORM = "welfare_platform"
    WELFARE_CREATORS = "welfare_creators"
    WELFARE_ADVERTISERS = "welfare_advertisers"
    WELFARE_USERS = "welfare_users"
    WELFARE_TOTAL = "welfare_total"
    EXPOSURE_GINI = "creator_exposure_gini"
    AD_LOAD = "ad_load"
    RETENTION = "user_retention"
    REVENUE = "revenue"
    CLICKS = "clicks"

    ROLE_KEYS = (WELFARE_PLATFORM, WELFARE_CREATORS, WELFARE_ADVERTISERS, WELFARE_USERS)
    """Welfare keys in the order of config.ROLES (and of ``welfare_weights``)."""


class TrialMetrics:
    """Keys a ``rayrec tune`` trial reports every iteration; any of them can be a sweep's metric.

    ``eval/KEY`` is :class:`Metrics` ``KEY`` of the trial's module evaluated in the simulator
    (:class:`MarketMetrics` ``KEY`` for marketplace trials).
    """

    EVAL_PREFIX = "eval/"
    EVAL_RETURN = EVAL_PREFIX + Metrics.RETURN_MEAN
    """The default metric: long-term return per user lifetime in the simulator."""
    TRAIN_RETURN = "train/episode_return_mean"
    TRAIN_EPISODE_LEN = "train/episode_len_mean"
    ENV_STEPS = "train/env_steps"
    ITERATION = "training_iteration"
    """Tune's count of reports: one per training iteration (the schedulers' time axis)."""

    @classmethod
    def names(cls, market: bool | None = None) -> tuple[str, ...]:
        """Every metric a sweep may optimise: of session trials (``market=False``), of
        marketplace trials (``True``) or of either (None)."""
        groups = {False: (Metrics,), True: (MarketMetrics,), None: (Metrics, MarketMetrics)}
        evaluation = [
            cls.EVAL_PREFIX + value
            for keys in groups[market]
            for name, value in vars(keys).items()
            if name.isupper() and isinstance(value, str) and value != Metrics.USERS
        ]
        return (*evaluation, cls.TRAIN_RETURN, cls.TRAIN_EPISODE_LEN)
