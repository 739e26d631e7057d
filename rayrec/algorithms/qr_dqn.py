"""QR-DQN (Dabney, Rowland, Bellemare and Munos 2018) on RLlib's DQN.

RLlib 2.60's DQN learns expected Q-values or C51's categorical distribution over a fixed support.
QR-DQN instead learns N quantiles of the return of every candidate, at the midpoints

    tau_hat_i = (2i - 1) / (2N),  i = 1..N                         (Dabney et al. 2018, lemma 2)

with no support to choose. For a transition (s, a, n-step reward R, s') and the greedy next action
a* (double Q: chosen by the online network's Q = mean of its quantiles, valued by the target
network's quantiles theta'), the target quantiles are

    T theta_j = R + gamma^n (1 - terminated) theta'_j(s', a*)

and the loss of the transition is the quantile Huber loss

    sum_i mean_j rho^kappa_{tau_hat_i}(T theta_j - theta_i(s, a)),
    rho^kappa_tau(u) = |tau - 1[u < 0]| L_kappa(u),
    L_kappa(u) = u^2 / 2 if |u| <= kappa else kappa (|u| - kappa / 2)     (eq. 9 and 10)

weighted by the prioritized-replay importance weight of the transition. The TD error that sets
new priorities is the mean |T theta_j - theta_i| over all N x N pairs (a transition's quantiles
far from their targets in return units, as DQN's |TD error| is); like C51's cross-entropy it does
not vanish where the return is random. The module's QR-DQN outputs are
:class:`rayrec.models.q_module.CandidateQModule` with ``num_quantiles`` (this config puts it into
the module's model_config).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.dqn.dqn import DQN, DQNConfig
from ray.rllib.algorithms.dqn.dqn_learner import (
    QF_LOSS_KEY,
    QF_MAX_KEY,
    QF_MEAN_KEY,
    QF_MIN_KEY,
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_TARGET_NEXT_PREDS,
    TD_ERROR_MEAN_KEY,
)
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import TD_ERROR_KEY

from rayrec.models.q_module import QF_QUANTILES, QF_TARGET_NEXT_QUANTILES, head_width

__all__ = [
    "QRDQN",
    "QUANTILE_SPREAD_KEY",
    "QRDQNConfig",
    "QRDQNTorchLearner",
    "quantile_huber_loss",
    "quantile_midpoints",
    "quantile_td",
]

QUANTILE_SPREAD_KEY = "qf_quantile_spread"
"""Learner metric: mean over the batch of the taken action's highest minus lowest quantile."""


