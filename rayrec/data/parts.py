"""Parquet part files: the one writer and reader of every rayrec log table.

A table on disk is a folder of ``part-*.parquet`` files. Each part is written whole to a hidden
temporary name, fsynced and renamed into place (then the folder is fsynced), so a reader never
sees half a file and a part that exists is durable. ``rayrec collect`` (:class:`rayrec.data.logs.
LogWriter`) and the served impression log (:class:`rayrec.data.journal.ParquetLog`) both write
through :func:`write_part`; both read through :func:`part_files` and :func:`read_parts`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayrec.contracts.files import fsync_dir

__all__ = ["PART_GLOB", "arrow_column", "part_files", "read_parts", "write_part"]

PART_GLOB = "part-*.parquet"
"""The names of finished parts (temporaries start with a dot and never match)."""


def arrow_column(values: np.ndarray | Sequence[Any], field: pa.Field) -> pa.Array:
    """One Arrow column of ``field``'s type from n values: a numpy array (2-D for a fixed-size
    list: one row per value) or a sequence of per-row Python or numpy values."""
    kind = field.type
    if pa.types.is_fixed_size_list(kind):
        if isinstance(values, np.ndarray):
            flat = np.ascontiguousarray(values).reshape(-1)
        else:
            flat = np.concatenate([np.asarray(v).reshape(-1) for v in values]) if values else []
        dtype = kind.value_type.to_pandas_dtype()
        inner = pa.array(np.asarray(flat, dtype=dtype), kind.value_type)
        return pa.FixedSizeListArray.from_arrays(inner, kind.list_size)
    if pa.types.is_list(kind):
        dtype = kind.value_type.to_pandas_dtype()
        return pa.array([np.asarray(v, dtype=dtype) for v in values], kind)
    return pa.array(values, kind)


def write_part(table: pa.Table, path: Path, compression: str = "snappy") -> None:
    """``table`` at ``path``: written to a hidden temporary name, fsynced, renamed into place, and
    the folder fsynced, so the file is whole and durable once this returns. A failed write leaves
    no temporary behind."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression=compression)
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


def part_files(folder: str | Path) -> list[Path]:
    """The finished parts of one table folder in name order; none for a missing folder."""
    folder = Path(folder)
    return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []


def read_parts(files: Sequence[Path], columns: list[str] | None = None) -> pa.Table | None:
    """The rows of ``files`` as one table (``columns`` only, if given); None for no files."""
    if not files:
        return None
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)
