"""Logged rows as padded (N, T) user lifetimes: the index from rows to (lifetime, step) and the
:class:`TrajectoryLog` of the trajectory estimators (linear FQE features included). Numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rayrec.ope.trajectory import TrajectoryLog

__all__ = ["LifetimeIndex", "lifetime_index", "padded_trajectories"]


@dataclass(frozen=True)
class LifetimeIndex:
    """Where each logged row sits in the padded (N, T) lifetimes."""

    t: np.ndarray
    """(n,) each row's step in its lifetime, in the rows' order."""
    order: np.ndarray
    """Rows sorted by (episode, t)."""
    row_of: np.ndarray
    """Lifetime of each row of ``order``."""
    pos: np.ndarray
    """Step of each row of ``order`` in its lifetime."""
    shape: tuple[int, int]
    next_row: np.ndarray
    """(n,) the row of the same lifetime's next step, -1 at its last."""

    def pad(self, values: np.ndarray) -> np.ndarray:
        """(n,) per-row values -> (N, T), 0 after each lifetime's end."""
        out = np.zeros(self.shape)
        out[self.row_of, self.pos] = values[self.order]
        return out


def lifetime_index(episode: np.ndarray, t: np.ndarray) -> LifetimeIndex:
    """The index of logged rows given each row's episode id and step t (0, 1, ... per episode)."""
    t = np.asarray(t).astype(np.int64)
    order = np.lexsort((t, episode))
    _, row_of, lengths = np.unique(episode[order], return_inverse=True, return_counts=True)
    next_row = np.full(len(t), -1, dtype=np.int64)
    same = episode[order][1:] == episode[order][:-1]
    next_row[order[:-1][same]] = order[1:][same]
    shape = (len(lengths), int(lengths.max()))
    return LifetimeIndex(t, order, row_of, t[order], shape, next_row)


def padded_trajectories(
    index: LifetimeIndex,
    n: int,
    reward: np.ndarray,
    eval_prob: np.ndarray,
    propensities: np.ndarray,
    action: np.ndarray,
    feats: np.ndarray,
    dist: np.ndarray | None,
    context: np.ndarray,
    config: Any,
) -> TrajectoryLog:
    """Padded (N, T) lifetimes; FQE features phi(s, a) = [1, context, action features, t].

    ``config`` is the log's :class:`rayrec.sim.SimConfig` (its horizon scales t)."""
    order, row_of, pos, t = index.order, index.row_of, index.pos, index.t
    big_n, big_t = index.shape
    ratio = np.ones((big_n, big_t))
    ratio[row_of, pos] = (eval_prob / propensities.prod(axis=1))[order]
    rewards = index.pad(reward)
    alive = np.zeros((big_n, big_t), dtype=bool)
    alive[row_of, pos] = True
    horizon = config.max_sessions * config.max_steps_per_session
    time_feature = (t / max(horizon, 1))[:, None]
    base = np.concatenate([np.ones((n, 1)), context, time_feature], axis=1)
    if dist is None:  # slates: the first position's item stands for the slate
        logged = feats[np.arange(n), action[:, 0]]
        expected = logged
    else:
        logged = feats[np.arange(n), action[:, 0]]
        expected = np.einsum("nm,nmd->nd", dist, feats)
    d = base.shape[1] + feats.shape[2]
    q_features = np.zeros((big_n, big_t, d))
    pi_features = np.zeros((big_n, big_t, d))
    q_features[row_of, pos] = np.concatenate([base, logged], axis=1)[order]
    pi_features[row_of, pos] = np.concatenate([base, expected], axis=1)[order]
    return TrajectoryLog(rewards, ratio, alive, q_features, pi_features)
