"""Typed configuration of the session simulator.

Every field is a keyword argument of ``gymnasium.make("rayrec/Session-v0", ...)`` and a key of the
``config`` section of ``envs/*.yaml``. The equations each field enters are in ``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rayrec.contracts.fields import check_fields, check_ranges, ranged

__all__ = [
    "CATALOGS",
    "CHOICE_MODELS",
    "NUM_CANDIDATE_SCALARS",
    "NUM_CONTEXT",
    "NUM_RESPONSES",
    "SCALAR_LIMIT",
    "SimConfig",
]

CHOICE_MODELS = ("mnl", "cascade")
# Where items and users come from: drawn ("synthetic"), or calibrated from a public dataset
# (rayrec.datasets.worlds, docs/data.md) with as many items as the data has.
CATALOGS: dict[str, int | None] = {"synthetic": None, "ml-100k": 1682}
# Columns of the per-candidate scalar block: log-popularity (z-scored), estimated click-through rate,
# estimated watch fraction (a noisy quality proxy), duration (relative), freshness, sponsored flag.
NUM_CANDIDATE_SCALARS = 6
# Responses recorded per history entry: click, watch fraction, like, skip.
NUM_RESPONSES = 4
# Context: session index, step in session, sin and cos of the hour of day, log of the gap in days.
NUM_CONTEXT = 5

# Observed scalars and context values are clipped to [-SCALAR_LIMIT, SCALAR_LIMIT].
SCALAR_LIMIT = 10.0


_f = ranged  # a short name for the many fields below


@dataclass(frozen=True)
class SimConfig:
    """Configuration of the batched session simulator (one frozen value, validated on creation)."""

    # ---- world ---------------------------------------------------------------------------------
    world_seed: int = _f(0, 0, 2**63 - 1)
    """Seeds the catalog and the user segments. It is part of the environment, not of a run: every
    env runner, evaluator and server built from one spec sees the same items."""

    # ---- catalog -------------------------------------------------------------------------------
    catalog: str = field(default="synthetic")
    """'synthetic' (items drawn from the fields below), or a dataset the items, their embeddings,
    popularity, quality and topics and the users' tastes and activity are calibrated from:
    'ml-100k' (needs num_items 1682; set up with ``make data``). Topics are then clusters of the
    data's item embeddings."""
    num_items: int = _f(5000, 1, 50_000_000)
    """N, the number of items in the catalog."""
    embed_dim: int = _f(16, 2, 1024)
    """d, the dimension of the topic space that item embeddings and user interests live in."""
    num_topics: int = _f(10, 1, 10_000)
    """Number of topics (item clusters). Retrieval indexes the catalog by topic."""
    topic_spread: float = _f(0.35, 0.0, 10.0)
    """Standard deviation of an item's embedding around its topic centre (before normalising)."""
    clickbait_fraction: float = _f(0.1, 0.0, 1.0)
    """Fraction of items with high appeal and low quality."""
    clickbait_appeal: float = _f(1.5, 0.0, 10.0)
    """Mean appeal of clickbait items (regular items have mean appeal 0)."""
    clickbait_quality: float = _f(0.15, 0.0, 1.0)
    """Mean quality of clickbait items (regular items: Beta(4, 3), mean 0.57)."""
    appeal_std: float = _f(0.5, 0.0, 10.0)
    """Standard deviation of item appeal."""
    num_creators: int = _f(200, 1, 10_000_000)
    """Number of creators; each item has one."""
    num_advertisers: int = _f(10, 0, 1_000_000)
    """Number of advertisers; sponsored items carry one (ads are used by the marketplace game)."""
    sponsored_fraction: float = _f(0.05, 0.0, 1.0)
    """Fraction of items that are sponsored (needs num_advertisers > 0 when positive)."""
    duration_mean: float = _f(2.0, 0.0, 1e4, lo_open=True)
    """Mean item duration in minutes (log-normal)."""

    # ---- users ---------------------------------------------------------------------------------
    num_segments: int = _f(4, 1, 1000)
    """Number of user segments (topic tastes, appeal sensitivity, budget and loyalty differ)."""
    interest_concentration: float = _f(0.3, 0.0, 100.0, lo_open=True)
    """Dirichlet concentration of a user's topic mixture (small: few favourite topics)."""
    session_budget: float = _f(20.0, 0.0, 1e5, lo_open=True)
    """Mean time budget of a session in minutes."""
    satisfaction_init: float = _f(0.0, -10.0, 10.0)
    """Mean satisfaction of a new user."""
    activity_exponent: float = _f(0.5, 0.0, 10.0)
    """Calibrated catalogs only: a new user's session budget is scaled by (the ratings of the real
    user they copy / the median user's) ** activity_exponent; 0 ignores real activity."""

    # ---- retrieval -----------------------------------------------------------------------------
    num_candidates: int = _f(20, 1, 100_000)
    """M, candidates exposed to the policy per user and step."""
    slate_size: int = _f(1, 1, 1000)
    """k, items shown per step (k = 1 is a feed)."""
    pool_factor: float = _f(2.0, 1.0, 100.0)
    """Each user's retrieved pool holds ceil(pool_factor * M) items; every step shows a window of M."""
    personal_fraction: float = _f(0.7, 0.0, 1.0)
    """Share of the pool retrieved from the user's topics (the rest: popular, then fresh)."""
    popular_fraction: float = _f(0.2, 0.0, 1.0)
    """Share of the pool drawn from the global popular pool."""
    refresh_every: int = _f(10, 1, 1_000_000)
    """A user's pool is re-retrieved every this many steps and at every session start."""
    retrieval_temperature: float = _f(0.3, 0.0, 100.0, lo_open=True)
    """Softmax temperature over noisy user-topic scores when choosing the topics to retrieve from."""
    retrieval_probe: int = _f(8, 1, 100_000)
    """Topics probed per retrieval (IVF's nprobe): the best-scoring few for the user."""
    retrieval_noise: float = _f(0.3, 0.0, 100.0)
    """Noise on the retriever's view of the user's interest (retrieval is imperfect)."""
    observation_noise: float = _f(0.1, 0.0, 100.0)
    """Noise on the observed per-item statistics (click-through and watch estimates)."""
    history_len: int = _f(10, 1, 10_000)
    """H, the number of past interactions in the observation."""

    # ---- choice model --------------------------------------------------------------------------
    choice_model: str = field(default="mnl")
    """How a user picks from the slate: 'mnl' (multinomial logit) or 'cascade'."""
    no_click_utility: float = _f(2.0, -100.0, 100.0)
    """Utility of the no-click option."""
    affinity_weight: float = _f(4.0, 0.0, 100.0)
    """Weight of the user-item affinity <u, e> in the click utility."""
    appeal_weight: float = _f(1.0, 0.0, 100.0)
    """Weight of item appeal in the click utility (scaled per segment)."""
    fatigue_weight: float = _f(1.0, 0.0, 100.0)
    """Weight of topic fatigue in the click utility."""
    position_bias: float = _f(1.0, 0.0, 100.0)
    """Examination at slate position i is (1 + i) ** -position_bias."""

    recall_lag: int = _f(0, 0, 10_000)
    """When > 0, users want the topic of the item recorded this many steps ago (a sequential
    taste only a policy with memory of the order of its history can serve); 0 turns it off."""
    recall_bonus: float = _f(0.0, 0.0, 100.0)
    """Click-utility bonus of items on the recalled topic (with ``recall_lag`` > 0)."""

    # ---- responses and reward ------------------------------------------------------------------
    watch_quality_weight: float = _f(5.0, 0.0, 100.0)
    """Weight of quality in the watch fraction."""
    watch_affinity_weight: float = _f(2.0, 0.0, 100.0)
    """Weight of affinity in the watch fraction."""
    watch_noise: float = _f(0.5, 0.0, 100.0)
    """Noise of the watch fraction's logit."""
    skip_threshold: float = _f(0.2, 0.0, 1.0)
    """A click watched below this fraction counts as a skip."""
    reward_click: float = _f(1.0, -1e6, 1e6)
    """Reward weight of a click."""
    reward_watch: float = _f(0.0, -1e6, 1e6)
    """Reward weight of the watch fraction."""
    reward_like: float = _f(0.0, -1e6, 1e6)
    """Reward weight of a like."""
    reward_skip: float = _f(0.0, -1e6, 1e6)
    """Reward weight of a skip (use a negative value to penalise)."""

    # ---- dynamics ------------------------------------------------------------------------------
    step_minutes: float = _f(0.25, 0.0, 1e4, lo_open=True)
    """Time a user spends looking at a slate, in minutes."""
    satisfaction_quality_weight: float = _f(0.5, 0.0, 100.0)
    """Satisfaction change per click: weight * (watch - quality_reference)."""
    quality_reference: float = _f(0.5, 0.0, 1.0)
    """The watch fraction at which a click leaves satisfaction unchanged."""
    miss_penalty: float = _f(0.15, 0.0, 100.0)
    """Satisfaction lost when the user clicks nothing."""
    leave_bias: float = _f(-4.0, -100.0, 100.0)
    """Logit of leaving the session at a step, at satisfaction 0."""
    leave_satisfaction_weight: float = _f(1.5, 0.0, 100.0)
    """How much satisfaction lowers the logit of leaving."""
    return_bias: float = _f(0.3, -100.0, 100.0)
    """Logit of coming back for another session, at satisfaction 0."""
    return_satisfaction_weight: float = _f(2.0, 0.0, 100.0)
    """How much satisfaction raises the logit of coming back."""
    gap_mean_days: float = _f(2.0, 0.0, 1e4, lo_open=True)
    """Mean gap between sessions in days, at satisfaction 0 (shorter when satisfied)."""
    drift_rate: float = _f(0.05, 0.0, 1.0)
    """Interest drift toward a consumed item's embedding per click."""
    fatigue_gain: float = _f(0.3, 0.0, 100.0)
    """Fatigue added to a topic when one of its items is clicked."""
    fatigue_show_gain: float = _f(0.05, 0.0, 100.0)
    """Fatigue added to a topic when one of its items is shown."""
    fatigue_decay: float = _f(0.1, 0.0, 1.0)
    """Fraction of fatigue that wears off each step."""
    fatigue_recovery_days: float = _f(1.0, 0.0, 1e4, lo_open=True)
    """Between sessions fatigue decays by exp(-gap / fatigue_recovery_days)."""
    max_steps_per_session: int = _f(50, 1, 1_000_000)
    """A session ends after at most this many steps."""
    max_sessions: int = _f(5, 1, 1_000_000)
    """A lifetime (one episode) has at most this many sessions; reaching it truncates the episode."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.choice_model not in CHOICE_MODELS:
            raise ValueError(
                f"choice_model ({self.choice_model!r}) must be one of {', '.join(CHOICE_MODELS)}"
            )
        if self.catalog not in CATALOGS:
            raise ValueError(f"catalog ({self.catalog!r}) must be one of {', '.join(CATALOGS)}")
        items = CATALOGS[self.catalog]
        if items is not None and self.num_items != items:
            raise ValueError(
                f"num_items ({self.num_items}) must be {items}: the items of catalog "
                f"{self.catalog!r}"
            )
        if self.num_candidates > self.num_items:
            raise ValueError(
                f"num_candidates ({self.num_candidates}) must be <= num_items ({self.num_items})"
            )
        if self.slate_size > self.num_candidates:
            raise ValueError(
                f"slate_size ({self.slate_size}) must be <= num_candidates ({self.num_candidates})"
            )
        if self.num_topics > self.num_items:
            raise ValueError(
                f"num_topics ({self.num_topics}) must be <= num_items ({self.num_items})"
            )
        if self.personal_fraction + self.popular_fraction > 1.0 + 1e-9:
            raise ValueError(
                f"personal_fraction + popular_fraction ({self.personal_fraction} + "
                f"{self.popular_fraction}) must be <= 1"
            )
        if self.recall_lag > self.history_len:
            raise ValueError(
                f"recall_lag ({self.recall_lag}) must be <= history_len ({self.history_len})"
            )
        if self.sponsored_fraction > 0 and self.num_advertisers == 0:
            raise ValueError("sponsored_fraction > 0 needs num_advertisers >= 1")

    # ---- derived values ------------------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        """Items in each user's retrieved pool."""
        return math.ceil(self.pool_factor * self.num_candidates)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimConfig:
        """Build from a mapping, naming any unknown key and listing the known ones."""
        check_fields(cls, values, "simulator")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for saving a resolved spec)."""
        return dataclasses.asdict(self)
