"""compare_algorithms --keep reuses a kept run only when it finished the row's whole budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.compare_algorithms import finished_run


def _kept(tmp_path: Path, training: dict, users: int = 2000) -> Path:
    folder = tmp_path / "ppo-seed0"
    folder.mkdir()
    results = {"training": training, "evaluation": {"users": users}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


@pytest.mark.parametrize(
    ("training", "stop", "reused"),
    [
        ({"iterations": 400, "time_budget": None}, {"iterations": 400}, True),
        ({"iterations": 120, "time_budget": None}, {"iterations": 400}, False),
        # A preset that stops on time (APPO, IMPALA): its iteration count varies with the machine.
        ({"iterations": 47, "time_budget": 480}, {"time_budget": 480}, True),
        ({"iterations": 47, "time_budget": 240}, {"time_budget": 480}, False),
        ({"iterations": 400, "time_budget": None, "interrupted": True}, {"iterations": 400}, False),
    ],
)
def test_reuse_needs_the_whole_budget(tmp_path, training, stop, reused) -> None:
    folder = _kept(tmp_path, training)
    assert (finished_run(folder, stop, 2000) is not None) is reused
    assert folder.exists() is reused  # a partial run's folder is replaced


def test_reuse_needs_the_same_evaluation_users(tmp_path) -> None:
    folder = _kept(tmp_path, {"iterations": 400, "time_budget": None}, users=500)
    assert finished_run(folder, {"iterations": 400}, 2000) is None
