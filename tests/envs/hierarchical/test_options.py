"""Options as pure functions: the option set, initiation sets, following terms, termination."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.envs.hierarchical import (
    HierarchyConfig,
    Option,
    build_options,
    following,
    initiation_mask,
    termination,
)

OPTIONS = build_options(HierarchyConfig(), num_topics=4)
# Candidates of topics 0, 1, 1, 3; the topic-3 one is masked.
CAND_TOPICS = np.array([0, 1, 1, 3])
CAND_VALID = np.array([True, True, False, False])
EMPTY = np.full(3, -1)
NO_CLICKS = np.zeros(3, dtype=bool)


def _names(mask: np.ndarray) -> set[str]:
    return {o.name for o, m in zip(OPTIONS, mask, strict=True) if m}


def test_option_set_expands_topics_last() -> None:
    assert [o.name for o in OPTIONS] == [
        "explore",
        "exploit",
        "diversify",
        "topic_0",
        "topic_1",
        "topic_2",
        "topic_3",
    ]
    assert build_options(HierarchyConfig(options=("exploit",)), 4) == (Option("exploit"),)


def test_initiation_on_an_empty_history() -> None:
    mask = initiation_mask(OPTIONS, CAND_TOPICS, CAND_VALID, EMPTY, NO_CLICKS)
    # No click yet: nothing to exploit. Topic 3 is offered only by a masked candidate.
    assert _names(mask) == {"explore", "diversify", "topic_0", "topic_1"}


def test_initiation_after_history() -> None:
    history = np.array([-1, 0, 1])
    clicked = np.array([False, False, True])
    mask = initiation_mask(OPTIONS, CAND_TOPICS, CAND_VALID, history, clicked)
    # Every valid candidate's topic has been seen: nothing new to explore.
    assert _names(mask) == {"exploit", "diversify", "topic_0", "topic_1"}


def test_no_available_option_unmasks_all_unless_asked_not_to() -> None:
    options = (Option("exploit"), Option("topic", 2))
    args = (CAND_TOPICS, CAND_VALID, EMPTY, NO_CLICKS)
    assert initiation_mask(options, *args).all()
    assert not initiation_mask(options, *args, fallback=False).any()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        pytest.param(Option("explore"), 0.5, id="explore"),  # topic 2 is new, topic 0 is not
        pytest.param(Option("exploit"), 0.5, id="exploit"),  # topic 0 was clicked
        pytest.param(Option("diversify"), 0.5, id="diversify"),  # topic 2 shown in the option
        pytest.param(Option("topic", 2), 0.5, id="topic-2"),
        pytest.param(Option("topic", 3), 0.0, id="topic-3"),
    ],
)
def test_following_is_the_share_of_shown_items_that_follow(option: Option, expected: float) -> None:
    shown = np.array([0, 2])
    history = np.array([-1, 0, 1])
    clicked = np.array([False, True, False])
    assert following(option, shown, history, clicked, frozenset({2})) == expected


def test_following_is_zero_when_nothing_is_shown() -> None:
    assert (
        following(Option("diversify"), np.array([], dtype=np.int64), EMPTY, NO_CLICKS, frozenset())
        == 0.0
    )


@pytest.mark.parametrize(
    ("steps", "skip_run", "ended", "available", "expected"),
    [
        pytest.param(1, 0, False, True, None, id="running"),
        pytest.param(4, 0, False, True, "budget", id="budget"),
        pytest.param(2, 2, False, True, "skip_streak", id="skips"),
        pytest.param(2, 0, False, False, "initiation", id="left-initiation"),
        pytest.param(4, 2, True, False, "session_end", id="session-end-first"),
        pytest.param(4, 2, False, True, "skip_streak", id="skips-before-budget"),
    ],
)
def test_termination(
    steps: int, skip_run: int, ended: bool, available: bool, expected: str | None
) -> None:
    config = HierarchyConfig(option_budget=4, skip_streak=2)
    assert termination(steps, skip_run, ended, available, config) == expected


def test_termination_switches_off() -> None:
    config = HierarchyConfig(option_budget=4, skip_streak=0, terminate_outside_initiation=False)
    assert termination(2, 10, False, False, config) is None
