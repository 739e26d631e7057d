"""Q-value RLModule for the DQN family (DQN, Ape-X arrangement, C51, QR-DQN, discrete CQL).

Per-candidate advantages come from the shared two-tower scorer; with ``dueling`` a state-value
stream is added and the advantages are centred over the *valid* candidates (Wang et al. 2016,
eq. 9, with the mean restricted to the action mask). Each candidate gets :func:`head_width`
outputs:

- ``num_atoms`` = 1: the expected return Q(s, a);
- ``num_atoms`` > 1: logits of a categorical return distribution over the fixed support
  v_min..v_max (C51, Bellemare et al. 2017), Q = sum_k p_k z_k; RLlib's DQN learner trains it with
  its projected cross-entropy loss;
- ``num_quantiles`` = N (set by :class:`rayrec.algorithms.qr_dqn.QRDQNConfig`): the return's
  quantiles at tau_hat_i = (2i - 1) / (2N) (QR-DQN, Dabney et al. 2018), Q = their mean.

Masked candidates get Q = -inf so that greedy actions, double-Q argmaxes and RLlib's random
exploration never pick them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import (
    ATOMS,
    QF_LOGITS,
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_PROBS,
    QF_TARGET_NEXT_PREDS,
    QF_TARGET_NEXT_PROBS,
)
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler
from torch import nn

from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import Obs
from rayrec.models.towers import RecommenderTowers

__all__ = [
    "QF_QUANTILES",
    "QF_TARGET_NEXT_QUANTILES",
    "CandidateQModule",
    "CandidateQNetwork",
    "QNetModule",
    "dueling_aggregate",
    "head_width",
]

QF_QUANTILES = "qf_quantiles"
"""Forward output: (B, M, N) quantile values of Q(s, .) (QR-DQN)."""
QF_TARGET_NEXT_QUANTILES = "qf_target_next_quantiles"
"""Forward-train output: (B, M, N) quantile values of the target network at the next state."""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def head_width(model_config: dict[str, Any]) -> int:
    """Outputs per candidate that a Q module's ``model_config`` asks for: 1 (expected Q-values),
    ``num_atoms`` (C51) or ``num_quantiles`` (QR-DQN).

    Raises a ValueError that names the field and what is allowed for a bad or mixed setting.
    """
    atoms = model_config.get("num_atoms", 1)
    quantiles = model_config.get("num_quantiles")
    if not _whole(atoms) or atoms < 1:
        raise ValueError(
            f"num_atoms ({atoms!r}) must be a whole number >= 1 "
            "(1: expected Q-values; > 1: C51's atoms over v_min..v_max)"
        )
    if quantiles is not None:
        if not _whole(quantiles) or quantiles < 2:
            raise ValueError(
                f"num_quantiles ({quantiles!r}) must be a whole number >= 2 "
                "(QR-DQN's quantiles per candidate)"
            )
        if atoms != 1:
            raise ValueError(
                f"num_atoms ({atoms}) must be 1 with num_quantiles ({quantiles}): QR-DQN learns "
                "quantile values, C51 probabilities over a fixed support (algorithm DQN with "
                "num_atoms > 1); pick one"
            )
        for key in ("v_min", "v_max"):
            if model_config.get(key) is not None:
                raise ValueError(
                    f"{key} ({model_config[key]!r}) is C51's fixed support; QR-DQN learns where "
                    "its quantiles lie: leave v_min and v_max unset with num_quantiles"
                )
        return quantiles
    if atoms > 1:
        v_min, v_max = model_config.get("v_min", -10.0), model_config.get("v_max", 10.0)
        numbers = all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in (v_min, v_max)
        )
        if not numbers or not v_min < v_max:
            raise ValueError(
                f"v_min ({v_min!r}) and v_max ({v_max!r}) must be finite numbers with "
                "v_min < v_max: the support of C51's atoms"
            )
    return atoms


def dueling_aggregate(
    value: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Q = V + A - mean_valid(A); value (B, 1[, atoms]), advantage and mask (B, M[, atoms])."""
    m = mask.float()
    while m.dim() < advantage.dim():
        m = m.unsqueeze(-1)
    mean = (advantage * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
    return value + advantage - mean


class CandidateQNetwork(nn.Module):
    """Towers plus advantage (per candidate) and value heads; (B, M) or (B, M, atoms) outputs.

    ``atoms`` is the head width of :func:`head_width`: C51's atom logits or QR-DQN's quantiles.
    """

    def __init__(self, observation_space: Any, config: ModelConfig, dueling: bool, atoms: int):
        super().__init__()
        self.towers = RecommenderTowers(observation_space, config)
        self.dueling, self.atoms = dueling, atoms
        d = self.towers.out_dim
        if atoms > 1:
            self.atom_head = nn.Linear(d, atoms)
        if dueling:
            self.value = nn.Sequential(
                nn.Linear(2 * d, config.value_hidden),
                nn.ReLU(),
                nn.Linear(config.value_hidden, atoms),
            )

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        user, items, scores = self.towers(obs)
        mask = obs[Obs.ACTION_MASK]
        if self.atoms > 1:
            advantage = scores.unsqueeze(-1) + self.atom_head(user.unsqueeze(1) * items)
        else:
            advantage = scores
        if not self.dueling:
            return advantage
        pooled = RecommenderTowers.pooled_items(items, mask)
        value = self.value(torch.cat([user, pooled], dim=-1)).unsqueeze(1)
        if self.atoms == 1:
            value = value.squeeze(-1)
        return dueling_aggregate(value, advantage, mask)


class QNetModule(DefaultDQNTorchRLModule):
    """A DQN-family module over rayrec observations: one online network ``q_net`` (built by the
    subclass's ``setup``) with a target copy, epsilon-greedy exploration, no recurrent state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # RLlib's DQN catalog builds encoders for flat observations only; rayrec builds its own.
        kwargs.pop("catalog_class", None)
        TorchRLModule.__init__(self, *args, **kwargs)

    def _common_setup(self) -> None:
        """The exploration schedule and rayrec's model settings, from model_config."""
        cfg = self.model_config
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=cfg.get("epsilon", [(0, 1.0), (10000, 0.05)]),
            framework="torch",
        )
        self.rayrec_config = ModelConfig.from_module_config(cfg)

    @override(DefaultDQNTorchRLModule)
    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_q_net"]

    @override(DefaultDQNTorchRLModule)
    def make_target_networks(self) -> None:
        self._target_q_net = make_target_network(self.q_net)

    @override(DefaultDQNTorchRLModule)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.q_net, self._target_q_net)]

    @override(DefaultDQNTorchRLModule)
    def get_initial_state(self) -> dict:
        return {}


