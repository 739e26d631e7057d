"""The run folder as training reads it back: torn metrics lines, checkpoint fallbacks, budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrec.contracts.layout import RunFolder
from rayrec.run.folder import read_metrics, read_progress, restore_checkpoint, trim_metrics
from rayrec.run.loop import _keep_if_best, _nothing_left
from rayrec.run.options import RunOptions
from rayrec.specs import SpecError


def _metrics(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path):
    path = _metrics(tmp_path / "metrics.jsonl", [{"iteration": 1}, {"iteration": 2}], '{"itera')
    warnings: list[str] = []
    assert read_metrics(path, warnings.append) == [{"iteration": 1}, {"iteration": 2}]
    assert len(warnings) == 1 and "line 3" in warnings[0] and "torn" in warnings[0]


def test_trimming_keeps_the_restored_iterations_and_drops_torn_lines(tmp_path):
    rows = [{"iteration": i} for i in range(1, 6)]
    path = _metrics(tmp_path / "metrics.jsonl", rows, "\x00\x00garbage\n")
    kept = trim_metrics(path, 3, lambda msg: None)
    assert kept == rows[:3]
    assert read_metrics(path) == rows[:3]
    assert path.read_text().endswith("\n")


def test_a_missing_metrics_file_reads_empty(tmp_path):
    assert read_metrics(tmp_path / "none.jsonl") == []
    assert trim_metrics(tmp_path / "none.jsonl", 3) == []


class _Algo:
    """Restores from a folder unless its state file says it is corrupt (what RLlib raises on a
    broken checkpoint varies: pickle, OS and value errors)."""

    def __init__(self) -> None:
        self.restored: Path | None = None

    def restore_from_path(self, path: str) -> None:
        text = (Path(path) / "state").read_text()
        if text == "corrupt":
            raise EOFError("Ran out of input")
        self.restored = Path(path)


def _checkpoint(folder: RunFolder, name: str, text: str) -> None:
    path = folder.checkpoint(name)
    path.mkdir(parents=True, exist_ok=True)
    (path / "state").write_text(text)


def test_a_corrupt_latest_falls_back_to_latest_old_with_a_warning(tmp_path):
    folder = RunFolder(tmp_path)
    _checkpoint(folder, "latest", "corrupt")
    _checkpoint(folder, "latest.old", "good")
    algo, warnings = _Algo(), []
    used = restore_checkpoint(algo, folder, "latest", warnings.append)
    assert used == folder.checkpoint("latest.old") == algo.restored
    assert any("does not load" in w and "EOFError" in w for w in warnings)
    assert any("instead" in w for w in warnings)


def test_no_loadable_checkpoint_is_one_clear_error(tmp_path):
    folder = RunFolder(tmp_path)
    _checkpoint(folder, "latest", "corrupt")
    with pytest.raises(SpecError, match=r"no checkpoint of .* loads \(latest: EOFError"):
        restore_checkpoint(_Algo(), folder, "latest", lambda msg: None)
    with pytest.raises(SpecError, match="no checkpoint to resume from"):
        restore_checkpoint(_Algo(), RunFolder(tmp_path / "empty"), "latest", lambda msg: None)


def test_progress_sidecar_reads_empty_when_missing_or_torn(tmp_path):
    assert read_progress(tmp_path) == {}
    (tmp_path / "rayrec_progress.json").write_text('{"iterat')
    assert read_progress(tmp_path) == {}


@pytest.mark.parametrize(
    ("iterations", "budget", "iteration", "spent", "why"),
    [
        (10, None, 10, 0.0, "iteration 10 already"),
        (10, None, 4, 0.0, None),
        (None, 60.0, 7, 61.0, "61 s of its 60 s time budget"),
        (None, 60.0, 7, 30.0, None),
        (20, 60.0, 7, 61.0, "61 s of its 60 s"),  # either stop ends the run
        (20, 60.0, 7, 30.0, None),
    ],
)
def test_a_resume_with_nothing_left_says_what_to_pass(iterations, budget, iteration, spent, why):
    options = RunOptions(out=Path("x"), iterations=iterations, time_budget=budget)
    reason = _nothing_left(options, iteration, spent)
    if why is None:
        assert reason is None
    else:
        assert why in reason and "--iterations" in reason and "--time-budget" in reason


def test_best_is_a_copy_of_the_checkpoint_that_beat_it(tmp_path):
    folder = RunFolder(tmp_path / "run")
    best_file = folder.checkpoints / "best.json"
    _checkpoint(folder, "latest", "iteration 5")
    best = _keep_if_best(folder, best_file, -float("inf"), 3.0, 5, "latest")
    assert best == 3.0
    assert (folder.checkpoint("best") / "state").read_text() == "iteration 5"
    assert json.loads(best_file.read_text()) == {"return": 3.0, "iteration": 5}

    # A lower return, or none (an iteration without finished episodes), keeps the best.
    _checkpoint(folder, "latest", "iteration 10")
    assert _keep_if_best(folder, best_file, best, 2.0, 10, "latest") == 3.0
    assert _keep_if_best(folder, best_file, best, None, 10, "latest") == 3.0
    assert (folder.checkpoint("best") / "state").read_text() == "iteration 5"

    # A higher one replaces it, from whichever checkpoint was just written (here: final).
    _checkpoint(folder, "final", "iteration 12")
    assert _keep_if_best(folder, best_file, best, 4.5, 12, "final") == 4.5
    assert (folder.checkpoint("best") / "state").read_text() == "iteration 12"
    assert json.loads(best_file.read_text()) == {"return": 4.5, "iteration": 12}
    assert not (folder.checkpoints / ".best.tmp").exists()
    assert (folder.checkpoint("latest") / "state").read_text() == "iteration 10"
