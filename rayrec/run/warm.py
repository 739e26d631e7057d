"""Warm starts: a new run begins from the RLModule weights of another checkpoint
(``rayrec train --init-from``), e.g. behaviour cloning on heuristic logs before RL fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rayrec.contracts.layout import DEFAULT_MODULE_ID, module_dir, module_ids
from rayrec.evaluation.policies import load_module
from rayrec.specs import SpecError

__all__ = ["warm_start"]


def warm_start(algo: Any, checkpoint: Path, log: Callable[[str], None]) -> list[str]:
    """Load the RLModule weights of ``checkpoint`` (any rayrec checkpoint or module folder with
    the same modules, e.g. behaviour cloning on heuristic logs) into ``algo`` before training;
    optimizer states and counters start fresh. Returns the module ids loaded.

    Every parameter of this run's modules must be in the checkpoint with the same shape, else
    one SpecError naming what differs (RLlib's own loading ignores missing parameters)."""
    checkpoint = Path(checkpoint).resolve()
    wanted = sorted(algo.config.policies) if algo.config.is_multi_agent else [DEFAULT_MODULE_ID]
    loaded = []
    for module_id in wanted:
        folder = module_dir(checkpoint, module_id)
        if folder is None:
            raise SpecError(
                f"--init-from {checkpoint}: no module {module_id!r} in it "
                f"(it holds: {', '.join(module_ids(checkpoint)) or 'none'})"
            )
        source = load_module(folder).state_dict()
        component = f"learner/rl_module/{module_id}"
        state = algo.learner_group.get_state(components=component)
        target = state["learner"]["rl_module"][module_id]
        missing = sorted(set(target) - set(source))
        shapes = sorted(
            k
            for k in set(target) & set(source)
            if tuple(torch.as_tensor(target[k]).shape) != tuple(source[k].shape)
        )
        if missing or shapes:
            detail = f"missing {missing[:4]}" if missing else f"other shapes: {shapes[:4]}"
            raise SpecError(
                f"--init-from {checkpoint}: module {module_id!r} does not fit this run's "
                f"({type(algo.get_module(module_id)).__name__}; {detail}); warm starts need "
                "the same model section and module family"
            )
        algo.restore_from_path(folder, component=f"learner_group/{component}")
        loaded.append(module_id)
    log(f"initialised {', '.join(loaded)} from {checkpoint}")
    return loaded