class CandidateQModule(QNetModule):
    """RLlib DQN module over rayrec observations: dueling, double-Q, and C51 (``num_atoms``) or
    QR-DQN (``num_quantiles``) from model_config."""

    @override(DefaultDQNTorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config
        self.uses_dueling = bool(cfg.get("dueling", True))
        self.uses_double_q = bool(cfg.get("double_q", True))
        width = head_width(cfg)
        self.num_atoms = int(cfg.get("num_atoms", 1))
        self.num_quantiles = int(cfg.get("num_quantiles") or 0)
        if self.num_atoms > 1:
            self.v_min = float(cfg.get("v_min", -10.0))
            self.v_max = float(cfg.get("v_max", 10.0))
        self._common_setup()
        self.q_net = CandidateQNetwork(
            self.observation_space, self.rayrec_config, self.uses_dueling, width
        )

    @override(DefaultDQNTorchRLModule)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._q_outputs(self._target_q_net, batch[Columns.OBS])

    @override(DefaultDQNTorchRLModule)
    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._q_outputs(self.q_net, batch[Columns.OBS])

    @override(DefaultDQNTorchRLModule)
    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Q of the current observations (and the distribution's outputs), the online Q of the
        next ones (double Q) and the target network's Q (and distribution) of the next ones."""
        if self.inference_only:
            raise RuntimeError("an inference-only module cannot be trained")
        obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
        if self.uses_double_q:
            # One pass over current and next observations, as RLlib's DQN module makes.
            b = obs[Obs.ACTION_MASK].shape[0]
            both = self.compute_q_values(
                {Columns.OBS: {k: torch.cat([obs[k], next_obs[k]], dim=0) for k in obs}}
            )
            out = {k: v if k == ATOMS else v[:b] for k, v in both.items()}
            out[QF_NEXT_PREDS] = both[QF_PREDS][b:]
        else:
            out = self.compute_q_values({Columns.OBS: obs})
        target = self.forward_target({Columns.OBS: next_obs})
        out[QF_TARGET_NEXT_PREDS] = target[QF_PREDS]
        if self.num_atoms > 1:
            out[QF_TARGET_NEXT_PROBS] = target[QF_PROBS]
        if self.num_quantiles:
            out[QF_TARGET_NEXT_QUANTILES] = target[QF_QUANTILES]
        return out

    @override(DefaultDQNTorchRLModule)
    def compute_advantage_distribution(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Support and per-atom probabilities of (B, M, atoms) logits."""
        support = torch.linspace(self.v_min, self.v_max, self.num_atoms, device=batch.device)
        return {ATOMS: support, "logits": batch, "probs": torch.softmax(batch, dim=-1)}

    def _q_outputs(self, net: nn.Module, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        out = net(obs)
        valid = obs[Obs.ACTION_MASK] > 0
        neg_inf = torch.tensor(float("-inf"), device=out.device)
        if self.num_quantiles:
            # Each quantile has probability mass 1/N: Q is their mean (Dabney et al. 2018).
            return {QF_PREDS: torch.where(valid, out.mean(dim=-1), neg_inf), QF_QUANTILES: out}
        if self.num_atoms == 1:
            return {QF_PREDS: torch.where(valid, out, neg_inf)}
        dist = self.compute_advantage_distribution(out)
        q = (dist["probs"] * dist[ATOMS]).sum(dim=-1)
        return {
            QF_PREDS: torch.where(valid, q, neg_inf),
            QF_LOGITS: dist["logits"],
            QF_PROBS: dist["probs"],
            ATOMS: dist[ATOMS],
        }
