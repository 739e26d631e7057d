"""The two-level (options) agent trained by ``rayrec.run.train`` on the niche-interest scenario.

``policies/hierarchical_ppo.yaml`` on ``envs/hierarchical.yaml`` for a fixed number of PPO
iterations (seeded; 40 x about 4,100 env steps, about eight minutes on a slow 2-CPU host), evaluated on the
flat return (the simulator reward only) over 2000 users against the baselines on the same
scenario: it must beat ``random``, ``popular`` and ``greedy``, which *peeks* at the true click
probabilities (``rayrec/evaluation/baselines.py``), with non-overlapping 95% CIs.

Measured before this test was written (2000 users; greedy 12.39 +- 0.43): seed 0 at 60 iterations
13.89 +- 0.68, seed 1 at 100 iterations 15.13 +- 0.72. At 20 iterations seed 0 tied greedy
(12.45 +- 0.64). Rerun 2026-12-06 at 60 iterations: 13.886 +- 0.676 against greedy's
12.395 +- 0.430 (347 s with the evaluation), the same numbers (by luck, see below). On
the scenario's earlier ``satisfaction_quality_weight`` 0.5 even the non-peeking hand-written
heuristic stayed below greedy (docs/hierarchical.md). With the bootstrap at the max_sessions bound
restored (``PerModuleGammaGAE``, 2026-12-07; both levels lost V(s_T) there before): 16.93 +- 0.82
at 60 iterations (657 s on a slow host); at 40 iterations 14.49 +- 0.72 against greedy's
12.40 +- 0.43 (487 s with Ray's start and the evaluation, 2026-12-07), the margin the test had at 60
iterations before the fix (13.89 against 12.83). The test trains 40.

Seeded runs repeat only since the learner sorts its batch's modules (2026-12-07,
``rayrec/algorithms/ordered.py``): before, the minibatch shuffles followed a hash-randomised set
order, and a second run of seed 0 at 40 iterations scored 14.85 +- 0.75. With the sort: 14.485
+- 0.721 again (411 s with the evaluation, which the env's per-step savings cut by a quarter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.keys import Metrics
from rayrec.run import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 40  # x about 4,100 env steps (both levels' turns)


@pytest.fixture(scope="module")
def results(ray_session, tmp_path_factory) -> dict:
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "hierarchical.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "hierarchical_ppo.yaml"))
    options = RunOptions(
        out=tmp_path_factory.mktemp("runs") / "hier",
        seed=0,
        iterations=ITERATIONS,
        eval_users=2000,
        baselines=("random", "popular", "greedy"),
        checkpoint_every=ITERATIONS,
    )
    return train(env, policy, options, quiet=True)


def _interval(m: dict) -> tuple[float, float]:
    mean, ci = m[Metrics.RETURN_MEAN], m[Metrics.RETURN_CI95]
    return mean - ci, mean + ci


def _summary(results: dict) -> dict[str, float]:
    out = {"hierarchical": results["policy"][Metrics.RETURN_MEAN]}
    out.update({k: m[Metrics.RETURN_MEAN] for k, m in results["baselines"].items()})
    return out


@pytest.mark.parametrize("baseline", ["random", "popular", "greedy"])
def test_the_hierarchical_agent_beats(results: dict, baseline: str) -> None:
    low, _ = _interval(results["policy"])
    _, high = _interval(results["baselines"][baseline])
    assert low > high, _summary(results)
