"""Validators shared by the typed configs (simulator, hierarchy, marketplace, model)."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["check_fields"]


def check_fields(cls: type, values: dict[str, Any], what: str) -> None:
    """Raise ValueError naming the keys of ``values`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {what} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
