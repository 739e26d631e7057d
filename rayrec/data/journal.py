"""At-least-once row logs: rows journaled on append, written as parquet parts in the background.

:class:`ParquetLog` takes one row at a time (a dict keyed by column name), as a server does on its
request path. Each row is appended to a journal segment before ``append`` returns; a background
thread writes the rows as parquet parts (:func:`rayrec.data.parts.write_part`) every
``flush_rows`` rows or ``flush_seconds`` seconds and at close, then deletes the segment. The next
writer on the folder turns the segments of writers that died into parts
(:func:`recover_journals`). The served impression and feedback logs (:mod:`rayrec.data.served`)
are ParquetLogs; docs/serving.md, "The impression log", describes the guarantees.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayrec.contracts.files import fsync_dir
from rayrec.data.parts import arrow_column, write_part

__all__ = ["JOURNAL_PREFIX", "LogBacklogFull", "ParquetLog", "recover_journals"]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:64] or "x"


JOURNAL_PREFIX = ".journal-"
"""Journal segments are hidden files (readers skip them): ``.journal-<writer>-<seq>.jsonl``."""


class LogBacklogFull(Exception):
    """The log holds ``max_backlog_rows`` rows it could not write yet: refuse new rows."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays(
        [arrow_column([r[f.name] for r in rows], f) for f in schema], schema=schema
    )


_BAD_ROWS = (KeyError, TypeError, ValueError, pa.ArrowException)
"""What building a table raises for rows that do not fit the schema (a bug, never transient)."""


def _set_aside(journal: Path) -> None:
    """Keep a segment whose rows cannot be written as ``*.bad``, for a person to look at."""
    os.replace(journal, journal.with_name(journal.name + ".bad"))


