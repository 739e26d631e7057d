"""Trained RLModules as evaluation policies: a flat agent's module, or both levels' of a
hierarchical agent, loaded from a checkpoint without building the Algorithm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.core.rl_module.rl_module import RLModule

from rayrec.contracts.errors import SpecError
from rayrec.contracts.layout import is_hierarchical, module_dir
from rayrec.contracts.observation import HIGH, LEVELS, LOW, Obs
from rayrec.evaluation.baselines import top_k_valid
from rayrec.evaluation.hierarchical import evaluate_hierarchical
from rayrec.models.scoring import module_scores

__all__ = [
    "HierarchicalPolicy",
    "ModulePolicy",
    "level_actor",
    "load_level_modules",
    "load_module",
    "load_policy",
]


def load_module(path: str | Path, module_id: str = "default_policy") -> Any:
    """The RLModule ``module_id`` (eval mode) of a checkpoint, or of a module folder.

    A relative ``path`` is taken from the working directory (RLlib's loader reads paths as
    URIs and rejects relative ones)."""
    path = Path(path).resolve()
    folder = module_dir(path, module_id)
    if folder is None:
        raise SpecError(f"{path}: not an rayrec/RLlib checkpoint (no RLModule state found)")
    module = RLModule.from_checkpoint(folder)
    module.eval()
    return module


class ModulePolicy:
    """A trained RLModule as an evaluation policy: greedy over its masked logits or Q-values
    (``greedy=False`` samples from the softmax of the logits instead)."""

    def __init__(self, module: Any, name: str = "policy", greedy: bool = True, seed: int = 0):
        self.module = module
        self.name = name
        self.greedy = greedy
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> ModulePolicy:
        """Load only the RLModule (no Algorithm, no env runners) from an algorithm checkpoint."""
        return cls(load_module(path), **kwargs)

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, M) masked logits (or Q-values) of the module for a batched observation."""
        return module_scores(self.module, obs)

    def act(self, obs: dict[str, np.ndarray], sim: Any) -> np.ndarray:
        logits = self.scores(obs)
        k = sim.config.slate_size
        if self.greedy:
            return top_k_valid(logits, obs[Obs.ACTION_MASK], k)
        probs = torch.softmax(torch.from_numpy(logits), dim=-1)
        picks = torch.multinomial(probs, k, replacement=False, generator=self._generator)
        return picks.numpy()


def level_actor(modules: dict[str, Any]) -> Any:
    """An evaluation actor (:data:`rayrec.evaluation.hierarchical.LevelActor`) from the two
    levels' RLModules: the arg-max (top-k for slates) of each module's masked logits."""

    def act(level: str, obs: dict[str, np.ndarray]) -> np.ndarray:
        logits = module_scores(modules[level], obs)
        space = modules[level].action_space
        k = len(space.nvec) if hasattr(space, "nvec") else 1
        picks = top_k_valid(logits, obs[Obs.ACTION_MASK], k)
        return picks if k > 1 else picks[:, 0]

    return act


def load_level_modules(checkpoint: str | Path) -> dict[str, Any]:
    """The two levels' RLModules (eval mode) from an algorithm checkpoint (or its rl_module
    folder), without building the Algorithm."""
    path = Path(checkpoint).resolve()
    if not is_hierarchical(path):
        raise SpecError(f"{path}: not a hierarchical checkpoint (no '{HIGH}' and '{LOW}' modules)")
    return {level: load_module(path, level) for level in LEVELS}


class HierarchicalPolicy:
    """A trained two-level agent as an evaluation policy: plays ``HierarchicalSessionEnv`` on an
    env spec's scenario (arg-max of each level's masked logits), scored on the flat return."""

    def __init__(self, modules: dict[str, Any], name: str = "hierarchical") -> None:
        self.modules = modules
        self.name = name

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> HierarchicalPolicy:
        return cls(load_level_modules(path), **kwargs)

    def evaluate_on(self, env: Any, users: int, seed: int) -> dict[str, Any]:
        """Metrics (:class:`rayrec.contracts.keys.Metrics`) over ``users`` lifetimes of ``env``
        (an env spec with a ``hierarchy`` section)."""
        if env.hierarchy is None:
            raise SpecError("env spec: evaluating a hierarchical agent needs a 'hierarchy' section")
        actor = level_actor(self.modules)
        return evaluate_hierarchical(actor, env.config, env.hierarchy, users=users, seed=seed)


def load_policy(checkpoint: str | Path, name: str = "policy", seed: int = 0) -> Any:
    """The evaluation policy of a checkpoint: both levels of a hierarchical agent, else the
    single-agent module."""
    if is_hierarchical(Path(checkpoint).resolve()):
        return HierarchicalPolicy.from_checkpoint(checkpoint, name=name)
    return ModulePolicy.from_checkpoint(checkpoint, name=name, seed=seed)
