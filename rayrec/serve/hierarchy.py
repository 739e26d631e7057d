"""Serving a two-level (options) checkpoint: the high level chooses an option for the request, the
low level scores the candidates under it.

What the server knows of a user's lifetime is the history a request brings, so the high level's
topic statistics (shown share and click rate per topic) come from that history window; the option
starts fresh (its whole step budget left). Observations are built by the env's own builders
(:mod:`rayrec.envs.hierarchical.observation`), so serving sees what training saw.

Propensities: the option is drawn from the high level's softmax over the options it may start
(``sample``) or is its arg-max (``greedy``, probability 1). The slate's propensity is the product
of both levels' probabilities: the first position's propensity carries the option's probability,
so the product of ``propensities`` stays the probability of the whole slate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rayrec.contracts.observation import Obs
from rayrec.envs.hierarchical import HierarchyConfig
from rayrec.envs.hierarchical.observation import (
    high_observation,
    history_topic_counts,
    low_observation,
)
from rayrec.envs.hierarchical.options import Option, build_options, initiation_mask
from rayrec.models.scoring import module_scores
from rayrec.sim import ItemCatalog

__all__ = ["OptionChoice", "ServedLevels", "choose_option"]


@dataclass(frozen=True)
class OptionChoice:
    """The option the high level chose for one request, and its probability."""

    index: int
    name: str
    propensity: float


def choose_option(
    logits: np.ndarray, available: np.ndarray, mode: str, rng: np.random.Generator
) -> tuple[int, float]:
    """An option index and its probability: the arg-max (probability 1) in ``greedy`` mode, a
    draw from the softmax over the available options in ``sample`` mode."""
    masked = np.where(available, logits.astype(np.float64), -np.inf)
    if mode == "greedy":
        return int(np.argmax(masked)), 1.0
    probs = np.exp(masked - masked.max())
    probs /= probs.sum()
    index = int(rng.choice(len(probs), p=probs))
    return index, float(probs[index])


@dataclass(frozen=True, eq=False)
class ServedLevels:
    """The high level of a two-level checkpoint and the option layer it chooses in."""

    high: Any
    """The high level's inference-only RLModule (option logits)."""
    hierarchy: HierarchyConfig
    catalog: ItemCatalog
    num_topics: int

    @property
    def options(self) -> tuple[Option, ...]:
        return build_options(self.hierarchy, self.num_topics)

    def low_inputs(
        self, obs: dict[str, np.ndarray], modes: list[str], rngs: list[np.random.Generator]
    ) -> tuple[dict[str, np.ndarray], list[OptionChoice]]:
        """Choose each request's option; returns the low level's batched observation under it.

        Args:
            obs: the batched session observation of the requests (B users).
            modes, rngs: each request's mode and draws.
        """
        options = self.options
        topics = self.catalog.topic
        highs, contexts = [], []
        for b in range(len(modes)):
            session = {key: value[b] for key, value in obs.items()}
            shown, clicks, history_topics, clicked = history_topic_counts(
                session[Obs.HISTORY_ITEMS], session[Obs.HISTORY_RESPONSES], topics, self.num_topics
            )
            available = initiation_mask(
                options,
                topics.take(session[Obs.CANDIDATE_ITEMS]).astype(np.int64),
                session[Obs.ACTION_MASK].astype(bool),
                history_topics,
                clicked,
            )
            highs.append(high_observation(session, shown, clicks, available))
            contexts.append((session, available))
        high_batch = {key: np.stack([h[key] for h in highs]) for key in highs[0]}
        logits = module_scores(self.high, high_batch)
        lows, choices = [], []
        for b, (session, available) in enumerate(contexts):
            index, propensity = choose_option(logits[b], available, modes[b], rngs[b])
            choices.append(OptionChoice(index, options[index].name, propensity))
            budget = self.hierarchy.option_budget
            lows.append(low_observation(session, len(options), index, 0, budget))
        return {key: np.stack([low[key] for low in lows]) for key in lows[0]}, choices
