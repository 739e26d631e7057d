"""SlateQ (Ie et al., IJCAI 2019): slate values decomposed into per-item long-term values.

Under a choice model where the user clicks at most one item of a slate A (or nothing, the null
item), the slate's long-term value decomposes as

    Q(s, A) = sum_{i in A} P(i | s, A) Qbar(s, i) + P(null | s, A) Qbar(s, null)

with Qbar(s, i) the long-term value of the user clicking i (its reward included) and
Qbar(s, null) that of clicking nothing (Ie et al. 2019, section 4: the null item has a value of
its own; RLlib's retired SlateQ set it to 0). The choice model here is the simulator's family:
a multinomial logit with a no-click option and position bias (docs/simulator.md, "Choice"),

    P(slot j | s, A) = eps_j exp(v(s, a_j)) / (exp(v0(s)) + sum_l eps_l exp(v(s, a_l))),

**learned** from the logged clicks (rayrec never reads the simulator's latent utilities): v and
v0 are a second network's outputs and log eps_j (eps_0 = 1) are parameters. With the weights
w_i = exp(v(s, i) - v0(s)) the value of a slate is

    Q(s, A) = (Qbar_null + sum_j eps_j w_{a_j} Qbar_{a_j}) / (1 + sum_j eps_j w_{a_j}).

Slate optimisation, ``slate_optimizer``:

- ``exact``: the best ordered slate. Maximising this ratio is a linear-fractional problem;
  Dinkelbach's method solves it exactly: for a value lam, N(A) - lam D(A) =
  (Qbar_null - lam) + sum_j eps_j c_{a_j} with c_i = w_i (Qbar_i - lam) is maximised over ordered
  slates by the k largest c_i in decreasing order (rearrangement inequality, eps non-increasing);
  lam <- Q(s, that slate) rises monotonically to the optimum in a few steps. Without position
  bias this is the optimum of Ie et al.'s LP (their eq. 8), found without an LP solver.
- ``topk``: the k items with the largest w_i Qbar_i (Ie et al.'s top-k heuristic);
- ``greedy``: slot by slot, the item that maximises the value of the slate so far.

Scores: ``compute_q_values`` returns per candidate a score whose top-k, in order, *is* the
module's slate (exact: c_i at the optimal lam), so simulator evaluation and serving, which take
the top-k of a module's scores, act as SlateQ does.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from torch import nn

from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import Obs
from rayrec.models.q_module import QNetModule
from rayrec.models.towers import RecommenderTowers

__all__ = [
    "SLATEQ_CHOICE",
    "SLATEQ_ITEM_Q",
    "SLATEQ_NULL_Q",
    "SLATE_OPTIMIZERS",
    "SlateQModule",
    "best_slates",
    "slate_click_logits",
    "slate_scores",
    "slate_value",
]

SLATE_OPTIMIZERS = ("exact", "topk", "greedy")
SLATEQ_ITEM_Q = "slateq_item_q"
"""Forward output: (B, M) Qbar(s, i), the long-term value of the user clicking candidate i."""
SLATEQ_NULL_Q = "slateq_null_q"
"""Forward output: (B,) Qbar(s, null), the long-term value of no click."""
SLATEQ_CHOICE = "slateq_choice"
"""Forward output: (B, M) v(s, i) - v0(s), the learned click utilities against no click."""
_MAX_LOG_WEIGHT = 30.0
_DINKELBACH_STEPS = 50


def _weights(log_w: torch.Tensor) -> torch.Tensor:
    """(B, M) w_i = exp(v(s, i) - v0(s)), clamped against overflow."""
    return torch.exp(log_w.clamp(max=_MAX_LOG_WEIGHT))


def _gather(values: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
    """(B, k) values at the slates' candidates (0 where a slot shows nothing, index < 0)."""
    return values.gather(1, slates.clamp(min=0)) * (slates >= 0).to(values.dtype)


