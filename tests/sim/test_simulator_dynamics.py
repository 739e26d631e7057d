"""SessionSimulator dynamics: each test isolates one equation of docs/simulator.md.

Tests set simulator state arrays (satisfaction, budget, fatigue) directly where that isolates the
mechanism under test; ``no_click_utility=-50`` makes a shown item certain to be clicked and
``leave_bias=-50`` keeps users in their session.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rayrec.envs import observe
from rayrec.evaluation import RandomPolicy
from rayrec.sim import SessionSimulator, SimConfig

SMALL = {"num_items": 500, "num_topics": 8, "num_candidates": 10, "embed_dim": 8, "history_len": 5}
# Users stay in their session (no leaving, no budget or step bound within a test).
STAY = {"leave_bias": -50.0, "session_budget": 1e4, "max_steps_per_session": 1000}
CERTAIN_CLICK = {"no_click_utility": -50.0}
TOLERANCE_SE = 4.0


def make_sim(num_users: int, seed: int = 0, **overrides: Any) -> SessionSimulator:
    sim = SessionSimulator(SimConfig(**{**SMALL, **overrides}), num_users, seed=seed)
    sim.reset()
    return sim


def first_valid(sim: SessionSimulator) -> np.ndarray:
    """(B, 1) the first valid candidate of every user."""
    return sim.candidate_valid.argmax(axis=1)[:, None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---- determinism and the world ---------------------------------------------------------------


def _trajectory(seed: int, steps: int = 25) -> list[dict[str, np.ndarray]]:
    sim = make_sim(64, seed=seed, slate_size=2)
    policy = RandomPolicy(seed=7)
    out = []
    for _ in range(steps):
        result = sim.step(policy.act(observe(sim), sim))
        out.append({**vars(result), "interest": sim.interest.copy()})
        sim.reset_users(result.terminated | result.truncated)
    return out


def test_same_seed_gives_identical_trajectories() -> None:
    first, second = _trajectory(seed=3), _trajectory(seed=3)
    for step_a, step_b in zip(first, second, strict=True):
        assert step_a.keys() == step_b.keys()
        assert all(np.array_equal(step_a[key], step_b[key]) for key in step_a)


def test_different_seeds_give_different_trajectories() -> None:
    first, second = _trajectory(seed=3), _trajectory(seed=4)
    assert not np.array_equal(
        np.stack([s["slate_items"] for s in first]), np.stack([s["slate_items"] for s in second])
    )


def test_world_seed_fixes_the_catalog_across_run_seeds() -> None:
    config = SimConfig(**SMALL)
    a = SessionSimulator(config, 4, seed=1).catalog
    b = SessionSimulator(config, 4, seed=2).catalog
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.appeal, b.appeal)


def test_a_different_world_seed_gives_a_different_catalog() -> None:
    a = SessionSimulator(SimConfig(**SMALL, world_seed=1), 4, seed=1).catalog
    b = SessionSimulator(SimConfig(**SMALL, world_seed=2), 4, seed=1).catalog
    assert not np.array_equal(a.embedding, b.embedding)


@pytest.mark.parametrize("num_users", [0, -3, 2.0, True])
def test_num_users_must_be_a_positive_integer(num_users: Any) -> None:
    with pytest.raises(ValueError, match="num_users"):
        SessionSimulator(SimConfig(**SMALL), num_users)


# ---- click sampling inside a step ------------------------------------------------------------


@pytest.mark.parametrize("choice_model", ["mnl", "cascade"])
@pytest.mark.parametrize("slate_size", [1, 3])
def test_step_click_frequencies_match_the_choice_model(choice_model: str, slate_size: int) -> None:
    b = 20_000
    sim = make_sim(b, seed=5, slate_size=slate_size, choice_model=choice_model)
    slate = np.argsort(~sim.candidate_valid, axis=1, kind="stable")[:, :slate_size]
    shown_expected = np.take_along_axis(sim.candidate_valid, slate, 1)
    # The oracle is sigmoid(v - v_0) per candidate: invert it to recover the utilities v.
    p_alone = np.take_along_axis(sim.oracle_click_probability().astype(np.float64), slate, 1)
    utility = sim.config.no_click_utility + np.log(p_alone / (1.0 - p_alone))
    probs = sim.choice.probabilities(utility, shown_expected).astype(np.float64)
    result = sim.step(slate)
    np.testing.assert_array_equal(result.shown, shown_expected)
    clicks = np.stack([result.click_position == i for i in range(slate_size)], axis=1).sum(axis=0)
    expected = probs.sum(axis=0)
    se = np.sqrt((probs * (1.0 - probs)).sum(axis=0))
    assert np.all(np.abs(clicks - expected) <= TOLERANCE_SE * se), (clicks, expected, se)


# ---- interest drift --------------------------------------------------------------------------


def test_a_click_moves_interest_toward_the_item_embedding() -> None:
    sim = make_sim(64, drift_rate=0.2, **CERTAIN_CLICK)
    before = sim.interest.copy()
    result = sim.step(first_valid(sim))
    assert result.clicked.all()
    emb = sim.catalog.embedding[result.item]
    np.testing.assert_allclose(sim.interest, _unit(before + 0.2 * (emb - before)), atol=1e-5)
    cos_before = np.einsum("bd,bd->b", before, emb)
    cos_after = np.einsum("bd,bd->b", sim.interest, emb)
    assert np.all(cos_after > cos_before)


def test_no_click_leaves_interest_unchanged() -> None:
    sim = make_sim(16, drift_rate=0.2)
    before = sim.interest.copy()
    sim.step(np.full((16, 1), -1))
    np.testing.assert_array_equal(sim.interest, before)


def test_zero_drift_rate_keeps_interest() -> None:
    sim = make_sim(16, drift_rate=0.0, **CERTAIN_CLICK)
    before = sim.interest.copy()
    assert sim.step(first_valid(sim)).clicked.all()
    np.testing.assert_allclose(sim.interest, before, atol=1e-6)


# ---- fatigue ---------------------------------------------------------------------------------


def test_fatigue_update_follows_decay_show_and_click_gains() -> None:
    sim = make_sim(64, seed=1, fatigue_decay=0.1, fatigue_show_gain=0.05, fatigue_gain=0.3, **STAY)
    sim.fatigue[:] = np.random.default_rng(0).random(sim.fatigue.shape, dtype=np.float32)
    expected = 0.9 * sim.fatigue
    result = sim.step(first_valid(sim))
    topic = sim.catalog.topic[result.slate_items[:, 0]]
    rows = np.arange(64)
    expected[rows, topic] += 0.05 + 0.3 * result.clicked
    assert 0 < result.clicked.sum() < 64
    np.testing.assert_allclose(sim.fatigue, expected, rtol=1e-5)


def test_fatigue_grows_with_repeated_exposure_to_one_topic() -> None:
    # One topic only: every shown item exposes it. Without click gain the closed form is
    # f_n = g (1 - (1 - delta)^n) / delta, strictly increasing.
    sim = make_sim(32, num_topics=1, fatigue_gain=0.0, fatigue_show_gain=0.05, **STAY)
    levels = []
    for _ in range(6):
        sim.step(first_valid(sim))
        levels.append(sim.fatigue[:, 0].copy())
    n = np.arange(1, 7)[:, None]
    np.testing.assert_allclose(np.stack(levels), 0.05 * (1 - 0.9**n) / 0.1 * np.ones(32), rtol=1e-5)
    assert np.all(np.diff(np.stack(levels), axis=0) > 0)


def test_fatigue_lowers_click_probability() -> None:
    sim = make_sim(32, fatigue_weight=1.5)
    fresh = sim.oracle_click_probability().astype(np.float64)
    sim.fatigue[:] = 1.0
    tired = sim.oracle_click_probability().astype(np.float64)
    assert np.all(tired < fresh)
    logit_drop = np.log(fresh / (1 - fresh)) - np.log(tired / (1 - tired))
    np.testing.assert_allclose(logit_drop, 1.5, atol=1e-3)


def test_fatigue_decays_when_nothing_is_shown() -> None:
    sim = make_sim(16, fatigue_decay=0.25, **STAY)
    sim.fatigue[:] = 2.0
    sim.step(np.full((16, 1), -1))
    np.testing.assert_allclose(sim.fatigue, 1.5)
    sim.step(np.full((16, 1), -1))
    np.testing.assert_allclose(sim.fatigue, 1.125)


def test_fatigue_recovers_between_sessions() -> None:
    sim = make_sim(64, fatigue_decay=0.1, fatigue_recovery_days=2.0, return_bias=50.0)
    sim.fatigue[:] = 1.0
    sim.budget[:] = 0.0
    result = sim.step(np.full((64, 1), -1))
    assert result.session_ended.all()
    assert (sim.session_index == 1).all()
    expected = 0.9 * np.exp(-sim.gap_days / 2.0)
    np.testing.assert_allclose(sim.fatigue, np.broadcast_to(expected[:, None], (64, 8)), rtol=1e-5)


# ---- satisfaction, leaving and returning -----------------------------------------------------


def test_satisfaction_moves_with_watch_fraction_or_miss_penalty() -> None:
    sim = make_sim(256, seed=2, satisfaction_quality_weight=0.5, quality_reference=0.5)
    before = sim.satisfaction.copy()
    result = sim.step(first_valid(sim))
    expected = np.where(result.clicked, before + 0.5 * (result.watch - 0.5), before - 0.15)
    assert 0 < result.clicked.sum() < 256
    np.testing.assert_allclose(sim.satisfaction, expected, rtol=1e-5, atol=1e-6)


def test_return_probability_grows_with_satisfaction() -> None:
    b = 20_000
    sim = make_sim(b, seed=3)
    high = np.arange(b) < b // 2
    sim.satisfaction[:] = np.where(high, 1.5, -1.5)
    sim.budget[:] = 0.0
    result = sim.step(np.full((b, 1), -1))
    assert result.session_ended.all()
    assert not result.truncated.any()
    returned = ~result.terminated
    assert returned[high].mean() > returned[~high].mean() + 0.3
    # The count of returns matches the logistic model at the post-step satisfaction.
    cfg = sim.config
    p = _sigmoid(cfg.return_bias + sim.loyalty + cfg.return_satisfaction_weight * sim.satisfaction)
    se = np.sqrt((p * (1 - p)).sum())
    assert abs(returned.sum() - p.sum()) <= TOLERANCE_SE * se


def test_gap_between_sessions_shrinks_with_satisfaction() -> None:
    b = 20_000
    sim = make_sim(b, seed=4, return_bias=50.0, gap_mean_days=2.0)
    sim.satisfaction[:] = np.where(np.arange(b) < b // 2, 2.0, -2.0)
    sim.budget[:] = 0.0
    sim.step(np.full((b, 1), -1))
    # gap = Exp(1) * gap_mean_days * exp(-satisfaction / 2): the scaled gaps have mean 1, sd 1.
    scaled = sim.gap_days / (2.0 * np.exp(-0.5 * sim.satisfaction))
    assert abs(scaled.mean() - 1.0) <= TOLERANCE_SE / np.sqrt(b)
    high = sim.satisfaction > 0
    assert sim.gap_days[high].mean() < sim.gap_days[~high].mean()


def test_leaving_probability_falls_with_satisfaction() -> None:
    b = 20_000
    sim = make_sim(b, seed=6, leave_bias=0.0, session_budget=1e4)
    sim.satisfaction[:] = np.where(np.arange(b) < b // 2, 2.0, -2.0)
    result = sim.step(np.full((b, 1), -1))
    satisfied = np.arange(b) < b // 2
    assert result.session_ended[satisfied].mean() < result.session_ended[~satisfied].mean() - 0.3


# ---- time budget, session and lifetime bounds ------------------------------------------------


def test_session_ends_when_the_budget_runs_out() -> None:
    sim = make_sim(8, step_minutes=0.25, **STAY)
    sim.budget[:] = 1.0
    # Showing nothing costs step_minutes per step: 0.25 * 4 = 1.0 spends the budget exactly.
    ended = [sim.step(np.full((8, 1), -1)).session_ended.copy() for _ in range(4)]
    assert not np.any(ended[:3])
    assert np.all(ended[3])


def test_watching_spends_the_budget_by_duration() -> None:
    sim = make_sim(256, seed=7, **STAY, **CERTAIN_CLICK)
    sim.budget[:] = 2.0
    before = sim.budget.copy()
    result = sim.step(first_valid(sim))
    minutes = sim.config.step_minutes + result.watch * sim.catalog.duration[result.item]
    np.testing.assert_array_equal(result.session_ended, before - minutes <= 0)
    assert 0 < result.session_ended.sum() < 256


def test_session_ends_after_max_steps() -> None:
    sim = make_sim(8, max_steps_per_session=3, leave_bias=-50.0, session_budget=1e4)
    ended = [sim.step(np.full((8, 1), -1)).session_ended.copy() for _ in range(3)]
    assert not np.any(ended[:2])
    assert np.all(ended[2])


def test_lifetime_is_truncated_at_max_sessions() -> None:
    # Every step ends the session and every user comes back: session n ends at step n.
    sim = make_sim(8, max_sessions=3, leave_bias=50.0, return_bias=50.0)
    results = [sim.step(np.full((8, 1), -1)) for _ in range(3)]
    assert all(r.session_ended.all() for r in results)
    assert not any(r.terminated.any() for r in results)
    assert not results[0].truncated.any()
    assert not results[1].truncated.any()
    assert results[2].truncated.all()


def test_a_user_who_does_not_return_terminates() -> None:
    sim = make_sim(8, max_sessions=3, leave_bias=50.0, return_bias=-50.0)
    result = sim.step(np.full((8, 1), -1))
    assert result.terminated.all()
    assert not result.truncated.any()


def test_reset_users_replaces_only_the_masked_slots() -> None:
    sim = make_sim(6)
    ids = sim.user_id.copy()
    sim.step(first_valid(sim))
    mask = np.array([True, False, True, False, False, False])
    sim.reset_users(mask)
    np.testing.assert_array_equal(sim.user_id[~mask], ids[~mask])
    np.testing.assert_array_equal(sim.user_id[mask], [6, 7])
    assert (sim.history_items[mask] == -1).all()
    assert (sim.history_items[~mask][:, -1] >= 0).all()


# ---- the documented rule: masked, duplicate and out-of-range choices show nothing ------------


@pytest.mark.parametrize("bad_index", [-1, -50, 10, 999])
def test_out_of_range_choices_show_nothing(bad_index: int) -> None:
    sim = make_sim(32, slate_size=3, **CERTAIN_CLICK)
    history = sim.history_items.copy()
    result = sim.step(np.full((32, 3), bad_index))
    assert not result.shown.any()
    assert not result.clicked.any()
    assert (result.click_position == -1).all()
    assert (result.slate_items == -1).all()
    assert (result.reward == 0).all()
    assert (result.item == -1).all()
    np.testing.assert_array_equal(sim.history_items[:, :-1], history[:, 1:])


def test_masked_candidates_show_nothing() -> None:
    # A catalog smaller than the pool leaves duplicates, hence masked candidates, in most windows.
    sim = make_sim(256, num_items=40, num_candidates=20, num_topics=3, **CERTAIN_CLICK)
    valid = sim.candidate_valid.copy()
    rows = np.flatnonzero(~valid.all(axis=1))
    assert rows.size > 100
    masked = np.argmin(valid, axis=1)[:, None]
    result = sim.step(masked)
    assert not result.shown[rows].any()
    assert not result.clicked[rows].any()


def test_valid_candidates_are_shown_and_clicked_for_certain() -> None:
    sim = make_sim(64, slate_size=3, **CERTAIN_CLICK)
    slate = np.argsort(~sim.candidate_valid, axis=1, kind="stable")[:, :3]
    result = sim.step(slate)
    assert result.shown.all()
    assert result.clicked.all()


def test_duplicates_within_a_slate_show_only_the_first() -> None:
    sim = make_sim(2000, seed=8, slate_size=3)
    result = sim.step(np.repeat(first_valid(sim), 3, axis=1))
    np.testing.assert_array_equal(result.shown, np.tile([True, False, False], (2000, 1)))
    assert set(np.unique(result.click_position)) == {-1, 0}


@pytest.mark.parametrize(("bad", "good"), [(-1, 0), (15, 9)])
def test_an_out_of_range_entry_does_not_hide_a_valid_choice(bad: int, good: int) -> None:
    sim = make_sim(64, slate_size=2, num_items=5000)
    rows = sim.candidate_valid[:, good]
    assert rows.any()
    result = sim.step(np.tile([bad, good], (64, 1)))
    np.testing.assert_array_equal(result.shown[:, 1], rows)


# ---- the action mask -------------------------------------------------------------------------

TINY = {"num_items": 30, "num_candidates": 20, "num_topics": 3}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({**TINY, "slate_size": 1}, id="tiny-k1"),
        pytest.param({**TINY, "slate_size": 2}, id="tiny-k2"),
        pytest.param({**TINY, "slate_size": 3}, id="tiny-k3"),
        pytest.param({**TINY, "slate_size": 5}, id="tiny-k5"),
        pytest.param({"num_items": 300, "num_topics": 6, "slate_size": 4}, id="small-k4"),
        pytest.param({"num_items": 5000, "num_candidates": 20, "slate_size": 10}, id="default-k10"),
        pytest.param(
            {"num_items": 5000, "num_candidates": 20, "slate_size": 20},
            id="default-k20",
        ),
    ],
)
def test_action_mask_always_offers_a_full_slate(overrides: dict[str, Any]) -> None:
    sim = make_sim(256, **overrides)
    policy = RandomPolicy(seed=0)
    fewest = []
    for _ in range(150):
        obs = observe(sim)
        fewest.append(int(obs["action_mask"].sum(axis=1).min()))
        result = sim.step(policy.act(obs, sim))
        sim.reset_users(result.terminated | result.truncated)
    assert min(fewest) >= sim.config.slate_size, fewest
