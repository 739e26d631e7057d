"""Hyperparameter search with Ray Tune: ``rayrec tune`` (search-space grammar, trials, sweeps)."""

from rayrec.tuning.space import DISTRIBUTIONS, SCHEDULERS, Param, SweepSpec, apply_params

__all__ = ["DISTRIBUTIONS", "SCHEDULERS", "Param", "SweepSpec", "apply_params"]
