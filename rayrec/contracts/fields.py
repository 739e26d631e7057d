"""Validators shared by the typed configs (simulator, hierarchy, marketplace, model)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["check_fields", "check_ranges", "ranged"]


def ranged(default: Any, lo: float, hi: float, *, lo_open: bool = False) -> Any:
    """A dataclass field carrying its allowed range ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``),
    which :func:`check_ranges` enforces."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi, lo_open)})


def check_ranges(config: Any) -> None:
    """Validate every :func:`ranged` field of the frozen dataclass ``config`` (NumPy scalars, from
    Tune search spaces say, are replaced by the Python number they hold): an int field must hold an
    int, a float field a finite number, each within its range; ValueError naming the field."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, np.generic):
            value = value.item()
            object.__setattr__(config, f.name, value)
        bounds = f.metadata.get("range")
        if bounds is None:
            continue
        lo, hi, lo_open = bounds
        if isinstance(f.default, int) and not isinstance(f.default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{f.name} must be an integer, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{f.name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be finite, got {value!r}")
        if value < lo or value > hi or (lo_open and value == lo):
            left = "(" if lo_open else "["
            raise ValueError(f"{f.name} ({value!r}) must be in {left}{lo}, {hi}]")


def check_fields(cls: type, values: dict[str, Any], what: str) -> None:
    """Raise ValueError naming the keys of ``values`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {what} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
