"""Logged interactions: the parquet schema, log folders, collection and offline data loading."""

from rayrec.data.collect import BEHAVIORS, BehaviorPolicy, collect, parse_behavior
from rayrec.data.logs import LOG_META_FILE, LogWriter, log_files, read_log, read_log_meta, validate_log
from rayrec.data.schema import Col, LogError, expand_observations, log_schema

__all__ = [
    "BEHAVIORS",
    "LOG_META_FILE",
    "BehaviorPolicy",
    "Col",
    "LogError",
    "LogWriter",
    "collect",
    "expand_observations",
    "log_files",
    "log_schema",
    "parse_behavior",
    "read_log",
    "read_log_meta",
    "validate_log",
]
