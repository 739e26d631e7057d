"""Log folders: atomic parquet parts, a summary file, and a reader that validates both.

A log folder holds ``part-00000.parquet``, ``part-00001.parquet``, ... (schema in
:mod:`rayrec.data.schema`) and ``log.json`` (environment spec, behaviour policy, row and episode
counts, the behaviour policy's own return). Writers build the folder under a temporary name and
rename it into place when complete, so an interrupted write never leaves a half-written log.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayrec.data.parts import PART_GLOB, arrow_column, part_files, read_parts, write_part
from rayrec.data.served import IMPRESSIONS_DIR
from rayrec.data.schema import META_KEY, SCHEMA_VERSION, Col, LogError, log_schema
from rayrec.sim import SimConfig

__all__ = [
    "LOG_META_FILE",
    "LogWriter",
    "log_files",
    "read_log",
    "read_log_meta",
    "validate_log",
    "write_log_folder",
]

LOG_META_FILE = "log.json"


class LogWriter:
    """Appends batches of rows and writes them as parquet parts of ``rows_per_file`` rows.

    Every part is written to a temporary name and renamed, so a part on disk is always complete.
    """

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_file: int = 50_000) -> None:
        self.folder = Path(folder)
        self.schema = schema
        self.rows_per_file = rows_per_file
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self.parts = 0
        self.rows = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def append(self, columns: dict[str, Any]) -> None:
        """Add rows: ``columns`` maps every schema column to n values."""
        missing = set(self.schema.names) - set(columns)
        if missing:
            raise ValueError(f"rows lack columns: {', '.join(sorted(missing))}")
        n = len(columns[Col.EPISODE_ID])
        if n == 0:
            return
        self._buffer.append(columns)
        self._buffered += n
        if self._buffered >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part."""
        if not self._buffered:
            return
        arrays = []
        for field in self.schema:
            parts = [np.asarray(c[field.name]) for c in self._buffer]
            values = np.concatenate(parts) if parts[0].ndim else np.array(parts)
            if field.name == Col.REQUEST_ID and values.dtype != object:
                values = np.array([None] * len(values), dtype=object)
            arrays.append(arrow_column(values, field))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        write_part(table, self.folder / f"part-{self.parts:05d}.parquet", compression="zstd")
        self.parts += 1
        self.rows += table.num_rows
        self._buffer, self._buffered = [], 0


def write_log_folder(
    out: Path,
    schema: pa.Schema,
    meta: dict[str, Any],
    fill: Callable[[LogWriter], dict[str, Any]],
    rows_per_file: int = 50_000,
) -> dict[str, Any]:
    """Write a log folder at ``out`` atomically, or nothing.

    ``fill(writer)`` appends the rows and returns the meta fields only it knows (episodes, the
    behaviour's return); ``rows`` and ``files`` are added here. The parts go to a hidden
    ``.OUT.partial-PID`` folder beside ``out``, ``log.json`` last, then one rename publishes the
    folder; on any error (Ctrl-C included) the partial folder is removed and ``out`` never appears.
    Returns ``meta`` as written.
    """
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = LogWriter(tmp, schema, rows_per_file)
    try:
        known = fill(writer)
        writer.flush()
        meta.update(rows=writer.rows, files=writer.parts, **known)
        (tmp / LOG_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False))
        if out.exists():
            raise FileExistsError(f"{out} appeared while writing; the new log was not written")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def log_files(folder: str | Path) -> list[Path]:
    """The parquet parts of a log folder (or the file itself), sorted."""
    path = Path(folder)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LogError(f"{path}: no such log folder or file")
    files = part_files(path)
    if not files and (path / IMPRESSIONS_DIR).is_dir():
        raise LogError(
            f"{path}: a served log (rayrec serve --log-dir); convert it first: "
            f"rayrec data from-served {path} --env SPEC --out DIR"
        )
    if not files:
        raise LogError(f"{path}: no {PART_GLOB} files; is it a rayrec log (rayrec collect)?")
    return files


def read_log_meta(folder: str | Path) -> dict[str, Any]:
    """The ``log.json`` of a log folder, or the metadata of a single parquet file."""
    path = Path(folder)
    if path.is_dir():
        meta_file = path / LOG_META_FILE
        if not meta_file.is_file():
            raise LogError(f"{path}: no {LOG_META_FILE}; the log is incomplete or not a rayrec log")
        try:
            return json.loads(meta_file.read_text())
        except json.JSONDecodeError as e:
            raise LogError(f"{meta_file}: not valid JSON ({e})") from e
    return _file_meta(path)


def _file_meta(path: Path) -> dict[str, Any]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise LogError(f"{path}: not a readable parquet file ({e})") from e
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise LogError(f"{path}: parquet file without rayrec metadata; not a rayrec log")
    meta = json.loads(raw)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise LogError(
            f"{path}: schema version {meta.get('schema_version')!r}, "
            f"this rayrec reads version {SCHEMA_VERSION}"
        )
    return meta


def validate_log(folder: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """Check every part against the schema of the log's environment; returns (meta, files).

    Raises :class:`LogError` naming the file (and column) at the first problem: unreadable or
    truncated parquet, missing rayrec metadata, a missing column or a column of the wrong type.
    """
    files = log_files(folder)
    meta = read_log_meta(folder)
    try:
        config = SimConfig.from_dict(meta["env"]["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise LogError(f"{folder}: log metadata has no valid env config ({e})") from e
    expected = log_schema(config)
    for path in files:
        _file_meta(path)
        try:
            pq.ParquetFile(path).metadata  # noqa: B018 - reads the footer: catches truncation
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise LogError(f"{path}: not a readable parquet file ({e})") from e
        for field in expected:
            idx = schema.get_field_index(field.name)
            if idx < 0:
                raise LogError(f"{path}: missing column {field.name!r}")
            if schema.field(idx).type != field.type:
                raise LogError(
                    f"{path}: column {field.name!r} has type {schema.field(idx).type}, "
                    f"expected {field.type}"
                )
    return meta, files


def read_log(folder: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The whole log as one arrow table (validated first)."""
    _, files = validate_log(folder)
    try:
        return read_parts(files, columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise LogError(f"{folder}: cannot read ({e})") from e
