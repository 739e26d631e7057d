"""The error every layer raises for a bad spec, flag or file the user can fix."""

from __future__ import annotations

__all__ = ["SpecError"]


class SpecError(ValueError):
    """A spec or command-line problem; the CLI prints it as one line and exits with code 2."""
