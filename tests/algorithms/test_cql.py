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


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("loss_fn", ["huber", "mse"])
def test_loss_is_n_step_td_plus_alpha_times_the_penalty_on_a_hand_computed_batch(alpha, loss_fn):
    """The learner's whole loss: double-Q TD with the gamma^n bootstrap (cut at terminals),
    importance weights, plus alpha times the conservative penalty; numbers worked out by hand."""
    from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
    from ray.rllib.core.columns import Columns

    from rayrec.algorithms.cql import DiscreteCQLTorchLearner

    gamma = 0.9
    config = DiscreteCQLConfig().training(
        cql_alpha=alpha, gamma=gamma, td_error_loss_fn=loss_fn, double_q=True
    )
    learner = DiscreteCQLTorchLearner(config=config)
    fwd_out = {
        # Q(s, .) of three transitions over three candidates (-inf: masked).
        QF_PREDS: torch.tensor([[1.0, 2.0, NEG], [0.0, 0.5, 1.0], [3.0, NEG, -1.0]]),
        # Online Q(s', .) picks the next action (double Q); the target net values it.
        QF_NEXT_PREDS: torch.tensor([[0.0, 1.0, NEG], [2.0, 0.0, 0.0], [1.0, NEG, 0.0]]),
        QF_TARGET_NEXT_PREDS: torch.tensor([[5.0, 4.0, NEG], [3.0, 9.0, 9.0], [7.0, NEG, 8.0]]),
    }
    batch = {
        Columns.ACTIONS: torch.tensor([0, 2, 0]),
        Columns.REWARDS: torch.tensor([1.0, 0.5, 2.0]),
        Columns.TERMINATEDS: torch.tensor([False, False, True]),
        "n_step": torch.tensor([1.0, 3.0, 2.0]),
        "weights": torch.tensor([1.0, 2.0, 0.5]),
    }
    # By hand. Row 0: Q=1, next action 1 (online), target value 4, y = 1 + 0.9 * 4 = 4.6.
    # Row 1: Q=1, next action 0, target 3, n=3: y = 0.5 + 0.9**3 * 3 = 2.687.
    # Row 2: terminal: y = 2, Q=3.
    td = [1.0 - 4.6, 1.0 - (0.5 + 0.729 * 3.0), 3.0 - 2.0]

    def elementwise(d: float) -> float:
        if loss_fn == "mse":
            return d * d
        return 0.5 * d * d if abs(d) <= 1.0 else abs(d) - 0.5

    weights = [1.0, 2.0, 0.5]
    expected_td = sum(w * elementwise(d) for w, d in zip(weights, td, strict=True)) / 3
    penalty = [
        math.log(math.e + math.e**2) - 1.0,
        math.log(1.0 + math.exp(0.5) + math.e) - 1.0,
        math.log(math.e**3 + math.e**-1) - 3.0,
    ]
    expected = expected_td + alpha * sum(penalty) / 3
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=config, batch=batch, fwd_out=fwd_out
    )
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Logged data without weights or n_step: uniform weights and one-step bootstraps.
    plain = {k: v for k, v in batch.items() if k not in ("weights", "n_step")}
    one_step = [1.0 - 4.6, 1.0 - (0.5 + 0.9 * 3.0), 1.0]
    expected_plain = sum(elementwise(d) for d in one_step) / 3 + alpha * sum(penalty) / 3
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=config, batch=plain, fwd_out=fwd_out
    )
    assert float(loss) == pytest.approx(expected_plain, rel=1e-6)
