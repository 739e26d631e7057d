"""Hierarchical (options) session environment: a high level picks options, a low level items.

``HierarchicalSessionEnv`` is imported on first use: it subclasses RLlib's ``MultiAgentEnv``, and
the config and options must stay importable without Ray (specs are validated before Ray starts).
"""

from typing import Any

from rayrec.envs.hierarchical.config import (
    HIGH,
    LOW,
    OPTION_KINDS,
    TERMINATION_REASONS,
    HierarchyConfig,
    HierInfo,
    HierObs,
)
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


def __getattr__(name: str) -> Any:
    if name == "HierarchicalSessionEnv":
        from rayrec.envs.hierarchical.env import HierarchicalSessionEnv

        return HierarchicalSessionEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
