"""docs/results.md is rendered from results.json: the hierarchical comparison's table."""

from __future__ import annotations

import json

from benchmarks.results_page import render_markdown, update_results

METRICS = {
    "return_mean": 6.4,
    "return_ci95": 0.2,
    "clicks_mean": 6.4,
    "sessions_per_user": 1.2,
    "topics_per_user": 2.9,
}
RECORD = {
    "env": "envs/hierarchical.yaml",
    "policies": ["policies/hierarchical_ppo.yaml", "policies/hierarchical_flat_ppo.yaml"],
    "sim_steps_budget": 60000,
    "time_budget_s": 180.0,
    "eval_users": 1000,
    "seed": 0,
    "runs": [
        {
            "budget": b,
            "agent": a,
            **METRICS,
            "sim_steps": 61000,
            "iterations": 19,
            "wall_time_s": 170,
        }
        for b in ("equal_sim_steps", "equal_wall_time")
        for a in ("hier", "flat")
    ],
    "baselines": {"random": METRICS, "greedy": METRICS},
    "note": "a note",
    "machine": "x86_64, 2 CPUs",
    "date": "2026-11-29",
}


def test_the_hierarchical_record_renders_one_row_per_run_and_baseline() -> None:
    text = render_markdown({"hierarchical": RECORD})
    rows = [line for line in text.splitlines() if line.startswith("| equal_")]
    assert len(rows) == 4
    assert "| equal_wall_time | flat | 6.40 ± 0.20 |" in text
    assert "| - | baseline: greedy (peeks) | 6.40 ± 0.20 |" in text
    assert "```json" not in text  # a table, not the raw record


def test_update_results_keeps_the_other_keys(tmp_path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"other": {"x": 1}}))
    update_results("hierarchical", RECORD, docs=tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["other"] == {"x": 1} and data["hierarchical"]["seed"] == 0
    assert "Hierarchical (options) vs flat PPO" in (tmp_path / "results.md").read_text()


def test_the_sampling_record_renders_the_batched_loop_against_rllibs() -> None:
    record = {
        "env": "session.yaml",
        "policy": "ppo.yaml",
        "preset_envs": 64,
        "seconds": 5.0,
        "repeats": 3,
        "per_call": 4096,
        "machine": "x86_64, 2 CPUs",
        "date": "2026-11-30",
        "rates": [
            {"envs": 16, "env_steps_per_s": 3000.0, "rllib_loop_steps_per_s": 2000.0},
            {"envs": 64, "env_steps_per_s": 12000.0, "rllib_loop_steps_per_s": 6000.0},
            {"envs": 1024, "env_steps_per_s": 30000.0, "rllib_loop_steps_per_s": 8000.0},
        ],
    }
    text = render_markdown({"sampling": record})
    assert "| 64 (preset) | 6,000 | 12,000 | 2.00x |" in text
    assert "| 1024 | 8,000 | 30,000 | 3.75x |" in text
    assert "| 16 | 2,000 | 3,000 | 1.50x |" in text
    assert "4096 env steps per `sample()` call" in text
    assert "```json" not in text
