"""The impression log: every served slate and every feedback event, appended to parquet in batches.

Two tables live under the log folder, one file per flush::

    LOGDIR/impressions/part-<replica>-<seq>.parquet   one row per served slate
    LOGDIR/feedback/part-<replica>-<seq>.parquet      one row per feedback event

The impression columns are those of ``rayrec collect`` (same names for the same concepts), so
offline training and evaluation read both. Widths of the fixed-size lists are fixed per log: H is
the served environment's ``history_len``, M the service's ``max_candidates`` and K its ``max_k``;
shorter candidate lists and slates are padded (ids -1, mask 0, probabilities 0) and
``num_candidates`` / ``slate_size`` say how much of each row is real. The widths are also stored
in the file's schema metadata. docs/serving.md documents every column.

At least once: each row is appended to a journal segment before ``append`` returns, and a background
thread writes parquet files every ``flush_rows`` rows or ``flush_seconds`` seconds (whichever comes
first) and at close, each written to a hidden temporary name, fsynced and renamed into place, so a
reader never sees half a file; then the segment is deleted. The next writer on the folder recovers
the segments of writers that died (:func:`recover_journals`). See :class:`ParquetLog` and
docs/serving.md, "The impression log".
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
import pyarrow.parquet as pq

from rayrec.contracts.files import fsync_dir
from rayrec.data.schema import Col
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES

__all__ = [
    "FEEDBACK_DIR",
    "IMPRESSIONS_DIR",
    "VERSIONS_FILE",
    "Feedback",
    "Impressions",
    "LogBacklogFull",
    "ParquetLog",
    "VersionRegistry",
    "feedback_schema",
    "impression_schema",
    "logged_request_ids",
    "read_log",
    "recover_journals",
]

IMPRESSIONS_DIR = "impressions"
FEEDBACK_DIR = "feedback"
VERSIONS_FILE = "versions.jsonl"
SCHEMA_VERSION = "1"
# Padding of ids (items, candidate indices) beyond a row's real length, as in observations.
PAD_ID = -1


class Impressions:
    """Column names of the impression table (shared with ``rayrec collect`` where marked)."""

    REQUEST_ID = Col.REQUEST_ID
    """string: the id returned to the caller (collect: null)."""
    USER_ID = Col.USER_ID
    """int64."""
    TIME = Col.TIME
    """float64 unix seconds at which the slate was served."""
    POLICY = Col.POLICY
    """string: the model version that chose the slate (collect: the behaviour policy's name)."""
    HISTORY_ITEMS = Col.HISTORY_ITEMS
    """fixed_size_list<int64>[H]: item ids, oldest first, -1 padding at the start."""
    HISTORY_RESPONSES = Col.HISTORY_RESPONSES
    """fixed_size_list<float32>[H*4]: click, watch, like, skip of each history entry, row-major."""
    CONTEXT = Col.CONTEXT
    """fixed_size_list<float32>[5]: the context the policy saw."""
    CANDIDATE_ITEMS = Col.CANDIDATE_ITEMS
    """fixed_size_list<int64>[M]: candidate item ids, -1 padding at the end."""
    ACTION_MASK = Col.ACTION_MASK
    """fixed_size_list<int8>[M]: 1 where the candidate could be chosen."""
    ACTION = Col.ACTION
    """fixed_size_list<int64>[K]: indices into candidate_items in slate order, -1 padding."""
    SLATE_ITEMS = Col.SLATE_ITEMS
    """fixed_size_list<int64>[K]: the served item ids in slate order, -1 padding."""
    PROPENSITY = Col.PROPENSITY
    """float64: probability of the whole served slate under the serving policy."""
    PROPENSITIES = Col.PROPENSITIES
    """fixed_size_list<float64>[K]: per-position probabilities (see docs/serving.md), 0 padding."""
    # Serving only:
    MODE = "mode"
    """string: 'greedy' or 'sample'."""
    SLATE_SIZE = "slate_size"
    """int32: k, the real length of action / slate_items / propensities."""
    NUM_CANDIDATES = "num_candidates"
    """int32: the real length of candidate_items / action_mask."""
    SCORES = "scores"
    """fixed_size_list<float32>[K]: the model's scores (logits or Q-values) of the slate."""


class Feedback:
    """Column names of the feedback table."""

    REQUEST_ID = "request_id"
    USER_ID = "user_id"
    TIME = "time"
    POLICY = "policy"
    RESPONSES = "responses"
    """list<float32>: click, watch, like, skip per slate position (4 * k values)."""
    REWARD = "reward"
    """float32: the served environment's reward of those responses, summed over the slate."""


def _list(kind: pa.DataType, size: int = -1) -> pa.DataType:
    # Parquet names list items "element"; declaring that name makes a read-back schema equal.
    return pa.list_(pa.field("element", kind, nullable=False), size)


def impression_schema(history_len: int, max_candidates: int, max_k: int) -> pa.Schema:
    """Schema of the impression table with widths H, M and K."""
    h, m, k = history_len, max_candidates, max_k
    fields = [
        (Impressions.REQUEST_ID, pa.string()),
        (Impressions.USER_ID, pa.int64()),
        (Impressions.TIME, pa.float64()),
        (Impressions.POLICY, pa.string()),
        (Impressions.HISTORY_ITEMS, _list(pa.int64(), h)),
        (Impressions.HISTORY_RESPONSES, _list(pa.float32(), h * NUM_RESPONSES)),
        (Impressions.CONTEXT, _list(pa.float32(), NUM_CONTEXT)),
        (Impressions.CANDIDATE_ITEMS, _list(pa.int64(), m)),
        (Impressions.ACTION_MASK, _list(pa.int8(), m)),
        (Impressions.ACTION, _list(pa.int64(), k)),
        (Impressions.SLATE_ITEMS, _list(pa.int64(), k)),
        (Impressions.PROPENSITY, pa.float64()),
        (Impressions.PROPENSITIES, _list(pa.float64(), k)),
        (Impressions.MODE, pa.string()),
        (Impressions.SLATE_SIZE, pa.int32()),
        (Impressions.NUM_CANDIDATES, pa.int32()),
        (Impressions.SCORES, _list(pa.float32(), k)),
    ]
    meta = {
        "rayrec.table": IMPRESSIONS_DIR,
        "rayrec.schema_version": SCHEMA_VERSION,
        "rayrec.history_len": str(h),
        "rayrec.max_candidates": str(m),
        "rayrec.max_k": str(k),
    }
    return pa.schema(
        [pa.field(n, t, nullable=n == Impressions.REQUEST_ID) for n, t in fields], meta
    )


def feedback_schema() -> pa.Schema:
    """Schema of the feedback table."""
    fields = [
        (Feedback.REQUEST_ID, pa.string()),
        (Feedback.USER_ID, pa.int64()),
        (Feedback.TIME, pa.float64()),
        (Feedback.POLICY, pa.string()),
        (Feedback.RESPONSES, _list(pa.float32())),
        (Feedback.REWARD, pa.float32()),
    ]
    meta = {"rayrec.table": FEEDBACK_DIR, "rayrec.schema_version": SCHEMA_VERSION}
    return pa.schema([pa.field(n, t, nullable=False) for n, t in fields], meta)


def _column(values: Sequence[Any], field: pa.Field) -> pa.Array:
    """One Arrow column from per-row Python or NumPy values (fixed-size lists from arrays)."""
    kind = field.type
    if pa.types.is_fixed_size_list(kind):
        flat = np.concatenate([np.asarray(v).reshape(-1) for v in values]) if values else []
        inner = pa.array(np.asarray(flat, dtype=kind.value_type.to_pandas_dtype()), kind.value_type)
        return pa.FixedSizeListArray.from_arrays(inner, kind.list_size)
    if pa.types.is_list(kind):
        return pa.array([np.asarray(v, dtype=np.float32) for v in values], kind)
    return pa.array(values, kind)


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


def write_parquet_atomically(table: pa.Table, path: Path) -> None:
    """``table`` at ``path``: written to a hidden temporary name, fsynced, renamed into place, and
    the folder fsynced, so the file is whole and durable once this returns."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays(
        [_column([r[f.name] for r in rows], f) for f in schema], schema=schema
    )


_BAD_ROWS = (KeyError, TypeError, ValueError, pa.ArrowException)
"""What building a table raises for rows that do not fit the schema (a bug, never transient)."""


def _set_aside(journal: Path) -> None:
    """Keep a segment whose rows cannot be written as ``*.bad``, for a person to look at."""
    os.replace(journal, journal.with_name(journal.name + ".bad"))


def _part_files(folder: Path) -> list[Path]:
    """The finished parquet files of one table folder, in name order (temporaries are hidden)."""
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


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
                    write_parquet_atomically(table, part)
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
            raise RuntimeError(f"impression log {self.folder}: the flushing thread died")

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
                    write_parquet_atomically(table, segment.part)
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


def logged_request_ids(folder: str | Path) -> list[str]:
    """The request ids of every finished file of one table folder (``LOGDIR/feedback``)."""
    ids: list[str] = []
    for path in _part_files(Path(folder)):
        column = pq.read_table(path, columns=[Col.REQUEST_ID]).column(0)
        ids.extend(v for v in column.to_pylist() if v is not None)
    return ids


class VersionRegistry:
    """``LOGDIR/versions.jsonl``: every model version served into this log folder, one JSON line
    each (``tag``, ``version``, ``checkpoint``, ``time``), so feedback for a slate served by a
    version that is no longer deployed is still attributed to it by name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a crashed writer
            if isinstance(entry, dict) and {"tag", "version"} <= entry.keys():
                out.append(entry)
        return out

    def register(self, versions: Sequence[tuple[bytes, str, str]]) -> None:
        """Append the (tag, version, checkpoint) entries not registered yet. One ``write`` of a
        short line with O_APPEND, then fsync: replicas that start together do not interleave
        their lines."""
        known = {e["tag"] for e in self.entries()}
        for tag_bytes, version, checkpoint in versions:
            tag = tag_bytes.hex()
            if tag in known:
                continue
            line = json.dumps(
                {"tag": tag, "version": version, "checkpoint": checkpoint, "time": time.time()}
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            known.add(tag)

    def lookup(self, tag: bytes) -> str | None:
        for entry in self.entries():
            if entry["tag"] == tag.hex():
                return str(entry["version"])
        return None


def read_log(log_dir: str | Path, table: str = IMPRESSIONS_DIR) -> pa.Table:
    """All rows of one table of a log folder (``impressions`` or ``feedback``), file by file.

    Temporary files (hidden names) are skipped; an empty or missing table gives zero rows.
    """
    if table not in (IMPRESSIONS_DIR, FEEDBACK_DIR):
        raise ValueError(f"table ({table!r}) must be {IMPRESSIONS_DIR!r} or {FEEDBACK_DIR!r}")
    files = _part_files(Path(log_dir) / table)
    if not files:
        return feedback_schema().empty_table() if table == FEEDBACK_DIR else pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files])
