"""Typed configuration and names of the hierarchical (options) session environment.

Every field is a key of the ``hierarchy`` section of ``envs/hierarchical.yaml``. The option
semantics and the reward decomposition are in ``docs/hierarchical.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rayrec.contracts.fields import check_fields
from rayrec.contracts.observation import HIGH, LOW, HierObs

__all__ = [
    "HIGH",
    "LOW",
    "ON_UNAVAILABLE",
    "OPTION_KINDS",
    "TERMINATION_REASONS",
    "HierInfo",
    "HierObs",
    "HierarchyConfig",
]

OPTION_KINDS = ("explore", "exploit", "diversify", "topic")
"""Option kinds; ``topic`` expands to one "focus on topic t" option per catalog topic."""
ON_UNAVAILABLE = ("fallback", "raise")
"""What the env does with an option outside its initiation set (see HierarchyConfig)."""
TERMINATION_REASONS = ("session_end", "skip_streak", "initiation", "budget")
"""Why an option ended, in the order they are checked."""


class HierInfo:
    """Keys of the per-step info dicts (the reward accounting a test can add up)."""

    OPTION = "option"
    """Index of the option active at this step (or started by this high step)."""
    OPTION_NAME = "option_name"
    """Name of that option (``explore``, ``exploit``, ``diversify``, ``topic_<t>``)."""
    REJECTED = "rejected"
    """High step: the chosen option was outside its initiation set and was replaced."""
    OPTION_STEP = "option_step"
    """Low steps taken by the active option, this one included."""
    FLAT_REWARD = "flat_reward"
    """The reward the flat SessionEnv gives for this step (the engagement r_t)."""
    FOLLOWING = "following"
    """The option-following term f_t in [0, 1]."""
    LONG_TERM = "long_term"
    """The long-term term l_t (continuation and return bonuses) credited to the high level."""
    TERMINATED_BY = "terminated_by"
    """Why the option ended at this step (one of TERMINATION_REASONS), or None."""


@dataclass(frozen=True)
class HierarchyConfig:
    """Options, their termination, and the per-level rewards (frozen, validated on creation)."""

    options: tuple[str, ...] = OPTION_KINDS
    """Option kinds offered to the high level, in this order (a subset of OPTION_KINDS, no
    repeats); ``topic`` adds one option per catalog topic, after the others."""
    option_budget: int = 5
    """Low-level steps after which an option terminates (its step budget), >= 1."""
    skip_streak: int = 3
    """An option terminates after this many consecutive skipped steps (no click, or a click
    watched below the skip threshold); 0 disables this termination."""
    terminate_outside_initiation: bool = True
    """Also terminate an option when the state after a step leaves its initiation set."""
    following_weight: float = 0.5
    """w: weight of the option-following term in the low level's reward, >= 0."""
    continuation_weight: float = 0.0
    """Bonus credited to the high level for each step after which the session goes on."""
    return_weight: float = 1.0
    """Bonus credited to the high level when a session ends and the user comes back."""
    on_unavailable: str = "fallback"
    """An option outside its initiation set: 'fallback' starts the first available option
    instead (and reports it), 'raise' raises ValueError."""

    def __post_init__(self) -> None:
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if not options:
            raise ValueError("options must name at least one option kind")
        unknown = [o for o in options if o not in OPTION_KINDS]
        if unknown:
            raise ValueError(
                f"options ({', '.join(map(str, unknown))}) must be among {', '.join(OPTION_KINDS)}"
            )
        if len(set(options)) != len(options):
            raise ValueError(f"options ({', '.join(options)}) must not repeat a kind")
        for name in ("option_budget", "skip_streak"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.option_budget < 1:
            raise ValueError(f"option_budget ({self.option_budget}) must be >= 1")
        if self.skip_streak < 0:
            raise ValueError(f"skip_streak ({self.skip_streak}) must be >= 0 (0 disables it)")
        for name in ("following_weight", "continuation_weight", "return_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if self.following_weight < 0:
            raise ValueError(f"following_weight ({self.following_weight}) must be >= 0")
        if not isinstance(self.terminate_outside_initiation, bool):
            raise ValueError(
                "terminate_outside_initiation must be true or false, "
                f"got {self.terminate_outside_initiation!r}"
            )
        if self.on_unavailable not in ON_UNAVAILABLE:
            raise ValueError(
                f"on_unavailable ({self.on_unavailable!r}) must be one of "
                f"{', '.join(ON_UNAVAILABLE)}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HierarchyConfig:
        """Build from a mapping, naming any unknown key and listing the known ones."""
        check_fields(cls, values, "hierarchy")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for saving a resolved spec)."""
        out = dataclasses.asdict(self)
        out["options"] = list(self.options)
        return out
