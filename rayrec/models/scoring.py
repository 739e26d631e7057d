"""The one scoring path of a trained RLModule, shared by simulator evaluation and serving."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns

__all__ = ["is_q_module", "module_scores"]


def is_q_module(module: Any) -> bool:
    """Q modules score candidates by their Q-values (``compute_q_values``), others by logits."""
    return hasattr(module, "compute_q_values")


def module_scores(module: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B, M) masked logits, or Q-values for Q modules, of a batched observation (no gradients).

    Masked candidates carry the module's masked value (a very low logit, -inf Q)."""
    batch = {Columns.OBS: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in obs.items()}}
    with torch.no_grad():
        if is_q_module(module):
            return module.compute_q_values(batch)["qf_preds"].numpy()
        out = module.forward_inference(batch)
    return out[Columns.ACTION_DIST_INPUTS].numpy()
