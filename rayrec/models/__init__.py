"""Torch RLModules for recommendation: history encoders, candidate scoring, heads."""

from rayrec.models.encoders import ENCODERS, make_encoder
from rayrec.models.policy_module import CandidatePolicyModule
from rayrec.models.towers import ModelConfig, RecommenderTowers, masked_logits

__all__ = [
    "ENCODERS",
    "CandidatePolicyModule",
    "ModelConfig",
    "RecommenderTowers",
    "make_encoder",
    "masked_logits",
]
