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


def test_the_issue_presets_exist():
    assert {p.stem for p in SPACES} >= {"ppo_asha", "apex_dqn_pbt"}


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
def test_preset_validates_against_its_policy(space):
    assert _policy_of(space).is_file(), f"{space.name}: no policy preset {_policy_of(space).name}"
    plan = plan_sweep(ROOT / "envs" / "session.yaml", _policy_of(space), space, overrides=[])
    assert plan.sweep.scheduler.type == space.stem.rsplit("_", 1)[1]
    assert plan.sweep.description


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
def test_preset_trials_run_two_at_once_on_two_cpus(space):
    plan = plan_sweep(ROOT / "envs" / "session.yaml", _policy_of(space), space, overrides=[])
    setup = TrialSetup(env=plan.env, policy=plan.trial_policy, trial=plan.sweep.trial)
    for seed in range(3):
        params = {
            name: domain.sample(random_state=seed) if hasattr(domain, "sample") else domain
            for name, domain in plan.sweep.param_space().items()
        }
        bundles = trial_resources(setup, params).bundles
        assert sum(b.get("CPU", 0) for b in bundles) <= 1.0, bundles


def test_a_hierarchical_preset_is_refused_before_ray_starts():
    from rayrec.contracts.errors import SpecError

    with pytest.raises(SpecError, match=r"does not sweep hierarchical presets \(levels\)"):
        plan_sweep(
            ROOT / "envs" / "hierarchical.yaml",
            ROOT / "policies" / "hierarchical_ppo.yaml",
            ROOT / "tune" / "ppo_asha.yaml",
            overrides=[],
        )
