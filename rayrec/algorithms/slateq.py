"""SlateQ (Ie et al., IJCAI 2019) on RLlib's DQN: replay, target network, epsilon-greedy slates.

The module (:class:`rayrec.models.slateq.SlateQModule`) holds Qbar(s, i) for every candidate, the
null item's Qbar(s, null) and a learned multinomial-logit choice model; the slate value is their
decomposition (see that module). For a logged transition (s, A, r, s') in which the user clicked
slot c of A (or nothing), the learner minimises

    TD loss:     L_kappa(r + gamma (1 - terminated) Q'(s', A*) - Qbar(s, a_c or null))
    choice loss: -log P(c | s, A) under the MNL (c = null for no click)

with A* the optimiser's slate at s' (chosen by the online Qbar with ``double_q``, by the target's
otherwise) and Q'(s', A*) its value under the target network's Qbar and the choice model: the
item-wise SARSA-style decomposition of Ie et al. (section 4.2) with Q-learning's max over slates.
Which slot was clicked is read from s' itself: the newest history entry of s' is the clicked item
with its click flag set (docs/simulator.md, "Dynamics within a step"), so the clicked slot is the
one showing that item, and logs need no extra column. That needs s' to be the very next
observation: ``n_step`` must be 1. Prioritized replay weights the TD loss and its |TD error| sets
the priorities, as DQN's.
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
    TD_ERROR_MEAN_KEY,
)
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import TD_ERROR_KEY

from rayrec.contracts.observation import Obs
from rayrec.models.slateq import (
    SLATE_OPTIMIZERS,
    SLATEQ_CHOICE,
    SLATEQ_ITEM_Q,
    SLATEQ_NULL_Q,
    best_slates,
    slate_click_logits,
    slate_value,
)

__all__ = [
    "CHOICE_LOSS_KEY",
    "CLICK_RATE_KEY",
    "SlateQ",
    "SlateQConfig",
    "SlateQTorchLearner",
    "clicked_slots",
    "slateq_loss",
]

CHOICE_LOSS_KEY = "choice_loss"
"""Learner metric: the MNL choice model's cross-entropy on the batch's logged clicks."""
CLICK_RATE_KEY = "click_rate"
"""Learner metric: the share of the batch's transitions with a click."""


def clicked_slots(
    obs: dict[str, torch.Tensor], slates: torch.Tensor, next_obs: dict[str, torch.Tensor]
) -> torch.Tensor:
    """(B,) the slot of ``slates`` (B, k) whose item the user clicked, -1 for no click.

    The clicked item is the newest history entry of the next observation when its click flag
    (response 0) is set; the first slot showing that item is the clicked one."""
    newest = next_obs[Obs.HISTORY_ITEMS][:, -1]
    clicked = next_obs[Obs.HISTORY_RESPONSES][:, -1, 0] > 0.5
    items = obs[Obs.CANDIDATE_ITEMS].gather(1, slates.clamp(min=0))
    match = (items == newest.unsqueeze(1)) & (slates >= 0)
    first = match.float().argmax(dim=1)
    return torch.where(clicked & match.any(dim=1), first, torch.full_like(first, -1))


def slateq_loss(
    fwd_out: dict[str, torch.Tensor],
    batch: dict[str, Any],
    log_eps: torch.Tensor,
    *,
    gamma: float,
    double_q: bool,
    method: str,
    loss_fn: str = "huber",
) -> dict[str, torch.Tensor]:
    """Per-transition TD errors and choice losses of a batch (see the module doc).

    Returns ``td`` (B,) target - Qbar(s, taken), ``choice`` (B,) -log P(clicked | s, A),
    ``td_loss`` (B,) the Huber (or squared) TD loss, ``slot`` (B,) the clicked slots and
    ``q_taken`` (B,)."""
    obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
    slates = batch[Columns.ACTIONS].long()
    if slates.dim() == 1:
        slates = slates.unsqueeze(1)
    k = slates.shape[1]
    slot = clicked_slots(obs, slates, next_obs)
    logits = slate_click_logits(fwd_out[SLATEQ_CHOICE], slates, log_eps, obs[Obs.ACTION_MASK])
    choice = torch.nn.functional.cross_entropy(logits, slot + 1, reduction="none")
    q_shown = fwd_out[SLATEQ_ITEM_Q].gather(1, slates.clamp(min=0))
    q_click = q_shown.gather(1, slot.clamp(min=0).unsqueeze(1)).squeeze(1)
    q_taken = torch.where(slot >= 0, q_click, fwd_out[SLATEQ_NULL_Q])
    with torch.no_grad():
        prefix = "next_" if double_q else "target_next_"
        next_choice = fwd_out["next_" + SLATEQ_CHOICE]
        next_mask = next_obs[Obs.ACTION_MASK]
        next_slates, _ = best_slates(
            fwd_out[prefix + SLATEQ_ITEM_Q],
            fwd_out[prefix + SLATEQ_NULL_Q],
            next_choice,
            log_eps.detach(),
            next_mask,
            k,
            method,
        )
        next_value = slate_value(
            fwd_out["target_next_" + SLATEQ_ITEM_Q],
            fwd_out["target_next_" + SLATEQ_NULL_Q],
            next_choice,
            next_slates,
            log_eps.detach(),
            next_mask,
        )
        live = 1.0 - batch[Columns.TERMINATEDS].float()
        target = batch[Columns.REWARDS].float() + gamma * live * next_value
    td = target - q_taken
    if loss_fn == "huber":
        td_loss = torch.nn.functional.huber_loss(q_taken, target, reduction="none", delta=1.0)
    else:
        td_loss = 0.5 * td.pow(2)
    return {"td": td, "choice": choice, "td_loss": td_loss, "slot": slot, "q_taken": q_taken}


