"""The ``ope`` block of an offline run's ``results.json``: what off-policy evaluation says the
trained policy earns on its own training log.

``rayrec train --data LOG`` plays the final (or selected) checkpoint greedily, as ``rayrec
evaluate`` does, so the evaluation policy here is the checkpoint's top choice (``--mode greedy``
of ``rayrec ope``) and the estimand is its mean immediate reward per logged decision. To keep
the end of a run cheap the estimates use a seeded uniform sample of at most :data:`MAX_ROWS`
rows of the log and :data:`BOOTSTRAP` replicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayrec.ope.estimate import EstimatorConfig
from rayrec.ope.policies import USER_ERRORS, load_step_log
from rayrec.ope.step import SupportError, estimate_step

__all__ = ["BOOTSTRAP", "ESTIMATORS", "MAX_ROWS", "training_log_estimates"]

ESTIMATORS = ("ipw", "snipw", "dr", "sndr")
"""The step estimators that held the truth on the simulator study (docs/ope.md), and plain IPS."""
MAX_ROWS = 50_000
"""Rows of the log the estimates use at most (a seeded uniform sample of larger logs)."""
BOOTSTRAP = 200
"""Bootstrap replicates of the intervals (``rayrec ope`` uses 1,000)."""


def training_log_estimates(
    data: str | Path,
    checkpoint: str | Path,
    seed: int = 0,
    mode: str = "greedy",
    max_rows: int = MAX_ROWS,
    n_bootstrap: int = BOOTSTRAP,
) -> dict[str, Any]:
    """The ``ope`` block: step-level estimates of ``checkpoint`` on the log ``data``.

    ``{"level", "mode", "rows", "log_rows", "bootstrap", "seed", "estimates": {name: {"value",
    "ci95", "ess", "trusted"}}}``; ``{"skipped": "why"}`` when the log cannot give them (no
    valid propensities, slates, a deterministic log where the policy picks other items).
    """
    try:
        log, total = load_step_log(data, str(checkpoint), seed=seed, mode=mode, max_rows=max_rows)
        config = EstimatorConfig(seed=seed, n_bootstrap=n_bootstrap)
        estimates = estimate_step(log, ESTIMATORS, config)
    except (*USER_ERRORS, SupportError) as e:
        return {"skipped": f"no off-policy estimates: {e}"}
    return {
        "level": "step",
        "mode": mode,
        "rows": log.n,
        "log_rows": total,
        "bootstrap": n_bootstrap,
        "seed": seed,
        "estimates": {
            name: {**e.to_dict(), "trusted": not e.degenerate} for name, e in estimates.items()
        },
    }
