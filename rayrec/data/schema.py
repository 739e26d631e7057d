"""The logged-interaction schema: one parquet row per step a behaviour policy took.

Observations are stored compactly as item ids, not features: the features of an item come from the
catalog, which is a deterministic function of the environment spec (``world_seed``), saved in every
file's metadata. :func:`expand_observations` turns the id columns back into the observation dict a
module consumes (``rayrec.envs.observation``).

Columns (H = history_len, M = num_candidates, k = slate_size, R = 4 responses)::

    episode_id         int64     one user lifetime (unique within a log)
    user_id            int64
    t                  int32     step index within the episode (0, 1, ...)
    session_index      int32     which of the user's sessions (0, 1, ...)
    step_in_session    int32
    request_id         string    null for simulated logs; the serving request otherwise
    time               float64   unix seconds when the row was logged
    policy             string    behaviour policy (e.g. "epsilon-greedy:0.2") or model version
    history_items      int64[H]  -1 padding, oldest first
    history_responses  float32[H*R]   click, watch, like, skip per history entry, row-major
    context            float32[5]
    candidate_items    int64[M]
    action_mask        int8[M]
    action             int64[k]  indices into candidate_items, slate order
    slate_items        int64[k]
    propensity         float64   behaviour probability of the whole logged slate
    propensities       float64[k]  per-position selection probabilities
    responses          float32[R] click, watch, like, skip of this step
    click_position     int32     slate position clicked, -1 for none
    reward             float32
    terminated         bool      the user left for good
    truncated          bool      the lifetime bound was reached
    next_history_items, next_history_responses, next_context, next_candidate_items,
    next_action_mask   the observation after the step (same types as above)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from rayrec.contracts.observation import Obs
from rayrec.sim import SimConfig
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES

__all__ = [
    "META_KEY",
    "OBS_COLUMNS",
    "SCHEMA_VERSION",
    "Col",
    "LogError",
    "expand_observations",
    "log_schema",
]

SCHEMA_VERSION = 1
META_KEY = b"rayrec"
"""Parquet metadata key holding ``{"schema_version", "env", "behavior", ...}`` as JSON."""


class LogError(ValueError):
    """A log file or folder that is not a valid rayrec log; the message names the file/column."""


class Col:
    """Column names (like RLlib's ``Columns``)."""

    EPISODE_ID = "episode_id"
    USER_ID = "user_id"
    T = "t"
    SESSION_INDEX = "session_index"
    STEP_IN_SESSION = "step_in_session"
    REQUEST_ID = "request_id"
    TIME = "time"
    POLICY = "policy"
    HISTORY_ITEMS = "history_items"
    HISTORY_RESPONSES = "history_responses"
    CONTEXT = "context"
    CANDIDATE_ITEMS = "candidate_items"
    ACTION_MASK = "action_mask"
    ACTION = "action"
    SLATE_ITEMS = "slate_items"
    PROPENSITY = "propensity"
    PROPENSITIES = "propensities"
    RESPONSES = "responses"
    CLICK_POSITION = "click_position"
    REWARD = "reward"
    TERMINATED = "terminated"
    TRUNCATED = "truncated"
    NEXT = "next_"


OBS_COLUMNS = (
    Col.HISTORY_ITEMS,
    Col.HISTORY_RESPONSES,
    Col.CONTEXT,
    Col.CANDIDATE_ITEMS,
    Col.ACTION_MASK,
)
"""The columns that make an observation (stored again with the ``next_`` prefix)."""


def _obs_fields(config: SimConfig, prefix: str = "") -> list[pa.Field]:
    h, m = config.history_len, config.num_candidates
    return [
        pa.field(prefix + Col.HISTORY_ITEMS, pa.list_(pa.int64(), h), nullable=False),
        pa.field(
            prefix + Col.HISTORY_RESPONSES,
            pa.list_(pa.float32(), h * NUM_RESPONSES),
            nullable=False,
        ),
        pa.field(prefix + Col.CONTEXT, pa.list_(pa.float32(), NUM_CONTEXT), nullable=False),
        pa.field(prefix + Col.CANDIDATE_ITEMS, pa.list_(pa.int64(), m), nullable=False),
        pa.field(prefix + Col.ACTION_MASK, pa.list_(pa.int8(), m), nullable=False),
    ]


def log_schema(config: SimConfig, metadata: dict[str, Any] | None = None) -> pa.Schema:
    """The arrow schema of a log of environment ``config`` (sizes H, M, k come from it)."""
    k = config.slate_size
    fields = [
        pa.field(Col.EPISODE_ID, pa.int64(), nullable=False),
        pa.field(Col.USER_ID, pa.int64(), nullable=False),
        pa.field(Col.T, pa.int32(), nullable=False),
        pa.field(Col.SESSION_INDEX, pa.int32(), nullable=False),
        pa.field(Col.STEP_IN_SESSION, pa.int32(), nullable=False),
        pa.field(Col.REQUEST_ID, pa.string()),
        pa.field(Col.TIME, pa.float64(), nullable=False),
        pa.field(Col.POLICY, pa.string(), nullable=False),
        *_obs_fields(config),
        pa.field(Col.ACTION, pa.list_(pa.int64(), k), nullable=False),
        pa.field(Col.SLATE_ITEMS, pa.list_(pa.int64(), k), nullable=False),
        pa.field(Col.PROPENSITY, pa.float64(), nullable=False),
        pa.field(Col.PROPENSITIES, pa.list_(pa.float64(), k), nullable=False),
        pa.field(Col.RESPONSES, pa.list_(pa.float32(), NUM_RESPONSES), nullable=False),
        pa.field(Col.CLICK_POSITION, pa.int32(), nullable=False),
        pa.field(Col.REWARD, pa.float32(), nullable=False),
        pa.field(Col.TERMINATED, pa.bool_(), nullable=False),
        pa.field(Col.TRUNCATED, pa.bool_(), nullable=False),
        *_obs_fields(config, Col.NEXT),
    ]
    meta = {META_KEY: json.dumps({"schema_version": SCHEMA_VERSION, **(metadata or {})})}
    return pa.schema(fields, metadata=meta)


def column_array(values: Any, n: int) -> np.ndarray:
    """A (n, width) numpy array of a fixed-size-list column however it arrives.

    Ray Data and pyarrow hand such columns over as a 2-D array, an object array of 1-D arrays or
    an arrow array, depending on the path; all are normalised here.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.FixedSizeListArray):
        return values.flatten().to_numpy(zero_copy_only=False).reshape(n, -1)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v) for v in arr]) if n else arr.reshape(0, 0)
    return arr.reshape(n, -1)


def expand_observations(
    columns: dict[str, Any], catalog: Any, config: SimConfig, prefix: str = ""
) -> dict[str, np.ndarray]:
    """The batched observation dict (``rayrec.envs.observation.Obs`` keys) of logged rows.

    Args:
        columns: column name -> values for n rows (numpy or arrow).
        catalog: the :class:`rayrec.sim.catalog.ItemCatalog` of the log's environment.
        config: the log's simulator configuration (gives H, M).
        prefix: ``""`` for the observation before the step, ``"next_"`` for the one after it.
    """
    n = len(columns[prefix + Col.HISTORY_ITEMS])
    h, m = config.history_len, config.num_candidates
    hist = column_array(columns[prefix + Col.HISTORY_ITEMS], n).astype(np.int64).reshape(n, h)
    ids = column_array(columns[prefix + Col.CANDIDATE_ITEMS], n).astype(np.int64).reshape(n, m)
    hmask = hist >= 0
    hist_features = catalog.embedding.take(np.maximum(hist, 0), axis=0)
    hist_features[~hmask] = 0.0
    responses = column_array(columns[prefix + Col.HISTORY_RESPONSES], n)
    return {
        Obs.HISTORY_ITEMS: hist,
        Obs.HISTORY_FEATURES: hist_features,
        Obs.HISTORY_RESPONSES: responses.astype(np.float32).reshape(n, h, NUM_RESPONSES),
        Obs.HISTORY_MASK: hmask.astype(np.float32),
        Obs.CANDIDATE_ITEMS: ids,
        Obs.CANDIDATE_FEATURES: catalog.embedding.take(ids, axis=0),
        Obs.CANDIDATE_SCALARS: catalog.scalars.take(ids, axis=0),
        Obs.CONTEXT: column_array(columns[prefix + Col.CONTEXT], n).astype(np.float32),
        Obs.ACTION_MASK: column_array(columns[prefix + Col.ACTION_MASK], n).astype(np.int8),
    }
