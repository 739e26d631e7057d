"""The marketplace game: platform, creators, advertisers and users on the simulator's world.

Pure numpy, no Ray: :class:`MarketplaceGame` advances every party by one period per ``step``. The
background catalog and the user population come from :mod:`rayrec.sim` (``ItemCatalog`` and
``UserPopulation`` of :meth:`MarketplaceConfig.sim_config`), users choose with the simulator's
multinomial-logit choice model. The catalog is small (background items plus C x L creator slots),
so every user scores every item; there is no retrieval stage. Equations: docs/marketplace.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rayrec.envs.marketplace.auction import AuctionResult, run_auction
from rayrec.envs.marketplace.config import MarketplaceConfig
from rayrec.sim.catalog import ItemCatalog, world_streams
from rayrec.sim.choice import make_choice_model, sample_choice, sigmoid
from rayrec.sim.users import UserPopulation

__all__ = ["MarketplaceGame", "PeriodOutcome"]

_TOPIC_SPREAD = 0.35


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class PeriodOutcome:
    """Everything one period produced; the reward of each party and its parts."""

    platform_reward: float
    """engagement_value * clicks + ad revenue - retention_cost * leavers."""
    creator_reward: np.ndarray
    """(C,) creator_click_value * clicks on own items - production cost."""
    advertiser_reward: np.ndarray
    """(A,) (value - price) * clicks on own ad."""
    user_utility: np.ndarray
    """(B,) utility of each user slot this period."""
    clicks: int
    """Clicks of all users (organic and ads)."""
    ad_clicks: np.ndarray
    """(A,) clicks on each advertiser's ad."""
    spend: np.ndarray
    """(A,) what each advertiser paid (= the platform's revenue from it)."""
    revenue: float
    """Ad revenue of the platform: spend summed."""
    production_cost: np.ndarray
    """(C,) cost of what each creator produced this period."""
    creator_clicks: np.ndarray
    """(C,) clicks on each creator's items."""
    creator_exposure: np.ndarray
    """(C,) impressions of each creator's items."""
    leavers: int
    """Users who left (each replaced by a new user)."""
    ads_shown: int
    """Ad positions filled (the same ads for every user this period)."""
    auction: AuctionResult
    """Winners and prices per click."""


