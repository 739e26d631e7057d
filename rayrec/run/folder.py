"""The files of a run folder as training writes and resumes them (layout:
:mod:`rayrec.contracts.layout`): the resolved spec, metrics.jsonl, checkpoints with their
progress sidecar, the learning curve.

Every write is crash-safe: files are replaced atomically, checkpoints are written to a temporary
folder and swapped in, so a crash leaves ``NAME`` or ``NAME.old`` complete; a torn metrics line
(power loss, full disk) is dropped with a warning when the run is read back.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rayrec.contracts.files import atomic_write_text, fsync_dir, swap_dir
from rayrec.contracts.layout import RunFolder
from rayrec.specs import EnvSpec, PolicySpec, SpecError

__all__ = [
    "PROGRESS_FILE",
    "json_default",
    "plot_curve",
    "read_metrics",
    "read_progress",
    "restore_checkpoint",
    "save_checkpoint",
    "trim_metrics",
    "versions",
    "write_spec",
]

PROGRESS_FILE = "rayrec_progress.json"
"""Written into every checkpoint folder: the iteration and the training seconds spent up to it,
so that a resumed run knows how much of its time budget is left."""

Warn = Callable[[str], None]


def versions() -> dict[str, str]:
    """The versions a run was made with (saved in spec.yaml)."""
    import ray
    import torch

    import rayrec

    return {"rayrec": rayrec.__version__, "ray": ray.__version__, "torch": str(torch.__version__)}


def write_spec(folder: RunFolder, env: EnvSpec, policy: PolicySpec, run: dict[str, Any]) -> None:
    """spec.yaml: the resolved env and policy specs and the run options (the run's recipe)."""
    spec = {"env": env.to_dict(), "policy": policy.to_dict(), "run": run, "versions": versions()}
    atomic_write_text(folder.spec, yaml.safe_dump(spec, sort_keys=False))


def json_default(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays that RLlib's result dicts carry."""
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_metrics(path: Path, warn: Warn | None = None) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl; lines that are not complete JSON objects (a write torn by a
    crash) are dropped, with a warning naming them."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            if warn is not None:
                warn(f"warning: {path}: line {number} is torn or not JSON; dropped")
            continue
        rows.append(row)
    return rows


def trim_metrics(path: Path, iteration: int, warn: Warn | None = None) -> list[dict[str, Any]]:
    """Keep the rows up to ``iteration`` (the restored checkpoint's; later ones are about to be
    trained again) and no torn line; returns the kept rows."""
    rows = [r for r in read_metrics(path, warn) if r.get("iteration", 0) <= iteration]
    if path.exists():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _write_checkpoint(folder: RunFolder, name: str, fill: Callable[[Path], None]) -> None:
    """Write ``checkpoints/NAME``: ``fill`` writes it beside (``.NAME.tmp``), then it is swapped in."""
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    tmp = folder.checkpoints / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    fill(tmp)
    fsync_dir(tmp)
    swap_dir(tmp, folder.checkpoint(name))
    fsync_dir(folder.checkpoints)


def save_checkpoint(algo: Any, folder: RunFolder, name: str, progress: dict[str, Any]) -> None:
    """Save the algorithm to ``checkpoints/NAME`` (written beside it, then swapped in) with the
    progress sidecar (iteration, training seconds)."""

    def fill(tmp: Path) -> None:
        algo.save_to_path(str(tmp.resolve()))
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress))

    _write_checkpoint(folder, name, fill)


def copy_checkpoint(folder: RunFolder, source: str, name: str) -> None:
    """Copy ``checkpoints/SOURCE`` to ``checkpoints/NAME`` (written beside it, then swapped in):
    a second name for a checkpoint just saved, without asking the algorithm for its state again
    (with a remote learner that waits for the learner's queue, seconds per checkpoint)."""
    _write_checkpoint(folder, name, lambda tmp: shutil.copytree(folder.checkpoint(source), tmp))


def read_progress(checkpoint: Path) -> dict[str, Any]:
    """The progress sidecar of a checkpoint ({} for checkpoints written before it existed)."""
    path = checkpoint / PROGRESS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def restore_checkpoint(algo: Any, folder: RunFolder, name: str, warn: Warn) -> Path:
    """Restore ``algo`` from ``checkpoints/NAME``, else from ``NAME.old`` (with a warning);
    returns the folder used. One SpecError when neither loads."""
    candidates = folder.existing_checkpoint(name)
    if not candidates:
        raise SpecError(f"--resume: {folder.root} has no checkpoint to resume from")
    errors = []
    for path in candidates:
        try:
            algo.restore_from_path(str(path.resolve()))
        except Exception as e:  # RLlib raises whatever the broken file gives (pickle, OS, ...)
            errors.append(f"{path.name}: {type(e).__name__}: {e}".splitlines()[0])
            warn(f"warning: checkpoint {path} does not load ({errors[-1]})")
            continue
        if errors:
            warn(f"warning: resumed from {path} instead")
        return path
    raise SpecError(
        f"--resume: no checkpoint of {folder.root} loads ({'; '.join(errors)}); "
        "start a new run with another --out"
    )


def plot_curve(folder: RunFolder) -> None:
    """learning_curve.png: the mean training episode return over env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(folder.metrics)
    points = [
        (r["env_steps"], r["episode_return_mean"])
        for r in rows
        if r.get("episode_return_mean") is not None and math.isfinite(r["episode_return_mean"])
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x for x, _ in points], [y for _, y in points])
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return (training)")
    ax.set_title(folder.root.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = folder.root / ".learning_curve.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, folder.curve)
