"""``make loop``'s pieces that need no service: the decision, the per-slate interval, the table and
bad arguments (the loop itself runs in ``make loop``; docs/loop.md has its measured table)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from rayrec.loop.pipeline import decide, main, per_slate, table


def _ab(low: float, high: float) -> dict:
    return {"difference": {"return": {"estimate": (low + high) / 2, "low": low, "high": high}}}


@pytest.mark.parametrize(
    ("low", "high", "rolls", "says"),
    [
        (0.5, 3.0, True, "B wins"),
        (-3.0, -0.5, False, "A wins"),
        (-1.0, 2.0, False, "no significant difference"),
    ],
)
def test_b_rolls_out_only_when_its_interval_is_above_zero(low, high, rolls, says):
    roll_out, why = decide(_ab(low, high))
    assert roll_out is rolls and why.startswith(says)


def test_no_decision_without_two_arms():
    assert decide({"difference": None}) == (False, "no A/B difference (an arm without users)")


def _users_csv(path: Path, rows: list[tuple[str, float, int, bool]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "arm", "return", "requests", "mixed"])
        for i, (arm, ret, req, mixed) in enumerate(rows):
            writer.writerow([i, arm, ret, req, mixed])
    return path


def test_per_slate_is_the_ratio_of_sums_over_users_with_a_bootstrap_interval(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("A", float(rng.integers(0, 30)), int(rng.integers(30, 60)), False) for _ in range(200)]
    rows += [("B", 10.0, 20, False)] * 50 + [("B", 999.0, 1, True)]  # mixed users are left out
    out = per_slate(_users_csv(tmp_path / "users.csv", rows), seed=0)
    a = [r for r in rows if r[0] == "A"]
    assert out["A"]["mean"] == pytest.approx(sum(r[1] for r in a) / sum(r[2] for r in a))
    assert out["A"]["low"] < out["A"]["mean"] < out["A"]["high"]
    assert out["B"] == {"mean": 0.5, "low": 0.5, "high": 0.5}  # every user alike: no spread
    assert per_slate(tmp_path / "users.csv", seed=0) == out  # seeded


def test_the_table_names_the_estimate_the_measurements_and_the_decision():
    est = {"sndr": {"value": 0.61, "ci95": [0.6, 0.62]}}
    arm = {"return": {"mean": 30.0, "low": 28.0, "high": 32.0}}
    result = {
        "ope": {"A": est, "B": {"sndr": {"value": 0.7, "ci95": [0.68, 0.72]}}},
        "ab": {
            "arms": [{"arm": "A", "users": 500, **arm}, {"arm": "B", "users": 498, **arm}],
            "difference": {"return": {"estimate": 2.0, "low": 0.5, "high": 3.5, "p_value": 0.01}},
            "per_slate": {"A": {"mean": 0.6, "low": 0.58, "high": 0.62}},
        },
        "decision": {"roll_out": True, "why": "B wins: ...", "rollout": "if-wins"},
        "rollout": {"outcome": "completed", "reason": None},
    }
    text = table(result)
    assert (
        "| OPE on A's served log: reward per slate (SNDR, 95% CI) | 0.6100 [0.6000, 0.6200] |"
        in text
    )
    assert "0.7000 [0.6800, 0.7200]" in text and "| A/B: users | 500 | 498 |" in text
    assert "+2.00 [+0.50, +3.50], p = 0.01" in text and "| decision | B wins: ... |" in text
    assert "| rollout of B (10%, 50%, 100%) | completed |" in text
    result["decision"]["roll_out"] = False  # --rollout always
    assert "| completed (--rollout always: a drill, not the decision) |" in table(result)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-users", "0"], "--log-users must be >= 1"),
        (["--floor", "0"], "--floor (0.0) must be in (0, 1]"),
        (["--step-seconds", "-1"], "--step-seconds (-1.0) must be > 0"),
        (["--warmup-seconds", "-5"], "--warmup-seconds (-5.0) must be >= 0"),
        (["--margin", "2"], "--margin (2.0) must be in [0, 1]"),
        (["--rollout", "maybe"], "--rollout 'maybe': one of if-wins, always, never"),
        (["--out", "NONEMPTY"], "exists and is not empty"),
    ],
)
def test_bad_arguments_exit_2_before_anything_runs(argv, message, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("not lost")
    argv = [str(full) if a == "NONEMPTY" else a for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "new")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert (full / "keep.txt").read_text() == "not lost" and not (tmp_path / "new").exists()
