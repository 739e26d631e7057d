"""Options: definitions, initiation sets, the following term and termination, as pure functions.

Everything here reads only what the policy can observe (candidate and history topics, clicks,
skips), never the simulator's latent state. Equations: ``docs/hierarchical.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.envs.hierarchical.config import HierarchyConfig

__all__ = [
    "Option",
    "build_options",
    "following",
    "initiation_mask",
    "termination",
]


@dataclass(frozen=True)
class Option:
    """One option the high level can pick."""

    kind: str
    """One of OPTION_KINDS."""
    topic: int = -1
    """The focus topic of a ``topic`` option, else -1."""

    @property
    def name(self) -> str:
        return f"topic_{self.topic}" if self.kind == "topic" else self.kind


def build_options(config: HierarchyConfig, num_topics: int) -> tuple[Option, ...]:
    """The option set: the configured kinds in order, ``topic`` expanded per topic (last)."""
    out = [Option(kind) for kind in config.options if kind != "topic"]
    if "topic" in config.options:
        out.extend(Option("topic", t) for t in range(num_topics))
    return tuple(out)


def _available(option: Option, offered: set[int], novel: bool, clicked_any: bool) -> bool:
    if option.kind == "explore":
        return novel  # something not yet in the history is on offer
    if option.kind == "exploit":
        return clicked_any  # there is a known interest: at least one click in the history
    if option.kind == "topic":
        return option.topic in offered
    return True  # diversify: everywhere


def initiation_mask(
    options: tuple[Option, ...],
    candidate_topics: np.ndarray,
    candidate_valid: np.ndarray,
    history_topics: np.ndarray,
    history_clicked: np.ndarray,
    fallback: bool = True,
) -> np.ndarray:
    """(K,) bool: options whose initiation set holds the current state.

    Args:
        candidate_topics: (M,) topic of each candidate.
        candidate_valid: (M,) bool action mask of the candidates.
        history_topics: (H,) topic of each history item, -1 for padding or nothing shown.
        history_clicked: (H,) bool, the history entry was a click.

    With ``fallback``, when no option is available (only possible without ``diversify``), every
    option is.
    """
    # Python sets of a few small ints: this runs at every step of every env (the hot path).
    offered = set(candidate_topics[candidate_valid].tolist())
    novel = bool(offered - set(history_topics[history_topics >= 0].tolist()))
    clicked_any = bool(history_clicked.any())
    mask = np.array([_available(o, offered, novel, clicked_any) for o in options], dtype=bool)
    if fallback and not mask.any():
        mask[:] = True
    return mask


def following(
    option: Option,
    shown_topics: np.ndarray,
    history_topics: np.ndarray,
    history_clicked: np.ndarray,
    option_topics: frozenset[int],
) -> float:
    """The option-following term f in [0, 1]: the share of the shown items that follow the option.

    Args:
        shown_topics: (n,) topics of the items shown at this step (n = 0: f = 0).
        history_topics, history_clicked: the (H,) history *before* this step.
        option_topics: topics shown earlier during this option.

    explore: the topic is not in the history (novelty); exploit: the topic was clicked in the
    history (topic match with known interests); diversify: the topic was not shown earlier in this
    option (diversity); topic t: the topic is t.
    """
    shown = shown_topics.tolist()
    if not shown:
        return 0.0
    # Python sets of a few small ints (np.isin costs ~100 us per call on this hot path).
    if option.kind == "explore":
        history = set(history_topics[history_topics >= 0].tolist())
        hits = sum(t not in history for t in shown)
    elif option.kind == "exploit":
        liked = set(history_topics[history_clicked & (history_topics >= 0)].tolist())
        hits = sum(t in liked for t in shown)
    elif option.kind == "diversify":
        hits = sum(t not in option_topics for t in shown)
    else:
        hits = sum(t == option.topic for t in shown)
    return hits / len(shown)


def termination(
    steps: int,
    skip_run: int,
    session_ended: bool,
    available: bool,
    config: HierarchyConfig,
) -> str | None:
    """Why the option ends after its ``steps``-th low step, or None if it goes on.

    Checked in order: the session (or the episode) ended, the skip streak reached
    ``skip_streak`` (> 0), the state left the initiation set (``available`` False, when
    ``terminate_outside_initiation``), the step budget is spent.
    """
    if session_ended:
        return "session_end"
    if config.skip_streak and skip_run >= config.skip_streak:
        return "skip_streak"
    if config.terminate_outside_initiation and not available:
        return "initiation"
    if steps >= config.option_budget:
        return "budget"
    return None