def _read_journal(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line: that row's request never got its answer
    return rows


def recover_journals(folder: str | Path, schema: pa.Schema) -> int:
    """Turn the journal segments of dead writers in ``folder`` into parquet; the rows recovered.

    A segment whose lock can be taken has no live writer. Its rows go to the part file of the
    same writer and number, unless that file exists already (the writer died between writing it
    and deleting the segment): the result is the same whichever replica recovers it, and twice
    recovering writes nothing twice. A segment that cannot be turned into this schema is renamed
    ``*.bad`` and left for a person.
    """
    folder = Path(folder)
    recovered = 0
    # A writer that died while opening a segment leaves it under its temporary name; such a file
    # never holds rows (a segment takes rows only once renamed).
    for fresh in folder.glob(f"{JOURNAL_PREFIX}*.jsonl.new"):
        try:
            fd = os.open(fresh, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fresh.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # its writer is alive and about to rename it
        finally:
            os.close(fd)
    for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*.jsonl")):
        try:
            fd = os.open(journal, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile (another replica recovered it)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            if not journal.exists():
                continue
            part = folder / f"part-{journal.name[len(JOURNAL_PREFIX) : -len('.jsonl')]}.parquet"
            if not part.exists():
                rows = _read_journal(journal)
                if rows:
                    try:
                        table = _table(rows, schema)
                    except _BAD_ROWS:
                        _set_aside(journal)
                        continue
                    write_part(table, part)
                    recovered += len(rows)
            journal.unlink(missing_ok=True)
            fsync_dir(folder)
        finally:
            os.close(fd)
    return recovered


class _Segment:
    """One journal segment: an append-only file this writer holds locked, and its rows."""

    def __init__(self, folder: Path, writer: str, seq: int) -> None:
        self.seq = seq
        self.path = folder / f"{JOURNAL_PREFIX}{writer}-{seq:06d}.jsonl"
        self.part = folder / f"part-{writer}-{seq:06d}.parquet"
        # Created and locked under a name recovery does not look at, then renamed: recovery never
        # meets a live writer's segment unlocked.
        fresh = self.path.with_name(self.path.name + ".new")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
        self.fd = os.open(fresh, flags, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, self.path)
        self.rows: list[dict[str, Any]] = []
        self.dirty = False
        self.journal_ok = True
        """False once a journal write failed: some rows of this segment are in memory only."""

    def close(self, delete: bool) -> None:
        if self.fd >= 0:
            if delete:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)  # releases the lock
            self.fd = -1


class ParquetLog:
    """Appends rows (dicts keyed by column name) to parquet files in ``folder``: at least once.

    Every row is appended to a journal segment (one ``write`` per row, on the request path) before
    ``append`` returns, so a replica killed at any moment loses nothing that the operating system
    received: the next replica that opens the folder turns dead writers' segments into parquet
    (:func:`recover_journals`). The segment is fsynced every ``fsync_seconds`` (a machine crash
    loses at most that window). A background thread writes a parquet file whenever ``flush_rows``
    rows are waiting or ``flush_seconds`` have passed since the first of them, and at close; the
    segment is deleted only once its file is durable. A failed write (a full disk, say) is retried
    with back-off (0.1 s doubling to 5 s) while serving goes on; ``status`` says so. Memory is
    bounded: past ``max_backlog_rows`` unwritten rows ``append`` raises :class:`LogBacklogFull`.
    """

    def __init__(
        self,
        folder: str | Path,
        schema: pa.Schema,
        writer: str,
        flush_rows: int = 1024,
        flush_seconds: float = 5.0,
        fsync_seconds: float = 0.2,
        max_backlog_rows: int = 100_000,
    ) -> None:
        if flush_rows < 1 or not flush_seconds > 0 or not fsync_seconds > 0:
            raise ValueError(
                f"flush_rows ({flush_rows}) must be >= 1, flush_seconds ({flush_seconds}) and "
                f"fsync_seconds ({fsync_seconds}) > 0"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.writer = _safe_name(writer)
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.fsync_seconds, self.max_backlog_rows = fsync_seconds, max_backlog_rows
        self.recovered_rows = recover_journals(self.folder, schema)
        self.files_written = 0
        self.failed_writes = 0
        self.last_error: str | None = None
        self.bad_rows = 0
        self._failing = False
        self._io = threading.Lock()
        self._closed = False
        self._wake = threading.Condition()
        self._pending: list[_Segment] = []  # closed segments waiting for their parquet file
        self._next_seq = self._first_free_seq()
        self._current = self._new_segment()
        self._first_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"log-{self.writer}", daemon=True)
        self._thread.start()

    def _first_free_seq(self) -> int:
        taken = [
            int(m.group(1))
            for p in self.folder.iterdir()
            if (m := re.search(rf"-{re.escape(self.writer)}-(\d+)\.(parquet|jsonl)", p.name))
        ]
        return max(taken, default=-1) + 1

    def _new_segment(self) -> _Segment:
        segment = _Segment(self.folder, self.writer, self._next_seq)
        self._next_seq += 1
        return segment

    @property
    def backlog(self) -> int:
        """Rows appended and not yet in a parquet file."""
        return len(self._current.rows) + sum(len(s.rows) for s in self._pending)

    def append(self, row: dict[str, Any]) -> None:
        """Journal one row and buffer it; raises :class:`LogBacklogFull` past the bound."""
        line = (json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n").encode()
        with self._wake:
            if self._closed:
                raise RuntimeError(f"{self.folder}: the log is closed")
            if self.backlog >= self.max_backlog_rows:
                raise LogBacklogFull(
                    f"{self.folder}: {self.backlog} rows wait to be written ({self.last_error})"
                )
            segment = self._current
            try:
                os.write(segment.fd, line)
                segment.dirty = True
            except OSError as e:
                segment.journal_ok = False
                self.last_error = f"journal: {e}"
            segment.rows.append(row)
            if len(segment.rows) == 1:
                self._first_at = time.monotonic()
                self._wake.notify()  # starts the flusher's clock
            elif len(segment.rows) >= self.flush_rows:
                self._wake.notify()

    def status(self) -> dict[str, Any]:
        """``ok`` or ``degraded`` (with the reasons), and the counters."""
        reasons = []
        if self._failing:
            reasons.append(
                f"{len(self._pending)} file(s) wait for a retry after {self.failed_writes} failed "
                f"write(s): {self.last_error}"
            )
        if not all(s.journal_ok for s in [*self._pending, self._current]):
            reasons.append(f"journal writes failed, rows held in memory only: {self.last_error}")
        if self.bad_rows:
            reasons.append(f"{self.bad_rows} row(s) did not fit the schema (kept in *.bad)")
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "backlog": self.backlog,
            "files_written": self.files_written,
            "failed_writes": self.failed_writes,
            "recovered_rows": self.recovered_rows,
        }

    @property
    def full(self) -> bool:
        """True while ``append`` would refuse rows (the backlog reached its bound)."""
        return self.backlog >= self.max_backlog_rows

    def check(self) -> None:
        """Raise when the flushing thread died (a restart is the only cure). A full backlog is
        not a reason: a restarted replica would lose the rows held in memory only."""
        if not self._thread.is_alive() and not self._closed:
            raise RuntimeError(f"log {self.folder}: the flushing thread died")

    def flush(self) -> None:
        """Write every buffered row now (one attempt per waiting file; failures stay pending)."""
        with self._wake:
            self._rotate()
        self._write_pending()

    def close(self) -> None:
        """Write the rest and stop the thread (idempotent). Rows that still cannot be written
        stay in their journal segments for the next replica to recover."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self.flush()
        with self._wake:
            for segment in [*self._pending, self._current]:
                if segment.dirty and segment.journal_ok:
                    os.fsync(segment.fd)
                segment.close(delete=not segment.rows)

    def _rotate(self) -> None:
        """Close the current segment (if it has rows) into the pending list; caller holds lock."""
        if self._current.rows:
            self._pending.append(self._current)
            self._current = self._new_segment()

    def _run(self) -> None:
        backoff, retry_at = 0.0, 0.0
        last_sync = time.monotonic()
        while True:
            with self._wake:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    rows = len(self._current.rows)
                    flush_due = rows >= self.flush_rows or (
                        rows > 0 and now - self._first_at >= self.flush_seconds
                    )
                    retry_due = bool(self._pending) and now >= retry_at
                    dirty = any(s.dirty for s in [*self._pending, self._current])
                    sync_due = dirty and now - last_sync >= self.fsync_seconds
                    if flush_due or retry_due or sync_due:
                        break
                    deadlines = [last_sync + self.fsync_seconds] if dirty else []
                    if rows:
                        deadlines.append(self._first_at + self.flush_seconds)
                    if self._pending:
                        deadlines.append(retry_at)
                    self._wake.wait(max(0.0, min(deadlines) - now) if deadlines else None)
                if flush_due:
                    self._rotate()
            if sync_due:
                self._sync()
                last_sync = time.monotonic()
            if self._pending and time.monotonic() >= retry_at:
                if self._write_pending():
                    backoff = 0.0
                else:
                    backoff = min(5.0, max(0.1, 2 * backoff))
                    retry_at = time.monotonic() + backoff

    def _sync(self) -> None:
        with self._wake:
            segments = [s for s in [*self._pending, self._current] if s.dirty and s.fd >= 0]
            for s in segments:
                s.dirty = False
        for s in segments:
            try:
                os.fsync(s.fd)
            except OSError as e:
                self.last_error = f"journal fsync: {e}"

    def _write_pending(self) -> bool:
        """Write the pending segments' files in order; False at the first that fails."""
        with self._io:
            while True:
                with self._wake:
                    if not self._pending:
                        return True
                    segment = self._pending[0]
                try:
                    table = _table(segment.rows, self.schema)
                except _BAD_ROWS as e:
                    # Rows that never fit the schema: no retry can help. Keep them for a person.
                    with self._wake:
                        self._pending.pop(0)
                        self.bad_rows += len(segment.rows)
                        self.last_error = f"bad rows: {e!r}"
                    _set_aside(segment.path)
                    segment.close(delete=False)
                    continue
                try:
                    write_part(table, segment.part)
                except OSError as e:
                    self.failed_writes += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                    self._failing = True
                    return False
                with self._wake:
                    self._pending.pop(0)
                    self.files_written += 1
                    self._failing = False
                segment.close(delete=True)
