"""Baselines and simulator evaluation of long-term metrics."""

from rayrec.evaluation.baselines import (
    BASELINES,
    GreedyMyopicPolicy,
    LongTermHeuristicPolicy,
    ObservedHeuristicPolicy,
    Policy,
    PopularPolicy,
    RandomPolicy,
    make_baseline,
    top_k_valid,
)
from rayrec.evaluation.simulate import ci95, evaluate

__all__ = [
    "BASELINES",
    "GreedyMyopicPolicy",
    "LongTermHeuristicPolicy",
    "ObservedHeuristicPolicy",
    "Policy",
    "PopularPolicy",
    "RandomPolicy",
    "ci95",
    "evaluate",
    "make_baseline",
    "top_k_valid",
]
