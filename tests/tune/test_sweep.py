"""`rayrec tune` end to end on local Ray: ASHA stops poor trials, best.yaml trains, resume, PBT."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rayrec.cli import main
from rayrec.specs import PolicySpec, load_yaml
from rayrec.tuning.callbacks import CHECKPOINT_LOG

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")
# A small world and small batches: an iteration takes about a second.
SMALL = [
    "env.num_items=500",
    "env_runners.num_envs_per_env_runner=16",
    "training.train_batch_size_per_learner=512",
    "training.minibatch_size=128",
    "training.num_epochs=1",
]
LOCAL_HALF_CPU = {
    "env_runners.num_env_runners": 0,
    "learners.num_cpus_per_learner": 0.5,
    "resources.num_cpus_for_main_process": 0.5,
}
ITERATIONS = 4
ASHA_SPACE = {
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    # Two at a time in grid order: the learning trials record every rung before the frozen
    # ones (lr 1e-7 and 0: the initial random ranker throughout) arrive and fall below the median.
    "trial": {
        "iterations": ITERATIONS,
        "eval_users": 200,
        "max_concurrent": 2,
        "set": LOCAL_HALF_CPU,
    },
    "space": {"training.lr": {"grid": [0.01, 0.003, 1.0e-7, 0.0]}},
}


def _args(space: Path, out: Path, *extra: str) -> list[str]:
    sets = [arg for s in SMALL for arg in ("--set", s)]
    return [
        "tune",
        "--env",
        ENV,
        "--policy",
        PPO,
        "--space",
        str(space),
        "--out",
        str(out),
        *sets,
        *extra,
    ]


def _write_space(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _trial_results(out: Path) -> dict[str, list[dict]]:
    """trial id -> its reported results, from Tune's own result.json of every trial."""
    results = {}
    for path in sorted((out / "experiment").glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            results[rows[0]["trial_id"]] = rows
    return results


def _registered(out: Path) -> dict[str, int]:
    """trial id -> the iteration of its last checkpoint that Tune registered (CheckpointLog)."""
    path = out / "experiment" / CHECKPOINT_LOG
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = [json.loads(line) for line in lines if line.endswith("}")]
    return {row["trial_id"]: row["iteration"] for row in rows}


def _rows(out: Path) -> list[dict]:
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def asha_sweep(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha")
    out = tmp / "sweep"
    code = main(_args(_write_space(tmp / "space.yaml", ASHA_SPACE), out, "--quiet"))
    assert code == 0
    return out


def test_asha_stops_a_poor_trial_early(asha_sweep):
    results = _trial_results(asha_sweep)
    assert len(results) == 4
    iterations = {tid: rows[-1]["training_iteration"] for tid, rows in results.items()}
    stopped = [tid for tid, n in iterations.items() if n < ITERATIONS]
    assert stopped, iterations
    frozen = {tid for tid, rows in results.items() if rows[0]["config"]["training.lr"] < 1e-6}
    assert set(stopped) & frozen, (iterations, frozen)
    assert max(iterations.values()) == ITERATIONS
    rows = {r["trial"]: r for r in _rows(asha_sweep)}
    assert set(rows) == set(results)
    for tid, n in iterations.items():
        assert int(rows[tid]["iterations"]) == n
        assert rows[tid]["status"] == ("stopped early" if n < ITERATIONS else "done")


def test_two_trials_ran_at_once(asha_sweep):
    spans = []
    for rows in _trial_results(asha_sweep).values():
        start = rows[0]["timestamp"] - rows[0]["time_this_iter_s"]
        spans.append((start, rows[-1]["timestamp"]))
    overlaps = [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]
    ]
    assert overlaps, spans


def test_best_yaml_is_the_best_trial_and_its_checkpoint_reproduces_the_metric(asha_sweep, capsys):
    rows = _rows(asha_sweep)
    best = max(rows, key=lambda r: float(r["best eval/return_mean"]))
    policy = PolicySpec.from_dict(load_yaml(asha_sweep / "best.yaml"), "best.yaml")
    assert policy.sections["training"]["lr"] == pytest.approx(float(best["training.lr"]))
    # The policy as given (with --set), not the trials' layout.
    assert policy.sections["env_runners"]["num_env_runners"] == 1
    assert policy.sections["training"]["train_batch_size_per_learner"] == 512
    assert (asha_sweep / "best_checkpoint" / "rllib_checkpoint.json").is_file()
    assert (asha_sweep / "metric_over_time.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    checkpoint = str(asha_sweep / "best_checkpoint")
    assert main(["evaluate", "--checkpoint", checkpoint, "--users", "200", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["policy"]["return_mean"] == pytest.approx(float(best["best eval/return_mean"]))


def test_train_accepts_best_yaml_as_is(asha_sweep, tmp_path):
    out = tmp_path / "run"
    args = ["--env", str(asha_sweep / "env.yaml"), "--policy", str(asha_sweep / "best.yaml")]
    code = main(["train", *args, "--iterations", "1", "--out", str(out), "--eval-users", "50"])
    assert code == 0
    assert json.loads((out / "results.json").read_text())["training"]["iterations"] == 1


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_session, tmp_path):
    iterations = 2
    space = _write_space(
        tmp_path / "space.yaml",
        {
            "trial": {
                "iterations": iterations,
                "eval_users": 50,
                # One at a time: the second trial starts only once Tune has marked the first
                # terminated, so a report of the second means the first is finished for Tune.
                "max_concurrent": 1,
                # One remote env runner per trial: RLlib's actors inside the trial's group.
                "set": {
                    **LOCAL_HALF_CPU,
                    "env_runners.num_env_runners": 1,
                    "env_runners.num_cpus_per_env_runner": 0.25,
                },
            },
            "space": {"training.lr": {"grid": [0.01, 0.003, 0.001]}},
        },
    )
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rayrec.cli", *_args(space, out, "--quiet")],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    try:
        # Ctrl+C once the second trial's first checkpoint is *registered*: Tune logs a report
        # before it registers that report's checkpoint and resumes a trial from its last
        # registered checkpoint, so an interrupt between the two would run the iteration again.
        while time.time() < deadline:
            saved = _registered(out)
            if len(saved) >= 2 and iterations in saved.values():
                break
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.1)
        else:
            pytest.fail("the second trial did not register a checkpoint in time")
        os.kill(proc.pid, signal.SIGINT)  # Tune saves the experiment state and stops
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume --out" in err
    before = {tid: rows for tid, rows in _trial_results(out).items()}
    finished = {tid for tid, rows in before.items() if len(rows) == iterations}
    assert finished and len(finished) < 3, {t: len(r) for t, r in before.items()}
    assert not (out / "best.yaml").exists()

    assert main(["tune", "--resume", "--out", str(out), "--quiet"]) == 0
    after = _trial_results(out)
    assert len(after) == 3 and set(after) >= set(before)
    for tid in finished:
        assert after[tid] == before[tid], f"finished trial {tid} ran again"
    for tid, rows in after.items():
        # Each iteration reported once: unfinished trials went on from their checkpoints.
        assert [r["training_iteration"] for r in rows] == list(range(1, iterations + 1)), tid
        steps = [r["train/env_steps"] for r in rows]
        assert steps == sorted(steps), tid
    assert [r["status"] for r in _rows(out)] == ["done"] * 3
    assert (out / "best.yaml").is_file()


def test_pbt_copies_a_checkpoint_and_mutates_within_the_space(ray_session, tmp_path):
    iterations = 2
    space = _write_space(
        tmp_path / "space.yaml",
        {
            # Synchronous: both trials meet after every iteration and the worse one copies.
            "scheduler": {
                "type": "pbt",
                "perturbation_interval": 1,
                "quantile_fraction": 0.5,
                "resample_probability": 0.5,
                "synch": True,
            },
            "trial": {"iterations": iterations, "eval_users": 200, "set": LOCAL_HALF_CPU},
            "space": {
                "training.lr": {"grid": [0.01, 1.0e-7]},
                "training.entropy_coeff": {"uniform": [0.0, 0.01]},
            },
        },
    )
    out = tmp_path / "sweep"
    assert main(_args(space, out, "--quiet")) == 0
    lines = (out / "experiment" / "pbt_global.txt").read_text().splitlines()
    exploits = [json.loads(line) for line in lines if line.strip()]
    assert exploits, "PBT never copied a checkpoint"
    for *_, new in exploits:
        assert new["training.lr"] in (0.01, 1.0e-7)
        assert 0.0 <= new["training.entropy_coeff"] <= 0.01
    results = _trial_results(out)
    assert len(results) == 2
    for rows in results.values():
        assert rows[-1]["training_iteration"] == iterations
    # best.yaml holds the values in effect for a best report, whose checkpoint is kept.
    reports = [row for rows in results.values() for row in rows]
    top = max(row["eval/return_mean"] for row in reports)
    best = PolicySpec.from_dict(load_yaml(out / "best.yaml"), "best.yaml").sections["training"]
    assert {"training.lr": best["lr"], "training.entropy_coeff": best["entropy_coeff"]} in [
        row["config"] for row in reports if row["eval/return_mean"] == top
    ]
    # No copy at the last iteration: each trial's values are those of its last report.
    rows = {r["trial"]: r for r in _rows(out)}
    for tid, reported in results.items():
        assert float(rows[tid]["training.lr"]) == pytest.approx(
            reported[-1]["config"]["training.lr"]
        )
