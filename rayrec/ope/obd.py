"""Off-policy evaluation on the Open Bandit Dataset: campaign C's random log as the data.

Slot level, as OBP evaluates it: a row is one shown item, the evaluation policy's probability is
that of the logged item at the logged slot, and the ground truth is the on-policy CTR of the same
campaign's ``bts`` log (clicks per shown item). The reward model (DM, DR, ...) sees the slot and
the four user features one-hot as context and the item one-hot as the action.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rayrec.datasets.obd import bts_prior, load_obd
from rayrec.ope.bts import bts_action_dist
from rayrec.ope.step import StepLog

__all__ = ["OBD_POLICIES", "obd_ground_truth", "obd_step_log"]

OBD_POLICIES = ("bts", "random")
"""Evaluation policies on OBD: Bernoulli TS with the ZOZOTOWN priors, and uniform random."""


def _one_hot(codes: np.ndarray) -> np.ndarray:
    """(n, sum of categories) one-hot of integer columns."""
    blocks = [np.eye(int(col.max()) + 1)[col] for col in codes.T]
    return np.concatenate(blocks, axis=1)


def obd_step_log(
    campaign: str, policy: str, seed: int = 0, n_sim: int = 100_000, root: str | Path | None = None
) -> StepLog:
    """The random log of ``campaign`` with ``policy``'s slot-level distribution on every row."""
    if policy not in OBD_POLICIES:
        raise ValueError(
            f"--policy {policy!r} is not an OBD evaluation policy; known: {', '.join(OBD_POLICIES)}"
        )
    log = load_obd(campaign, "random", root)
    if policy == "bts":
        alpha, beta = bts_prior(campaign, root)
        if len(alpha) != log.n_actions:
            raise ValueError(f"{campaign}: {len(alpha)} BTS priors for {log.n_actions} items")
        dist = bts_action_dist(alpha, beta, log.len_list, n_sim=n_sim, seed=seed)
    else:
        dist = np.full((log.n_actions, log.len_list), 1.0 / log.n_actions)
    context = np.concatenate(
        [np.eye(log.len_list)[log.position], _one_hot(log.user_features)], axis=1
    )
    return StepLog(
        reward=log.reward,
        pscore=log.pscore,
        action=log.action,
        eval_dist=dist.T[log.position],
        context=context,
        action_features=np.eye(log.n_actions),
    )


def obd_ground_truth(campaign: str, policy: str, root: str | Path | None = None) -> float | None:
    """On-policy CTR of the campaign's log of ``policy`` (``bts`` and ``random`` are logged)."""
    return float(load_obd(campaign, policy, root).reward.mean())
