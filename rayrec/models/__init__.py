"""Torch RLModules for recommendation: history encoders, candidate scoring, heads."""

from rayrec.contracts.model_config import ModelConfig
from rayrec.models.encoders import ENCODERS, make_encoder
from rayrec.models.policy_module import CandidateAPPOModule, CandidatePolicyModule
from rayrec.models.q_module import CandidateQModule
from rayrec.models.slate import PlackettLuce, plackett_luce
from rayrec.models.slateq import SlateQModule
from rayrec.models.towers import RecommenderTowers, masked_logits

__all__ = [
    "ENCODERS",
    "CandidateAPPOModule",
    "CandidatePolicyModule",
    "CandidateQModule",
    "ModelConfig",
    "PlackettLuce",
    "RecommenderTowers",
    "SlateQModule",
    "make_encoder",
    "masked_logits",
    "plackett_luce",
]
