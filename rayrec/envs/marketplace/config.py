"""Typed configuration of the marketplace game (``rayrec/Marketplace-v0``).

Every field is a key of the ``config`` section of ``envs/marketplace.yaml``. The equations each
field enters are in ``docs/marketplace.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rayrec.contracts.fields import check_fields, check_ranges, ranged
from rayrec.sim.config import SimConfig

__all__ = [
    "AUCTIONS",
    "MULTI_AGENT_KEYS",
    "OBJECTIVES",
    "ROLES",
    "SCRIPTED_PLATFORMS",
    "MarketplaceConfig",
    "training_market_config",
    "validate_multi_agent",
]

ROLES = ("platform", "creator", "advertiser", "user")
"""Role names; an agent id is ``platform`` or ``ROLE_i`` (``creator_0``, ``advertiser_2``...)."""
AUCTIONS = ("gsp", "second_price")
OBJECTIVES = ("competitive", "cooperative", "mixed")
SCRIPTED_PLATFORMS = ("greedy", "balanced")
MULTI_AGENT_KEYS = ("shared_within_role", "centralized_critic")
"""Keys of a policy spec's ``multi_agent`` section (both booleans)."""


_f = ranged  # a short name for the many fields below


@dataclass(frozen=True)
class MarketplaceConfig:
    """Configuration of the marketplace game (one frozen value, validated on creation)."""

    # ---- world ---------------------------------------------------------------------------------
    world_seed: int = _f(0, 0, 2**63 - 1)
    """Seeds the background catalog, the user segments and the advertisers' ads and values."""
    num_users: int = _f(64, 1, 100_000)
    """B, users served per period (a leaving user is replaced by a new one)."""
    num_periods: int = _f(20, 1, 100_000)
    """T, periods per episode; the episode is truncated after T steps."""
    num_background_items: int = _f(120, 1, 100_000)
    """Organic items of non-agent creators, drawn by the session simulator's catalog generator."""
    embed_dim: int = _f(8, 2, 256)
    """d, the dimension of the topic space."""
    num_topics: int = _f(6, 1, 256)
    """Number of topics (creators choose one per production)."""
    num_segments: int = _f(4, 1, 1000)
    """User segments of the session simulator's population."""
    clickbait_fraction: float = _f(0.3, 0.0, 1.0)
    """Share of background items with high appeal and low quality."""
    clickbait_appeal: float = _f(1.5, 0.0, 10.0)
    """Mean appeal of clickbait items."""
    clickbait_quality: float = _f(0.15, 0.0, 1.0)
    """Mean quality of clickbait items."""
    appeal_std: float = _f(0.5, 0.0, 10.0)
    """Standard deviation of item appeal."""
    observation_noise: float = _f(0.1, 0.0, 10.0)
    """Noise of the platform's click and watch estimates of an item and of its user profiles."""

    # ---- slate and choice ----------------------------------------------------------------------
    slate_size: int = _f(5, 1, 100)
    """k, positions per slate (ads first, then organic items)."""
    no_click_utility: float = _f(2.0, -100.0, 100.0)
    """v_0, utility of not clicking (multinomial logit)."""
    affinity_weight: float = _f(4.0, 0.0, 100.0)
    """Weight of the user-item affinity <u, e> in the click utility."""
    appeal_weight: float = _f(1.0, 0.0, 100.0)
    """Weight of appeal in the click utility (times the user's appeal sensitivity)."""
    position_bias: float = _f(1.0, 0.0, 100.0)
    """Examination at position i is (1 + i) ** -position_bias."""
    watch_quality_weight: float = _f(5.0, 0.0, 100.0)
    """Weight of quality in the watch fraction's logit."""
    watch_affinity_weight: float = _f(2.0, 0.0, 100.0)
    """Weight of affinity in the watch fraction's logit."""
    watch_noise: float = _f(0.5, 0.0, 100.0)
    """Noise of the watch fraction's logit."""

    # ---- users ---------------------------------------------------------------------------------
    time_cost: float = _f(0.4, 0.0, 100.0)
    """c_time, a user's cost of the time a click takes (utility of a click is watch - c_time)."""
    miss_cost: float = _f(0.1, 0.0, 100.0)
    """c_miss, utility lost in a period without a click (a wasted visit)."""
    ad_annoyance: float = _f(0.1, 0.0, 100.0)
    """c_ad, utility lost per ad shown."""
    satisfaction_limit: float = _f(5.0, 0.0, 100.0, lo_open=True)
    """Satisfaction, the running sum of a user's utility, is clipped to [-limit, limit]."""
    leave_bias: float = _f(-3.0, -100.0, 100.0)
    """Logit of leaving after a period, at satisfaction 0."""
    leave_satisfaction_weight: float = _f(1.5, 0.0, 100.0)
    """How much satisfaction lowers the logit of leaving."""
    num_strategic_users: int = _f(4, 0, 100_000)
    """Users (the first slots) played by agents ``user_i`` when 'user' learns."""
    pickiness_levels: int = _f(4, 1, 100)
    """A strategic user's actions: a click threshold out of this many levels, or leave."""

    # ---- creators ------------------------------------------------------------------------------
    num_creators: int = _f(4, 1, 1000)
    """C, creator agents; each owns a ring of ``creator_slots`` catalog items."""
    creator_slots: int = _f(4, 1, 1000)
    """Items a creator keeps in the catalog; a new item replaces the creator's oldest."""
    effort_levels: int = _f(3, 2, 100)
    """Effort e in {0, ..., levels - 1}; e = 0 produces nothing."""
    effort_quality: float = _f(0.25, 0.0, 1.0)
    """Quality of a new item: clip(q_base + effort_quality * e + 0.05 z, 0, 1)."""
    base_quality: float = _f(0.25, 0.0, 1.0)
    """q_base, quality of a new item before effort."""
    production_cost: float = _f(0.3, 0.0, 1e4)
    """c_prod, cost per unit of effort of one new item."""
    creator_click_value: float = _f(0.3, 0.0, 1e4)
    """A creator's reward per click on one of its items."""
    min_exposure: float = _f(0.0, 0.0, 1.0)
    """Guarantee: each creator's best item is shown to at least ceil(min_exposure * B / C) users
    per period (in the last organic position); 0 turns the guarantee off."""

    # ---- advertisers and the auction -----------------------------------------------------------
    num_advertisers: int = _f(3, 0, 1000)
    """A, advertiser agents; each has one ad (an item) and a value per click."""
    value_min: float = _f(0.5, 0.0, 1e4)
    """Advertiser values per click are evenly spaced in [value_min, value_max]."""
    value_max: float = _f(1.5, 0.0, 1e4)
    """Largest advertiser value per click."""
    bid_levels: int = _f(5, 2, 1000)
    """An advertiser bids one of this many levels, evenly spaced in [0, max_bid]."""
    max_bid: float = _f(2.0, 0.0, 1e4, lo_open=True)
    """Largest bid per click."""
    auction: str = field(default="gsp")
    """'gsp' (generalised second price, one ad set per period) or 'second_price' (one ad slot)."""
    reserve_price: float = _f(0.2, 0.0, 1e4)
    """r, the lowest bid that may win and the lowest price per click."""
    ad_load_cap: int = _f(2, 0, 100)
    """Most ad positions the platform may open per slate (must be < slate_size)."""

    # ---- platform ------------------------------------------------------------------------------
    ranking_levels: int = _f(3, 2, 100)
    """The platform's weights on appeal and on quality estimates each take this many levels."""
    ranking_weight_max: float = _f(2.0, 0.0, 100.0)
    """Largest ranking weight (levels are evenly spaced in [0, max])."""
    engagement_value: float = _f(1.0, 0.0, 1e4)
    """The platform's reward per click (organic or ad)."""
    retention_cost: float = _f(3.0, 0.0, 1e4)
    """The platform's cost per user who leaves."""
    scripted_platform: str = field(default="greedy")
    """Platform when it does not learn: 'greedy' (appeal-first ranking, full ad load) or
    'balanced' (quality-first ranking, one ad)."""

    # ---- who learns and what they optimise -----------------------------------------------------
    learning_roles: tuple[str, ...] = ("platform",)
    """Roles played by agents; the env plays the others (scripted platform, creators and
    advertisers, simulator users)."""
    objective: str = field(default="competitive")
    """'competitive' (own reward), 'cooperative' (total welfare) or 'mixed' (see cooperation)."""
    cooperation: float = _f(0.5, 0.0, 1.0)
    """alpha of the 'mixed' objective: reward = (1 - alpha) own + alpha * welfare / n_agents."""
    welfare_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    """Weights of the platform's, creators', advertisers' and users' welfare in total welfare."""
    global_state: bool = False
    """Append the global state to every agent's observation (for a centralised critic)."""

    def __post_init__(self) -> None:
        check_ranges(self)
        for name, allowed in (
            ("auction", AUCTIONS),
            ("objective", OBJECTIVES),
            ("scripted_platform", SCRIPTED_PLATFORMS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} ({getattr(self, name)!r}) must be one of {', '.join(allowed)}"
                )
        roles = tuple(self.learning_roles)
        object.__setattr__(self, "learning_roles", roles)
        bad = [r for r in roles if r not in ROLES]
        if bad or len(set(roles)) != len(roles):
            raise ValueError(
                f"learning_roles ({list(roles)!r}) must be distinct names out of {', '.join(ROLES)}"
            )
        if not roles:
            raise ValueError("learning_roles must name at least one role")
        weights = tuple(float(w) for w in self.welfare_weights)
        object.__setattr__(self, "welfare_weights", weights)
        if len(weights) != len(ROLES) or not all(math.isfinite(w) for w in weights):
            raise ValueError(
                f"welfare_weights ({list(weights)!r}) must be {len(ROLES)} finite numbers "
                f"({', '.join(ROLES)})"
            )
        if self.ad_load_cap >= self.slate_size:
            raise ValueError(
                f"ad_load_cap ({self.ad_load_cap}) must be < slate_size ({self.slate_size})"
            )
        if self.value_min > self.value_max:
            raise ValueError(
                f"value_min ({self.value_min}) must be <= value_max ({self.value_max})"
            )
        if "advertiser" in roles and self.num_advertisers == 0:
            raise ValueError("learning_roles has 'advertiser' but num_advertisers is 0")
        if "user" in roles and self.num_strategic_users == 0:
            raise ValueError("learning_roles has 'user' but num_strategic_users is 0")
        if self.num_strategic_users > self.num_users:
            raise ValueError(
                f"num_strategic_users ({self.num_strategic_users}) must be <= "
                f"num_users ({self.num_users})"
            )
        if self.slate_size > self.num_background_items:
            raise ValueError(
                f"slate_size ({self.slate_size}) must be <= num_background_items "
                f"({self.num_background_items})"
            )

    # ---- derived values ------------------------------------------------------------------------
    @property
    def strategic_users(self) -> int:
        """Users played by agents: ``num_strategic_users`` when 'user' learns, else 0."""
        return self.num_strategic_users if "user" in self.learning_roles else 0

    def sim_config(self) -> SimConfig:
        """The session-simulator configuration whose catalog and population this game uses."""
        return SimConfig(
            world_seed=self.world_seed,
            num_items=self.num_background_items,
            embed_dim=self.embed_dim,
            num_topics=min(self.num_topics, self.num_background_items),
            num_segments=self.num_segments,
            clickbait_fraction=self.clickbait_fraction,
            clickbait_appeal=self.clickbait_appeal,
            clickbait_quality=self.clickbait_quality,
            appeal_std=self.appeal_std,
            observation_noise=self.observation_noise,
            num_creators=1,
            num_advertisers=0,
            sponsored_fraction=0.0,
            num_candidates=self.slate_size,
            slate_size=self.slate_size,
            no_click_utility=self.no_click_utility,
            affinity_weight=self.affinity_weight,
            appeal_weight=self.appeal_weight,
            position_bias=self.position_bias,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MarketplaceConfig:
        """Build from a mapping, naming any unknown key and listing the known ones."""
        check_fields(cls, values, "marketplace")
        values = dict(values)
        for key in ("learning_roles", "welfare_weights"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for saving a resolved spec); tuples become lists."""
        out = dataclasses.asdict(self)
        out["learning_roles"] = list(self.learning_roles)
        out["welfare_weights"] = list(self.welfare_weights)
        return out


def validate_multi_agent(section: Any, algorithm: str, source: str = "policy spec") -> dict:
    """The ``multi_agent`` section with defaults, or a ValueError naming the key."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ValueError(f"{source}: 'multi_agent' must be a mapping")
    out = {"shared_within_role": True, "centralized_critic": False}
    for key, value in section.items():
        if key not in MULTI_AGENT_KEYS:
            raise ValueError(
                f"{source}: unknown key multi_agent.{key}; known: {', '.join(MULTI_AGENT_KEYS)}"
            )
        if not isinstance(value, bool):
            raise ValueError(f"{source}: multi_agent.{key} must be true or false, got {value!r}")
        out[key] = value
    if out["centralized_critic"] and algorithm != "PPO":
        raise ValueError(f"{source}: multi_agent.centralized_critic is for PPO, not {algorithm}")
    return out


def training_market_config(
    config: MarketplaceConfig, multi_agent: dict[str, Any]
) -> MarketplaceConfig:
    """The game agents train and are evaluated on: ``config``, with the global state in the
    observations when the policy spec's ``multi_agent`` asks for a centralized critic."""
    if multi_agent.get("centralized_critic") and not config.global_state:
        values = config.to_dict()
        values["global_state"] = True
        return MarketplaceConfig.from_dict(values)
    return config
