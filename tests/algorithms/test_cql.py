"""Discrete CQL's conservative penalty on hand-computed batches (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch

from rayrec.algorithms.cql import DiscreteCQLConfig, conservative_penalty

NEG = float("-inf")


def test_penalty_on_a_hand_computed_batch():
    q = torch.tensor([[1.0, 2.0, NEG], [0.0, 0.0, 0.0], [3.0, NEG, -1.0]])
    actions = torch.tensor([0, 2, 2])
    expected = [
        math.log(math.e + math.e**2) - 1.0,
        math.log(3.0),
        math.log(math.e**3 + math.e**-1) + 1.0,
    ]
    got = conservative_penalty(q, actions)
    torch.testing.assert_close(got, torch.tensor(expected))


def test_masked_candidates_do_not_count():
    base = torch.tensor([[0.5, -0.2, NEG, NEG]])
    actions = torch.tensor([1])
    wider = torch.tensor([[0.5, -0.2, NEG, 10.0]])
    assert conservative_penalty(base, actions) < conservative_penalty(wider, actions)
    q = base.clone().requires_grad_(True)
    conservative_penalty(q, actions).sum().backward()
    assert torch.all(q.grad[0, 2:] == 0)
    # d/dQ: softmax over valid candidates minus the one-hot of the logged action.
    soft = torch.softmax(torch.tensor([0.5, -0.2]), 0)
    torch.testing.assert_close(q.grad[0, :2], soft - torch.tensor([0.0, 1.0]))


def test_penalty_is_zero_only_when_the_logged_action_dominates():
    q = torch.tensor([[50.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    got = conservative_penalty(q, torch.tensor([0, 0]))
    assert got[0] < 1e-6
    assert got[1] == pytest.approx(math.log(3.0))


def test_config_checks():
    config = DiscreteCQLConfig().training(cql_alpha=-1.0)
    with pytest.raises(ValueError, match="cql_alpha"):
        config.validate()
    assert DiscreteCQLConfig().min_sample_timesteps_per_iteration == 0
