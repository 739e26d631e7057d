"""Discounted lifetime returns from logs, TopKReinforce's train batches and its log checks (no Ray)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.rllib.core import DEFAULT_MODULE_ID

from rayrec.algorithms.topk_reinforce import LOGGED_PROPENSITY, RETURNS
from rayrec.contracts.errors import SpecError
from rayrec.data import Col, log_files
from rayrec.data.offline import LogPreLearner, discounted_returns, return_rows
from rayrec.evaluation.collect import collect
from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"num_items": 400, "num_candidates": 8, "max_sessions": 2, "max_steps_per_session": 12}
GAMMA = 0.9

# (episode, t, reward), shuffled: episode 5 is whole; episode 7 lacks its t = 3 row (a gap).
TOY = [(7, 4, 3.0), (5, 2, 1.0), (7, 0, 2.0), (5, 0, 1.0), (7, 5, 1.0), (5, 3, 1.0), (7, 2, 1.0)]
TOY += [(5, 1, 0.0), (7, 1, 0.0)]
# By hand, gamma 0.9, each return from the end of its run backwards:
#   episode 5: R3 = 1, R2 = 1 + 0.9 * 1 = 1.9, R1 = 0 + 0.9 * 1.9 = 1.71, R0 = 1 + 0.9 * 1.71 = 2.539
#   episode 7 after the gap: R5 = 1, R4 = 3 + 0.9 = 3.9
#   episode 7 before it: R2 = 1, R1 = 0 + 0.9 = 0.9, R0 = 2 + 0.9 * 0.9 = 2.81
EXPECTED = {
    (5, 0): 2.539,
    (5, 1): 1.71,
    (5, 2): 1.9,
    (5, 3): 1.0,
    (7, 0): 2.81,
    (7, 1): 0.9,
    (7, 2): 1.0,
    (7, 4): 3.9,
    (7, 5): 1.0,
}


def _columns() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    episode, t, reward = (np.array(c) for c in zip(*TOY, strict=True))
    return episode.astype(np.int64), t.astype(np.int32), reward.astype(np.float32)


def test_returns_reset_at_lifetime_boundaries_by_hand():
    episode, t, reward = _columns()
    got = discounted_returns(episode, t, reward, GAMMA)
    for i, key in enumerate(zip(episode.tolist(), t.tolist(), strict=True)):
        assert got[i] == pytest.approx(EXPECTED[key], rel=1e-9), key


def test_gamma_zero_and_one():
    episode, t, reward = _columns()
    np.testing.assert_allclose(discounted_returns(episode, t, reward, 0.0), reward)
    undiscounted = discounted_returns(episode, t, reward, 1.0)
    assert undiscounted[TOY.index((5, 0, 1.0))] == 3.0  # 1 + 0 + 1 + 1
    assert undiscounted[TOY.index((7, 0, 2.0))] == 3.0  # 2 + 0 + 1, not past the gap


def test_return_rows_appends_the_column_in_row_order():
    episode, t, reward = _columns()
    table = pa.table({Col.EPISODE_ID: episode, Col.T: t, Col.REWARD: reward})
    out = return_rows(table, GAMMA)
    assert out.column_names == [Col.EPISODE_ID, Col.T, Col.REWARD, RETURNS]
    for row in out.to_pylist():
        key = (row[Col.EPISODE_ID], row[Col.T])
        assert row[RETURNS] == pytest.approx(EXPECTED[key], rel=1e-6), key


def _env(**change) -> EnvSpec:
    return EnvSpec.from_dict({"config": {**SMALL, **change}})


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "eg"
    collect(_env(), "epsilon-greedy:0.3", users=30, out=out, seed=5, rows_per_file=200)
    return out


def _log_table(log_dir) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in log_files(log_dir)])


def test_returns_of_a_collected_log_match_a_per_episode_loop(log_dir):
    table = return_rows(_log_table(log_dir), GAMMA)
    rows = {(r[Col.EPISODE_ID], r[Col.T]): r for r in table.to_pylist()}
    for (episode, t), row in rows.items():
        expected, j = 0.0, 0
        while (episode, t + j) in rows:
            expected += GAMMA**j * rows[(episode, t + j)][Col.REWARD]
            j += 1
        assert row[RETURNS] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        if row[Col.TERMINATED] or row[Col.TRUNCATED]:
            assert row[RETURNS] == pytest.approx(row[Col.REWARD])


def _config(log_dir, *overrides: str):
    env_raw, raw = apply_overrides(
        {"config": SMALL}, load_yaml(ROOT / "policies" / "topk_reinforce.yaml"), list(overrides)
    )
    spec = PolicySpec.from_dict(raw, "topk_reinforce")
    return build_config(EnvSpec.from_dict(env_raw), spec, seed=0, data=log_dir)


def test_train_batches_carry_returns_and_logged_propensities(log_dir):
    config = _config(log_dir)
    spaces = (config.observation_space, config.action_space)
    module_spec = config.get_multi_rl_module_spec(spaces={DEFAULT_MODULE_ID: spaces})
    pre = LogPreLearner(config=config, spaces=spaces, module_spec=module_spec)
    table = return_rows(_log_table(log_dir), config.gamma).slice(0, 40)
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    out = pre(batch)
    prefix = f"{DEFAULT_MODULE_ID}/"
    np.testing.assert_allclose(np.asarray(out[prefix + RETURNS]), batch[RETURNS], rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(out[prefix + LOGGED_PROPENSITY]), batch[Col.PROPENSITY], rtol=1e-6
    )
    actions = np.stack(batch[Col.ACTION])[:, 0]
    np.testing.assert_array_equal(np.asarray(out[prefix + "actions"]), actions)


def test_preset_reaches_the_config(log_dir):
    config = _config(log_dir)
    assert (config.top_k, config.weight_cap, config.behavior_propensity) == (4, 10.0, "logged")
    model = config.get_rl_module_spec().model_config
    assert model["encoder"] == "gru" and model["behavior_head"] is True


def _broken_propensities(log_dir: Path, out: Path) -> Path:
    """A copy of the log whose first part has rows with propensities 0 and NaN."""
    shutil.copytree(log_dir, out)
    first = log_files(out)[0]
    table = pq.read_table(first)
    values = table.column(Col.PROPENSITY).to_numpy().copy()
    values[:2] = [0.0, np.nan]
    index = table.schema.get_field_index(Col.PROPENSITY)
    table = table.set_column(index, table.schema.field(index), pa.array(values))
    pq.write_table(table, first)
    return out


def test_logged_propensities_must_be_valid(log_dir, tmp_path):
    broken = _broken_propensities(log_dir, tmp_path / "broken")
    with pytest.raises(SpecError, match=r"2 of \d+ rows have no valid logged propensity") as e:
        _config(broken)
    assert "\n" not in str(e.value) and "behavior_propensity=learned" in str(e.value)
    # The behaviour head's estimate needs no logged propensity.
    config = _config(broken, "training.behavior_propensity=learned")
    assert config.behavior_propensity == "learned"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.top_k=0", r"top_k \(0\) must be a whole number >= 1"),
        ("training.weight_cap=-1", r"weight_cap \(-1\) must be a finite number > 0"),
        ("training.behavior_propensity=oracle", r"behavior_propensity \('oracle'\) must be one"),
        ("training.topk=3", r"unknown key training.topk for TopKReinforce"),
        ("training.top_k=[1, 2]", r"training.top_k must be a int"),
        ("training.beta=0.5", r"beta \(0.5\) does not apply to TopKReinforce"),
    ],
)
def test_bad_settings_fail_before_ray_starts(log_dir, override, message):
    with pytest.raises(SpecError, match=message) as e:
        _config(log_dir, override)
    assert "\n" not in str(e.value)


def test_slates_are_refused(tmp_path):
    out = tmp_path / "slates"
    collect(_env(slate_size=2), "random", users=3, out=out, seed=1)
    with pytest.raises(SpecError, match="TopKReinforce .* slate_size must be 1, got 2"):
        _config(out, "env.slate_size=2")
