"""The sequential-taste (recall) variant: the topic shown recall_lag steps ago is wanted now."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rayrec.sim import SessionSimulator, SimConfig

RECALL = {
    "num_items": 600,
    "num_topics": 6,
    "num_candidates": 12,
    "history_len": 4,
    "recall_lag": 2,
    "recall_bonus": 4.0,
    "clickbait_fraction": 0.0,
}


def _sim(**overrides):
    sim = SessionSimulator(SimConfig(**{**RECALL, **overrides}), 512, seed=0)
    sim.reset()
    for _ in range(3):
        sim.step(np.argmax(sim.candidate_valid, axis=1))
    return sim


def test_recalled_topic_gets_the_bonus():
    sim = _sim()
    target = sim.catalog.topic[sim.history_items[:, -2]]
    on_topic = sim.catalog.topic[sim.candidates] == target[:, None]
    assert on_topic.any() and (~on_topic).any()
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    with_bonus = logit(sim.oracle_click_probability())
    # The same users and candidates, judged without the bonus.
    sim.config = dataclasses.replace(sim.config, recall_bonus=0.0)
    diff = with_bonus - logit(sim.oracle_click_probability())
    np.testing.assert_allclose(diff[on_topic], 4.0, atol=1e-3)
    np.testing.assert_allclose(diff[~on_topic], 0.0, atol=1e-3)


def test_recall_lag_must_fit_in_the_history():
    with pytest.raises(ValueError, match="recall_lag"):
        SimConfig(recall_lag=5, history_len=4)
