"""Choice models: how a user picks at most one item from the slate shown to them.

Both models turn per-slot utilities into click probabilities; sampling is shared. Equations in
docs/simulator.md, section "Choice".
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = [
    "CascadeChoice",
    "ChoiceModel",
    "MultinomialLogitChoice",
    "make_choice_model",
    "sample_choice",
]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for any finite input."""
    y = np.multiply(x, 0.5)
    if not isinstance(y, np.ndarray):
        return 0.5 * (1.0 + np.tanh(y))
    # The same operations as 0.5 * (1 + tanh(0.5 x)), in place: no temporary per operation.
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y


def examination(slate_size: int, position_bias: float) -> np.ndarray:
    """(k,) probability that a user examines slot i: (1 + i) ** -position_bias."""
    return (1.0 + np.arange(slate_size, dtype=np.float32)) ** np.float32(-position_bias)


class ChoiceModel(Protocol):
    """Maps utilities of the shown slots to click probabilities."""

    def probabilities(self, utility: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """(B, k) utilities and (B, k) bool shown -> (B, k) click probabilities (sum <= 1)."""
        ...


class MultinomialLogitChoice:
    """Multinomial logit over the slate plus a no-click option, with position bias.

    P(click i) = exam_i exp(v_i) / (exp(v_0) + sum_j exam_j exp(v_j)).
    """

    def __init__(self, no_click_utility: float, slate_size: int, position_bias: float) -> None:
        self.no_click_utility = np.float32(no_click_utility)
        self.log_exam = np.log(examination(slate_size, position_bias))

    def probabilities(self, utility: np.ndarray, shown: np.ndarray) -> np.ndarray:
        z = utility - self.no_click_utility + self.log_exam
        # Stable softmax with the no-click logit fixed at 0.
        top = np.maximum(np.max(np.where(shown, z, -np.inf), axis=1, keepdims=True), 0.0)
        e = np.where(shown, np.exp(np.minimum(z - top, 0.0)), 0.0)
        return (e / (np.exp(-top) + e.sum(axis=1, keepdims=True))).astype(np.float32)


class CascadeChoice:
    """Cascade model: the user scans slots top-down and stops at the first click.

    P(click i) = e_i c_i prod_{j<i} (1 - e_j c_j), with c_i = sigmoid(v_i - v_0) and e_i the
    examination probability of slot i: an unexamined slot is passed over, not a reason to stop.
    """

    def __init__(self, no_click_utility: float, slate_size: int, position_bias: float) -> None:
        self.no_click_utility = np.float32(no_click_utility)
        self.exam = examination(slate_size, position_bias)

    def probabilities(self, utility: np.ndarray, shown: np.ndarray) -> np.ndarray:
        attract = np.where(shown, sigmoid(utility - self.no_click_utility), 0.0)
        attract = attract * self.exam
        survive = np.cumprod(1.0 - attract, axis=1)
        before = np.concatenate([np.ones_like(survive[:, :1]), survive[:, :-1]], axis=1)
        return (attract * before).astype(np.float32)


def make_choice_model(
    name: str, no_click_utility: float, slate_size: int, position_bias: float
) -> ChoiceModel:
    """The choice model called ``name`` ('mnl' or 'cascade')."""
    models = {"mnl": MultinomialLogitChoice, "cascade": CascadeChoice}
    if name not in models:
        raise ValueError(f"choice_model ({name!r}) must be one of {', '.join(models)}")
    return models[name](no_click_utility, slate_size, position_bias)


def sample_choice(probabilities: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Sample the clicked slot per row from (B, k) probabilities with (B,) uniforms; -1 = no click."""
    if probabilities.shape[1] == 1:
        return np.where(uniform < probabilities[:, 0], 0, -1)
    cum = np.cumsum(probabilities, axis=1)
    pos = (uniform[:, None] >= cum).sum(axis=1)
    return np.where(pos < probabilities.shape[1], pos, -1)
