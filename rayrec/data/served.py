"""The served log's tables: every served slate and every feedback event, appended to parquet in batches.

Two tables live under the log folder, one file per flush::

    LOGDIR/impressions/part-<replica>-<seq>.parquet   one row per served slate
    LOGDIR/feedback/part-<replica>-<seq>.parquet      one row per feedback event

The impression columns are those of ``rayrec collect`` (same names for the same concepts), so
offline training and evaluation read both. Widths of the fixed-size lists are fixed per log: H is
the served environment's ``history_len``, M the service's ``max_candidates`` and K its ``max_k``;
shorter candidate lists and slates are padded (ids -1, mask 0, probabilities 0) and
``num_candidates`` / ``slate_size`` say how much of each row is real. The widths are also stored
in the file's schema metadata. docs/serving.md documents every column.

Both tables are written at least once by :class:`rayrec.data.journal.ParquetLog` (each row
journaled before the request is answered, parquet parts written in the background, dead writers'
journals recovered by the next) and read by :func:`read_served` through the one part reader of
:mod:`rayrec.data.parts`. See docs/serving.md, "The impression log".

The schemas sit in the data layer (next to ``rayrec collect``'s, :mod:`rayrec.data.schema`) so that
the conversion of a served log into a rayrec log folder (:mod:`rayrec.data.from_served`) reads them
without importing the Serve app.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from rayrec.data.parts import part_files, read_parts
from rayrec.data.schema import Col
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES

__all__ = [
    "FEEDBACK_DIR",
    "IMPRESSIONS_DIR",
    "PAD_ID",
    "VERSIONS_FILE",
    "Feedback",
    "Impressions",
    "VersionRegistry",
    "feedback_schema",
    "impression_schema",
    "logged_request_ids",
    "read_served",
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


def logged_request_ids(folder: str | Path) -> list[str]:
    """The request ids of every finished file of one table folder (``LOGDIR/feedback``)."""
    rows = read_parts(part_files(folder), columns=[Col.REQUEST_ID])
    return [] if rows is None else [v for v in rows.column(0).to_pylist() if v is not None]


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


def read_served(log_dir: str | Path, table: str = IMPRESSIONS_DIR) -> pa.Table:
    """All rows of one table of a served log folder (``impressions`` or ``feedback``), file by
    file. Temporary files (hidden names) are skipped; an empty or missing table gives zero rows.
    """
    if table not in (IMPRESSIONS_DIR, FEEDBACK_DIR):
        raise ValueError(f"table ({table!r}) must be {IMPRESSIONS_DIR!r} or {FEEDBACK_DIR!r}")
    rows = read_parts(part_files(Path(log_dir) / table))
    if rows is None:
        return feedback_schema().empty_table() if table == FEEDBACK_DIR else pa.table({})
    return rows
