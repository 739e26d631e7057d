"""A served log (``rayrec serve --log-dir``) as a rayrec log folder (``rayrec collect``'s schema).

The Serve app logs what a model saw and chose (``LOGDIR/impressions``) and, separately, what the
user did (``LOGDIR/feedback``). Offline training and off-policy evaluation want episodes: rows with
an episode id, the step's responses and reward, and the observation after the step.
:func:`convert_served` rebuilds them:

- **Join.** Impressions and feedback are joined on ``request_id`` (duplicates of the at-least-once
  log dropped, the first row kept). An impression without feedback is a step without a response
  (zeros, reward 0); feedback without an impression is dropped and counted.
- **Lifetimes.** A user's rows are ordered by time. A new lifetime (episode) starts at the user's
  first row and wherever the served context says the first session begins again: session index 0
  at step 0 (``context[0]`` = session / (max_sessions - 1), ``context[1]`` = step /
  max_steps_per_session, as the simulator and ``rayrec traffic`` fill it), or the session index
  falls.
- **Next observation.** The next row of the same lifetime. The last row's is its own observation
  with the step's item (the clicked one, else the first served) and responses appended to the
  history, as the simulator does; it ends the episode: ``truncated`` when its context is in the
  last allowed session (``max_sessions`` - 1), ``terminated`` otherwise.
- **Responses.** The feedback's per-position responses become the step's (click, watch, like, skip)
  at the first clicked position (``click_position``), zeros without a click; the reward is the
  feedback's ``reward`` (the served model's reward of the whole slate).

The rule is exact for traffic from the simulator (``rayrec traffic``, whose requests carry the
simulator's context). Real traffic must send the same context (session index and step scaled as
above) for lifetimes to be found; a lifetime still running when the log is converted ends at its
last logged row. docs/loop.md, "From served logs to offline training".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayrec.contracts.errors import SpecError
from rayrec.data.logs import LogWriter, write_log_folder
from rayrec.data.schema import Col, column_array, log_schema
from rayrec.data.served import (
    FEEDBACK_DIR,
    IMPRESSIONS_DIR,
    Feedback,
    Impressions,
    VersionRegistry,
    VERSIONS_FILE,
    read_served,
)
from rayrec.sim.config import NUM_RESPONSES
from rayrec.specs import EnvSpec

__all__ = ["SERVED_SOURCE", "ServedLogError", "convert_served"]

SERVED_SOURCE = "served"
"""``log.json``'s ``source`` of a converted served log (its behaviour cannot be replayed)."""


class ServedLogError(SpecError):
    """A folder that is not a served log, or one that does not fit the env spec: one line, exit 2."""


def convert_served(log_dir: str | Path, env: EnvSpec, out: str | Path) -> dict[str, Any]:
    """Write the served log ``log_dir`` of ``env``'s world as the rayrec log folder ``out``.

    The folder is built under a temporary name and renamed when complete. Returns its metadata
    (``log.json``): ``env``, ``behavior`` (``served:`` and the versions), ``source``, ``rows``,
    ``episodes``, ``files`` and the join's counts under ``served``.
    """
    log_dir, out = Path(log_dir), Path(out)
    if out.exists():
        raise ServedLogError(f"--out {out} already exists; logs are never overwritten")
    rows, stats = _joined(log_dir, env)
    rows = _episodes(rows, env)
    config = env.config
    versions = sorted(set(rows[Col.POLICY].tolist()))
    registry = [
        {k: e[k] for k in ("version", "checkpoint") if k in e}
        for e in VersionRegistry(log_dir / VERSIONS_FILE).entries()
    ]
    meta: dict[str, Any] = {
        "env": env.to_dict(),
        "behavior": "served:" + "+".join(versions),
        "source": SERVED_SOURCE,
        "served": {"log_dir": str(log_dir.resolve()), "versions": registry, **stats},
    }
    returns = np.bincount(rows[Col.EPISODE_ID], weights=rows[Col.REWARD].astype(np.float64))

    def fill(writer: LogWriter) -> dict[str, Any]:
        writer.append(rows)
        return {"episodes": len(returns), "behavior_return_mean": float(returns.mean())}

    write_log_folder(out, log_schema(config, meta), meta, fill)
    return meta


def _first(ids: list[str | None]) -> np.ndarray:
    """Indices of the first row of each distinct id (rows without an id are kept)."""
    seen: set[str] = set()
    keep = []
    for i, rid in enumerate(ids):
        if rid is None or rid not in seen:
            keep.append(i)
            if rid is not None:
                seen.add(rid)
    return np.asarray(keep, dtype=np.int64)


