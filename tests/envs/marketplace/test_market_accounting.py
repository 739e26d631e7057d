"""Reward accounting of the marketplace game: payments, welfare sums and mechanism knobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayrec.envs.marketplace.config import MarketplaceConfig
from rayrec.envs.marketplace.env import MarketplaceEnv
from rayrec.envs.marketplace.game import MarketplaceGame
from rayrec.envs.marketplace.metrics import MarketMetrics, episode_metrics, gini, period_welfare


def _random_periods(config: MarketplaceConfig, periods: int, seed: int = 0):
    game = MarketplaceGame(config, seed=seed)
    rng = np.random.default_rng(seed)
    t = game.topic_centres.shape[0]
    for _ in range(periods):
        platform = rng.integers(0, [config.ranking_levels, config.ranking_levels, 9])
        creators = np.stack(
            [rng.integers(0, t, config.num_creators), rng.integers(0, 3, config.num_creators)], 1
        )
        bids = rng.integers(0, config.bid_levels, config.num_advertisers)
        yield game, platform, bids, game.step(platform, creators, bids)


@pytest.mark.parametrize("auction", ["gsp", "second_price"])
def test_payments_match_the_auction_and_the_clicks(auction):
    cfg = MarketplaceConfig(auction=auction, ad_load_cap=2, reserve_price=0.3)
    for game, platform, bids, o in _random_periods(cfg, 15):
        offered = min(int(platform[2]), cfg.ad_load_cap)
        assert o.ads_shown == o.auction.num_sold <= offered
        if auction == "second_price":
            assert o.ads_shown <= 1
        # Prices are those of the documented auction on the bids made.
        bid_values = game.bid_grid[bids]
        eligible = np.sort(bid_values[bid_values >= cfg.reserve_price])[::-1]
        for j, (winner, price) in enumerate(zip(o.auction.winners, o.auction.prices, strict=True)):
            assert bid_values[winner] == eligible[j]
            nxt = eligible[j + 1] if j + 1 < eligible.size else 0.0
            assert price == pytest.approx(max(cfg.reserve_price, nxt))
        # Advertisers pay price x clicks; the platform receives exactly that.
        spend = np.zeros(cfg.num_advertisers)
        spend[o.auction.winners] = o.auction.prices * o.ad_clicks[o.auction.winners]
        np.testing.assert_allclose(o.spend, spend)
        assert o.revenue == pytest.approx(spend.sum())
        np.testing.assert_allclose(o.advertiser_reward, game.ad_value * o.ad_clicks - spend)
        losers = np.setdiff1d(np.arange(cfg.num_advertisers), o.auction.winners)
        assert (o.ad_clicks[losers] == 0).all() and (o.spend[losers] == 0).all()


def test_welfare_sums_are_consistent():
    cfg = MarketplaceConfig(min_exposure=0.3)
    for game, _, _, o in _random_periods(cfg, 20, seed=3):
        w = period_welfare(o, cfg.welfare_weights)
        assert w["platform"] == pytest.approx(
            cfg.engagement_value * o.clicks + o.revenue - cfg.retention_cost * o.leavers
        )
        np.testing.assert_allclose(
            o.creator_reward, cfg.creator_click_value * o.creator_clicks - o.production_cost
        )
        # Ad spend is a transfer: total welfare is the same sum written without it.
        without_transfers = (
            cfg.engagement_value * o.clicks
            - cfg.retention_cost * o.leavers
            + float((game.ad_value * o.ad_clicks).sum())
            + cfg.creator_click_value * float(o.creator_clicks.sum())
            - float(o.production_cost.sum())
            + float(o.user_utility.sum())
        )
        assert w["total"] == pytest.approx(without_transfers)
        assert w["total"] == pytest.approx(
            w["platform"] + w["creator"] + w["advertiser"] + w["user"]
        )
        # Clicks add up: ads plus organic (creators' and background items').
        assert o.ad_clicks.sum() + o.creator_clicks.sum() <= o.clicks
        assert (o.user_utility <= 1.0 - cfg.time_cost + 1e-9).all()


def test_user_utility_hand_computed():
    cfg = MarketplaceConfig(ad_annoyance=0.1, time_cost=0.4, miss_cost=0.1)
    game = MarketplaceGame(cfg, seed=0)
    o = game.step(np.array([0, 2, 2]), game.scripted_creators(), np.array([4, 4, 4]))
    assert o.ads_shown == 2
    expected = np.where(game.last_user_clicked, game.last_user_watch - 0.4, -0.1) - 0.1 * 2
    np.testing.assert_allclose(o.user_utility, expected, rtol=1e-6)


def test_weighted_total_welfare():
    cfg = MarketplaceConfig(welfare_weights=(0.0, 0.0, 0.0, 1.0))
    _, _, _, o = next(_random_periods(cfg, 1))
    assert period_welfare(o, cfg.welfare_weights)["total"] == pytest.approx(o.user_utility.sum())


def test_min_exposure_guarantee():
    cfg = MarketplaceConfig(min_exposure=1.0, num_creators=4, num_users=64)
    need = math.ceil(64 / 4)
    for _, _, _, o in _random_periods(cfg, 10):
        assert (o.creator_exposure >= need).all(), o.creator_exposure
    off = MarketplaceConfig(min_exposure=0.0, num_creators=4, num_users=64)
    exposure = sum(o.creator_exposure for *_, o in _random_periods(off, 10))
    assert exposure.min() < 10 * need  # without the guarantee some creator gets less


def test_episode_metrics_from_env_totals():
    env = MarketplaceEnv({"num_periods": 8})
    env.reset(seed=4)
    clicks = leavers = 0
    platform = 0.0
    done = False
    while not done:
        _, rew, _, trunc, _ = env.step({"platform": np.array([2, 0, 2])})
        o = env.game.last
        clicks, leavers, platform = (
            clicks + o.clicks,
            leavers + o.leavers,
            platform + rew["platform"],
        )
        done = trunc["__all__"]
    m = episode_metrics(env.totals, env.config.welfare_weights)
    assert m[MarketMetrics.CLICKS] == clicks
    assert m[MarketMetrics.WELFARE_PLATFORM] == pytest.approx(platform)
    assert m[MarketMetrics.RETENTION] == pytest.approx(1 - leavers / (64 * 8))
    assert 0.0 <= m[MarketMetrics.AD_LOAD] <= 2 / 5
    assert m[MarketMetrics.WELFARE_TOTAL] == pytest.approx(
        sum(m[k] for k in MarketMetrics.ROLE_KEYS)
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1, 1, 1, 1], 0.0), ([0, 0, 0, 4], 0.75), ([1, 3], 0.25), ([0, 0], 0.0), ([], 0.0)],
)
def test_gini(values, expected):
    assert gini(np.array(values)) == pytest.approx(expected)


def test_leavers_are_replaced_and_retention_cost_charged():
    cfg = MarketplaceConfig(leave_bias=5.0)  # nearly everybody leaves every period
    game = MarketplaceGame(cfg, seed=0)
    o = game.step(game.scripted_platform(), game.scripted_creators(), game.scripted_bids())
    assert o.leavers > cfg.num_users // 2
    assert game.interest.shape == (cfg.num_users, cfg.embed_dim)
    assert o.platform_reward == pytest.approx(o.clicks + o.revenue - cfg.retention_cost * o.leavers)
