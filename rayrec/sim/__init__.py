"""Batched user-session simulator: pure numpy, no Ray, no torch."""

from rayrec.sim.catalog import ItemCatalog
from rayrec.sim.choice import CascadeChoice, MultinomialLogitChoice, make_choice_model
from rayrec.sim.config import SimConfig
from rayrec.sim.retrieval import CandidateRetriever
from rayrec.sim.simulator import SessionSimulator, StepResult
from rayrec.sim.users import UserPopulation

__all__ = [
    "CandidateRetriever",
    "CascadeChoice",
    "ItemCatalog",
    "MultinomialLogitChoice",
    "SessionSimulator",
    "SimConfig",
    "StepResult",
    "UserPopulation",
    "make_choice_model",
]