class SlateQConfig(DQNConfig):
    """DQN's configuration plus ``slate_optimizer`` and ``choice_loss_coeff``; n_step is 1 and
    C51's distributional settings do not apply."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or SlateQ)
        self.slate_optimizer = "exact"
        self.choice_loss_coeff = 1.0
        self.n_step = 1

    @override(DQNConfig)
    def training(
        self,
        *,
        slate_optimizer: str | None = NotProvided,
        choice_loss_coeff: float | None = NotProvided,
        **kwargs: Any,
    ) -> Any:
        """``slate_optimizer``: exact | topk | greedy (rayrec.models.slateq);
        ``choice_loss_coeff``: weight of the choice model's cross-entropy; the rest as DQN's."""
        super().training(**kwargs)
        if slate_optimizer is not NotProvided:
            self.slate_optimizer = slate_optimizer
        if choice_loss_coeff is not NotProvided:
            self.choice_loss_coeff = choice_loss_coeff
        return self

    @property
    @override(DQNConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"slate_optimizer": self.slate_optimizer}

    @override(DQNConfig)
    def get_default_learner_class(self) -> type:
        return SlateQTorchLearner

    @override(DQNConfig)
    def validate(self) -> None:
        super().validate()
        if self.slate_optimizer not in SLATE_OPTIMIZERS:
            self._value_error(
                f"slate_optimizer ({self.slate_optimizer!r}) must be one of "
                f"{list(SLATE_OPTIMIZERS)}"
            )
        coeff = self.choice_loss_coeff
        number = isinstance(coeff, int | float) and not isinstance(coeff, bool)
        if not number or not math.isfinite(coeff) or coeff <= 0:
            self._value_error(
                f"choice_loss_coeff ({coeff!r}) must be a finite number > 0: the choice model "
                "is learned from the clicks alone"
            )
        if self.n_step not in (1, [1, 1], (1, 1)):
            self._value_error(
                f"n_step ({self.n_step!r}) must be 1 for SlateQ: the clicked slot is read from "
                "the next observation, so each transition must span one step"
            )
        if self.num_atoms != 1:
            self._value_error(
                f"num_atoms ({self.num_atoms}) must be 1 for SlateQ: its item values are expected "
                "returns (C51's distributions are DQN's, algorithm: DQN)"
            )


class SlateQTorchLearner(DQNTorchLearner):
    """The prioritized-replay-weighted TD loss of the decomposed values plus the choice loss."""

    @override(DQNTorchLearner)
    def compute_loss_for_module(
        self, *, module_id: str, config: SlateQConfig, batch: dict, fwd_out: dict
    ) -> torch.Tensor:
        if SLATEQ_ITEM_Q not in fwd_out:
            raise ValueError(
                f"SlateQ needs item values ('{SLATEQ_ITEM_Q}'); module {module_id!r} returned "
                f"{sorted(fwd_out)}: use rayrec's SlateQModule"
            )
        module = self.module[module_id].unwrapped()
        parts = slateq_loss(
            fwd_out,
            batch,
            module.choice.log_eps(),
            gamma=config.gamma,
            double_q=config.double_q,
            method=config.slate_optimizer,
            loss_fn=config.td_error_loss_fn,
        )
        weights = batch.get("weights", torch.ones_like(parts["td"]))
        td_loss = torch.mean(weights * parts["td_loss"])
        choice_loss = parts["choice"].mean()
        total_loss = td_loss + config.choice_loss_coeff * choice_loss
        td_error = parts["td"].abs().detach()
        q = parts["q_taken"].detach()
        # Per transition, in batch order: DQN's training step sets the replay priorities from it.
        self.metrics.log_value(key=(module_id, TD_ERROR_KEY), value=td_error, reduce="item_series")
        self.metrics.log_dict(
            {
                QF_LOSS_KEY: td_loss,
                QF_MEAN_KEY: q.mean(),
                QF_MAX_KEY: q.max(),
                QF_MIN_KEY: q.min(),
                TD_ERROR_MEAN_KEY: td_error.mean(),
                CHOICE_LOSS_KEY: choice_loss.detach(),
                CLICK_RATE_KEY: (parts["slot"] >= 0).float().mean(),
            },
            key=module_id,
            window=1,
        )
        return total_loss


class SlateQ(DQN):
    """RLlib's DQN (replay, target network, exploration) with SlateQ's module and loss."""

    @classmethod
    @override(DQN)
    def get_default_config(cls) -> SlateQConfig:
        return SlateQConfig()
