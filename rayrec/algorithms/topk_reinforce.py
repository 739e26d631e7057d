"""Top-K off-policy-corrected REINFORCE (Chen et al., WSDM 2019) trained from rayrec's logs.

The policy pi(a|s) is the softmax of the candidate-scoring module's logits over the valid
candidates. Logged rows (s_t, a_t) come with the discounted return R_t of the rest of their logged
lifetime (:mod:`rayrec.data.offline` adds it) and the behaviour policy's probability beta(a_t|s_t):
the logged propensity, or the module's behaviour head (a softmax over the same candidates from the
user state with the gradient stopped, trained by maximum likelihood on the logged actions; paper
'estimating the behavior policy'). The loss of a batch is the eq. 7 surrogate with capped weights:

    L = - mean_rows [ sg( min(pi(a|s) / beta(a|s), c) * lambda_K(s, a) ) * R_t * log pi(a|s) ]
    lambda_K(s, a) = K (1 - pi(a|s))^(K - 1)                                      (eq. 6)

(sg: stop gradient), so its gradient is the paper's top-K off-policy-corrected policy gradient
with capped weights. K = 1 gives lambda = 1: plain off-policy-corrected REINFORCE. The
behaviour head's negative log-likelihood is added; its gradient reaches the head only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.bc.bc import BC, BCConfig
from ray.rllib.algorithms.marwil.torch.marwil_torch_learner import MARWILTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.utils.annotations import override

from rayrec.algorithms.transitions import TransitionsToBatch
from rayrec.models.policy_module import BEHAVIOR_HEAD_KEY, BEHAVIOR_LOGITS

__all__ = [
    "BEHAVIOR_PROPENSITIES",
    "LOGGED_PROPENSITY",
    "RETURNS",
    "TopKReinforce",
    "TopKReinforceConfig",
    "TopKReinforceTorchLearner",
    "capped_weights",
    "topk_multiplier",
    "topk_reinforce_loss",
]

RETURNS = "returns"
"""Train-batch column: (B,) discounted return R_t of the rest of the row's logged lifetime."""
LOGGED_PROPENSITY = "logged_propensity"
"""Train-batch column: (B,) the logged behaviour probability of the row's action."""
BEHAVIOR_PROPENSITIES = ("logged", "learned")
"""Where beta(a|s) comes from: the log's propensities, or the module's behaviour head."""

BEHAVIOR_LOSS_KEY = "behavior_nll"
"""Learner metric: the behaviour head's mean negative log-likelihood of the logged actions."""
WEIGHT_MEAN_KEY = "capped_weight_mean"
"""Learner metric: mean of min(pi / beta, c) over the batch."""
CAPPED_SHARE_KEY = "capped_share"
"""Learner metric: share of rows whose ratio pi / beta exceeded the cap c."""
TOPK_MEAN_KEY = "topk_multiplier_mean"
"""Learner metric: mean of lambda_K over the batch."""

# MARWIL's settings that BC keeps in its config; this loss reads none of them.
_MARWIL_ONLY = (
    "beta",
    "bc_logstd_coeff",
    "vf_coeff",
    "moving_average_sqd_adv_norm_update_rate",
    "moving_average_sqd_adv_norm_start",
)


def topk_multiplier(pi: torch.Tensor, k: int) -> torch.Tensor:
    """lambda_K = K (1 - pi)^(K - 1) of (B,) probabilities pi(a|s) (Chen et al. 2019, eq. 6)."""
    return k * (1.0 - pi).pow(k - 1)


def capped_weights(pi: torch.Tensor, beta: torch.Tensor, cap: float) -> torch.Tensor:
    """(B,) importance weights min(pi / beta, cap) of the logged actions.

    Args:
        pi: (B,) the trained policy's probabilities pi(a|s).
        beta: (B,) the behaviour probabilities beta(a|s), > 0.
        cap: c, the largest weight (> 0).
    """
    return torch.clamp(pi / beta, max=cap)


def topk_reinforce_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    beta: torch.Tensor,
    top_k: int,
    weight_cap: float,
) -> torch.Tensor:
    """The eq. 7 surrogate: -mean[sg(min(pi / beta, c) lambda_K) R log pi(a|s)].

    Args:
        logits: (B, M) the policy's logits, masked candidates at a very low value (probability 0).
        actions: (B,) logged candidate indices.
        returns: (B,) discounted returns R_t.
        beta: (B,) behaviour probabilities of the logged actions (no gradient flows into them).
        top_k: K of the top-K correction (1: plain off-policy REINFORCE).
        weight_cap: c, the cap of the importance weights.
    """
    log_pi = torch.log_softmax(logits, dim=-1).gather(1, actions.long().view(-1, 1)).squeeze(1)
    pi = log_pi.detach().exp()
    weight = capped_weights(pi, beta.detach(), weight_cap) * topk_multiplier(pi, top_k)
    return -(weight * returns * log_pi).mean()


