"""Every search-space preset validates against its policy preset and fits 2 CPUs twice over."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.tuning.sweep import plan_sweep
from rayrec.tuning.trainable import TrialSetup, trial_resources

ROOT = Path(__file__).resolve().parents[2]
# tune/<policy preset>_<scheduler>.yaml is written for policies/<policy preset>.yaml.
SPACES = sorted((ROOT / "tune").glob("*.yaml"))


def _policy_of(space: Path) -> Path:
    return ROOT / "policies" / f"{space.stem.rsplit('_', 1)[0]}.yaml"


def _env_of(space: Path) -> Path:
    """The env spec a preset's policy trains on: its own scenario, else the session env."""
    kind = space.stem.split("_", 1)[0]
    return (
        ROOT
        / "envs"
        / (f"{kind}.yaml" if kind in ("marketplace", "hierarchical") else "session.yaml")
    )


def test_the_issue_presets_exist():
    assert {p.stem for p in SPACES} >= {"ppo_asha", "apex_dqn_pbt"}


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
def test_preset_validates_against_its_policy(space):
    assert _policy_of(space).is_file(), f"{space.name}: no policy preset {_policy_of(space).name}"
    plan = plan_sweep(_env_of(space), _policy_of(space), space, overrides=[])
    assert plan.sweep.scheduler.type == space.stem.rsplit("_", 1)[1]
    assert plan.sweep.description


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
def test_preset_trials_run_two_at_once_on_two_cpus(space):
    plan = plan_sweep(_env_of(space), _policy_of(space), space, overrides=[])
    setup = TrialSetup(env=plan.env, policy=plan.trial_policy, trial=plan.sweep.trial)
    for seed in range(3):
        params = {
            name: domain.sample(random_state=seed) if hasattr(domain, "sample") else domain
            for name, domain in plan.sweep.param_space().items()
        }
        bundles = trial_resources(setup, params).bundles
        assert sum(b.get("CPU", 0) for b in bundles) <= 1.0, bundles


def test_the_issue_presets_of_every_env_kind_exist():
    assert {p.stem for p in SPACES} >= {"marketplace_ppo_asha", "hierarchical_ppo_asha"}


@pytest.mark.parametrize(
    ("env", "space", "metric"),
    [
        ("marketplace", "marketplace_ppo_asha", "eval/return_mean"),
        ("session", "ppo_asha", "eval/welfare_platform"),
    ],
)
def test_a_metric_the_trials_do_not_report_is_refused_before_ray_starts(
    tmp_path, env, space, metric
):
    import yaml

    from rayrec.contracts.errors import SpecError

    raw = yaml.safe_load((ROOT / "tune" / f"{space}.yaml").read_text())
    raw["metric"] = metric
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=f"metric '{metric}' is not reported by"):
        plan_sweep(
            ROOT / "envs" / f"{env}.yaml",
            _policy_of(ROOT / "tune" / f"{space}.yaml"),
            path,
            overrides=[],
        )
