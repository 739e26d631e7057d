"""Where things live in a run folder and in an RLlib checkpoint: spelled out once, here.

Run folder (``rayrec train --out RUN``)::

    RUN/spec.yaml            resolved env + policy + run options; the run can be rebuilt from it
    RUN/metrics.jsonl        one JSON line per training iteration
    RUN/checkpoints/latest   last periodic checkpoint (RLlib Algorithm checkpoint)
    RUN/checkpoints/best     of the checkpointed iterations (every checkpoint_every, and the
                             last), the one with the best training return
    RUN/checkpoints/final    checkpoint at the end of training
    RUN/checkpoints/selected with evaluation.select_every: the checkpoint with the best return on
                             the validation users (other users than the final evaluation's)
    RUN/tensorboard/         TensorBoard event files
    RUN/learning_curve.png   mean episode return over env steps
    RUN/results.json         {"policy": metrics, "baselines": {name: metrics}, ...}

A checkpoint folder NAME may be replaced by ``NAME.old`` after a crash during its swap
(:func:`rayrec.contracts.files.swap_dir`); readers fall back to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rayrec.contracts.observation import LEVELS

__all__ = [
    "CTOR_FILE",
    "DEFAULT_MODULE_ID",
    "MODULE_STATE",
    "RunFolder",
    "find_run_dir",
    "is_hierarchical",
    "module_dir",
    "module_ids",
    "module_roots",
]

DEFAULT_MODULE_ID = "default_policy"
"""RLlib's module id of a single-agent module (``ray.rllib.core.DEFAULT_MODULE_ID``)."""
MODULE_STATE = "module_state"
"""Prefix of the weight files RLlib writes into a module folder."""
CTOR_FILE = "class_and_ctor_args.pkl"
"""The pickle of a module's class and constructor arguments in its folder."""


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def curve(self) -> Path:
        return self.root / "learning_curve.png"

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/NAME`` (latest, best, final, selected)."""
        return self.checkpoints / name

    def existing_checkpoint(self, name: str) -> list[Path]:
        """The folders holding checkpoint ``name``, newest first: NAME, then NAME.old."""
        path = self.checkpoint(name)
        return [p for p in (path, path.with_name(name + ".old")) if p.is_dir()]


def find_run_dir(path: Path) -> Path | None:
    """The run folder a checkpoint lives in (the nearest parent holding spec.yaml)."""
    path = Path(path)
    for parent in (path, *path.parents):
        if RunFolder(parent).spec.is_file():
            return parent
    return None


def module_roots(checkpoint: Path) -> tuple[Path, ...]:
    """Folders that may hold module folders: an Algorithm checkpoint's learner, a MultiRLModule
    checkpoint, or the folder itself."""
    checkpoint = Path(checkpoint)
    return (
        checkpoint / "learner_group" / "learner" / "rl_module",
        checkpoint / "rl_module",
        checkpoint,
    )


def _holds_module(folder: Path) -> bool:
    return (folder / CTOR_FILE).is_file() and any(folder.glob(f"{MODULE_STATE}*"))


def module_dir(checkpoint: Path, module_id: str = DEFAULT_MODULE_ID) -> Path | None:
    """The folder of module ``module_id`` in ``checkpoint`` (or ``checkpoint`` itself when it is
    a module folder); None when there is none."""
    for root in module_roots(checkpoint):
        if _holds_module(root / module_id):
            return root / module_id
    return Path(checkpoint) if _holds_module(Path(checkpoint)) else None


def module_ids(checkpoint: Path) -> list[str]:
    """The ids of the modules a (multi-agent) checkpoint holds, sorted; [] when none."""
    for root in module_roots(checkpoint):
        if root.is_dir():
            ids = sorted(p.name for p in root.iterdir() if p.is_dir() and _holds_module(p))
            if ids:
                return ids
    return []


def is_hierarchical(checkpoint: Path) -> bool:
    """The checkpoint holds one module per level of a hierarchical agent (high and low)."""
    return any(
        all(_holds_module(root / level) for level in LEVELS) for root in module_roots(checkpoint)
    )
