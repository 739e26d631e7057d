"""docs/results.md is rendered from results.json: one section per key, online* as tables."""

from __future__ import annotations

import json

from benchmarks.results_page import render_markdown, update_results


def _online(title: str | None = None) -> dict:
    row = {
        "algorithm": "ppo_gru",
        "return_mean": 9.5,
        "return_ci95": 0.25,
        "clicks_mean": 9.5,
        "sessions_per_user": 1.3,
        "return_rate": 0.2,
        "env_steps": 100_000,
        "wall_time_s": 120.0,
        "env_steps_per_s": 833.0,
        "sampling_steps_per_s_per_runner": 5000.0,
        "num_envs_per_env_runner": 64,
    }
    base = {
        "return_mean": 12.0,
        "return_ci95": 0.5,
        "clicks_mean": 12.0,
        "sessions_per_user": 1.4,
        "return_rate": 0.3,
    }
    record = {
        "env": "envs/session-recall.yaml",
        "budget_s": 120,
        "users": 1000,
        "machine": "x86_64, 2 CPUs",
        "date": "2026-11-29",
        "algorithms": [row],
        "baselines": {"greedy": base},
    }
    if title:
        record["title"] = title
    return record


def test_every_online_key_is_a_table_with_its_title():
    text = render_markdown({"online": _online(), "online_encoders": _online("Encoders")})
    assert "## Online training: algorithms under the same wall-clock budget" in text
    assert "## Encoders" in text
    assert text.count("| ppo_gru | 9.50 ± 0.25 |") == 2
    assert "| baseline: greedy (peeks) | 12.00 ± 0.50 |" in text
    assert "```json" not in text


def test_update_replaces_one_key_and_rewrites_the_markdown(tmp_path):
    update_results("online", _online(), docs=tmp_path)
    update_results("marketplace", {"welfare": 3}, docs=tmp_path)
    update_results("online", _online("Again"), docs=tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == {"online", "marketplace"}
    md = (tmp_path / "results.md").read_text()
    assert "## Again" in md and "## marketplace" in md
