"""Crash-safe file writes: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["atomic_write_text", "fsync_dir", "replace_marked", "swap_dir"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a rename, a new or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_dir(tmp: Path, target: Path) -> None:
    """Replace directory ``target`` by ``tmp``.

    A crash at any point leaves ``target`` complete, or ``target`` missing and ``target.old``
    complete (the previous content), which readers fall back to."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        if not target.exists():  # a crash between the two renames: .old is all we have
            old.rename(target)
        else:
            shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def replace_marked(path: Path, name: str, body: str) -> None:
    """Replace what lies between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the text file
    ``path`` with ``body`` (atomically); ``ValueError`` naming the markers if either is missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if start not in text or end not in text.split(start, 1)[1]:
        raise ValueError(f"{path} has no {start} ... {end} markers")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    atomic_write_text(path, f"{before}{start}\n{body}{end}{after}")
