"""evaluate(): determinism, exact user counts, the metrics contract; baselines' slates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayrec.contracts.keys import Metrics
from rayrec.envs import observe
from rayrec.evaluation import BASELINES, ci95, evaluate, make_baseline, top_k_valid
from rayrec.sim import SessionSimulator, SimConfig

SMALL = SimConfig(num_items=400, num_topics=6, num_candidates=10, embed_dim=8, history_len=5)
CI_KEYS = (Metrics.RETURN_CI95, Metrics.CLICKS_CI95, Metrics.SESSIONS_CI95)


class UserCounting:
    """Greedy, recording every user id it is asked to serve."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = make_baseline("greedy")
        self.seen: set[int] = set()

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        self.seen.update(sim.user_id.tolist())
        return self.inner.act(obs, sim)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_evaluate_is_deterministic_for_a_seed(name: str) -> None:
    first = evaluate(make_baseline(name), SMALL, users=64, seed=3)
    second = evaluate(make_baseline(name), SMALL, users=64, seed=3)
    assert first == second


def test_evaluate_depends_on_the_seed() -> None:
    first = evaluate(make_baseline("greedy"), SMALL, users=64, seed=3)
    second = evaluate(make_baseline("greedy"), SMALL, users=64, seed=4)
    assert first != second


@pytest.mark.parametrize(
    ("users", "batch_size"),
    [
        pytest.param(64, 1024, id="one_batch"),
        pytest.param(50, 16, id="refilled_slots"),
        pytest.param(2, 2, id="smallest"),
    ],
)
def test_evaluate_counts_exactly_the_requested_users(users: int, batch_size: int) -> None:
    policy = UserCounting()
    metrics = evaluate(policy, SMALL, users=users, seed=0, batch_size=batch_size)
    assert metrics[Metrics.USERS] == users
    # Users get consecutive ids: exactly `users` were sampled and served.
    assert policy.seen == set(range(users))


def test_metrics_carry_the_required_and_ci_keys() -> None:
    metrics = evaluate(make_baseline("random"), SMALL, users=64, seed=0)
    assert set(Metrics.REQUIRED) <= set(metrics)
    for key in CI_KEYS:
        assert math.isfinite(metrics[key])
        assert metrics[key] > 0
    assert metrics[Metrics.DIVERSITY_SLATE] is None
    assert 0.0 < metrics[Metrics.COVERAGE] <= 1.0
    assert 1.0 <= metrics[Metrics.SESSIONS_PER_USER] <= SMALL.max_sessions
    assert metrics[Metrics.RETURN_MEAN] == pytest.approx(metrics[Metrics.CLICKS_MEAN])


def test_slate_diversity_is_reported_for_slates() -> None:
    config = SimConfig(**{**SMALL.to_dict(), "slate_size": 3})
    metrics = evaluate(make_baseline("popular"), config, users=32, seed=0)
    assert 0.0 < metrics[Metrics.DIVERSITY_SLATE] <= 2.0


@pytest.mark.parametrize("users", [0, 1])
def test_evaluate_needs_two_users(users: int) -> None:
    with pytest.raises(ValueError, match="users"):
        evaluate(make_baseline("random"), SMALL, users=users)


def test_ci95_is_the_normal_half_width() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert ci95(values) == pytest.approx(1.96 * np.std(values, ddof=1) / 2.0)
    assert math.isnan(ci95(np.array([1.0])))


def test_unknown_baseline_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown baseline 'oracle'"):
        make_baseline("oracle")


def test_top_k_valid_picks_the_best_valid_candidates_in_order() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]])
    mask = np.array([[1, 0, 1, 1, 1]], dtype=np.int8)
    np.testing.assert_array_equal(top_k_valid(scores, mask, 3), [[3, 2, 4]])
    np.testing.assert_array_equal(top_k_valid(scores, mask, 1), [[3]])


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("slate_size", [1, 4])
def test_baselines_choose_distinct_valid_candidates(name: str, slate_size: int) -> None:
    config = SimConfig(**{**SMALL.to_dict(), "slate_size": slate_size})
    sim = SessionSimulator(config, 64, seed=0)
    sim.reset()
    slate = make_baseline(name).act(observe(sim), sim)
    assert slate.shape == (64, slate_size)
    assert np.take_along_axis(sim.candidate_valid, slate, 1).all()
    assert all(len(set(row)) == slate_size for row in slate.tolist())


class NoPeeking(SessionSimulator):
    """A simulator whose oracle API fails: a policy that calls it is caught."""

    def oracle_click_probability(self) -> np.ndarray:
        raise AssertionError("peeked at the click probabilities")

    def oracle_expected_watch(self) -> np.ndarray:
        raise AssertionError("peeked at the expected watch")


def test_heuristic_reads_only_the_observation() -> None:
    sim = NoPeeking(SMALL, 32, seed=1)
    sim.reset()
    policy = make_baseline("heuristic")
    for _ in range(30):
        obs = observe(sim)
        slate = policy.act(obs, sim)
        assert obs["action_mask"][np.arange(32), slate[:, 0]].all()
        sim.step(slate)


def test_heuristic_prefers_what_the_user_clicked_and_would_watch() -> None:
    """Two candidates equal in every scalar: the one along the clicked history wins; two equal in
    direction: the one with the higher watch estimate wins."""
    d, h, m = 4, 3, 2
    e1, e2 = np.eye(d, dtype=np.float32)[0], np.eye(d, dtype=np.float32)[1]
    obs = {
        "history_features": np.stack([e1, e1, e2])[None],
        "history_responses": np.array([[[1, 0.9, 0, 0], [1, 0.8, 0, 0], [0, 0, 0, 0]]], np.float32),
        "history_mask": np.ones((1, h), np.float32),
        "candidate_features": np.stack([e2, e1])[None],
        "candidate_scalars": np.tile(np.array([0, 0.3, 0.5, 0, 0, 0], np.float32), (1, m, 1)),
        "action_mask": np.ones((1, m), np.int8),
    }
    sim = SessionSimulator(SMALL, 1, seed=0)
    policy = make_baseline("heuristic")
    assert policy.act(obs, sim)[0, 0] == 1
    obs["candidate_features"] = np.stack([e1, e1])[None]
    obs["candidate_scalars"][0, 0, 2] = 0.9
    assert policy.act(obs, sim)[0, 0] == 0
