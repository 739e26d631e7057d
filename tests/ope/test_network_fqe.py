"""Network FQE (rayrec/ope/network_fqe.py): exact on a tabular network, seeded, and wired into
``load_sim_logs`` with rayrec's candidate Q network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rayrec.evaluation.collect import collect
from rayrec.ope import EstimatorConfig, estimate_trajectory
from rayrec.ope.network_fqe import NetworkFQEConfig, fit_network_fqe, monte_carlo_returns
from rayrec.ope.policies import load_sim_logs
from rayrec.specs import EnvSpec, SpecError

# Two lifetimes over states 0 -> 1 -> end, two candidates:
#   lifetime A: s0, a0, r 1 -> s1, a0, r 2;   lifetime B: s0, a1, r 0 -> s1, a1, r 4.
STATE = np.array([0, 1, 0, 1])
ACTION = np.array([0, 0, 1, 1])
REWARD = np.array([1.0, 2.0, 0.0, 4.0])
NEXT = np.array([1, -1, 3, -1])
# pi_e: candidate 0 in s0; 1/4 and 3/4 in s1.
DIST = np.array([[1.0, 0.0], [0.25, 0.75], [1.0, 0.0], [0.25, 0.75]])


class Table(nn.Module):
    """A tabular Q function: one parameter per (state, candidate)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.zeros(2, 2))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.q[obs["state"]]


def _fit(gamma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    config = NetworkFQEConfig(phases=4, updates=250, batch_size=4, lr=0.05, seed=seed)
    return fit_network_fqe(Table(), {"state": STATE}, ACTION, REWARD, NEXT, DIST, gamma, config)


@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_tabular_network_gives_the_hand_computed_values(gamma: float) -> None:
    # Q(s1, 0) = 2, Q(s1, 1) = 4, V(s1) = 0.25 * 2 + 0.75 * 4 = 3.5;
    # Q(s0, 0) = 1 + gamma 3.5, Q(s0, 1) = 0 + gamma 3.5, V(s0) = Q(s0, 0).
    v1 = 3.5
    q00, q01 = 1 + gamma * v1, gamma * v1
    q, v = _fit(gamma)
    np.testing.assert_allclose(q, [q00, 2.0, q01, 4.0], atol=2e-3)
    np.testing.assert_allclose(v, [q00, v1, q00, v1], atol=2e-3)


def test_same_seed_same_values() -> None:
    a, b = _fit(1.0, seed=3), _fit(1.0, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_monte_carlo_returns_follow_the_lifetimes() -> None:
    np.testing.assert_allclose(monte_carlo_returns(REWARD, NEXT, 1.0), [3.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(monte_carlo_returns(REWARD, NEXT, 0.5), [2.0, 2.0, 2.0, 4.0])


@pytest.mark.parametrize(
    ("field", "value"), [("phases", 0), ("updates", -1), ("batch_size", 1.5), ("lr", 0.0)]
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        NetworkFQEConfig(**{field: value})


def test_rows_must_agree() -> None:
    with pytest.raises(ValueError, match="same number"):
        fit_network_fqe(Table(), {"state": STATE}, ACTION[:3], REWARD, NEXT, DIST)


def test_candidate_q_network_on_a_simulator_log(logs) -> None:
    """The candidate Q network fitted on a collected log: (Q, V) padded like the lifetimes, 0
    after each end, and the ``fqe`` estimate is the mean V of the first states."""
    config = NetworkFQEConfig(phases=3, updates=5, batch_size=64)
    sim, _ = load_sim_logs(logs["eps"], "heuristic", seed=0, network_fqe=config)
    q, v = sim.q_values
    alive = sim.trajectory.alive
    assert q.shape == v.shape == alive.shape
    assert np.all(q[~alive] == 0) and np.all(v[~alive] == 0)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(v))
    est = estimate_trajectory(
        sim.trajectory, ("fqe",), EstimatorConfig(n_bootstrap=50), q_values=sim.q_values
    )
    assert est["fqe"].value == pytest.approx(v[:, 0].mean())
    again, _ = load_sim_logs(logs["eps"], "heuristic", seed=0, network_fqe=config)
    np.testing.assert_array_equal(again.q_values[1], v)


def test_slates_are_refused(tmp_path) -> None:
    small = {"num_items": 400, "num_candidates": 8, "max_sessions": 2, "max_steps_per_session": 12}
    env = EnvSpec.from_dict({"config": {**small, "slate_size": 3}})
    collect(env, "epsilon-ctr:0.3", users=5, out=tmp_path / "slates", seed=1)
    with pytest.raises(SpecError, match="single-item decisions"):
        load_sim_logs(tmp_path / "slates", "heuristic", network_fqe=NetworkFQEConfig())