def _read(log_dir: Path) -> tuple[pa.Table, pa.Table]:
    if not (log_dir / IMPRESSIONS_DIR).is_dir():
        raise ServedLogError(
            f"{log_dir}: not a served log (no {IMPRESSIONS_DIR}/ folder; "
            "rayrec serve --log-dir writes one)"
        )
    try:
        impressions, feedback = read_served(log_dir), read_served(log_dir, FEEDBACK_DIR)
    except (pa.ArrowInvalid, OSError) as e:
        raise ServedLogError(f"{log_dir}: unreadable served log ({e})") from e
    if impressions.num_rows == 0:
        raise ServedLogError(f"{log_dir}: the served log holds no impressions")
    meta = impressions.schema.metadata or {}
    if meta.get(b"rayrec.table") != IMPRESSIONS_DIR.encode():
        raise ServedLogError(f"{log_dir}/{IMPRESSIONS_DIR}: parquet without the served schema")
    return impressions, feedback


def _check_world(impressions: pa.Table, env: EnvSpec, n: int) -> dict[str, np.ndarray]:
    """The impression columns as arrays, once they fit ``env``'s world; else ServedLogError."""
    cfg = env.config
    widths = impressions.schema.metadata or {}
    logged_h = int(widths.get(b"rayrec.history_len", b"-1"))
    if logged_h != cfg.history_len:
        raise ServedLogError(
            f"--env: history_len is {cfg.history_len} but the log was served with {logged_h}"
        )
    for key, field, value in (
        (b"rayrec.max_candidates", "num_candidates", cfg.num_candidates),
        (b"rayrec.max_k", "slate_size", cfg.slate_size),
    ):
        width = int(widths.get(key, b"-1"))
        if width < value:
            raise ServedLogError(
                f"--env: {field} ({value}) must be <= the served log's {key.decode()} ({width})"
            )
    cols = {
        name: column_array(impressions.column(name), n)
        for name in (
            Col.HISTORY_ITEMS,
            Col.HISTORY_RESPONSES,
            Col.CONTEXT,
            Col.CANDIDATE_ITEMS,
            Col.ACTION,
            Col.SLATE_ITEMS,
            Col.PROPENSITIES,
        )
    }
    for name in (Impressions.SLATE_SIZE, Impressions.NUM_CANDIDATES, Col.PROPENSITY):
        cols[name] = impressions.column(name).to_numpy()
    for name in (Col.HISTORY_ITEMS, Col.CANDIDATE_ITEMS, Col.SLATE_ITEMS):
        top = int(cols[name].max())
        if top >= cfg.num_items:
            raise ServedLogError(
                f"--env: the log's {name} hold item {top}, the env's catalog has ids "
                f"0..{cfg.num_items - 1} (num_items {cfg.num_items}): another world"
            )
    for name, limit in (
        (Impressions.NUM_CANDIDATES, cfg.num_candidates),
        (Impressions.SLATE_SIZE, cfg.slate_size),
    ):
        top = int(cols[name].max())
        if top > limit:
            field = "num_candidates" if name == Impressions.NUM_CANDIDATES else "slate_size"
            raise ServedLogError(
                f"--env: a logged row has {name} {top}, above the env's {field} ({limit})"
            )
    return cols


