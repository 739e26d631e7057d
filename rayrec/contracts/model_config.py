"""The ``model`` section of a policy spec: rayrec's RLModule options, without torch.

``to_dict`` is the one serialisation, used for every module's ``model_config`` and for spec.yaml,
so that a field added here reaches both (a hand-copied field list once dropped one silently).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rayrec.contracts.fields import check_fields

__all__ = ["ENCODERS", "SCORERS", "ModelConfig"]

ENCODERS = ("none", "mean", "gated", "gru", "attention")
"""History encoders (:mod:`rayrec.models.encoders` builds them)."""
SCORERS = ("dot", "mlp")
"""How a user vector meets a candidate."""


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section of a policy spec."""

    encoder: str = "mean"
    """History encoder: 'none', 'mean', 'gated' (click-aware pooling), 'gru' or 'attention'."""
    hidden: int = 64
    """Width of the user and item towers and of the history encoder."""
    scorer: str = "dot"
    """How a user vector meets a candidate: 'dot' (scaled dot product) or 'mlp'."""
    value_hidden: int = 64
    """Width of the value head."""
    candidate_context: bool = False
    """Feed the user tower the masked mean of the candidates' features: retrieval chose them for
    this user, so what is on offer is evidence of the user's interest beyond the short history."""
    separate_critic: bool = False
    """Policy-gradient modules: a value function with a user tower of its own (RLlib's
    ``vf_share_layers=False``) instead of a head on the policy's user vector. Value targets of
    long lifetimes are large (squared errors of 50-300) and their gradients through shared towers
    swamp the policy's; clipping them instead (PPO's ``vf_clip_param``) stops the critic from
    learning."""
    relations: bool = False
    """Add a per-candidate relation head: how similar each candidate is to what the user clicked,
    watched, liked, skipped and was shown (response-weighted mean dot products over the history),
    to the last item shown, to the closest history item and to the offer, beside its own scalars,
    the logit of its CTR estimate and the context; a small MLP of those adds to its score. The
    two towers meet only in one dot product, which cannot weight a candidate's similarity to the
    history by the user's responses; this head can (DIN's candidate-history relation, made
    explicit)."""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"model.encoder ({self.encoder!r}) must be one of {', '.join(ENCODERS)}"
            )
        if self.scorer not in SCORERS:
            raise ValueError(f"model.scorer ({self.scorer!r}) must be one of {', '.join(SCORERS)}")
        for name in ("hidden", "value_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise ValueError(f"model.{name} ({value!r}) must be an integer in [1, 4096]")
        for name in ("candidate_context", "separate_critic", "relations"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name} ({getattr(self, name)!r}) must be true or false")

    @classmethod
    def from_module_config(cls, values: dict[str, Any] | None) -> ModelConfig:
        """From an RLModule's ``model_config``, which RLlib extends with keys of its own."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ModelConfig:
        """From a spec's ``model`` section; unknown keys are an error."""
        values = dict(values or {})
        check_fields(cls, values, "model")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as an RLModule ``model_config`` and spec.yaml's ``model`` section."""
        return dataclasses.asdict(self)
