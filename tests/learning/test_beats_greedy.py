"""APPO (the asynchronous A3C family, V-trace) on the default session env beats greedy-myopic.

``greedy`` peeks at the true click probabilities: the strongest myopic policy. APPO sees only the
observation and must beat it on the long-term return with non-overlapping 95% confidence
intervals, with more sessions per user (the gain is retention). PPO's test
is tests/learning/test_ppo_learns.py.

APPO: two env runners sample asynchronously into a learner process of its own. With the mean-pool
module, 30 iterations of RLlib's default 10 s (about 44k env steps each on a quiet machine) scored
20.97 +- 1.12 against greedy's 15.88 +- 0.65; with the preset's relation head and critic (issue
#22), 20 iterations 21.36 +- 1.08 and 30 iterations 26.96 +- 1.24. With iterations of 45k trained
env steps each (below): 25 iterations 23.94 +- 1.18 (1.2M env steps, 344 s; 2026-12-06), 15
iterations 18.54 +- 1.01 (2026-12-07, beside other work: too close to greedy's 16.53 bound for an
asynchronous run). With the preset's optimisation of 2026-12-07 (minibatches of 256 passed over 6
times per train batch, one runner of 64 envs; policies/appo.yaml) the trained-steps counter counts
each pass, and 12 iterations of 100k of them (about 150k env steps sampled, 168 s with Ray's start
and the evaluation) scored 30.95 +- 1.23. The test trains those 12.

Ape-X DQN: 150 iterations (about 160k env steps, about 4 minutes on a slow 2-CPU host) with its
preset's checkpoint selection on 500 validation users: 22.10 +- 1.21 (2026-12-07; 246 s with Ray's
start and the evaluation); 200 iterations scored 25.54 +- 1.30 and 100 iterations 17.82 +- 1.07, too
close to greedy's bound. (The
mean-pool module needed 450 iterations, 8-11 minutes, for 19.24-21.95 on seeds 0, 1 and 2.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.keys import Metrics
from rayrec.run import RunOptions, selection_options, train
from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]


# APPO's iterations last 10 s by default (RLlib's min_time_s_per_iteration), so what 25 of them
# learn depends on the machine's load: beside other work on 2 CPUs one run sampled 438k env steps
# instead of 1.1M and failed. Here an iteration ends after a fixed amount of training instead.
APPO_STEPS = [
    "reporting.min_time_s_per_iteration=0",
    "reporting.min_train_timesteps_per_iteration=100000",
]


@pytest.mark.parametrize(
    ("preset", "iterations", "overrides"),
    [("appo", 12, APPO_STEPS), ("apex_dqn", 150, [])],
)
def test_beats_greedy_myopic(
    ray_session, tmp_path, preset: str, iterations: int, overrides: list[str]
) -> None:
    raw = apply_overrides({}, load_yaml(ROOT / "policies" / f"{preset}.yaml"), overrides)[1]
    policy = PolicySpec.from_dict(raw, preset)
    options = RunOptions(
        out=tmp_path / preset,
        seed=0,
        iterations=iterations,
        eval_users=2000,
        baselines=("random", "greedy"),
        checkpoint_every=iterations,
        **selection_options(policy),
    )
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    result = train(env, policy, options, quiet=True)
    mine, greedy = result["policy"], result["baselines"]["greedy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], (mine, greedy)
    assert mine[Metrics.SESSIONS_PER_USER] > greedy[Metrics.SESSIONS_PER_USER], (mine, greedy)
