"""n-step transitions from logs and the bulk batch path of offline Q-learning (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.rllib.core import DEFAULT_MODULE_ID

from rayrec.data import Col, log_files
from rayrec.evaluation.collect import collect
from rayrec.data.offline import N_STEP_COLUMN, LogPreLearner, n_step_rows
from rayrec.data.schema import OBS_COLUMNS
from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, load_yaml
from rayrec.contracts.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"num_items": 400, "num_candidates": 8, "max_sessions": 2, "max_steps_per_session": 12}
GAMMA = 0.9


def _env() -> EnvSpec:
    return EnvSpec.from_dict({"config": SMALL})


def _toy() -> pa.Table:
    """Two episodes, rows shuffled; episode 7 lacks its t = 3 row (a gap)."""
    rows = [  # (episode, t, reward, terminated, truncated)
        (5, 0, 1.0, False, False),
        (5, 1, 0.0, False, False),
        (5, 2, 1.0, False, False),
        (5, 3, 1.0, True, False),
        (7, 0, 2.0, False, False),
        (7, 1, 0.0, False, False),
        (7, 2, 1.0, False, False),
        (7, 4, 3.0, False, False),
        (7, 5, 1.0, False, True),
    ]
    order = [4, 2, 8, 0, 6, 1, 7, 3, 5]
    rows = [rows[i] for i in order]
    columns = {
        Col.EPISODE_ID: pa.array([r[0] for r in rows], pa.int64()),
        Col.T: pa.array([r[1] for r in rows], pa.int32()),
        Col.REWARD: pa.array([r[2] for r in rows], pa.float32()),
        Col.TERMINATED: pa.array([r[3] for r in rows]),
        Col.TRUNCATED: pa.array([r[4] for r in rows]),
        # The "next observation" of a row is tagged with its own (episode, t).
        Col.NEXT + Col.CONTEXT: pa.array([[r[0], r[1]] for r in rows], pa.list_(pa.float32(), 2)),
        Col.CONTEXT: pa.array([[r[0], r[1] - 0.5] for r in rows], pa.list_(pa.float32(), 2)),
    }
    return pa.table(columns)


def _by_key(table: pa.Table) -> dict[tuple[int, int], dict]:
    return {(r[Col.EPISODE_ID], r[Col.T]): r for r in table.to_pylist()}


def test_n_step_rewards_next_observations_and_flags_by_hand():
    out = _by_key(n_step_rows(_toy(), n=3, gamma=GAMMA))
    g = GAMMA
    expected = {  # (episode, t): (reward, n_step, bootstrap row t, terminated, truncated)
        (5, 0): (1 + 0 * g + 1 * g * g, 3, 2, False, False),
        (5, 1): (0 + 1 * g + 1 * g * g, 3, 3, True, False),
        (5, 2): (1 + 1 * g, 2, 3, True, False),
        (5, 3): (1.0, 1, 3, True, False),
        (7, 0): (2 + 0 * g + 1 * g * g, 3, 2, False, False),
        (7, 1): (0 + 1 * g, 2, 2, False, False),  # stops before the missing t = 3
        (7, 2): (1.0, 1, 2, False, False),
        (7, 4): (3 + 1 * g, 2, 5, False, True),
        (7, 5): (1.0, 1, 5, False, True),
    }
    assert out.keys() == expected.keys()
    for (episode, t), (reward, n, last, terminated, truncated) in expected.items():
        row = out[(episode, t)]
        assert row[Col.REWARD] == pytest.approx(reward, rel=1e-6), (episode, t)
        assert row[N_STEP_COLUMN] == n, (episode, t)
        assert row[Col.NEXT + Col.CONTEXT] == [episode, last], (episode, t)
        assert row[Col.CONTEXT] == [episode, t - 0.5], (episode, t)  # o_t itself is kept
        assert (row[Col.TERMINATED], row[Col.TRUNCATED]) == (terminated, truncated), (episode, t)


def test_one_step_keeps_every_row():
    toy = _toy()
    out = n_step_rows(toy, n=1, gamma=GAMMA)
    assert out.num_rows == toy.num_rows
    assert out.column(N_STEP_COLUMN).to_pylist() == [1] * toy.num_rows
    original = _by_key(toy)
    for key, row in _by_key(out).items():
        assert {k: v for k, v in row.items() if k != N_STEP_COLUMN} == original[key]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "eg"
    collect(_env(), "epsilon-greedy:0.3", users=40, out=out, seed=11, rows_per_file=200)
    return out


def _log_table(log_dir) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in log_files(log_dir)])


def test_n_step_of_a_collected_log_matches_a_per_episode_loop(log_dir):
    table = _log_table(log_dir)
    n = 4
    out = _by_key(n_step_rows(table, n=n, gamma=GAMMA))
    rows = _by_key(table)
    assert len(out) == len(rows) == table.num_rows
    for (episode, t), row in out.items():
        reward, m = 0.0, 0
        while m < n and (episode, t + m) in rows:
            reward += GAMMA**m * rows[(episode, t + m)][Col.REWARD]
            m += 1
        last = rows[(episode, t + m - 1)]
        assert row[N_STEP_COLUMN] == m
        assert row[Col.REWARD] == pytest.approx(reward, rel=1e-5, abs=1e-6)
        for c in OBS_COLUMNS:
            assert row[Col.NEXT + c] == last[Col.NEXT + c]
            assert row[c] == rows[(episode, t)][c]
        assert row[Col.TERMINATED] == last[Col.TERMINATED]
        assert row[Col.TRUNCATED] == last[Col.TRUNCATED]


def _prelearner(log_dir, n_step: int) -> LogPreLearner:
    raw = load_yaml(ROOT / "policies" / "cql.yaml")
    raw["training"]["n_step"] = n_step
    config = build_config(_env(), PolicySpec.from_dict(raw, "cql"), seed=0, data=log_dir)
    spaces = (config.observation_space, config.action_space)
    module_spec = config.get_multi_rl_module_spec(spaces={DEFAULT_MODULE_ID: spaces})
    return LogPreLearner(config=config, spaces=spaces, module_spec=module_spec)


def test_bulk_transition_batches_equal_rllibs_episode_path(log_dir):
    table = _log_table(log_dir).slice(0, 64)
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    pre = _prelearner(log_dir, n_step=1)
    fast = pre(dict(batch))
    pre._transitions = False  # RLlib's own path: one SingleAgentEpisode per row
    slow = pre(dict(batch))
    assert set(slow) <= set(fast)
    extra = set(fast) - set(slow)
    assert {key.rsplit("/", 1)[-1] for key in extra} == {"weights", "n_step"}
    for key in slow:
        np.testing.assert_array_equal(np.asarray(fast[key]), np.asarray(slow[key]), err_msg=key)
    for key in extra:
        np.testing.assert_array_equal(np.asarray(fast[key]), np.ones(64, dtype=np.float32))


def test_bulk_batches_carry_the_rows_n_step(log_dir):
    table = n_step_rows(_log_table(log_dir), n=5, gamma=GAMMA).slice(0, 50)
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    out = _prelearner(log_dir, n_step=5)(batch)
    (n_key,) = [k for k in out if k.endswith("/n_step")]
    (r_key,) = [k for k in out if k.endswith("/rewards")]
    np.testing.assert_array_equal(np.asarray(out[n_key]), batch[N_STEP_COLUMN].astype(np.float32))
    np.testing.assert_allclose(np.asarray(out[r_key]), batch[Col.REWARD], rtol=1e-6)
    assert batch[N_STEP_COLUMN].max() > 1


@pytest.mark.parametrize("n_step", [0, [1, 3], 2.5])
def test_bad_n_step_is_a_clear_spec_error(log_dir, n_step):
    with pytest.raises(SpecError, match="n_step"):
        _prelearner(log_dir, n_step=n_step)
