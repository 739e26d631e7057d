"""Tune callbacks of rayrec sweeps (imported only when a sweep is built: it imports Tune)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune import Callback

__all__ = ["CHECKPOINT_LOG", "CheckpointLog"]

CHECKPOINT_LOG = "checkpoints.jsonl"
"""In the experiment folder: one line per checkpoint Tune registered, in order."""


class CheckpointLog(Callback):
    """Appends ``{"trial_id", "iteration", "path"}`` to ``DIR/checkpoints.jsonl`` when Tune
    registers a trial's checkpoint.

    Tune writes a report to the trial's result.json before it registers that report's checkpoint
    (a separate, asynchronous save), and an interrupted sweep resumes each trial from its last
    *registered* checkpoint; this log says which one that is, so a reader (or a test) never has to
    guess from result.json."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / CHECKPOINT_LOG

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info):
        line = {
            "trial_id": trial.trial_id,
            "iteration": (trial.last_result or {}).get("training_iteration"),
            "path": checkpoint.path,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
