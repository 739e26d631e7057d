"""The impression log of the Serve app: its schemas, version registry and reader.

They live in :mod:`rayrec.data.served` (the data layer, next to ``rayrec collect``'s schema, where the
conversion to a rayrec log folder reads them); this module is the Serve app's name for them.
"""

from __future__ import annotations

from rayrec.data.served import (
    FEEDBACK_DIR,
    IMPRESSIONS_DIR,
    PAD_ID,
    SCHEMA_VERSION,
    VERSIONS_FILE,
    Feedback,
    Impressions,
    VersionRegistry,
    feedback_schema,
    impression_schema,
    logged_request_ids,
    read_served,
)

__all__ = [
    "FEEDBACK_DIR",
    "IMPRESSIONS_DIR",
    "PAD_ID",
    "SCHEMA_VERSION",
    "VERSIONS_FILE",
    "Feedback",
    "Impressions",
    "VersionRegistry",
    "feedback_schema",
    "impression_schema",
    "logged_request_ids",
    "read_served",
]
