"""From a served log to offline training, for real: an untrained checkpoint served over HTTP with
logging, simulated users played against it by ``rayrec.loop``, the log converted (``rayrec data
from-served``), then ``rayrec train --data`` (CQL) and ``rayrec ope --data`` on the result."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrec.cli import main
from rayrec.contracts.keys import Metrics
from rayrec.data import Col, read_log, validate_log
from rayrec.data.served import FEEDBACK_DIR, read_served
from rayrec.loop.traffic import TrafficOptions, run_traffic
from tests.serve.conftest import serve_apps

ROOT = Path(__file__).resolve().parents[2]
USERS = 16
SEED = 11


@pytest.fixture(scope="module")
def played(ray_session, module_runs, serve_specs, tmp_path_factory):
    """The untrained PPO module served with logging, USERS lifetimes played against it; returns
    (env spec file, log folder, traffic report), the log holding every request and feedback."""
    from rayrec.serve.app import APP_NAME

    root = tmp_path_factory.mktemp("served-logs")
    env_file, log_dir = root / "env.yaml", root / "log"
    env = serve_specs("ppo.yaml")[0]
    env_file.write_text(yaml.safe_dump(env.to_dict()))
    config = {
        "checkpoint": str(module_runs["ppo"]),
        "log_dir": str(log_dir),
        "flush_rows": 256,
        "flush_seconds": 0.5,
        "num_cpus": 0.25,
    }
    with serve_apps((APP_NAME, "/", config)) as url:
        report = run_traffic(env.config, TrafficOptions(url, USERS, concurrency=8, seed=SEED))
        deadline = time.time() + 30
        while time.time() < deadline:
            counts = (read_served(log_dir).num_rows, read_served(log_dir, FEEDBACK_DIR).num_rows)
            if counts >= (report["requests"], report["feedback"]):
                break
            time.sleep(0.25)
    return env_file, log_dir, report


@pytest.fixture(scope="module")
def converted(played, tmp_path_factory) -> Path:
    env_file, log_dir, _ = played
    out = tmp_path_factory.mktemp("converted") / "log"
    assert (
        main(["data", "from-served", str(log_dir), "--env", str(env_file), "--out", str(out)]) == 0
    )
    return out


@pytest.mark.integration
def test_the_converted_log_holds_the_played_lifetimes(played, converted):
    _, log_dir, report = played
    meta, _ = validate_log(converted)
    assert report["users"] == USERS and report["requests"] == report["feedback"]
    assert meta["rows"] == report["requests"] == read_served(log_dir).num_rows
    assert meta["episodes"] == USERS
    assert meta["served"]["impressions_without_feedback"] == 0
    assert meta["served"]["feedback_without_impression"] == 0
    (version,) = {u["version"] for u in report["per_user"]}
    assert meta["behavior"] == f"served:{version}"
    rows = read_log(converted).to_pydict()
    returns, steps, users = defaultdict(float), defaultdict(int), defaultdict(set)
    for episode, user, reward in zip(
        rows[Col.EPISODE_ID], rows[Col.USER_ID], rows[Col.REWARD], strict=True
    ):
        returns[episode] += reward
        steps[episode] += 1
        users[episode].add(user)
    assert all(len(u) == 1 for u in users.values()), "an episode mixes users"
    by_user = {next(iter(users[e])): e for e in users}
    assert len(by_user) == USERS, "a user has more than one lifetime"
    for played_user in report["per_user"]:
        episode = by_user[played_user["user_id"]]
        assert steps[episode] == played_user["steps"] == played_user["requests"]
        assert returns[episode] == pytest.approx(played_user["return"], rel=1e-5, abs=1e-5)
    # Every lifetime ends once, at its last row; the rest continue into the next row.
    ends = np.asarray(rows[Col.TERMINATED]) | np.asarray(rows[Col.TRUNCATED])
    assert ends.sum() == USERS
    sessions = {by_user[u["user_id"]]: u["sessions"] for u in report["per_user"]}
    last = {e: s for e, s in zip(rows[Col.EPISODE_ID], rows[Col.SESSION_INDEX], strict=True)}
    assert all(last[e] + 1 == sessions[e] for e in sessions)


@pytest.mark.integration
def test_cql_trains_from_the_converted_log(played, converted, tmp_path):
    env_file, _, _ = played
    out = tmp_path / "cql"
    code = main(
        [
            "train",
            *("--env", str(env_file), "--policy", str(ROOT / "policies" / "cql.yaml")),
            *("--data", str(converted), "--iterations", "2", "--out", str(out)),
            *("--eval-users", "50", "--baselines", "random", "--quiet", "--seed", "3"),
            *("--set", "training.train_batch_size_per_learner=64"),
            *("--set", "offline_data.dataset_num_iters_per_learner=2"),
            *("--set", "training.target_network_update_freq=128"),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["iterations"] == 2
    assert results["data"]["behavior"].startswith("served:")
    assert results["data"]["episodes"] == USERS
    assert "behavior" not in results["baselines"]  # a served behaviour is not replayed
    assert math.isfinite(results["policy"][Metrics.RETURN_MEAN])
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train/num_module_steps_trained_lifetime"] == 2 * 2 * 64


@pytest.mark.integration
@pytest.mark.parametrize("level", ["step", "trajectory"])
def test_ope_estimates_from_the_converted_log(converted, level, capsys):
    argv = ["ope", "--data", str(converted), "--policy", "heuristic", "--level", level]
    assert main([*argv, "--json", "--bootstrap", "20", "--seed", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["estimates"]
    for name, entry in result["estimates"].items():
        assert math.isfinite(entry["value"]), name
