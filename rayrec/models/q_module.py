"""Q-value RLModule for the DQN family (DQN, Ape-X arrangement, discrete CQL).

Per-candidate advantages come from the shared two-tower scorer; with ``dueling`` a state-value
stream is added and the advantages are centred over the *valid* candidates (Wang et al. 2016,
eq. 9, with the mean restricted to the action mask). With ``num_atoms > 1`` each candidate gets a
categorical return distribution over a fixed support (C51, Bellemare et al. 2017), which RLlib's
DQN learner trains with its distributional loss. Masked candidates get Q = -inf so that greedy
actions, double-Q argmaxes and RLlib's random exploration never pick them.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import ATOMS, QF_LOGITS, QF_PREDS, QF_PROBS
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

__all__ = ["CandidateQModule", "CandidateQNetwork", "dueling_aggregate"]


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
    """Towers plus advantage (per candidate) and value heads; (B, M) or (B, M, atoms) outputs."""

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


class CandidateQModule(DefaultDQNTorchRLModule):
    """RLlib DQN module over rayrec observations (dueling, double-Q, C51 from model_config)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # RLlib's DQN catalog builds encoders for flat observations only; rayrec builds its own.
        kwargs.pop("catalog_class", None)
        TorchRLModule.__init__(self, *args, **kwargs)

    @override(DefaultDQNTorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config
        self.uses_dueling = bool(cfg.get("dueling", True))
        self.uses_double_q = bool(cfg.get("double_q", True))
        self.num_atoms = int(cfg.get("num_atoms", 1))
        if self.num_atoms > 1:
            self.v_min = float(cfg.get("v_min", -10.0))
            self.v_max = float(cfg.get("v_max", 10.0))
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=cfg.get("epsilon", [(0, 1.0), (10000, 0.05)]),
            framework="torch",
        )
        self.rayrec_config = ModelConfig.from_module_config(cfg)
        self.q_net = CandidateQNetwork(
            self.observation_space, self.rayrec_config, self.uses_dueling, self.num_atoms
        )

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
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._q_outputs(self._target_q_net, batch[Columns.OBS])

    @override(DefaultDQNTorchRLModule)
    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._q_outputs(self.q_net, batch[Columns.OBS])

    @override(DefaultDQNTorchRLModule)
    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = super()._forward_train(batch)
        if self.uses_double_q and self.num_atoms > 1:
            # RLlib's double-Q pass runs current and next observations as one batch; the
            # distributional loss wants the current half only.
            b = out[QF_PREDS].shape[0]
            out[QF_LOGITS] = out[QF_LOGITS][:b]
            out[QF_PROBS] = out[QF_PROBS][:b]
        return out

    @override(DefaultDQNTorchRLModule)
    def get_initial_state(self) -> dict:
        return {}

    @override(DefaultDQNTorchRLModule)
    def compute_advantage_distribution(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Support and per-atom probabilities of (B, M, atoms) logits."""
        support = torch.linspace(self.v_min, self.v_max, self.num_atoms, device=batch.device)
        return {ATOMS: support, "logits": batch, "probs": torch.softmax(batch, dim=-1)}

    def _q_outputs(self, net: nn.Module, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        out = net(obs)
        valid = obs[Obs.ACTION_MASK] > 0
        neg_inf = torch.tensor(float("-inf"), device=out.device)
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
