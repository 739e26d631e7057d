"""Choice models: closed forms on hand-computed slates, sampling frequencies, position bias."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.sim.choice import (
    CascadeChoice,
    MultinomialLogitChoice,
    make_choice_model,
    sample_choice,
    sigmoid,
)

DRAWS = 200_000
# Empirical frequencies must lie within this many standard errors of the model's probabilities.
TOLERANCE_SE = 4.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_leaves_its_input_alone_and_keeps_its_dtype(dtype: type) -> None:
    x = np.array([-1000.0, -3.0, 0.0, 0.5, 3.0, 1000.0], dtype=dtype)
    before = x.copy()
    y = sigmoid(x)
    np.testing.assert_array_equal(x, before)  # computed in place, but on its own array
    assert y.dtype == dtype
    expected = [0.0, _sigmoid(-3.0), 0.5, _sigmoid(0.5), _sigmoid(3.0), 1.0]
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("x", [0.0, 2.0, np.float32(-2.0), np.array(1.0)])
def test_sigmoid_of_a_scalar(x: float) -> None:
    assert float(sigmoid(x)) == pytest.approx(_sigmoid(float(x)), rel=1e-6)


def test_mnl_matches_hand_computation() -> None:
    # v = (3, 2, 1), v_0 = 2, examination (1, 1/2, 1/3).
    model = MultinomialLogitChoice(no_click_utility=2.0, slate_size=3, position_bias=1.0)
    weights = np.array([np.e, 0.5, np.exp(-1.0) / 3.0])
    expected = weights / (1.0 + weights.sum())
    probs = model.probabilities(np.array([[3.0, 2.0, 1.0]]), np.ones((1, 3), dtype=bool))
    np.testing.assert_allclose(probs[0], expected, rtol=1e-5)


def test_cascade_matches_hand_computation() -> None:
    model = CascadeChoice(no_click_utility=2.0, slate_size=3, position_bias=1.0)
    a = _sigmoid(np.array([1.0, 0.0, -1.0])) * np.array([1.0, 0.5, 1.0 / 3.0])
    expected = np.array([a[0], a[1] * (1 - a[0]), a[2] * (1 - a[0]) * (1 - a[1])])
    probs = model.probabilities(np.array([[3.0, 2.0, 1.0]]), np.ones((1, 3), dtype=bool))
    np.testing.assert_allclose(probs[0], expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["mnl", "cascade"])
def test_single_slot_click_probability_is_sigmoid_of_utility_gap(name: str) -> None:
    model = make_choice_model(name, no_click_utility=1.5, slate_size=1, position_bias=2.0)
    utility = np.array([[-3.0], [0.0], [1.5], [4.0]])
    probs = model.probabilities(utility, np.ones_like(utility, dtype=bool))
    np.testing.assert_allclose(probs[:, 0], _sigmoid(utility[:, 0] - 1.5), rtol=1e-5)


@pytest.mark.parametrize("name", ["mnl", "cascade"])
def test_hidden_slots_get_zero_probability(name: str) -> None:
    model = make_choice_model(name, no_click_utility=0.0, slate_size=3, position_bias=1.0)
    utility = np.full((2, 3), 5.0)
    shown = np.array([[True, False, True], [False, False, False]])
    probs = model.probabilities(utility, shown)
    assert probs[0, 1] == 0.0
    assert probs[0, 0] > 0.0
    assert probs[0, 2] > 0.0
    np.testing.assert_array_equal(probs[1], 0.0)


@pytest.mark.parametrize("name", ["mnl", "cascade"])
def test_probabilities_sum_to_at_most_one(name: str) -> None:
    rng = np.random.default_rng(0)
    model = make_choice_model(name, no_click_utility=0.5, slate_size=5, position_bias=0.7)
    probs = model.probabilities(4.0 * rng.standard_normal((1000, 5)), rng.random((1000, 5)) < 0.8)
    assert (probs >= 0.0).all()
    assert (probs.sum(axis=1) <= 1.0 + 1e-6).all()


@pytest.mark.parametrize("name", ["mnl", "cascade"])
@pytest.mark.parametrize(
    ("utility", "shown"),
    [
        pytest.param([2.5, 1.0, 3.0, 0.0], [True, True, True, True], id="all_shown"),
        pytest.param([2.5, 1.0, 3.0, 0.0], [True, False, True, True], id="one_hidden"),
        pytest.param([0.0], [True], id="single_slot"),
    ],
)
def test_sampled_click_frequencies_match_probabilities(
    name: str, utility: list[float], shown: list[bool]
) -> None:
    k = len(utility)
    model = make_choice_model(name, no_click_utility=1.0, slate_size=k, position_bias=1.0)
    probs = model.probabilities(np.tile(utility, (DRAWS, 1)), np.tile(shown, (DRAWS, 1)))
    pos = sample_choice(probs, np.random.default_rng(1).random(DRAWS))
    # Outcomes: slots 0..k-1, then no click (k).
    freq = np.bincount(np.where(pos < 0, k, pos), minlength=k + 1) / DRAWS
    p = np.append(probs[0], 1.0 - probs[0].sum())
    se = np.sqrt(p * (1.0 - p) / DRAWS)
    assert np.all(np.abs(freq - p) <= TOLERANCE_SE * se + 1e-12), (freq, p)


@pytest.mark.parametrize("name", ["mnl", "cascade"])
def test_position_bias_favours_the_top_slot_for_equal_utilities(name: str) -> None:
    model = make_choice_model(name, no_click_utility=1.0, slate_size=3, position_bias=1.0)
    probs = model.probabilities(np.full((DRAWS, 3), 1.0), np.ones((DRAWS, 3), dtype=bool))
    assert probs[0, 0] > probs[0, 1] > probs[0, 2]
    pos = sample_choice(probs, np.random.default_rng(2).random(DRAWS))
    top, third = np.mean(pos == 0), np.mean(pos == 2)
    se_diff = np.sqrt((top * (1 - top) + third * (1 - third)) / DRAWS)
    assert top - third > TOLERANCE_SE * se_diff


def test_no_position_bias_treats_slots_alike_under_mnl() -> None:
    model = MultinomialLogitChoice(no_click_utility=1.0, slate_size=4, position_bias=0.0)
    probs = model.probabilities(np.full((1, 4), 0.3), np.ones((1, 4), dtype=bool))
    np.testing.assert_allclose(probs[0], probs[0, 0], rtol=1e-6)


def test_unknown_choice_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="choice_model"):
        make_choice_model("probit", 0.0, 1, 1.0)


@pytest.mark.parametrize(
    ("probabilities", "uniform", "expected"),
    [
        pytest.param([[0.0, 0.5]], [0.0], [1], id="zero_probability_slot_skipped"),
        pytest.param([[0.2, 0.3]], [0.5], [-1], id="past_the_total_is_no_click"),
        pytest.param([[0.2, 0.3]], [0.49], [1], id="second_slot"),
        pytest.param([[0.0]], [0.0], [-1], id="single_zero_slot"),
    ],
)
def test_sample_choice_edges(
    probabilities: list[list[float]], uniform: list[float], expected: list[int]
) -> None:
    got = sample_choice(np.array(probabilities), np.array(uniform))
    np.testing.assert_array_equal(got, expected)