def _shown_weights(
    log_w: torch.Tensor, slates: torch.Tensor, log_eps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(B, k) eps_j w_{a_j}: 0 where slot j shows nothing (no index, a masked candidate, or a
    repeat of an earlier slot: docs/simulator.md's invalid-choice rule)."""
    k = slates.shape[1]
    shown = (slates >= 0) & (_gather(mask.float(), slates) > 0)
    for j in range(1, k):
        shown[:, j] &= (slates[:, j : j + 1] != slates[:, :j]).all(dim=1)
    weight = torch.exp(log_w.clamp(max=_MAX_LOG_WEIGHT).gather(1, slates.clamp(min=0)) + log_eps)
    return torch.where(shown, weight, torch.zeros_like(weight))


def slate_value(
    q_items: torch.Tensor,
    q_null: torch.Tensor,
    log_w: torch.Tensor,
    slates: torch.Tensor,
    log_eps: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """(B,) Q(s, A) = (Qbar_null + sum_j eps_j w_j Qbar_j) / (1 + sum_j eps_j w_j).

    Args:
        q_items: (B, M) Qbar(s, i); q_null: (B,) Qbar(s, null).
        log_w: (B, M) log w_i = v(s, i) - v0(s); log_eps: (k,) log examination weights.
        slates: (B, k) candidate indices, slot order; < 0 shows nothing.
        mask: (B, M) the action mask.
    """
    weight = _shown_weights(log_w, slates, log_eps, mask)
    q = _gather(q_items, slates)
    return (q_null + (weight * q).sum(dim=1)) / (1.0 + weight.sum(dim=1))


def slate_click_logits(
    log_w: torch.Tensor, slates: torch.Tensor, log_eps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(B, k + 1) choice logits [no click, slot 0, ..., slot k-1]: their softmax is the MNL's
    P(null | s, A), P(slot j | s, A); a slot that shows nothing has logit -inf."""
    shown = _shown_weights(log_w.detach(), slates, log_eps.detach(), mask) > 0
    logits = log_w.gather(1, slates.clamp(min=0)) + log_eps
    logits = torch.where(shown, logits, torch.full_like(logits, float("-inf")))
    return torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)


def _top_slates(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) the k best valid candidates by score, best first; -1 where fewer are valid."""
    masked = torch.where(mask > 0, scores, torch.full_like(scores, float("-inf")))
    values, index = torch.topk(masked, k, dim=1)
    return torch.where(torch.isfinite(values), index, torch.full_like(index, -1))


def best_slates(
    q_items: torch.Tensor,
    q_null: torch.Tensor,
    log_w: torch.Tensor,
    log_eps: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    method: str = "exact",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The slate each row's optimiser picks and its value: ((B, k) indices, (B,) Q(s, A)).

    ``method``: ``exact`` (Dinkelbach, the optimum over ordered slates of valid candidates when
    log_eps is non-increasing), ``topk`` (largest w_i Qbar_i) or ``greedy`` (slot by slot).
    """
    if method not in SLATE_OPTIMIZERS:
        raise ValueError(f"slate_optimizer ({method!r}) must be one of {list(SLATE_OPTIMIZERS)}")
    w = _weights(log_w)
    if method == "topk":
        slates = _top_slates(w * q_items, mask, k)
    elif method == "greedy":
        slates = torch.full((*q_items.shape[:1], k), -1, dtype=torch.long, device=q_items.device)
        taken = mask <= 0
        rep = q_items.shape[1]
        for j in range(k):
            trial = slates.unsqueeze(1).repeat(1, rep, 1)  # (B, M, k)
            trial[:, :, j] = torch.arange(rep, device=q_items.device)
            flat = trial.reshape(-1, k)
            values = slate_value(
                q_items.repeat_interleave(rep, 0),
                q_null.repeat_interleave(rep, 0),
                log_w.repeat_interleave(rep, 0),
                flat,
                log_eps,
                mask.repeat_interleave(rep, 0),
            ).view(-1, rep)
            values = torch.where(taken, torch.full_like(values, float("-inf")), values)
            pick = values.argmax(dim=1)
            ok = torch.isfinite(values.max(dim=1).values)
            slates[:, j] = torch.where(ok, pick, torch.full_like(pick, -1))
            taken = taken | (
                torch.nn.functional.one_hot(pick, q_items.shape[1]).bool() & ok.unsqueeze(1)
            )
    else:
        slates = _top_slates(w * q_items, mask, k)
        lam = slate_value(q_items, q_null, log_w, slates, log_eps, mask)
        for _ in range(_DINKELBACH_STEPS):
            candidate = _top_slates(w * (q_items - lam.unsqueeze(1)), mask, k)
            value = slate_value(q_items, q_null, log_w, candidate, log_eps, mask)
            better = value > lam + 1e-6 * (1.0 + lam.abs())
            if not bool(better.any()):
                break
            slates = torch.where(better.unsqueeze(1), candidate, slates)
            lam = torch.where(better, value, lam)
    return slates, slate_value(q_items, q_null, log_w, slates, log_eps, mask)


def slate_scores(
    q_items: torch.Tensor,
    q_null: torch.Tensor,
    log_w: torch.Tensor,
    log_eps: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    method: str = "exact",
) -> torch.Tensor:
    """(B, M) scores whose top-k, best first, is :func:`best_slates`' slate (masked: -inf)."""
    slates, value = best_slates(q_items, q_null, log_w, log_eps, mask, k, method)
    w = _weights(log_w)
    if method == "exact":
        base = w * (q_items - value.unsqueeze(1))
    else:
        base = w * q_items
    # Below every slate member, in the base's order; the slate's members above, in slot order.
    low = base - (base.abs().amax(dim=1, keepdim=True) + 1.0) * 2.0 - float(k)
    rank = torch.arange(k, 0, -1, device=q_items.device, dtype=q_items.dtype).expand_as(slates)
    members = torch.where(slates >= 0, rank, torch.full_like(rank, -math.inf))
    scores = low.scatter_reduce(1, slates.clamp(min=0), members, reduce="amax")
    scores = torch.where(mask > 0, scores, torch.full_like(scores, float("-inf")))
    return scores


class SlateQNetwork(nn.Module):
    """Qbar over candidates and the null item, from one two-tower scorer: Qbar(s, i) =
    score(s, i) + b(s), Qbar(s, null) = n(s), with (b, n) a head over the user and the offer."""

    def __init__(self, observation_space: Any, config: ModelConfig) -> None:
        super().__init__()
        self.towers = RecommenderTowers(observation_space, config)
        d = self.towers.out_dim
        self.head = nn.Sequential(
            nn.Linear(2 * d, config.value_hidden), nn.ReLU(), nn.Linear(config.value_hidden, 2)
        )

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        user, items, scores = self.towers(obs)
        pooled = RecommenderTowers.pooled_items(items, obs[Obs.ACTION_MASK])
        base, null = self.head(torch.cat([user, pooled], dim=-1)).unbind(-1)
        return scores + base.unsqueeze(1), null


class ChoiceNetwork(nn.Module):
    """The learned MNL: v(s, i) from a two-tower scorer, v0(s) from the user vector and
    log eps_j (eps_0 = 1) per slot."""

    def __init__(self, observation_space: Any, config: ModelConfig, slate_size: int) -> None:
        super().__init__()
        self.towers = RecommenderTowers(observation_space, config)
        self.no_click = nn.Linear(self.towers.out_dim, 1)
        self.log_eps_rest = nn.Parameter(torch.zeros(max(slate_size - 1, 0)))

    def log_eps(self) -> torch.Tensor:
        """(k,) log examination weights, slot 0 fixed at 0."""
        return torch.cat([self.log_eps_rest.new_zeros(1), self.log_eps_rest])

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M) log w_i = v(s, i) - v0(s)."""
        user, _, scores = self.towers(obs)
        return scores - self.no_click(user)


def _slate_size(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.MultiDiscrete):
        return len(space.nvec)
    if isinstance(space, gym.spaces.Discrete):
        return 1
    raise ValueError(f"SlateQ needs a Discrete or MultiDiscrete action space, got {space}")


class SlateQModule(QNetModule):
    """SlateQ over rayrec observations: a Qbar network (with a target copy) and a choice model;
    actions are (B, k) slates (or (B,) candidates for k = 1)."""

    @override(DefaultDQNTorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config
        self.uses_dueling, self.num_atoms = False, 1
        self.uses_double_q = bool(cfg.get("double_q", True))
        self.slate_size = _slate_size(self.action_space)
        self.slate_optimizer = str(cfg.get("slate_optimizer", "exact"))
        if self.slate_optimizer not in SLATE_OPTIMIZERS:
            raise ValueError(
                f"slate_optimizer ({self.slate_optimizer!r}) must be one of "
                f"{list(SLATE_OPTIMIZERS)}"
            )
        self._common_setup()
        self.q_net = SlateQNetwork(self.observation_space, self.rayrec_config)
        self.choice = ChoiceNetwork(self.observation_space, self.rayrec_config, self.slate_size)

    def values(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Qbar of the candidates and of no click, and log w (the online networks)."""
        q_items, q_null = self.q_net(obs)
        return {SLATEQ_ITEM_Q: q_items, SLATEQ_NULL_Q: q_null, SLATEQ_CHOICE: self.choice(obs)}

    def slates(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, k) the optimiser's slates (no gradients)."""
        with torch.no_grad():
            v = self.values(obs)
            return best_slates(
                v[SLATEQ_ITEM_Q],
                v[SLATEQ_NULL_Q],
                v[SLATEQ_CHOICE],
                self.choice.log_eps(),
                obs[Obs.ACTION_MASK],
                self.slate_size,
                self.slate_optimizer,
            )[0]

    def _as_actions(self, slates: torch.Tensor) -> torch.Tensor:
        # A masked-out slot (fewer valid candidates than k) shows nothing; -1 stays out of range.
        return slates[:, 0] if isinstance(self.action_space, gym.spaces.Discrete) else slates

    @override(DefaultDQNTorchRLModule)
    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Slate scores (see the module doc) as ``qf_preds``, plus Qbar and the choice model."""
        obs = batch[Columns.OBS]
        with torch.no_grad():
            v = self.values(obs)
            v[QF_PREDS] = slate_scores(
                v[SLATEQ_ITEM_Q],
                v[SLATEQ_NULL_Q],
                v[SLATEQ_CHOICE],
                self.choice.log_eps(),
                obs[Obs.ACTION_MASK],
                self.slate_size,
                self.slate_optimizer,
            )
        return v

    @override(DefaultDQNTorchRLModule)
    def _forward_inference(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {Columns.ACTIONS: self._as_actions(self.slates(batch[Columns.OBS]))}

    @override(DefaultDQNTorchRLModule)
    def _forward_exploration(self, batch: dict[str, Any], t: int) -> dict[str, Any]:
        """Epsilon-greedy over slates: a uniformly random slate of distinct valid candidates."""
        obs = batch[Columns.OBS]
        mask = obs[Obs.ACTION_MASK]
        best = self.slates(obs)
        self.epsilon_schedule.update(t)
        epsilon = self.epsilon_schedule.get_current_value()
        noise = torch.rand(mask.shape, device=mask.device)
        random = _top_slates(noise, mask, self.slate_size)
        explore = torch.rand(mask.shape[0], device=mask.device) < epsilon
        return {Columns.ACTIONS: self._as_actions(torch.where(explore[:, None], random, best))}

    @override(DefaultDQNTorchRLModule)
    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Qbar and log w of the current observations (with gradients), the online Qbar and
        log w of the next ones and the target network's Qbar there."""
        if self.inference_only:
            raise RuntimeError("an inference-only module cannot be trained")
        obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
        b = obs[Obs.ACTION_MASK].shape[0]
        both = self.values({k: torch.cat([obs[k], next_obs[k]], dim=0) for k in obs})
        out = {key: value[:b] for key, value in both.items()}
        out.update({f"next_{key}": value[b:].detach() for key, value in both.items()})
        with torch.no_grad():
            q_items, q_null = self._target_q_net(next_obs)
        out["target_next_" + SLATEQ_ITEM_Q] = q_items
        out["target_next_" + SLATEQ_NULL_Q] = q_null
        return out
