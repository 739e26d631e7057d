"""Baseline policies for the session simulator.

A policy maps a batched observation to a slate per user. Baselines marked *peeking* read the latent
user state through the simulator's documented oracle API (``oracle_click_probability``,
``oracle_expected_watch``); policies under evaluation never do.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rayrec.contracts.observation import Obs
from rayrec.sim import SessionSimulator

__all__ = [
    "BASELINES",
    "GreedyMyopicPolicy",
    "LongTermHeuristicPolicy",
    "ObservedHeuristicPolicy",
    "Policy",
    "PopularPolicy",
    "RandomPolicy",
    "make_baseline",
    "top_k_valid",
]


class Policy(Protocol):
    """Chooses a slate for every user of a batch."""

    name: str

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        """(B, k) candidate indices for the batched observation ``obs``."""
        ...


def top_k_valid(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the k highest scores among valid candidates, best first."""
    masked = np.where(mask.astype(bool), scores, -np.inf)
    if k == 1:
        return masked.argmax(axis=1)[:, None]
    top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(masked, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


class RandomPolicy:
    """Uniformly random valid candidates (without replacement within a slate)."""

    name = "random"

    def __init__(self, seed: int | None = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        mask = obs[Obs.ACTION_MASK]
        return top_k_valid(self.rng.random(mask.shape), mask, sim.config.slate_size)


class PopularPolicy:
    """The most popular valid candidates (observable log-popularity)."""

    name = "popular"

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        scores = obs[Obs.CANDIDATE_SCALARS][:, :, 0]
        return top_k_valid(scores, obs[Obs.ACTION_MASK], sim.config.slate_size)


class GreedyMyopicPolicy:
    """*Peeking*: the candidates with the highest true immediate click probability.

    With the default reward (a click is worth 1) this maximises the expected immediate reward: it is
    the strongest myopic policy, the bandit that knows the user perfectly.
    """

    name = "greedy"

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        scores = sim.oracle_click_probability()
        return top_k_valid(scores, obs[Obs.ACTION_MASK], sim.config.slate_size)


class LongTermHeuristicPolicy:
    """*Peeking*: click probability discounted by how satisfying the item would be.

    score = P(click) * exp(strength * (E[watch] - quality_reference)); it gives up some clicks now
    for satisfaction, hence longer sessions and more returns.
    """

    name = "longterm"

    def __init__(self, strength: float = 4.0) -> None:
        self.strength = strength

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        watch = sim.oracle_expected_watch() - sim.config.quality_reference
        scores = sim.oracle_click_probability() * np.exp(self.strength * watch)
        return top_k_valid(scores, obs[Obs.ACTION_MASK], sim.config.slate_size)


class ObservedHeuristicPolicy:
    """A hand-written long-term scorer that sees only the observation (it does not peek).

    The user's interest is estimated as the direction of the clicked history items (weighted by
    how much of them was watched) plus ``prior`` times the mean of the valid candidates, which
    retrieval chose for this user. A candidate scores

        affinity * <interest, item> + logit(CTR estimate) + watch * watch estimate,

    so it prefers items the user probably likes and would watch, not the most clickable. It is the
    reference for what the observation alone can earn without learning.
    """

    name = "heuristic"

    def __init__(self, affinity: float = 4.0, watch: float = 4.0, prior: float = 3.0) -> None:
        self.affinity, self.watch, self.prior = affinity, watch, prior

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, M) scores of the candidates (masked candidates included: mask them to choose)."""
        responses, hmask = obs[Obs.HISTORY_RESPONSES], obs[Obs.HISTORY_MASK]
        items, scalars = obs[Obs.CANDIDATE_FEATURES], obs[Obs.CANDIDATE_SCALARS]
        mask = obs[Obs.ACTION_MASK]
        weight = responses[:, :, 0] * hmask * (0.5 + responses[:, :, 1])
        interest = np.einsum("bh,bhd->bd", weight, obs[Obs.HISTORY_FEATURES])
        interest += self.prior * np.einsum("bm,bmd->bd", mask, items) / mask.shape[1]
        interest /= np.maximum(np.linalg.norm(interest, axis=1, keepdims=True), 1e-6)
        ctr = np.clip(scalars[:, :, 1], 1e-4, 1 - 1e-4)
        return (
            self.affinity * np.einsum("bd,bmd->bm", interest, items)
            + np.log(ctr / (1 - ctr))
            + self.watch * scalars[:, :, 2]
        )

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        return top_k_valid(self.scores(obs), obs[Obs.ACTION_MASK], sim.config.slate_size)


BASELINES = {
    "random": RandomPolicy,
    "popular": PopularPolicy,
    "greedy": GreedyMyopicPolicy,
    "longterm": LongTermHeuristicPolicy,
    "heuristic": ObservedHeuristicPolicy,
}


def make_baseline(name: str, seed: int | None = 0) -> Policy:
    """The baseline called ``name`` (one of ``BASELINES``)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if name == "random":
        return RandomPolicy(seed)
    return BASELINES[name]()
