"""Logged interactions: the parquet schema, log folders, offline data loading (collection: :mod:`rayrec.evaluation.collect`)."""

from rayrec.data.logs import LOG_META_FILE, LogWriter, log_files, read_log, read_log_meta, validate_log
from rayrec.data.schema import Col, LogError, expand_observations, log_schema

__all__ = [
    "LOG_META_FILE",
    "Col",
    "LogError",
    "LogWriter",
    "expand_observations",
    "log_files",
    "log_schema",
    "read_log",
    "read_log_meta",
    "validate_log",
]
