"""Training runs: the run folder and the one training loop for every env kind."""

from rayrec.run.loop import Interrupted, ensure_ray, iterations, train
from rayrec.run.options import DEFAULT_BASELINES, RunOptions, selection_options

__all__ = [
    "DEFAULT_BASELINES",
    "Interrupted",
    "RunOptions",
    "ensure_ray",
    "iterations",
    "selection_options",
    "train",
]
