"""Off-policy evaluation: what a new policy would earn, estimated from logs of another one.

The estimator modules (``estimate``, ``reward_model``, ``step``, ``slate``, ``trajectory``,
``bts``) are numpy only; ``network_fqe`` fits a torch Q network for ``fqe`` and ``dr-rl``.
``rayrec.ope.policies`` is the one adapter to the rest of rayrec (logs, baselines, checkpoints);
``rayrec.ope.report`` makes the ``ope`` block of an offline training run's results.json;
``rayrec.ope.cli`` is the ``rayrec ope`` command. Guide: docs/ope.md.
"""

from rayrec.ope.estimate import Estimate, EstimatorConfig, effective_sample_size
from rayrec.ope.slate import SLATE_ESTIMATORS, SlateLog, estimate_slate
from rayrec.ope.step import STEP_ESTIMATORS, StepLog, SupportError, estimate_step
from rayrec.ope.trajectory import TRAJECTORY_ESTIMATORS, TrajectoryLog, estimate_trajectory

__all__ = [
    "SLATE_ESTIMATORS",
    "STEP_ESTIMATORS",
    "TRAJECTORY_ESTIMATORS",
    "Estimate",
    "EstimatorConfig",
    "SlateLog",
    "StepLog",
    "SupportError",
    "TrajectoryLog",
    "effective_sample_size",
    "estimate_slate",
    "estimate_step",
    "estimate_trajectory",
]