class TopKReinforceConfig(BCConfig):
    """BC's offline pipeline and module with the top-K off-policy-corrected REINFORCE loss.

    ``top_k`` (K >= 1), ``weight_cap`` (c > 0), ``behavior_propensity`` ('logged' or 'learned')
    and ``gamma`` (the returns' discount) set it; MARWIL's settings do not apply.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or TopKReinforce)
        self.top_k = 1
        self.weight_cap = 10.0
        self.behavior_propensity = "logged"

    @override(BCConfig)
    def training(
        self,
        *,
        top_k: int | None = NotProvided,
        weight_cap: float | None = NotProvided,
        behavior_propensity: str | None = NotProvided,
        **kwargs: Any,
    ) -> Any:
        """``top_k``: K of lambda_K (1: no top-K correction); ``weight_cap``: c, the cap of the
        importance weights; ``behavior_propensity``: 'logged' (the log's propensities) or
        'learned' (the behaviour head's); everything else as BC's."""
        super().training(**kwargs)
        if top_k is not NotProvided:
            self.top_k = top_k
        if weight_cap is not NotProvided:
            self.weight_cap = weight_cap
        if behavior_propensity is not NotProvided:
            self.behavior_propensity = behavior_propensity
        return self

    @property
    @override(BCConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {BEHAVIOR_HEAD_KEY: True}

    @override(BCConfig)
    def get_default_learner_class(self) -> type:
        return TopKReinforceTorchLearner

    @override(BCConfig)
    def build_learner_connector(
        self, input_observation_space: Any, input_action_space: Any, device: Any = None
    ) -> Any:
        pipeline = super().build_learner_connector(
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
            device=device,
        )
        # LogPreLearner hands over one transition episode per row with its return and logged
        # propensity as extra columns; this piece batches them in bulk (as for DiscreteCQL).
        pipeline.prepend(TransitionsToBatch())
        return pipeline

    @override(BCConfig)
    def validate(self) -> None:
        # First: BC's own check of `beta` would name behaviour cloning.
        reference = BCConfig()
        for name in _MARWIL_ONLY:
            if getattr(self, name) != getattr(reference, name):
                self._value_error(
                    f"{name} ({getattr(self, name)!r}) does not apply to TopKReinforce (a MARWIL "
                    "setting); remove it"
                )
        super().validate()
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            self._value_error(
                f"top_k ({k!r}) must be a whole number >= 1: the K of the top-K correction "
                "(1: plain off-policy-corrected REINFORCE)"
            )
        cap = self.weight_cap
        number = isinstance(cap, int | float) and not isinstance(cap, bool)
        if not number or not math.isfinite(cap) or cap <= 0:
            self._value_error(
                f"weight_cap ({cap!r}) must be a finite number > 0: the cap c of the importance "
                "weights min(pi / beta, c)"
            )
        if self.behavior_propensity not in BEHAVIOR_PROPENSITIES:
            self._value_error(
                f"behavior_propensity ({self.behavior_propensity!r}) must be one of "
                f"{', '.join(BEHAVIOR_PROPENSITIES)}"
            )
        gamma = self.gamma
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 <= gamma <= 1:
            self._value_error(f"gamma ({gamma!r}) must be a number in [0, 1]")


class TopKReinforceTorchLearner(MARWILTorchLearner):
    """The top-K corrected REINFORCE loss plus the behaviour head's negative log-likelihood."""

    @override(MARWILTorchLearner)
    def compute_loss_for_module(
        self, *, module_id: str, config: TopKReinforceConfig, batch: dict, fwd_out: dict
    ) -> torch.Tensor:
        if BEHAVIOR_LOGITS not in fwd_out:
            raise ValueError(
                f"TopKReinforce needs behaviour logits ('{BEHAVIOR_LOGITS}'); module "
                f"{module_id!r} returned {sorted(fwd_out)}: use rayrec's CandidatePolicyModule "
                f"(built with {BEHAVIOR_HEAD_KEY})"
            )
        actions = batch[Columns.ACTIONS].long().view(-1, 1)
        behavior_logp = torch.log_softmax(fwd_out[BEHAVIOR_LOGITS], dim=-1).gather(1, actions)
        behavior_logp = behavior_logp.squeeze(1)
        behavior_loss = -behavior_logp.mean()
        if config.behavior_propensity == "learned":
            beta = behavior_logp.detach().exp()
        else:
            beta = batch[LOGGED_PROPENSITY].float()
        logits = fwd_out[Columns.ACTION_DIST_INPUTS]
        returns = batch[RETURNS].float()
        policy_loss = topk_reinforce_loss(
            logits, actions.squeeze(1), returns, beta, config.top_k, config.weight_cap
        )
        with torch.no_grad():
            pi = torch.softmax(logits, dim=-1).gather(1, actions).squeeze(1)
            ratio = pi / beta
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: policy_loss,
                BEHAVIOR_LOSS_KEY: behavior_loss,
                WEIGHT_MEAN_KEY: ratio.clamp(max=config.weight_cap).mean(),
                CAPPED_SHARE_KEY: (ratio > config.weight_cap).float().mean(),
                TOPK_MEAN_KEY: topk_multiplier(pi, config.top_k).mean(),
            },
            key=module_id,
            window=1,
        )
        return policy_loss + behavior_loss


class TopKReinforce(BC):
    """Top-K off-policy-corrected REINFORCE from logs (BC's offline training step)."""

    @classmethod
    @override(BC)
    def get_default_config(cls) -> TopKReinforceConfig:
        return TopKReinforceConfig()
