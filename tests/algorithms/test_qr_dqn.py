"""QR-DQN's quantile Huber loss and learner on hand-computed batches; its spec errors (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import TD_ERROR_KEY

from rayrec.algorithms.qr_dqn import (
    QRDQNConfig,
    QRDQNTorchLearner,
    quantile_huber_loss,
    quantile_midpoints,
)
from rayrec.experiment import build_config
from rayrec.models.q_module import QF_QUANTILES, QF_TARGET_NEXT_QUANTILES
from rayrec.specs import EnvSpec, PolicySpec, SpecError, apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[2]
NEG = float("-inf")


def test_quantile_midpoints():
    # tau_hat_i = (2i - 1) / (2N): N = 2 -> 1/4, 3/4; N = 4 -> 1/8, 3/8, 5/8, 7/8.
    torch.testing.assert_close(quantile_midpoints(2), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(quantile_midpoints(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_quantile_huber_loss_on_a_hand_computed_example():
    """kappa = 1, two quantiles theta = (0, 2) at tau = (1/4, 3/4), three targets (1, -0.5, 3.5).

    rho(u) = |tau - 1[u < 0]| * L(u), L(u) = u^2 / 2 if |u| <= 1 else |u| - 1/2.
    Quantile 1 (theta 0, tau 1/4): u = (1, -0.5, 3.5)
        L = (0.5, 0.125, 3.0); weights (1/4, 3/4, 1/4); rho = (0.125, 0.09375, 0.75)
        mean over targets = 0.96875 / 3
    Quantile 2 (theta 2, tau 3/4): u = (-1, -2.5, 1.5)
        L = (0.5, 2.0, 1.0); weights (1/4, 1/4, 3/4); rho = (0.125, 0.5, 0.75)
        mean over targets = 1.375 / 3
    Sum over quantiles: 2.34375 / 3 = 0.78125.
    """
    quantiles = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, -0.5, 3.5]])
    loss = quantile_huber_loss(quantiles, targets, kappa=1.0)
    torch.testing.assert_close(loss, torch.tensor([0.78125]))


def test_quantile_huber_loss_per_sample_and_kappa():
    """Rows are independent; kappa moves the quadratic zone.

    Row 2: theta = (1, 1), targets (1, 1): u = 0 everywhere, loss 0.
    kappa = 2 on row 1 of the example above: L_2(u) = u^2 / 2 if |u| <= 2 else 2 (|u| - 1).
        quantile 1: L = (0.5, 0.125, 5.0) -> rho = (0.125, 0.09375, 1.25), sum 1.46875
        quantile 2: L = (0.5, 3.0, 1.125) -> rho = (0.125, 0.75, 0.84375), sum 1.71875
        (1.46875 + 1.71875) / 3 = 1.0625.
    """
    quantiles = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, -0.5, 3.5], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(quantile_huber_loss(quantiles, targets), torch.tensor([0.78125, 0]))
    torch.testing.assert_close(
        quantile_huber_loss(quantiles, targets, kappa=2.0), torch.tensor([1.0625, 0.0])
    )


def test_the_gradient_moves_each_quantile_towards_its_level():
    """Quantile 1 (tau 1/4) has a quarter of the targets below it: balanced, no gradient.
    Quantile 2 (tau 3/4) lies above every target: a positive gradient, so descent lowers it.
    d/dtheta_i = -mean_j w_ij L'(u_ij), L'(u) = u where |u| <= kappa, else sign(u)."""
    quantiles = torch.tensor([[0.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[-0.5, 0.5, 0.5, 0.5]])
    quantile_huber_loss(quantiles, targets).sum().backward()
    # Quantile 1: u = (-0.5, 0.5, 0.5, 0.5), w = (3/4, 1/4, 1/4, 1/4):
    #   dL/dtheta = -(0.75 * -0.5 + 3 * 0.25 * 0.5) / 4 = -(-0.375 + 0.375) / 4 = 0.
    # Quantile 2: u = (-1.5, -0.5, -0.5, -0.5), w = 1/4 each; d/dtheta of the linear part of
    #   u = -1.5 is +1 (sign), of the quadratic parts -u = 0.5: (0.25 * 1 + 3 * 0.25 * 0.5) / 4.
    torch.testing.assert_close(quantiles.grad, torch.tensor([[0.0, (0.25 + 0.375) / 4]]))


def _fwd_out() -> dict[str, torch.Tensor]:
    """Three transitions over two candidates with two quantiles each."""
    quantiles = torch.tensor(
        [
            [[9.0, 9.0], [0.0, 2.0]],  # row 0 takes candidate 1: theta = (0, 2)
            [[1.0, 4.0], [9.0, 9.0]],  # row 1 takes candidate 0: theta = (1, 4)
            [[0.0, 0.0], [9.0, 9.0]],  # row 2 takes candidate 0: theta = (0, 0)
        ]
    )
    target_next = torch.tensor(
        [
            [[1.0, 4.0], [100.0, 100.0]],  # the online net picks candidate 0 (double Q)
            [[50.0, 50.0], [50.0, 50.0]],  # terminal: never read
            [[7.0, 7.0], [7.0, 7.0]],  # no valid next candidate: never read
        ]
    )
    return {
        QF_PREDS: quantiles.mean(-1),
        QF_QUANTILES: quantiles,
        QF_NEXT_PREDS: torch.tensor([[3.0, 1.0], [0.0, 1.0], [NEG, NEG]]),
        QF_TARGET_NEXT_PREDS: torch.where(
            torch.tensor([[True], [True], [False]]), target_next.mean(-1), NEG
        ),
        QF_TARGET_NEXT_QUANTILES: target_next,
    }


BATCH = {
    Columns.ACTIONS: torch.tensor([1, 0, 0]),
    Columns.REWARDS: torch.tensor([0.5, 2.0, 1.0]),
    Columns.TERMINATEDS: torch.tensor([False, True, False]),
    "n_step": torch.tensor([2, 3, 1]),
    "weights": torch.tensor([1.0, 2.0, 1.0]),
}


@pytest.mark.parametrize("double_q", [True, False])
def test_learner_loss_on_a_hand_computed_batch(double_q):
    """gamma 0.5, kappa 1, tau = (1/4, 3/4).

    Row 0 (n = 2, weight 1), theta = (0, 2). Double Q: the online Q(s', .) = (3, 1) picks
    candidate 0, whose target quantiles are (1, 4): T theta = 0.5 + 0.25 * (1, 4) = (0.75, 1.5).
        quantile 1: u = (0.75, 1.5), L = (0.28125, 1.0), w = 1/4: mean 0.16015625
        quantile 2: u = (-1.25, -0.5), L = (0.75, 0.125), w = 1/4: mean 0.109375
        loss 0.26953125; mean |u| = (0.75 + 1.5 + 1.25 + 0.5) / 4 = 1.0
      Without double Q the target net's own Q (2.5, 100) picks candidate 1 (100, 100):
        T theta = 0.5 + 0.25 * 100 = 25.5: u = (25.5, 25.5) and (23.5, 23.5)
        loss 1/4 * 25 + 3/4 * 23 = 23.5; mean |u| = 24.5
    Row 1 (terminal, weight 2), theta = (1, 4): T theta = (2, 2), no bootstrap.
        quantile 1: u = 1, L = 0.5, w = 1/4: 0.125; quantile 2: u = -2, L = 1.5, w = 1/4: 0.375
        loss 0.5; mean |u| = 1.5
    Row 2 (no valid next candidate, weight 1), theta = (0, 0): T theta = (1, 1), no bootstrap.
        quantile 1: 1/4 * 0.5; quantile 2: 3/4 * 0.5: loss 0.5; mean |u| = 1
    Total: mean of weight * loss.
    """
    config = QRDQNConfig().training(gamma=0.5, double_q=double_q, num_quantiles=2)
    learner = QRDQNTorchLearner(config=config)
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=config, batch=BATCH, fwd_out=_fwd_out()
    )
    row0, td0 = (0.26953125, 1.0) if double_q else (23.5, 24.5)
    assert float(loss) == pytest.approx((row0 + 2 * 0.5 + 0.5) / 3, rel=1e-6)
    # The per-transition TD errors DQN's training step turns into replay priorities.
    (td,) = learner.metrics.peek(("default_policy", TD_ERROR_KEY))
    assert list(td) == pytest.approx([td0, 1.5, 1.0])


def test_learner_gradient_reaches_the_taken_quantiles_only():
    config = QRDQNConfig().training(gamma=0.5, num_quantiles=2)
    learner = QRDQNTorchLearner(config=config)
    fwd_out = _fwd_out()
    fwd_out[QF_QUANTILES].requires_grad_(True)
    fwd_out[QF_TARGET_NEXT_QUANTILES].requires_grad_(True)
    learner.compute_loss_for_module(
        module_id="default_policy", config=config, batch=BATCH, fwd_out=fwd_out
    ).backward()
    grad = fwd_out[QF_QUANTILES].grad
    taken = torch.zeros(3, 2, dtype=torch.bool)
    taken[torch.arange(3), BATCH[Columns.ACTIONS]] = True
    assert (grad[~taken] == 0).all() and (grad[taken].abs().sum(-1) > 0).all()
    assert fwd_out[QF_TARGET_NEXT_QUANTILES].grad is None  # targets are detached


def test_a_module_without_quantiles_is_a_clear_error():
    config = QRDQNConfig()
    learner = QRDQNTorchLearner(config=config)
    fwd_out = {k: v for k, v in _fwd_out().items() if k != QF_QUANTILES}
    with pytest.raises(ValueError, match="QRDQN needs quantile outputs"):
        learner.compute_loss_for_module(
            module_id="default_policy", config=config, batch=BATCH, fwd_out=fwd_out
        )


def _build(preset: str, *overrides: str):
    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / f"{preset}.yaml"),
        list(overrides),
    )
    return build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw))


def test_the_presets_reach_the_module_config():
    qr = _build("qr_dqn").model_config
    assert (qr["num_quantiles"], qr["num_atoms"], qr["v_min"], qr["v_max"]) == (51, 1, None, None)
    c51 = _build("c51").model_config
    assert (c51["num_atoms"], c51["v_min"], c51["v_max"]) == (51, 0.0, 100.0)
    assert "num_quantiles" not in c51


@pytest.mark.parametrize(
    "preset, override, message",
    [
        ("qr_dqn", "training.num_quantiles=1", r"num_quantiles \(1\) must be a whole number >= 2"),
        ("qr_dqn", "training.num_atoms=51", r"num_atoms \(51\) must be 1 with num_quantiles"),
        ("qr_dqn", "training.v_min=0.0", r"v_min \(0.0\) is C51's fixed support"),
        ("qr_dqn", "training.huber_kappa=0", r"huber_kappa \(0\) must be a finite number > 0"),
        ("qr_dqn", "training.td_error_loss_fn=mse", r"td_error_loss_fn \('mse'\) does not apply"),
        ("qr_dqn", "training.num_quantiles=many", r"training.num_quantiles must be a int"),
        ("c51", "training.v_max=-5.0", r"v_min \(0.0\) and v_max \(-5.0\) must be finite"),
        ("c51", "training.num_quantiles=8", r"unknown key training.num_quantiles for DQN"),
        ("c51", "training.huber_kappa=1.0", r"unknown key training.huber_kappa for DQN"),
    ],
)
def test_bad_settings_fail_before_ray_starts(preset, override, message):
    with pytest.raises(SpecError, match=message):
        _build(preset, override)