def quantile_midpoints(n: int, device: Any = None) -> torch.Tensor:
    """(N,) tau_hat_i = (2i - 1) / (2N): the quantile levels QR-DQN's outputs estimate."""
    return (torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n


def quantile_td(quantiles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, N, N') pairwise TD errors u_ij = T theta_j - theta_i.

    Args:
        quantiles: (B, N) theta_i(s, a), quantile i at tau_hat_i.
        targets: (B, N') target quantiles T theta_j (no gradient flows into them).
    """
    return targets.unsqueeze(1) - quantiles.unsqueeze(2)


def quantile_huber_loss(
    quantiles: torch.Tensor, targets: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """(B,) sum_i mean_j rho^kappa_{tau_hat_i}(u_ij) (Dabney et al. 2018, eq. 10).

    Args:
        quantiles: (B, N) theta_i(s, a), quantile i at tau_hat_i = (2i - 1) / (2N).
        targets: (B, N') target quantiles; pass them detached.
        kappa: the Huber threshold (> 0); with kappa = 1 this is the paper's QR-DQN-1.
    """
    u = quantile_td(quantiles, targets)
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u.pow(2), kappa * (abs_u - 0.5 * kappa))
    tau = quantile_midpoints(quantiles.shape[-1], device=quantiles.device).view(1, -1, 1)
    # The asymmetric weight: under-estimates (u > 0) weigh tau, over-estimates 1 - tau.
    weight = (tau - (u.detach() < 0).float()).abs()
    return (weight * huber).mean(dim=2).sum(dim=1)


def _at(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(B, N) rows of (B, M, N) ``values`` at (B,) candidate indices."""
    index = actions.long().view(-1, 1, 1).expand(-1, 1, values.shape[-1])
    return values.gather(1, index).squeeze(1)


class QRDQNConfig(DQNConfig):
    """DQN's configuration plus ``num_quantiles`` and ``huber_kappa``; C51's ``num_atoms``,
    ``v_min`` and ``v_max`` do not apply."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or QRDQN)
        self.num_quantiles = 32
        self.huber_kappa = 1.0
        # C51's fixed support has no meaning here: unset, so that a spec that sets it fails.
        self.v_min = None
        self.v_max = None

    @override(DQNConfig)
    def training(
        self,
        *,
        num_quantiles: int | None = NotProvided,
        huber_kappa: float | None = NotProvided,
        **kwargs: Any,
    ) -> Any:
        """``num_quantiles``: N, the quantiles per candidate (>= 2); ``huber_kappa``: the Huber
        threshold kappa of the quantile loss (> 0); everything else as DQN's."""
        super().training(**kwargs)
        if num_quantiles is not NotProvided:
            self.num_quantiles = num_quantiles
        if huber_kappa is not NotProvided:
            self.huber_kappa = huber_kappa
        return self

    @property
    @override(DQNConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"num_quantiles": self.num_quantiles}

    @override(DQNConfig)
    def get_default_learner_class(self) -> type:
        return QRDQNTorchLearner

    @override(DQNConfig)
    def validate(self) -> None:
        super().validate()
        kappa = self.huber_kappa
        number = isinstance(kappa, int | float) and not isinstance(kappa, bool)
        if not number or not math.isfinite(kappa) or kappa <= 0:
            self._value_error(
                f"huber_kappa ({kappa!r}) must be a finite number > 0: the Huber threshold of "
                "QR-DQN's quantile loss (1.0 in Dabney et al. 2018)"
            )
        if self.td_error_loss_fn != "huber":
            self._value_error(
                f"td_error_loss_fn ({self.td_error_loss_fn!r}) does not apply to QRDQN: its loss "
                "is the quantile Huber loss (set huber_kappa); leave it 'huber'"
            )
        try:
            head_width(self.model_config)
        except ValueError as e:
            self._value_error(str(e))


class QRDQNTorchLearner(DQNTorchLearner):
    """The importance-weighted quantile Huber loss over n-step double-Q targets."""

    @override(DQNTorchLearner)
    def compute_loss_for_module(
        self, *, module_id: str, config: QRDQNConfig, batch: dict, fwd_out: dict
    ) -> torch.Tensor:
        if QF_QUANTILES not in fwd_out:
            raise ValueError(
                f"QRDQN needs quantile outputs ('{QF_QUANTILES}'); module {module_id!r} returned "
                f"{sorted(fwd_out)}: use rayrec's CandidateQModule (built with num_quantiles)"
            )
        actions = batch[Columns.ACTIONS]
        rewards = batch[Columns.REWARDS]
        ones = torch.ones_like(rewards)
        n_step = batch.get("n_step", ones)
        weights = batch.get("weights", ones)
        current = _at(fwd_out[QF_QUANTILES], actions)
        # The greedy next action: by the online Q (double Q) or by the target's (DQN).
        chooser = fwd_out[QF_NEXT_PREDS] if config.double_q else fwd_out[QF_TARGET_NEXT_PREDS]
        next_action = chooser.argmax(dim=-1)
        next_q = chooser.gather(1, next_action.view(-1, 1)).squeeze(1)
        # No bootstrap past a terminal, nor from an s' without any valid candidate (its Q is
        # -inf: RLlib's DQN bootstraps 0 there too).
        live = (1.0 - batch[Columns.TERMINATEDS].float()) * torch.isfinite(next_q).float()
        discount = (config.gamma**n_step) * live
        next_quantiles = _at(fwd_out[QF_TARGET_NEXT_QUANTILES], next_action)
        targets = (rewards.unsqueeze(-1) + discount.unsqueeze(-1) * next_quantiles).detach()
        total_loss = torch.mean(weights * quantile_huber_loss(current, targets, config.huber_kappa))

        td_error = quantile_td(current, targets).abs().mean(dim=(1, 2)).detach()
        q_selected = torch.nan_to_num(
            fwd_out[QF_PREDS].gather(1, actions.long().view(-1, 1)).squeeze(1), neginf=0.0
        )
        # Per transition, in batch order: DQN's training step sets the replay priorities from it.
        self.metrics.log_value(key=(module_id, TD_ERROR_KEY), value=td_error, reduce="item_series")
        self.metrics.log_dict(
            {
                QF_LOSS_KEY: total_loss,
                QF_MEAN_KEY: q_selected.mean(),
                QF_MAX_KEY: q_selected.max(),
                QF_MIN_KEY: q_selected.min(),
                TD_ERROR_MEAN_KEY: td_error.mean(),
                QUANTILE_SPREAD_KEY: (current.max(dim=1).values - current.min(dim=1).values)
                .mean()
                .detach(),
            },
            key=module_id,
            window=1,
        )
        return total_loss


class QRDQN(DQN):
    """RLlib's DQN (replay, n-step, target network, exploration) with QR-DQN's loss."""

    @classmethod
    @override(DQN)
    def get_default_config(cls) -> QRDQNConfig:
        return QRDQNConfig()
