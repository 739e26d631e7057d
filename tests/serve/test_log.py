"""The impression log writer: schema, batching, atomic files, flush on time and at close."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayrec.serve.log import (
    FEEDBACK_DIR,
    Feedback,
    ParquetLog,
    feedback_schema,
    impression_schema,
    read_log,
)


def _feedback_row(i: int) -> dict:
    return {
        Feedback.REQUEST_ID: f"r{i}",
        Feedback.USER_ID: i,
        Feedback.TIME: 1.5 * i,
        Feedback.POLICY: "v1",
        Feedback.RESPONSES: np.full(4 * (1 + i % 3), i, dtype=np.float32),
        Feedback.REWARD: float(i),
    }


def test_impression_schema_widths_and_metadata():
    schema = impression_schema(history_len=7, max_candidates=30, max_k=4)
    assert schema.field("history_items").type.list_size == 7
    assert schema.field("history_responses").type.list_size == 28
    assert schema.field("candidate_items").type.list_size == 30
    assert schema.field("action").type.list_size == 4
    assert schema.metadata[b"rayrec.max_candidates"] == b"30"
    # Shared with `rayrec collect`: names and types of the same concepts.
    assert str(schema.field("action_mask").type) == "fixed_size_list<element: int8 not null>[30]"
    assert str(schema.field("propensity").type) == "double"
    assert str(schema.field("context").type) == "fixed_size_list<element: float not null>[5]"


def test_flushes_once_n_rows_wait_and_at_close(tmp_path):
    log = ParquetLog(tmp_path / FEEDBACK_DIR, feedback_schema(), "w/1", flush_rows=4)
    for i in range(10):
        log.append(_feedback_row(i))
    deadline = time.time() + 10
    while log.files_written == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert log.files_written >= 1  # written without waiting for the time limit (5 s)
    log.append(_feedback_row(10))
    log.close()
    files = sorted(p.name for p in (tmp_path / FEEDBACK_DIR).iterdir())
    # Whole files only, numbered per writer, no temporary files left behind.
    assert files == [f"part-w_1-{i:06d}.parquet" for i in range(len(files))]
    assert all(pq.read_metadata(tmp_path / FEEDBACK_DIR / f).num_rows > 0 for f in files)
    table = read_log(tmp_path, FEEDBACK_DIR)
    assert table.schema.equals(feedback_schema(), check_metadata=True)
    assert table.column(Feedback.USER_ID).to_pylist() == list(range(11))
    assert table.column(Feedback.RESPONSES).to_pylist()[2] == [2.0] * 12


def test_flushes_after_the_time_limit(tmp_path):
    log = ParquetLog(tmp_path, feedback_schema(), "w", flush_rows=1000, flush_seconds=0.2)
    log.append(_feedback_row(1))
    deadline = time.time() + 10
    while log.files_written == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert log.files_written == 1
    log.close()
    log.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        log.append(_feedback_row(2))


def test_write_errors_surface_in_check(tmp_path):
    log = ParquetLog(tmp_path, feedback_schema(), "w", flush_rows=1)
    log.append({"request_id": "only this column"})
    deadline = time.time() + 10
    while log._error is None and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="failed"):
        log.check()
    log.close()


def test_reading_an_empty_log(tmp_path):
    assert read_log(tmp_path).num_rows == 0
    assert read_log(tmp_path, FEEDBACK_DIR).num_rows == 0
    with pytest.raises(ValueError, match="table"):
        read_log(tmp_path, "other")
