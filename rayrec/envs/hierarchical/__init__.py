"""Hierarchical (options) session environment: a high level picks options, a low level items."""

from rayrec.envs.hierarchical.config import (
    HIGH,
    LOW,
    OPTION_KINDS,
    TERMINATION_REASONS,
    HierarchyConfig,
    HierInfo,
    HierObs,
)
from rayrec.envs.hierarchical.env import HierarchicalSessionEnv
from rayrec.envs.hierarchical.options import (
    Option,
    build_options,
    following,
    initiation_mask,
    termination,
)

__all__ = [
    "HIGH",
    "LOW",
    "OPTION_KINDS",
    "TERMINATION_REASONS",
    "HierInfo",
    "HierObs",
    "HierarchicalSessionEnv",
    "HierarchyConfig",
    "Option",
    "build_options",
    "following",
    "initiation_mask",
    "termination",
]
