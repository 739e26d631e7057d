"""Public datasets that rayrec fetches at set-up and caches outside the repository.

A small registry maps a dataset name to the function that fetches it, so ``rayrec data fetch NAME``
serves every dataset the same way. Fetchers write atomically: a crash never leaves a half-written
cache that a later run would trust.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["FETCHERS", "DatasetError", "data_root", "fetch", "register"]

# name -> fetch(root, force) -> folder that holds the dataset's files
FETCHERS: dict[str, Callable[[Path, bool], Path]] = {}


class DatasetError(Exception):
    """A dataset file is missing or corrupt, or a fetch failed; the message is one line."""


def data_root() -> Path:
    """The cache folder: ``$RAYREC_DATA``, else ``~/.cache/rayrec``."""
    return Path(os.environ.get("RAYREC_DATA") or "~/.cache/rayrec").expanduser()


def register(name: str) -> Callable[[Callable[[Path, bool], Path]], Callable[[Path, bool], Path]]:
    """Decorator: make ``fetch(root, force)`` the fetcher of dataset ``name``."""

    def wrap(fn: Callable[[Path, bool], Path]) -> Callable[[Path, bool], Path]:
        if name in FETCHERS:
            raise ValueError(f"dataset name ({name!r}) is already registered")
        FETCHERS[name] = fn
        return fn

    return wrap


def fetch(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Fetch dataset ``name`` into ``root`` (default ``data_root()``); returns its folder."""
    if name not in FETCHERS:
        raise ValueError(f"dataset ({name!r}) must be one of {', '.join(sorted(FETCHERS))}")
    return FETCHERS[name](data_root() if root is None else Path(root), force)
