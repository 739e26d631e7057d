"""The search-space grammar: each distribution's Tune object, every bad space, PBT's clipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrec.contracts.errors import SpecError
from rayrec.specs import load_yaml
from rayrec.tuning.space import Param, SweepSpec, apply_params

ROOT = Path(__file__).resolve().parents[2]
ENV = load_yaml(ROOT / "envs" / "session.yaml")
PPO = load_yaml(ROOT / "policies" / "ppo.yaml")
APEX = load_yaml(ROOT / "policies" / "apex_dqn.yaml")


def _sweep(text: str) -> SweepSpec:
    return SweepSpec.from_dict(yaml.safe_load(text), "space.yaml")


def _domain(entry: dict):
    return Param.from_yaml("training.lr", entry).to_tune()


def test_choice_maps_to_categorical():
    domain = _domain({"choice": [32, 64, 128]})
    assert type(domain).__name__ == "Categorical"
    assert domain.categories == [32, 64, 128]


def test_grid_maps_to_grid_search():
    assert _domain({"grid": [0.1, 0.01]}) == {"grid_search": [0.1, 0.01]}


@pytest.mark.parametrize(
    "entry, cls, sampler",
    [
        ({"uniform": [0.0, 0.5]}, "Float", "_Uniform"),
        ({"loguniform": [1.0e-5, 1.0e-2]}, "Float", "_LogUniform"),
        ({"quniform": [0.1, 0.3, 0.05]}, "Float", "Quantized"),
        ({"randint": [1, 9]}, "Integer", "_Uniform"),
    ],
    ids=["uniform", "loguniform", "quniform", "randint"],
)
def test_ranges_map_to_tune_domains_with_their_bounds(entry, cls, sampler):
    ((kind, args),) = entry.items()
    domain = _domain(entry)
    assert type(domain).__name__ == cls
    assert type(domain.get_sampler()).__name__ == sampler
    assert (domain.lower, domain.upper) == (args[0], args[1])
    values = np.array(domain.sample(size=500, random_state=0))
    assert values.min() >= args[0] - 1e-9 and values.max() <= args[1] + 1e-9
    if kind == "randint":
        assert set(values.tolist()) == set(range(1, 9))  # high excluded, as in Tune
    if kind == "quniform":
        assert np.allclose(np.round(values / 0.05) * 0.05, values)
    if kind == "loguniform":
        # Uniform in log space: about half the samples below the geometric midpoint 10^-3.5.
        assert 0.4 < np.mean(values < 10**-3.5) < 0.6


BAD_SPACES = {
    "unknown distribution": (
        "space: {training.lr: {normal: [0, 1]}}",
        "space.training.lr: unknown distribution 'normal'; known: choice, grid,",
    ),
    "low > high": (
        "space: {training.lr: {uniform: [0.1, 0.01]}}",
        "space.training.lr: low (0.1) must be < high (0.01)",
    ),
    "low == high": ("space: {training.lr: {loguniform: [0.1, 0.1]}}", "low (0.1) must be < high"),
    "loguniform from 0": (
        "space: {training.lr: {loguniform: [0, 0.1]}}",
        "space.training.lr: loguniform needs 0 < low",
    ),
    "grid not a list": (
        "space: {training.lr: {grid: 0.1}}",
        "space.training.lr: grid takes a list",
    ),
    "empty choice": ("space: {training.lr: {choice: []}}", "choice needs a non-empty list"),
    "bound not a number": (
        "space: {training.lr: {uniform: [low, 0.1]}}",
        "space.training.lr: uniform needs [low, high] (numbers)",
    ),
    "boolean bound": ("space: {training.lr: {uniform: [true, 2]}}", "needs [low, high] (numbers)"),
    "three bounds": ("space: {training.lr: {uniform: [0, 1, 2]}}", "needs [low, high]"),
    "quniform without q": ("space: {training.lr: {quniform: [0, 1]}}", "needs [low, high, q]"),
    "q too large": ("space: {training.lr: {quniform: [0, 1, 2]}}", "0 < q <= high - low"),
    "randint floats": ("space: {training.num_epochs: {randint: [1, 2.5]}}", "must be integers"),
    "two distributions": (
        "space: {training.lr: {uniform: [0, 1], choice: [1]}}",
        "space.training.lr: must be a mapping with one key",
    ),
    "bare value": ("space: {training.lr: 0.1}", "space.training.lr: must be a mapping"),
    "no space": ("metric: eval/return_mean\n", "'space' must map hyperparameters"),
    "empty space": ("space: {}", "'space' must map hyperparameters"),
    "unknown top-level key": ("spaces: {}\nspace: {a.b: {choice: [1]}}", "unknown key(s) spaces"),
    "unknown metric": (
        "metric: reward\nspace: {training.lr: {choice: [1]}}",
        "metric 'reward' is not reported by trials; known: eval/return_mean",
    ),
    "bad mode": ("mode: maximise\nspace: {training.lr: {choice: [1]}}", "mode ('maximise')"),
    "bad samples": ("samples: 0\nspace: {training.lr: {choice: [1]}}", "samples (0) must be >= 1"),
    "samples not int": ("samples: many\nspace: {training.lr: {choice: [1]}}", "samples must be"),
    "unknown scheduler": (
        "scheduler: {type: hyperband}\nspace: {training.lr: {choice: [1]}}",
        "scheduler.type ('hyperband') must be one of fifo, asha, pbt",
    ),
    "key of another scheduler": (
        "scheduler: {type: pbt, grace_period: 2}\nspace: {training.lr: {choice: [1]}}",
        "unknown key scheduler.grace_period; known: perturbation_interval",
    ),
    "bad reduction factor": (
        "scheduler: {type: asha, reduction_factor: 1}\nspace: {training.lr: {choice: [1]}}",
        "scheduler.reduction_factor (1.0) must be > 1",
    ),
    "grace period past the end": (
        "scheduler: {type: asha, grace_period: 5}\ntrial: {iterations: 3}\n"
        "space: {training.lr: {choice: [1]}}",
        "scheduler.grace_period (5) must be <= trial.iterations (3)",
    ),
    "synch not a boolean": (
        "scheduler: {type: pbt, synch: 1}\nspace: {training.lr: {choice: [1]}}",
        "scheduler.synch must be a bool, got 1",
    ),
    "bad quantile": (
        "scheduler: {type: pbt, quantile_fraction: 0.9}\nspace: {training.lr: {choice: [1]}}",
        "scheduler.quantile_fraction (0.9) must be in (0, 0.5]",
    ),
    "PBT over the architecture": (
        "scheduler: {type: pbt}\nspace: {model.hidden: {choice: [32, 64]}}",
        "space.model.hidden: PBT cannot mutate the model's architecture",
    ),
    "unknown trial key": (
        "trial: {epochs: 3}\nspace: {training.lr: {choice: [1]}}",
        "trial.epochs",
    ),
    "trial iterations": ("trial: {iterations: 0}\nspace: {training.lr: {choice: [1]}}", ">= 1"),
    "trial iterations type": (
        "trial: {iterations: 2.5}\nspace: {training.lr: {choice: [1]}}",
        "trial.iterations must be a int, got 2.5",
    ),
    "trial.set outside RLlib sections": (
        "trial: {set: {model.hidden: 8}}\nspace: {training.lr: {choice: [1]}}",
        "trial.set: keys must be SECTION.KEY",
    ),
    "swept and fixed": (
        "trial: {set: {training.lr: 0.1}}\nspace: {training.lr: {choice: [1]}}",
        "space.training.lr: also fixed in trial.set",
    ),
}


@pytest.mark.parametrize("text, message", BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_bad_space_raises_spec_error_naming_the_field(text, message):
    with pytest.raises(SpecError) as exc:
        _sweep(text)
    assert str(exc.value).startswith("space.yaml: ")
    assert message in str(exc.value)


BAD_FOR_PPO = {
    "unknown hyperparameter": (
        "space: {training.lrr: {loguniform: [1.0e-5, 1.0e-2]}}",
        "space.training.lrr: unknown key training.lrr for PPO",
    ),
    "unknown section": (
        "space: {optimiser.lr: {choice: [1]}}",
        "unknown hyperparameter 'optimiser.lr'; use SECTION.KEY",
    ),
    "no section": ("space: {lr: {choice: [1]}}", "unknown hyperparameter 'lr'"),
    "unknown model field": ("space: {model.width: {choice: [1]}}", "unknown model field(s) width"),
    "env field": ("space: {env.num_items: {choice: [500]}}", "a sweep keeps the environment fixed"),
    "apex without Ape-X": ("space: {apex.epsilon: {uniform: [0.1, 0.5]}}", "'apex.epsilon'"),
    "reserved by rayrec": ("space: {debugging.seed: {randint: [0, 9]}}", "debugging.seed"),
    "bad value in choice": (
        "space: {model.encoder: {choice: [mean, lstm]}}",
        "space.model.encoder: model.encoder ('lstm') must be one of",
    ),
    "out of range": ("space: {model.hidden: {randint: [0, 64]}}", "model.hidden (0)"),
    "floats for an integer": (
        "space: {training.num_epochs: {uniform: [1, 8]}}",
        "uniform gives floats but training.num_epochs takes integers",
    ),
    "floats for the model width": (
        "space: {model.hidden: {quniform: [16, 128, 16]}}",
        "quniform gives floats but model.hidden takes integers",
    ),
    "wrong type": ("space: {training.lr: {choice: [fast]}}", "training.lr must be a float"),
    "bad trial layout": (
        "trial: {set: {env_runners.num_runners: 0}}\nspace: {training.lr: {choice: [0.1]}}",
        "trial.set: unknown key env_runners.num_runners",
    ),
}


@pytest.mark.parametrize("text, message", BAD_FOR_PPO.values(), ids=BAD_FOR_PPO.keys())
def test_space_is_checked_against_the_policy(text, message):
    with pytest.raises(SpecError) as exc:
        _sweep(text).validate(ENV, PPO, "space.yaml")
    assert str(exc.value).startswith("space.yaml: ")
    assert message in str(exc.value)


def test_apex_hyperparameters_are_checked_with_the_ladder():
    good = _sweep("space: {apex.epsilon: {uniform: [0.2, 0.7]}, apex.alpha: {uniform: [3, 9]}}")
    good.validate(ENV, APEX, "space.yaml")
    with pytest.raises(SpecError, match=r"apex.epsilon \(1.0\) must be in \(0, 1\)"):
        _sweep("space: {apex.epsilon: {uniform: [0.2, 1.0]}}").validate(ENV, APEX, "space.yaml")


def test_defaults_and_round_trip():
    sweep = _sweep("space: {training.lr: {loguniform: [1.0e-5, 1.0e-2]}}")
    assert sweep.metric == "eval/return_mean" and sweep.mode == "max"
    assert sweep.scheduler.type == "fifo" and sweep.samples == 1
    again = SweepSpec.from_dict(sweep.to_dict(), "again")
    assert again == sweep


def test_number_of_trials_is_samples_times_grids():
    sweep = _sweep(
        "samples: 3\nspace: {training.lr: {grid: [1, 2]}, model.hidden: {grid: [8, 16, 32]},"
        " training.gamma: {uniform: [0.9, 0.99]}}"
    )
    assert sweep.num_trials == 3 * 2 * 3


@pytest.mark.parametrize(
    "entry, value, clipped",
    [
        ({"uniform": [0.2, 0.7]}, 0.84, 0.7),
        ({"uniform": [0.2, 0.7]}, 0.5, 0.5),
        ({"loguniform": [1.0e-4, 1.0e-2]}, 0.5e-4, 1.0e-4),
        ({"randint": [1, 9]}, 9.6, 8),
        ({"randint": [1, 9]}, 4.4, 4),
        ({"quniform": [0.1, 0.3, 0.05]}, 0.27, 0.25),
        ({"choice": [1, 3, 5]}, 3, 3),
    ],
)
def test_pbt_perturbations_stay_inside_the_space(entry, value, clipped):
    assert Param.from_yaml("training.x", entry).clip(value) == pytest.approx(clipped)


def test_pbt_scheduler_mutates_the_same_spaces():
    sweep = _sweep(
        "scheduler: {type: pbt, perturbation_interval: 3}\n"
        "space: {training.lr: {loguniform: [1.0e-4, 1.0e-2]}, training.n_step: {choice: [1, 3]}}"
    )
    scheduler = sweep.scheduler.build(sweep.params, max_t=10)
    mutations = scheduler._hyperparam_mutations
    assert mutations["training.n_step"] == [1, 3]
    assert (mutations["training.lr"].lower, mutations["training.lr"].upper) == (1.0e-4, 1.0e-2)
    explore = scheduler._custom_explore_fn
    assert explore({"training.lr": 1.0, "training.n_step": 3}) == {
        "training.lr": 1.0e-2,
        "training.n_step": 3,
    }


def test_asha_scheduler_settings():
    sweep = _sweep(
        "scheduler: {type: asha, grace_period: 2, reduction_factor: 3}\ntrial: {iterations: 18}\n"
        "space: {training.lr: {choice: [0.1]}}"
    )
    scheduler = sweep.scheduler.build(sweep.params, max_t=sweep.trial.iterations)
    assert type(scheduler).__name__ == "AsyncHyperBandScheduler"
    assert scheduler._max_t == 18 and scheduler._reduction_factor == 3
    # Rungs (where poor trials stop) at grace_period * reduction_factor^k.
    assert sorted(milestone for milestone, _ in scheduler._brackets[0]._rungs) == [2, 6, 18]


def test_apply_params_sets_typed_values_on_a_copy():
    policy = {"algorithm": "PPO", "training": {"lr": 0.1}}
    out = apply_params(policy, {"training.lr": 1e-05, "model.hidden": 32})
    assert out == {"algorithm": "PPO", "training": {"lr": 1e-05}, "model": {"hidden": 32}}
    assert policy == {"algorithm": "PPO", "training": {"lr": 0.1}}