class MarketplaceGame:
    """All parties of the marketplace, one ``step`` per period.

    Args:
        config: the game configuration.
        seed: seeds users, choices and production noise (``SeedSequence.spawn``); the world
            (background catalog, segments, ads and values) comes from ``config.world_seed``.
    """

    def __init__(self, config: MarketplaceConfig, seed: int | None = None) -> None:
        self.config = config
        self._build_world()
        self.reset(seed)

    # ---- world ---------------------------------------------------------------------------------
    def _build_world(self) -> None:
        cfg = self.config
        sim_cfg = cfg.sim_config()
        catalog_rng, population_rng = world_streams(sim_cfg)
        background = ItemCatalog.generate(sim_cfg, catalog_rng)
        self.population = UserPopulation.generate(sim_cfg, population_rng)
        self.sim_config = sim_cfg
        self.topic_centres = background.topic_centres
        # The simulator's world streams are children 0 and 1 of the world seed; the market's
        # own world (ads, values) is child 2.
        market_rng = np.random.default_rng(np.random.SeedSequence(cfg.world_seed).spawn(3)[2])
        nb, c, s = cfg.num_background_items, cfg.num_creators, cfg.creator_slots
        n = nb + c * s
        self.num_items = n
        self._bg = background
        self.creator_of = np.full(n, -1, dtype=np.int64)
        self.creator_of[nb:] = np.repeat(np.arange(c), s)
        a = cfg.num_advertisers
        self.ad_topic = market_rng.integers(0, self.topic_centres.shape[0], a)
        self.ad_embedding = _unit_rows(
            self.topic_centres[self.ad_topic]
            + _TOPIC_SPREAD * market_rng.standard_normal((a, cfg.embed_dim))
        ).astype(np.float32)
        self.ad_appeal = (0.5 + cfg.appeal_std * market_rng.standard_normal(a)).astype(np.float32)
        self.ad_quality = np.clip(0.45 + 0.1 * market_rng.standard_normal(a), 0, 1).astype(
            np.float32
        )
        self.ad_value = np.linspace(cfg.value_min, cfg.value_max, a)
        self.bid_grid = np.linspace(0.0, cfg.max_bid, cfg.bid_levels)
        self.weight_grid = np.linspace(0.0, cfg.ranking_weight_max, cfg.ranking_levels)
        self.choice = make_choice_model(
            "mnl", cfg.no_click_utility, cfg.slate_size, cfg.position_bias
        )
        self.creator_home_topic = np.arange(c) % self.topic_centres.shape[0]

    # ---- lifecycle -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start an episode: fresh users, creators back to one item each, statistics cleared."""
        cfg = self.config
        users, steps, production = np.random.SeedSequence(seed).spawn(3)
        self._user_rng = np.random.default_rng(users)
        self._rng = np.random.default_rng(steps)
        self._production_rng = np.random.default_rng(production)
        bg, nb, n = self._bg, cfg.num_background_items, self.num_items
        d = cfg.embed_dim
        self.embedding = np.zeros((n, d), dtype=np.float32)
        self.topic = np.zeros(n, dtype=np.int64)
        self.quality = np.zeros(n, dtype=np.float32)
        self.appeal = np.zeros(n, dtype=np.float32)
        self.ctr_estimate = np.zeros(n, dtype=np.float32)
        self.watch_estimate = np.zeros(n, dtype=np.float32)
        self.alive = np.zeros(n, dtype=bool)
        self.embedding[:nb] = bg.embedding
        self.topic[:nb] = bg.topic
        self.quality[:nb] = bg.quality
        self.appeal[:nb] = bg.appeal
        self.ctr_estimate[:nb] = bg.scalars[:, 1]
        self.watch_estimate[:nb] = bg.scalars[:, 2]
        self.alive[:nb] = True
        c = cfg.num_creators
        self._ring = np.zeros(c, dtype=np.int64)
        # Every creator starts with one effort-1 item on its home topic.
        self.produce(np.stack([self.creator_home_topic, np.ones(c, dtype=np.int64)], axis=1))
        b = cfg.num_users
        self.interest = np.zeros((b, d), dtype=np.float32)
        self.profile = np.zeros((b, d), dtype=np.float32)
        self.appeal_sensitivity = np.zeros(b, dtype=np.float32)
        self.satisfaction = np.zeros(b, dtype=np.float32)
        self._new_users(np.arange(b))
        self.period = 0
        self.last: PeriodOutcome | None = None
        self.last_platform_action = np.zeros(3, dtype=np.int64)
        self.last_creator_action = np.stack(
            [self.creator_home_topic, np.ones(c, dtype=np.int64)], axis=1
        )
        self.last_bids = np.zeros(cfg.num_advertisers)
        self.last_user_clicked = np.zeros(b, dtype=bool)
        self.last_user_watch = np.zeros(b, dtype=np.float32)
        self.last_user_left = np.zeros(b, dtype=bool)
        self.topic_demand = np.full(self.topic_centres.shape[0], 1.0 / self.topic_centres.shape[0])

    def _new_users(self, idx: np.ndarray) -> None:
        if idx.size == 0:
            return
        cfg = self.config
        new = self.population.sample(idx.size, self.sim_config, self.topic_centres, self._user_rng)
        self.interest[idx] = new.interest
        self.appeal_sensitivity[idx] = new.appeal_sensitivity
        self.satisfaction[idx] = new.satisfaction
        noise = self._user_rng.standard_normal((idx.size, cfg.embed_dim), dtype=np.float32)
        self.profile[idx] = _unit_rows(new.interest + cfg.observation_noise * noise)

    def produce(self, actions: np.ndarray) -> np.ndarray:
        """Creators' production: (C, 2) [topic, effort] -> (C,) cost. Effort 0 makes nothing."""
        cfg, rng = self.config, self._production_rng
        actions = np.asarray(actions, dtype=np.int64).reshape(cfg.num_creators, 2)
        topic = np.clip(actions[:, 0], 0, self.topic_centres.shape[0] - 1)
        effort = np.clip(actions[:, 1], 0, cfg.effort_levels - 1)
        # One draw per creator whether it produces or not, so streams do not depend on actions.
        z = rng.standard_normal((cfg.num_creators, cfg.embed_dim + 4)).astype(np.float32)
        for c in np.flatnonzero(effort > 0):
            j = cfg.num_background_items + c * cfg.creator_slots + self._ring[c]
            self._ring[c] = (self._ring[c] + 1) % cfg.creator_slots
            e = self.topic_centres[topic[c]] + _TOPIC_SPREAD * z[c, : cfg.embed_dim]
            self.embedding[j] = _unit_rows(e)
            self.topic[j] = topic[c]
            q = cfg.base_quality + cfg.effort_quality * effort[c] + 0.05 * z[c, -4]
            self.quality[j] = np.clip(q, 0.0, 1.0)
            self.appeal[j] = cfg.appeal_std * z[c, -3]
            noise = cfg.observation_noise
            self.ctr_estimate[j] = sigmoid(self.appeal[j] + noise * z[c, -2] - 1.0)
            self.watch_estimate[j] = np.clip(self.quality[j] + noise * z[c, -1], 0.0, 1.0)
            self.alive[j] = True
        return cfg.production_cost * effort.astype(np.float64)

    # ---- one period ----------------------------------------------------------------------------
    def bids(self, levels: np.ndarray) -> np.ndarray:
        """(A,) bid levels -> (A,) bids per click."""
        levels = np.clip(np.asarray(levels, dtype=np.int64), 0, self.config.bid_levels - 1)
        return self.bid_grid[levels]

    def organic_scores(self, appeal_level: int, quality_level: int) -> np.ndarray:
        """(B, N) the platform's ranking score of every item for every user (-inf: no item)."""
        w_a = self.weight_grid[int(np.clip(appeal_level, 0, len(self.weight_grid) - 1))]
        w_q = self.weight_grid[int(np.clip(quality_level, 0, len(self.weight_grid) - 1))]
        score = self.profile @ self.embedding.T
        score += w_a * self.ctr_estimate + w_q * self.watch_estimate
        return np.where(self.alive, score, -np.inf)

    def step(
        self,
        platform: np.ndarray,
        creators: np.ndarray,
        bid_levels: np.ndarray,
        user_actions: np.ndarray | None = None,
    ) -> PeriodOutcome:
        """Advance one period.

        Args:
            platform: (3,) [appeal weight level, quality weight level, ad positions opened].
            creators: (C, 2) [topic, effort level].
            bid_levels: (A,) bid levels.
            user_actions: (S,) strategic users' actions (click threshold level, or
                ``pickiness_levels`` to leave); None when no user is strategic.
        """
        cfg = self.config
        b, k = cfg.num_users, cfg.slate_size
        platform = np.asarray(platform, dtype=np.int64).reshape(3)
        cost = self.produce(creators)
        bids = self.bids(bid_levels)
        ad_slots = int(np.clip(platform[2], 0, cfg.ad_load_cap))
        auction = run_auction(bids, ad_slots, cfg.reserve_price, cfg.auction)
        n_ads = auction.num_sold
        n_org = k - n_ads

        # Organic ranking: the top n_org items per user by the platform's score.
        score = self.organic_scores(platform[0], platform[1])
        order = np.argsort(-score, axis=1, kind="stable")[:, :n_org]
        if cfg.min_exposure > 0 and n_org > 0:
            self._guarantee_exposure(order, score)
        # Slate features, ads first: (B, k, d) embeddings, (B, k) appeal and quality.
        emb = np.empty((b, k, cfg.embed_dim), dtype=np.float32)
        appeal = np.empty((b, k), dtype=np.float32)
        quality = np.empty((b, k), dtype=np.float32)
        watch_est = np.empty((b, k), dtype=np.float32)
        emb[:, :n_ads] = self.ad_embedding[auction.winners]
        appeal[:, :n_ads] = self.ad_appeal[auction.winners]
        quality[:, :n_ads] = self.ad_quality[auction.winners]
        watch_est[:, :n_ads] = self.ad_quality[auction.winners]
        emb[:, n_ads:] = self.embedding[order]
        appeal[:, n_ads:] = self.appeal[order]
        quality[:, n_ads:] = self.quality[order]
        watch_est[:, n_ads:] = self.watch_estimate[order]
        shown = np.ones((b, k), dtype=bool)

        affinity = np.einsum("bkd,bd->bk", emb, self.interest)
        utility = cfg.affinity_weight * affinity
        utility += (cfg.appeal_weight * self.appeal_sensitivity)[:, None] * appeal
        probs = self.choice.probabilities(utility.astype(np.float32), shown)
        uniforms = self._rng.random((3, b))
        position = sample_choice(probs, uniforms[0])
        s = cfg.strategic_users
        leave_choice = np.zeros(b, dtype=bool)
        if s:
            acts = np.asarray(user_actions, dtype=np.int64).reshape(s)
            position[:s], leave_choice[:s] = self._strategic_choice(
                acts, affinity[:s], watch_est[:s]
            )
        clicked = position >= 0
        pos = np.maximum(position, 0)
        rows = np.arange(b)
        watch_logit = cfg.watch_quality_weight * (quality[rows, pos] - 0.5)
        watch_logit += cfg.watch_affinity_weight * affinity[rows, pos]
        watch_logit += cfg.watch_noise * self._rng.standard_normal(b)
        watch = np.where(clicked, sigmoid(watch_logit), 0.0)

        # Users: utility, satisfaction, leaving (eq. U1-U3 of docs/marketplace.md).
        utility_user = np.where(clicked, watch - cfg.time_cost, -cfg.miss_cost)
        utility_user = utility_user - cfg.ad_annoyance * n_ads
        lim = cfg.satisfaction_limit
        self.satisfaction = np.clip(self.satisfaction + utility_user, -lim, lim).astype(np.float32)
        p_leave = sigmoid(cfg.leave_bias - cfg.leave_satisfaction_weight * self.satisfaction)
        leave = uniforms[1] < p_leave
        leave[:s] = leave_choice[:s]

        # Accounting.
        ad_click_pos = np.bincount(position[clicked & (position < n_ads)], minlength=k)[:n_ads]
        a = cfg.num_advertisers
        ad_clicks = np.zeros(a, dtype=np.int64)
        ad_clicks[auction.winners] = ad_click_pos
        spend = np.zeros(a)
        spend[auction.winners] = auction.prices * ad_click_pos
        adv_reward = self.ad_value * ad_clicks - spend
        org_clicked = clicked & (position >= n_ads)
        clicked_item = (
            order[rows, np.clip(position - n_ads, 0, max(n_org - 1, 0))] if n_org else None
        )
        c = cfg.num_creators
        creator_clicks = np.zeros(c, dtype=np.int64)
        if n_org:
            owners = self.creator_of[clicked_item[org_clicked]]
            creator_clicks = np.bincount(owners[owners >= 0], minlength=c)
            shown_owner = self.creator_of[order].ravel()
            exposure = np.bincount(shown_owner[shown_owner >= 0], minlength=c)
        else:
            exposure = np.zeros(c, dtype=np.int64)
        creator_reward = cfg.creator_click_value * creator_clicks - cost
        clicks = int(clicked.sum())
        revenue = float(spend.sum())
        leavers = int(leave.sum())
        platform_reward = cfg.engagement_value * clicks + revenue - cfg.retention_cost * leavers

        # Statistics the next observations read.
        topics = np.empty((b, k), dtype=np.int64)
        topics[:, :n_ads] = self.ad_topic[auction.winners]
        topics[:, n_ads:] = self.topic[order]
        n_topics = self.topic_centres.shape[0]
        demand = np.bincount(topics[rows[clicked], pos[clicked]], minlength=n_topics)
        self.topic_demand = (
            demand / max(demand.sum(), 1) if clicks else np.full(n_topics, 1.0 / n_topics)
        )
        self.last_platform_action = platform
        self.last_creator_action = np.asarray(creators, dtype=np.int64).reshape(c, 2)
        self.last_bids = bids
        self.last_user_clicked = clicked
        self.last_user_watch = watch.astype(np.float32)
        self.last_user_left = leave
        self._new_users(np.flatnonzero(leave))
        self.period += 1
        self.last = PeriodOutcome(
            platform_reward=float(platform_reward),
            creator_reward=creator_reward,
            advertiser_reward=adv_reward,
            user_utility=utility_user.astype(np.float64),
            clicks=clicks,
            ad_clicks=ad_clicks,
            spend=spend,
            revenue=revenue,
            production_cost=cost,
            creator_clicks=creator_clicks,
            creator_exposure=exposure,
            leavers=leavers,
            ads_shown=n_ads,
            auction=auction,
        )
        return self.last

    def _guarantee_exposure(self, order: np.ndarray, score: np.ndarray) -> None:
        """Give each creator ceil(min_exposure * B / C) impressions in the last organic position,
        to the users who score its best item highest among those not shown one of its items (as
        far as there are users whose last organic item is a background item)."""
        cfg = self.config
        b, c = cfg.num_users, cfg.num_creators
        need = math.ceil(cfg.min_exposure * b / c)
        # Only a background item in the last position may be displaced, so that one creator's
        # guarantee never takes an impression from another creator.
        taken = self.creator_of[order[:, -1]] >= 0
        for creator in range(c):
            items = np.flatnonzero((self.creator_of == creator) & self.alive)
            if items.size == 0:
                continue
            has = (self.creator_of[order] == creator).any(axis=1)
            missing = need - int(has.sum())
            if missing <= 0:
                continue
            best = items[np.argmax(score[:, items].mean(axis=0))]
            free = np.flatnonzero(~has & ~taken)
            pick = free[np.argsort(-score[free, best], kind="stable")[:missing]]
            order[pick, -1] = best
            taken[pick] = True

    def _strategic_choice(
        self, actions: np.ndarray, affinity: np.ndarray, watch_est: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Strategic users click the position of highest expected value if it beats their
        threshold tau(action); action == pickiness_levels means leave."""
        cfg = self.config
        levels = cfg.pickiness_levels
        value = (
            sigmoid(
                cfg.watch_quality_weight * (watch_est - 0.5) + cfg.watch_affinity_weight * affinity
            )
            - cfg.time_cost
        )
        tau = np.linspace(-0.2, 0.4, levels) if levels > 1 else np.zeros(1)
        leave = actions >= levels
        best = np.argmax(value, axis=1)
        click = (value.max(axis=1) > tau[np.clip(actions, 0, levels - 1)]) & ~leave
        return np.where(click, best, -1), leave

    # ---- scripted parties ----------------------------------------------------------------------
    def scripted_platform(self) -> np.ndarray:
        """(3,) greedy: appeal-first ranking and full ad load; balanced: quality-first, one ad."""
        cfg = self.config
        top = cfg.ranking_levels - 1
        if cfg.scripted_platform == "greedy":
            return np.array([top, 0, cfg.ad_load_cap])
        return np.array([0, top, min(1, cfg.ad_load_cap)])

    def scripted_creators(self) -> np.ndarray:
        """(C, 2): effort 1 on the most-clicked topic of the last period (home topic at start)."""
        c = self.config.num_creators
        if self.last is None or self.last.clicks == 0:
            topic = self.creator_home_topic
        else:
            topic = np.full(c, int(np.argmax(self.topic_demand)))
        return np.stack([topic, np.ones(c, dtype=np.int64)], axis=1)

    def scripted_bids(self) -> np.ndarray:
        """(A,) truthful: the highest bid level not above the advertiser's value per click."""
        return np.searchsorted(self.bid_grid, self.ad_value, side="right") - 1
