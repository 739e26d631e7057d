"""`rayrec train` with the hierarchical preset end to end: a two-level run folder, its results on
the flat return, a resume from its checkpoint and `rayrec evaluate` of that checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rayrec.cli import main
from rayrec.contracts.keys import Metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    *("--set", "env_runners.num_envs_per_env_runner=8"),
    *("--set", "training.train_batch_size_per_learner=256"),
    *("--set", "training.minibatch_size=128"),
    *("--set", "training.num_epochs=1"),
]


@pytest.fixture(scope="module")
def hier_run(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "hier"
    code = main(
        [
            "train",
            *("--env", str(ROOT / "envs" / "hierarchical.yaml")),
            *("--policy", str(ROOT / "policies" / "hierarchical_ppo.yaml")),
            *("--iterations", "2", "--checkpoint-every", "1"),
            *("--out", str(out), "--eval-users", "40", "--quiet"),
            *FAST,
        ]
    )
    assert code == 0
    return out


def test_a_hierarchical_run_writes_results_on_the_flat_return(hier_run: Path) -> None:
    results = json.loads((hier_run / "results.json").read_text())
    assert set(Metrics.REQUIRED) <= set(results["policy"])
    assert results["policy"][Metrics.USERS] == 40
    assert set(results["baselines"]) == {"random", "greedy", "longterm"}  # the preset's
    assert results["training"]["iterations"] == 2
    rows = [json.loads(line) for line in (hier_run / "metrics.jsonl").read_text().splitlines()]
    # The simulator steps are the low level's; a high-level turn is an env step too.
    assert 0 < rows[-1]["sim_steps"] < rows[-1]["env_steps"]
    assert set(rows[-1]["agent_returns"]) == {"high", "low"}
    assert "train/high/policy_loss" in rows[-1] and "train/low/policy_loss" in rows[-1]
    for level in ("high", "low"):
        assert (
            hier_run / "checkpoints" / "final" / "learner_group" / "learner" / "rl_module" / level
        ).is_dir()


def test_a_hierarchical_checkpoint_evaluates_to_the_same_result(hier_run: Path, capsys) -> None:
    capsys.readouterr()
    checkpoint = str(hier_run / "checkpoints" / "final")
    code = main(["evaluate", "--checkpoint", checkpoint, "--users", "40", "--json"])
    assert code == 0
    again = json.loads(capsys.readouterr().out)["policy"]
    first = json.loads((hier_run / "results.json").read_text())["policy"]
    assert again[Metrics.RETURN_MEAN] == pytest.approx(first[Metrics.RETURN_MEAN])


def test_a_hierarchical_run_resumes_from_its_checkpoint(hier_run: Path) -> None:
    args = ["train", "--out", str(hier_run), "--resume", "--iterations", "3"]
    code = main([*args, "--eval-users", "20", "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in (hier_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert rows[2]["sim_steps"] > rows[1]["sim_steps"]
    assert json.loads((hier_run / "results.json").read_text())["training"]["iterations"] == 3


def test_one_seed_trains_the_same_two_level_agent_twice(ray_session, tmp_path) -> None:
    rows = []
    for name in ("a", "b"):
        out = tmp_path / name
        code = main(
            [
                "train",
                *("--env", str(ROOT / "envs" / "hierarchical.yaml")),
                *("--policy", str(ROOT / "policies" / "hierarchical_ppo.yaml")),
                *("--iterations", "2", "--seed", "7", "--out", str(out)),
                *("--eval-users", "10", "--baselines", "random", "--quiet"),
                *FAST,
            ]
        )
        assert code == 0
        rows.append([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])
    keys = ("sim_steps", "agent_returns", "train/high/policy_loss", "train/low/vf_loss")
    assert [{k: r[k] for k in keys} for r in rows[0]] == [{k: r[k] for k in keys} for r in rows[1]]


def test_a_hierarchical_checkpoint_is_served_over_http(hier_run: Path, tmp_path: Path) -> None:
    """`rayrec serve` of a two-level checkpoint: the high level chooses the option, the low level
    the items; the slate's propensity is the product of both levels' probabilities."""
    import socket

    import httpx
    from ray import serve

    from rayrec.data.served import Impressions, read_served
    from rayrec.serve.app import APP_NAME, build_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        settings = {
            "checkpoint": str(hier_run / "checkpoints" / "final"),
            "log_dir": str(tmp_path / "log"),
            "flush_rows": 4,
            "flush_seconds": 0.2,
            "replicas": 1,
            "num_cpus": 0.25,
        }
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            models = client.get("/v1/models").json()
            assert models["models"][0]["levels"] == ["high", "low"]
            history = [{"item_id": i, "click": i % 2} for i in (3, 17, 42, 99)]
            context = [0.0, 0.2, 0.5, 0.5, 0.1]  # else the hour of day moves between requests
            body = {"user_id": 7, "history": history, "context": context, "mode": "sample"}
            body["seed"] = 1
            answers = [client.post("/v1/recommend", json=body) for _ in range(2)]
            for answer in answers:
                assert answer.status_code == 200, answer.text
            reply = answers[0].json()
            assert reply == answers[1].json() | {"request_id": reply["request_id"]}  # seeded
            assert reply["option"] and 0 < reply["option_propensity"] <= 1
            assert len(reply["items"]) == len(reply["propensities"]) == 1
            # The option's probability is multiplied into the slate's.
            assert reply["propensity"] == pytest.approx(float(np.prod(reply["propensities"])))
            assert reply["propensity"] <= reply["option_propensity"] + 1e-12
            greedy = client.post("/v1/recommend", json={**body, "mode": "greedy"}).json()
            assert greedy["option_propensity"] == 1.0 and greedy["propensity"] == 1.0
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
    rows = read_served(tmp_path / "log")
    assert rows.num_rows == 3
    props = rows.column(Impressions.PROPENSITIES).to_pylist()
    assert props[0][0] == pytest.approx(reply["propensities"][0])


def test_one_seed_learns_the_same_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Two processes whose string hashes differ (PYTHONHASHSEED 1 and 2 order the modules
    differently) train seed 0 to the same losses: the learner sorts its batch's modules before
    shuffling them (rayrec/algorithms/ordered.py). Without the sort the first iteration's losses
    differed (low 2.7297 against 2.7961, 2026-12-07)."""
    import os
    import subprocess
    import sys

    losses = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hash{hash_seed}"
        subprocess.run(
            [
                *(sys.executable, "-m", "rayrec.cli", "train"),
                *("--env", str(ROOT / "envs" / "hierarchical.yaml")),
                *("--policy", str(ROOT / "policies" / "hierarchical_ppo.yaml")),
                *("--iterations", "1", "--seed", "0", "--out", str(out)),
                *("--set", "env_runners.num_envs_per_env_runner=8"),
                *("--set", "training.train_batch_size_per_learner=512"),
                *("--set", "evaluation.users=20"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            timeout=300,
            check=True,
        )
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        losses.append((row["train/high/total_loss"], row["train/low/total_loss"]))
    assert losses[0] == losses[1]
