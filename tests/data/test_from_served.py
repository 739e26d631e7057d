"""A hand-made served log converted to a rayrec log folder: the join, the lifetimes, the next
observations, and the answers to bad input (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from rayrec.cli import main
from rayrec.data import Col, LogError, read_log, read_log_meta, validate_log
from rayrec.data.from_served import ServedLogError, convert_served
from rayrec.data.parts import arrow_column, write_part
from rayrec.data.served import (
    FEEDBACK_DIR,
    IMPRESSIONS_DIR,
    Feedback,
    Impressions,
    feedback_schema,
    impression_schema,
)
from rayrec.evaluation.collect import collect
from rayrec.specs import EnvSpec

ROOT = Path(__file__).resolve().parents[2]
H, M, K = 3, 100, 10  # the served widths: the env's history, the API's max candidates and k
WORLD = {
    "num_items": 400,
    "num_candidates": 8,
    "history_len": H,
    "slate_size": 1,
    "max_sessions": 2,
    "max_steps_per_session": 4,
}


def _env(**extra) -> EnvSpec:
    return EnvSpec.from_dict({"config": {**WORLD, **extra}})


def _context(session: int, step: int) -> list[float]:
    # As the simulator scales it: session / (max_sessions - 1), step / max_steps_per_session.
    return [session / 1.0, step / 4.0, 0.0, 1.0, 0.1]


def _impression(rid, user, time, session, step, history, candidates, chosen, prob=0.5) -> dict:
    n, hist = len(candidates), [-1] * (H - len(history)) + list(history)
    responses = np.zeros((H, 4), dtype=np.float32)
    responses[H - len(history) :, 0] = 1.0  # every history entry was a click
    return {
        Impressions.REQUEST_ID: rid,
        Impressions.USER_ID: user,
        Impressions.TIME: time,
        Impressions.POLICY: "dqn/final@1111" if user == 9 else "untrained/final@0000",
        Impressions.HISTORY_ITEMS: hist,
        Impressions.HISTORY_RESPONSES: responses.reshape(-1),
        Impressions.CONTEXT: _context(session, step),
        Impressions.CANDIDATE_ITEMS: list(candidates) + [-1] * (M - n),
        Impressions.ACTION_MASK: [1] * n + [0] * (M - n),
        Impressions.ACTION: [chosen] + [-1] * (K - 1),
        Impressions.SLATE_ITEMS: [candidates[chosen]] + [-1] * (K - 1),
        Impressions.PROPENSITY: prob,
        Impressions.PROPENSITIES: [prob] + [0.0] * (K - 1),
        Impressions.MODE: "sample",
        Impressions.SLATE_SIZE: 1,
        Impressions.NUM_CANDIDATES: n,
        Impressions.SCORES: [0.0] * K,
    }


def _feedback(rid, user, reward, click=True, watch=0.5) -> dict:
    return {
        Feedback.REQUEST_ID: rid,
        Feedback.USER_ID: user,
        Feedback.TIME: 0.0,
        Feedback.POLICY: "untrained/final@0000",
        Feedback.RESPONSES: [1.0, watch, 0.0, 0.0] if click else [0.0] * 4,
        Feedback.REWARD: reward,
    }


def _write(folder: Path, name: str, rows: list[dict], schema: pa.Schema) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [arrow_column([r[f.name] for r in rows], f) for f in schema]
    write_part(pa.Table.from_arrays(arrays, schema=schema), folder / name)


# User 7 lives twice: three steps over both sessions (the last in the last allowed session, so
# truncated), then a new first session (session 0, step 0 again): one step, it leaves. User 9:
# one step without feedback. r7c is logged twice (at least once) and "ghost" has no impression.
IMPRESSIONS = [
    _impression("r7b", 7, 11.0, 0, 1, [5], [10, 11, 12], 2),
    _impression("r7a", 7, 10.0, 0, 0, [], [1, 2, 3, 4], 1),
    _impression("r9a", 9, 10.5, 0, 0, [], [20, 21], 0, prob=0.25),
]
IMPRESSIONS_2 = [
    _impression("r7c", 7, 12.0, 1, 0, [5, 12], [30, 31], 0),
    _impression("r7c", 7, 12.0, 1, 0, [5, 12], [30, 31], 0),
    _impression("r7d", 7, 20.0, 0, 0, [], [40, 41, 42], 1),
]
FEEDBACK = [
    _feedback("r7a", 7, 1.0),
    _feedback("r7b", 7, 0.0, click=False),
    _feedback("r7c", 7, 1.0, watch=0.9),
    _feedback("r7d", 7, 1.0),
    _feedback("ghost", 7, 1.0),
]


@pytest.fixture
def served(tmp_path) -> Path:
    log = tmp_path / "served"
    schema = impression_schema(H, M, K)
    _write(log / IMPRESSIONS_DIR, "part-0-00000.parquet", IMPRESSIONS, schema)
    _write(log / IMPRESSIONS_DIR, "part-1-00000.parquet", IMPRESSIONS_2, schema)
    _write(log / FEEDBACK_DIR, "part-0-00000.parquet", FEEDBACK, feedback_schema())
    return log


def test_join_and_lifetimes(served, tmp_path):
    meta = convert_served(served, _env(), tmp_path / "log")
    validated, _ = validate_log(tmp_path / "log")
    assert validated == read_log_meta(tmp_path / "log") == json.loads(json.dumps(meta))
    # Both versions of an A/B test (user 9 was served by B).
    assert meta["behavior"] == "served:dqn/final@1111+untrained/final@0000"
    assert meta["source"] == "served"
    assert (meta["rows"], meta["episodes"], meta["files"]) == (5, 3, 1)
    assert meta["served"] == {
        "log_dir": str(served.resolve()),
        "versions": [],
        "impressions": 6,
        "duplicate_impressions": 1,
        "feedback": 5,
        "duplicate_feedback": 0,
        "impressions_without_feedback": 1,
        "feedback_without_impression": 1,
    }
    rows = read_log(tmp_path / "log").to_pylist()
    assert [r[Col.REQUEST_ID] for r in rows] == ["r7a", "r7b", "r7c", "r7d", "r9a"]
    assert [r[Col.EPISODE_ID] for r in rows] == [0, 0, 0, 1, 2]
    assert [r[Col.T] for r in rows] == [0, 1, 2, 0, 0]
    assert [r[Col.SESSION_INDEX] for r in rows] == [0, 0, 1, 0, 0]
    assert [r[Col.STEP_IN_SESSION] for r in rows] == [0, 1, 0, 0, 0]
    assert [r[Col.REWARD] for r in rows] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert [r[Col.CLICK_POSITION] for r in rows] == [0, -1, 0, 0, -1]
    assert rows[2][Col.RESPONSES] == pytest.approx([1.0, 0.9, 0.0, 0.0])
    assert rows[4][Col.RESPONSES] == [0.0] * 4  # no feedback: no response
    assert [r[Col.TERMINATED] for r in rows] == [False, False, False, True, True]
    assert [r[Col.TRUNCATED] for r in rows] == [False, False, True, False, False]
    assert rows[4][Col.PROPENSITY] == 0.25 and rows[4][Col.PROPENSITIES] == [0.25]
    # The env's M = 8 candidates: padding becomes item 0, masked.
    assert rows[0][Col.CANDIDATE_ITEMS] == [1, 2, 3, 4, 0, 0, 0, 0]
    assert rows[0][Col.ACTION_MASK] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert rows[0][Col.ACTION] == [1] and rows[0][Col.SLATE_ITEMS] == [2]
    # Inside a lifetime the next observation is the next row's.
    for name in (Col.HISTORY_ITEMS, Col.CONTEXT, Col.CANDIDATE_ITEMS, Col.ACTION_MASK):
        assert rows[0][Col.NEXT + name] == rows[1][name]
        assert rows[1][Col.NEXT + name] == rows[2][name]
    # After the last row: the history moves on by the clicked item and its responses.
    assert rows[2][Col.NEXT + Col.HISTORY_ITEMS] == [5, 12, 30]
    assert rows[2][Col.NEXT + Col.HISTORY_RESPONSES][-4:] == pytest.approx([1.0, 0.9, 0, 0])
    assert rows[2][Col.NEXT + Col.CONTEXT] == rows[2][Col.CONTEXT]


def test_cli_prints_the_counts(served, tmp_path, capsys):
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump(_env().to_dict()))
    out = tmp_path / "log"
    assert main(["data", "from-served", str(served), "--env", str(env), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 rows, 3 episodes" in printed
    assert "1 impression(s) without feedback" in printed
    assert "1 feedback event(s) without an impression (dropped)" in printed
    assert not list(tmp_path.glob(".log.partial-*"))


def test_a_served_folder_as_data_says_how_to_convert_it(served, capsys):
    with pytest.raises(LogError, match="rayrec data from-served"):
        validate_log(served)
    cql = str(ROOT / "policies" / "cql.yaml")
    for argv in (
        ["train", "--policy", cql, "--data", str(served)],
        ["ope", "--data", str(served), "--policy", "heuristic"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "convert it first: rayrec data from-served" in err, argv


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty" / IMPRESSIONS_DIR).mkdir(parents=True)
    return tmp_path / "empty"


def _collected(tmp_path: Path) -> Path:
    collect(_env(), "random", users=2, out=tmp_path / "collected", seed=0)
    return tmp_path / "collected"


@pytest.mark.parametrize(
    ("make_log", "env", "message"),
    [
        (lambda tmp, served: tmp, {}, "not a served log (no impressions/ folder"),
        (lambda tmp, served: _collected(tmp), {}, "not a served log"),
        (lambda tmp, served: _empty(tmp), {}, "holds no impressions"),
        (lambda tmp, served: served, {"history_len": 4}, "history_len is 4 but the log was"),
        (lambda tmp, served: served, {"num_items": 30}, "candidate_items hold item 42"),
        (lambda tmp, served: served, {"num_candidates": 3}, "num_candidates 4, above the env's"),
        (lambda tmp, served: served, {"num_candidates": 101}, "num_candidates (101) must be <="),
        (
            lambda tmp, served: served,
            {"num_candidates": 20, "slate_size": 11},
            "slate_size (11) must be <= the served log's rayrec.max_k (10)",
        ),
    ],
    ids=[
        "no-log",
        "collect-log",
        "empty",
        "history-len",
        "catalog",
        "candidates",
        "max-candidates",
        "max-k",
    ],
)
def test_bad_input_is_one_line_and_exit_2(make_log, env, message, served, tmp_path, capsys):
    log = make_log(tmp_path, served)
    spec = tmp_path / "env.yaml"
    spec.write_text(yaml.safe_dump(_env(**env).to_dict()))
    out = tmp_path / "out"
    assert main(["data", "from-served", str(log), "--env", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rayrec: error: ") and message in err
    assert not out.exists()


def test_an_existing_out_is_never_overwritten(served, tmp_path):
    (tmp_path / "log").mkdir()
    with pytest.raises(ServedLogError, match="already exists"):
        convert_served(served, _env(), tmp_path / "log")