def _joined(log_dir: Path, env: EnvSpec) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The impression rows (deduplicated) with their feedback, in the log schema's columns
    (except the episode columns and next observations), and the join's counts."""
    impressions, feedback = _read(log_dir)
    raw_impressions, raw_feedback = impressions.num_rows, feedback.num_rows
    impressions = impressions.take(_first(impressions.column(Col.REQUEST_ID).to_pylist()))
    feedback = feedback.take(_first(feedback.column(Feedback.REQUEST_ID).to_pylist()))
    n, cfg = impressions.num_rows, env.config
    m, k = cfg.num_candidates, cfg.slate_size
    cols = _check_world(impressions, env, n)
    request_ids = impressions.column(Col.REQUEST_ID).to_pylist()
    row_of = {rid: i for i, rid in enumerate(request_ids) if rid is not None}
    responses = np.zeros((n, NUM_RESPONSES), dtype=np.float32)
    click_position = np.full(n, -1, dtype=np.int32)
    reward = np.zeros(n, dtype=np.float32)
    answered = np.zeros(n, dtype=bool)
    orphans = 0
    fb_rewards = feedback.column(Feedback.REWARD).to_numpy()
    fb_responses = feedback.column(Feedback.RESPONSES).to_pylist()
    for j, rid in enumerate(feedback.column(Feedback.REQUEST_ID).to_pylist()):
        i = row_of.get(rid)
        if i is None:
            orphans += 1
            continue
        answered[i] = True
        reward[i] = fb_rewards[j]
        per_position = np.asarray(fb_responses[j], dtype=np.float32).reshape(-1, NUM_RESPONSES)
        clicked = np.flatnonzero(per_position[:, 0] > 0)
        if clicked.size:
            click_position[i] = clicked[0]
            responses[i] = per_position[clicked[0]]
    # Candidates: the env's M columns; padding ids -1 become item 0 (masked: "any valid id").
    real = np.arange(m)[None, :] < cols[Impressions.NUM_CANDIDATES][:, None]
    candidates = np.where(real, cols[Col.CANDIDATE_ITEMS][:, :m], 0)
    # Slates shorter than the env's k: the rest points at a masked candidate (shows nothing in the
    # simulator) with probability 1, as rayrec collect logs slates longer than the valid list.
    served_k = cols[Impressions.SLATE_SIZE][:, None]
    short = np.arange(k)[None, :] >= served_k
    filler = np.where(real.all(axis=1), cols[Col.ACTION][:, 0], np.minimum(real.sum(1), m - 1))
    action = np.where(short, filler[:, None], cols[Col.ACTION][:, :k])
    propensities = np.where(short, 1.0, cols[Col.PROPENSITIES][:, :k])
    rows = {
        Col.USER_ID: impressions.column(Col.USER_ID).to_numpy(),
        Col.REQUEST_ID: np.array(request_ids, dtype=object),
        Col.TIME: impressions.column(Col.TIME).to_numpy(),
        Col.POLICY: np.array(impressions.column(Col.POLICY).to_pylist(), dtype=object),
        Col.HISTORY_ITEMS: cols[Col.HISTORY_ITEMS].astype(np.int64),
        Col.HISTORY_RESPONSES: cols[Col.HISTORY_RESPONSES].astype(np.float32),
        Col.CONTEXT: cols[Col.CONTEXT].astype(np.float32),
        Col.CANDIDATE_ITEMS: candidates.astype(np.int64),
        Col.ACTION_MASK: real.astype(np.int8),
        Col.ACTION: action.astype(np.int64),
        Col.SLATE_ITEMS: np.take_along_axis(candidates, action, 1).astype(np.int64),
        Col.PROPENSITY: np.prod(propensities, axis=1),
        Col.PROPENSITIES: propensities.astype(np.float64),
        Col.RESPONSES: responses,
        Col.CLICK_POSITION: click_position,
        Col.REWARD: reward,
    }
    stats = {
        "impressions": raw_impressions,
        "duplicate_impressions": raw_impressions - n,
        "feedback": raw_feedback,
        "duplicate_feedback": raw_feedback - feedback.num_rows,
        "impressions_without_feedback": int((~answered).sum()),
        "feedback_without_impression": orphans,
    }
    return rows, stats


def _episodes(rows: dict[str, np.ndarray], env: EnvSpec) -> dict[str, np.ndarray]:
    """``rows`` ordered into lifetimes, with episode ids, steps, session indices, flags and the
    next observations (the rules in the module docstring)."""
    cfg = env.config
    order = np.lexsort((rows[Col.TIME], rows[Col.USER_ID]))
    rows = {name: values[order] for name, values in rows.items()}
    n = len(order)
    ctx = rows[Col.CONTEXT]
    session = np.rint(ctx[:, 0] * max(cfg.max_sessions - 1, 1)).astype(np.int32)
    step = np.rint(ctx[:, 1] * cfg.max_steps_per_session).astype(np.int32)
    user = rows[Col.USER_ID]
    start = np.ones(n, dtype=bool)
    start[1:] = (
        (user[1:] != user[:-1]) | ((session[1:] == 0) & (step[1:] == 0)) | (session[1:] < session[:-1])
    )
    episode = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    t = np.arange(n) - first[episode]
    last = np.append(start[1:], True)
    nxt = np.minimum(np.arange(n) + 1, n - 1)
    for name in (Col.HISTORY_ITEMS, Col.HISTORY_RESPONSES, Col.CONTEXT, Col.CANDIDATE_ITEMS):
        rows[Col.NEXT + name] = np.where(last[:, None], _after_last(rows, name), rows[name][nxt])
    rows[Col.NEXT + Col.ACTION_MASK] = np.where(
        last[:, None], rows[Col.ACTION_MASK], rows[Col.ACTION_MASK][nxt]
    )
    truncated = last & (session >= cfg.max_sessions - 1)
    rows.update(
        {
            Col.EPISODE_ID: episode.astype(np.int64),
            Col.T: t.astype(np.int32),
            Col.SESSION_INDEX: session,
            Col.STEP_IN_SESSION: step,
            Col.TERMINATED: last & ~truncated,
            Col.TRUNCATED: truncated,
        }
    )
    return rows


def _after_last(rows: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Column ``name`` of the observation after each row if it were its lifetime's last: the
    history shifted by the step's item (clicked, else the first served) and its responses."""
    if name == Col.HISTORY_ITEMS:
        at = np.maximum(rows[Col.CLICK_POSITION], 0)[:, None]
        item = np.take_along_axis(rows[Col.SLATE_ITEMS], at, 1)
        return np.concatenate([rows[name][:, 1:], item], axis=1)
    if name == Col.HISTORY_RESPONSES:
        return np.concatenate([rows[name][:, NUM_RESPONSES:], rows[Col.RESPONSES]], axis=1)
    return rows[name]
