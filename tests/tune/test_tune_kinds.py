"""`rayrec tune` sweeps every env kind: marketplace and hierarchical presets, 2 trials x 2
iterations each, ranked by the metric their own evaluation reports."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from rayrec.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "marketplace": ["training.num_epochs=1"],
    "hierarchical": [
        "env_runners.num_envs_per_env_runner=16",
        "training.train_batch_size_per_learner=512",
        "training.minibatch_size=128",
        "training.num_epochs=1",
    ],
}


@pytest.mark.parametrize(
    ("kind", "metric"),
    [("marketplace", "eval/welfare_platform"), ("hierarchical", "eval/return_mean")],
)
def test_a_preset_of_each_env_kind_sweeps_and_writes_best_yaml(ray_session, tmp_path, kind, metric):
    space = yaml.safe_load((ROOT / "tune" / f"{kind}_ppo_asha.yaml").read_text())
    assert space["metric"] == metric
    space["samples"] = 2
    space["scheduler"] = {"type": "fifo"}  # both trials run both iterations
    space["trial"].update({"iterations": 2, "eval_users": 200 if kind == "marketplace" else 50})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "sweep"
    args = ["tune", "--env", str(ROOT / "envs" / f"{kind}.yaml")]
    args += ["--policy", str(ROOT / "policies" / f"{kind}_ppo.yaml"), "--space", str(path)]
    args += ["--out", str(out), "--quiet", *(a for s in SMALL[kind] for a in ("--set", s))]
    assert main(args) == 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["algorithm"] == "PPO"
    if kind == "hierarchical":
        assert set(best["levels"]) == {"high", "low"}
    else:
        assert best["multi_agent"]["shared_within_role"] is True
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}
    values = [float(r[f"best {metric}"]) for r in rows]
    assert all(v == v for v in values)  # finite: each trial evaluated its own checkpoint
    assert (out / "best_checkpoint").is_dir()
