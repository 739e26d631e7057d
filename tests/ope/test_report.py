"""The ``ope`` block of an offline run's results.json (``rayrec.ope.report``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rayrec.data.logs import log_files, read_log
from rayrec.ope import EstimatorConfig, estimate_step
from rayrec.ope.policies import load_step_log
from rayrec.ope.report import ESTIMATORS, training_log_estimates
from rayrec.specs import EnvSpec, PolicySpec
from tests.ope.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from rayrec.experiment import save_untrained_run

    policy = PolicySpec.from_dict(yaml.safe_load((ROOT / "policies" / "ppo.yaml").read_text()))
    env = EnvSpec.from_dict({"config": SMALL})
    return save_untrained_run(tmp_path_factory.mktemp("report-run") / "ppo", env, policy, seed=3)


def test_block_holds_the_greedy_checkpoints_step_estimates(logs, checkpoint):
    block = training_log_estimates(logs["eps"], checkpoint, seed=2, n_bootstrap=20)
    rows = read_log(logs["eps"]).num_rows
    assert block["level"] == "step" and block["mode"] == "greedy"
    assert block["rows"] == block["log_rows"] == rows and block["bootstrap"] == 20
    assert list(block["estimates"]) == list(ESTIMATORS)
    # The same numbers as the library called directly on the whole log, greedily.
    log, _ = load_step_log(logs["eps"], str(checkpoint), seed=2, mode="greedy")
    assert np.all(log.eval_dist.max(axis=1) == 1)  # a deterministic (top-1) policy
    direct = estimate_step(log, ESTIMATORS, EstimatorConfig(seed=2, n_bootstrap=20))
    for name, entry in block["estimates"].items():
        assert list(entry) == ["value", "ci95", "ess", "trusted"]
        assert entry["value"] == direct[name].value
        assert entry["ci95"] == list(direct[name].ci95)
        assert entry["trusted"] is (not direct[name].degenerate)


def test_larger_logs_are_sampled_to_max_rows(logs, checkpoint):
    block = training_log_estimates(logs["eps"], checkpoint, max_rows=50, n_bootstrap=10)
    assert block["rows"] == 50 and block["log_rows"] == read_log(logs["eps"]).num_rows
    again = training_log_estimates(logs["eps"], checkpoint, max_rows=50, n_bootstrap=10)
    assert again == block  # a seeded sample


def _without_propensities(log: Path, out: Path) -> Path:
    shutil.copytree(log, out)
    for path in log_files(out):
        table = pq.read_table(path)
        column = table.column("propensities")
        zeros = pa.array([[0.0]] * table.num_rows, type=column.type)
        i = table.schema.get_field_index("propensities")
        pq.write_table(table.set_column(i, table.schema.field(i), zeros), path)
    return out


def test_a_log_without_propensities_is_skipped_with_a_note(logs, checkpoint, tmp_path):
    broken = _without_propensities(logs["eps"], tmp_path / "broken")
    block = training_log_estimates(broken, checkpoint, n_bootstrap=10)
    assert list(block) == ["skipped"]
    assert "without valid propensities" in block["skipped"] and "\n" not in block["skipped"]


def test_a_deterministic_log_the_policy_disagrees_with_is_skipped(logs, checkpoint):
    block = training_log_estimates(logs["popular"], checkpoint, n_bootstrap=10)
    assert list(block) == ["skipped"] and "behaviour propensity 0" in block["skipped"]
