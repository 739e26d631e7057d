"""The impression log writer: schema, batching, atomic files, flush on time and at close."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayrec.data.journal import LogBacklogFull, ParquetLog
from rayrec.data.served import (
    FEEDBACK_DIR,
    Feedback,
    feedback_schema,
    impression_schema,
    read_served,
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
    table = read_served(tmp_path, FEEDBACK_DIR)
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


def _wait(condition, seconds: float = 20.0) -> None:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.01)
    assert condition()


def _enospc_times(monkeypatch, n: int) -> list[int]:
    """The log's parquet writes fail with ENOSPC the first ``n`` times."""
    import errno

    import rayrec.data.parts as log_module

    real, calls = log_module.pq.write_table, [0]

    def write_table(*args, **kwargs):
        calls[0] += 1
        if calls[0] <= n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(log_module.pq, "write_table", write_table)
    return calls


def test_failed_writes_are_retried_and_lose_nothing(tmp_path, monkeypatch):
    calls = _enospc_times(monkeypatch, 2)
    log = ParquetLog(tmp_path, feedback_schema(), "w", flush_rows=3, flush_seconds=0.05)
    for i in range(7):
        log.append(_feedback_row(i))
    _wait(lambda: log.failed_writes >= 1)
    status = log.status()
    assert status["status"] == "degraded" and "No space left" in status["reasons"][0]
    log.check()  # still serving: a full disk is no reason to restart the replica
    _wait(lambda: log.files_written >= 1 and log.backlog == 0)
    assert log.failed_writes == 2 and calls[0] >= 3 and log.status()["status"] == "ok"
    log.close()
    rows = pq.read_table(sorted(tmp_path.glob("part-*.parquet"))).column(Feedback.USER_ID)
    assert sorted(rows.to_pylist()) == list(range(7))
    assert not list(tmp_path.glob(".journal-*"))  # every segment deleted once its file was durable


def test_the_backlog_is_bounded(tmp_path, monkeypatch):
    _enospc_times(monkeypatch, 10**9)  # the disk never recovers
    log = ParquetLog(tmp_path, feedback_schema(), "w", flush_rows=1, max_backlog_rows=5)
    for i in range(5):
        log.append(_feedback_row(i))
    assert log.full
    with pytest.raises(LogBacklogFull, match="5 rows wait"):
        log.append(_feedback_row(5))
    log.close()  # the rows stay journaled for the next writer
    monkeypatch.undo()
    again = ParquetLog(tmp_path, feedback_schema(), "w2")
    assert again.recovered_rows == 5
    again.close()
    rows = pq.read_table(sorted(tmp_path.glob("part-*.parquet"))).column(Feedback.USER_ID)
    assert sorted(rows.to_pylist()) == list(range(5))


def test_rows_that_do_not_fit_are_set_aside_not_retried(tmp_path):
    log = ParquetLog(tmp_path, feedback_schema(), "w", flush_rows=1)
    log.append({"request_id": "only this column"})
    _wait(lambda: log.bad_rows == 1)
    log.append(_feedback_row(1))
    _wait(lambda: log.files_written == 1)
    assert log.status()["status"] == "degraded" and "did not fit" in log.status()["reasons"][0]
    log.check()
    log.close()
    assert len(list(tmp_path.glob(".journal-*.jsonl.bad"))) == 1


KILLED_WRITER = """
import os, sys, numpy as np
from rayrec.data.journal import ParquetLog
from rayrec.data.served import Feedback, feedback_schema
log = ParquetLog(sys.argv[1], feedback_schema(), "dead", flush_rows=4, flush_seconds=60)
for i in range(10):
    log.append({Feedback.REQUEST_ID: f"r{i}", Feedback.USER_ID: i, Feedback.TIME: 1.0,
                Feedback.POLICY: "v", Feedback.RESPONSES: np.zeros(4, np.float32),
                Feedback.REWARD: 0.0})
print("appended", flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_killed_writers_rows_are_recovered_by_the_next(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == -9 and "appended" in done.stdout, done.stderr
    log = ParquetLog(tmp_path, feedback_schema(), "next")
    assert (
        log.recovered_rows
        + sum(pq.read_metadata(p).num_rows for p in tmp_path.glob("part-dead-*.parquet"))
        >= 10
    )
    log.close()
    ids = pq.read_table(sorted(tmp_path.glob("part-*.parquet"))).column(Feedback.REQUEST_ID)
    assert sorted(ids.to_pylist()) == sorted(f"r{i}" for i in range(10))  # each exactly once
    assert not list(tmp_path.glob(".journal-*"))
    # Recovering again writes nothing twice.
    assert ParquetLog(tmp_path, feedback_schema(), "third").recovered_rows == 0


def test_a_live_writers_journal_is_left_alone(tmp_path):
    live = ParquetLog(tmp_path, feedback_schema(), "live", flush_seconds=60)
    live.append(_feedback_row(1))
    other = ParquetLog(tmp_path, feedback_schema(), "other")
    assert other.recovered_rows == 0 and list(tmp_path.glob(".journal-live-*.jsonl"))
    other.close()
    live.close()
    assert read_log_rows(tmp_path) == 1


def read_log_rows(folder) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("part-*.parquet"))


def test_reading_an_empty_log(tmp_path):
    assert read_served(tmp_path).num_rows == 0
    assert read_served(tmp_path, FEEDBACK_DIR).num_rows == 0
    with pytest.raises(ValueError, match="table"):
        read_served(tmp_path, "other")


def test_a_segment_left_half_opened_by_a_dead_writer_is_removed(tmp_path):
    """A writer killed between creating a segment and renaming it leaves ``*.jsonl.new`` (never
    with rows): the next writer removes it, unless its writer still holds it."""
    import fcntl
    import os

    dead = tmp_path / ".journal-dead-000003.jsonl.new"
    dead.write_bytes(b"")
    alive = tmp_path / ".journal-alive-000001.jsonl.new"
    alive.write_bytes(b"")
    fd = os.open(alive, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        ParquetLog(tmp_path, feedback_schema(), "next").close()
        assert not dead.exists() and alive.exists()
    finally:
        os.close(fd)
