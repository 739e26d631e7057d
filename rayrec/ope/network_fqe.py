"""Fitted Q evaluation with a neural Q network (Le et al. 2019), for ``fqe`` and ``dr-rl``.

The linear FQE of :mod:`rayrec.ope.trajectory` sees hand-made features of the logged action; this
one fits any torch network mapping a batch of observations to per-candidate values (B, M), in
rayrec the candidate Q network of the DQN family (:class:`rayrec.models.q_module.CandidateQNetwork`,
built by :func:`rayrec.ope.policies.load_sim_logs`), on the whole observation.

Phase k (of ``phases``) freezes a copy of the network as the target and regresses
Q(s_t, a_t) on y_t = r_t + gamma V_target(s_t+1) (0 after the lifetime's end) for ``updates``
minibatch steps of Adam (the target evaluated on each minibatch's next states), with
V(s) = sum_a pi_e(a | s) Q(s, a) over the valid candidates. Phase k looks k logged steps ahead
through the target; the network generalises the rest. Targets are divided by the scale of the
logged lifetime returns (restored on output), the loss is Huber.

Torch and numpy only. The fit is not repeated per bootstrap replicate: intervals of ``fqe`` and
``dr-rl`` with these Q values are conditional on the fitted network.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["NetworkFQEConfig", "fit_network_fqe", "monte_carlo_returns"]


@dataclass(frozen=True)
class NetworkFQEConfig:
    """How the Q network is fitted."""

    phases: int = 200
    """Target-network refreshes: phase k backs values up k logged steps (with gamma = 1 fewer
    phases than the evaluation policy's lifetimes truncate its value)."""
    updates: int = 12
    """Adam steps per phase."""
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0
    """Seeds the minibatch draws (the caller seeds the network's initialisation)."""

    def __post_init__(self) -> None:
        for name in ("phases", "updates", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"network FQE {name} ({value!r}) must be an integer >= 1")
        if not self.lr > 0:
            raise ValueError(f"network FQE lr ({self.lr!r}) must be > 0")


def monte_carlo_returns(reward: np.ndarray, next_row: np.ndarray, gamma: float) -> np.ndarray:
    """(n,) discounted return from each row to the end of its lifetime along ``next_row``."""
    g = reward.astype(np.float64).copy()
    has_next = next_row >= 0
    # Lifetimes are chains: g_i = r_i + gamma g_next(i); iterate until every chain is summed.
    for _ in range(len(reward)):
        new = reward + gamma * np.where(has_next, g[np.maximum(next_row, 0)], 0.0)
        if np.array_equal(new, g):
            break
        g = new
    return g


def _values(
    network: nn.Module,
    obs: Mapping[str, torch.Tensor],
    dist: torch.Tensor,
    rows: torch.Tensor | slice,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q (B, M), V (B,)) of the rows: V is the evaluation policy's expectation of Q."""
    q = network({k: v[rows] for k, v in obs.items()})
    p = dist[rows]
    v = torch.where(p > 0, q, torch.zeros_like(q)).mul(p).sum(dim=1)
    return q, v


@torch.no_grad()
def _all_values(
    network: nn.Module, obs: Mapping[str, torch.Tensor], dist: torch.Tensor, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    qs, vs = [], []
    for start in range(0, len(dist), chunk):
        q, v = _values(network, obs, dist, slice(start, start + chunk))
        qs.append(q)
        vs.append(v)
    return torch.cat(qs), torch.cat(vs)


def fit_network_fqe(
    network: nn.Module,
    obs: Mapping[str, np.ndarray],
    action: np.ndarray,
    reward: np.ndarray,
    next_row: np.ndarray,
    eval_dist: np.ndarray,
    gamma: float = 1.0,
    config: NetworkFQEConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(Q(s_i, a_i), V(s_i)) of the evaluation policy on every logged row i, both (n,).

    Args:
        network: maps a dict of (B, ...) observation tensors to (B, M) values; trained in place.
        obs: the logged observations, (n, ...) arrays.
        action: (n,) logged candidate index.
        reward: (n,) logged reward.
        next_row: (n,) the row of the lifetime's next step, -1 at its last.
        eval_dist: (n, M) pi_e(. | s_i), 0 on masked candidates.
    """
    config = config or NetworkFQEConfig()
    n = len(reward)
    if not (len(action) == len(next_row) == len(eval_dist) == n) or n == 0:
        raise ValueError(
            "action, reward, next_row and eval_dist need the same number (>= 1) of rows"
        )
    scale = float(max(np.abs(monte_carlo_returns(reward, next_row, gamma)).mean(), 1e-6))
    tobs = {k: torch.as_tensor(np.asarray(v)) for k, v in obs.items()}
    dist = torch.as_tensor(eval_dist, dtype=torch.float32)
    act = torch.as_tensor(action, dtype=torch.int64)
    r = torch.as_tensor(reward / scale, dtype=torch.float32)
    nxt = torch.as_tensor(np.maximum(next_row, 0), dtype=torch.int64)
    has_next = torch.as_tensor(next_row >= 0)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    batch = min(config.batch_size, n)
    for _ in range(config.phases):
        target = copy.deepcopy(network).eval()
        network.train()
        for _ in range(config.updates):
            rows = torch.randint(0, n, (batch,), generator=generator)
            with torch.no_grad():
                _, v_next = _values(target, tobs, dist, nxt[rows])
            y = r[rows] + gamma * torch.where(has_next[rows], v_next, torch.zeros_like(v_next))
            q = network({k: v[rows] for k, v in tobs.items()})
            fitted = q.gather(1, act[rows, None]).squeeze(1)
            loss = nn.functional.smooth_l1_loss(fitted, y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 10.0)
            optimizer.step()
    network.eval()
    q_all, v_all = _all_values(network, tobs, dist)
    q_logged = q_all.gather(1, act[:, None]).squeeze(1)
    return q_logged.double().numpy() * scale, v_all.double().numpy() * scale
