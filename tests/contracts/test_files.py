"""Crash-safe writes: every state a crash can leave behind reads back as old or new content."""

from __future__ import annotations

from pathlib import Path

from rayrec.contracts.files import atomic_write_text, swap_dir


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "state").write_text(text)
    return path


def _read(path: Path) -> str:
    return (path / "state").read_text()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "file.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_swap_replaces_the_target(tmp_path):
    _folder(tmp_path / "latest", "old")
    swap_dir(_folder(tmp_path / ".latest.tmp", "new"), tmp_path / "latest")
    assert _read(tmp_path / "latest") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_swap_after_a_crash_between_the_renames_keeps_the_only_copy(tmp_path):
    # A crash after `latest` -> `latest.old` and before `tmp` -> `latest`: .old is the only
    # complete checkpoint; the next swap must not delete it before the new one is in place.
    _folder(tmp_path / "latest.old", "previous")
    swap_dir(_folder(tmp_path / ".latest.tmp", "new"), tmp_path / "latest")
    assert _read(tmp_path / "latest") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_swap_after_a_crash_before_the_cleanup_drops_the_stale_old(tmp_path):
    _folder(tmp_path / "latest", "current")
    _folder(tmp_path / "latest.old", "stale")
    swap_dir(_folder(tmp_path / ".latest.tmp", "new"), tmp_path / "latest")
    assert _read(tmp_path / "latest") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_swap_into_nothing(tmp_path):
    swap_dir(_folder(tmp_path / ".best.tmp", "first"), tmp_path / "best")
    assert _read(tmp_path / "best") == "first"
