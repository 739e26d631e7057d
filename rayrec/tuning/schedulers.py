"""Tune schedulers as rayrec runs them (imported only when a sweep is built: it imports Tune)."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

__all__ = ["FinalIterationPBT"]


class FinalIterationPBT(PopulationBasedTraining):
    """PBT that leaves a trial alone at its last iteration.

    Tune's PBT would still let a trial that has finished copy another's checkpoint and new
    values, which it then never trains with: wasted work, and a trial whose values no longer
    match its last report and checkpoint.
    """

    def __init__(self, *, max_t: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_t = max_t

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)
