"""Multi-agent RLlib training on the marketplace: role mapping, centralised critic, APPO."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("policy_file", "multi_agent", "env_config", "modules"),
    [
        (
            "marketplace_ppo",
            {"centralized_critic": True},
            {
                "learning_roles": ["platform", "creator", "advertiser", "user"],
                "num_creators": 2,
                "num_advertisers": 2,
                "num_strategic_users": 1,
            },
            {"platform", "creator", "advertiser", "user"},
        ),
        (
            "marketplace_appo",
            {"shared_within_role": False},
            {"learning_roles": ["advertiser"], "objective": "mixed"},
            {"advertiser_0", "advertiser_1", "advertiser_2"},
        ),
    ],
    ids=["ppo-central-critic-all-roles", "appo-independent-advertisers"],
)
def test_one_training_iteration(ray_session, policy_file, multi_agent, env_config, modules):
    env = load_yaml(ROOT / "envs" / "marketplace.yaml")
    env["config"].update(env_config, num_periods=10)
    policy = load_yaml(ROOT / "policies" / f"{policy_file}.yaml")
    policy["multi_agent"] = multi_agent
    policy["training"]["train_batch_size_per_learner"] = 100
    if "minibatch_size" in policy["training"]:
        policy["training"]["minibatch_size"] = 50
    config = build_config(EnvSpec.from_dict(env), PolicySpec.from_dict(policy), seed=0)
    assert set(config.policies) == modules
    algo = config.build_algo()
    try:
        # APPO samples asynchronously: its first iterations may finish no episode yet.
        returns = {}
        for _ in range(5):
            result = algo.train()
            returns = result["env_runners"].get("agent_episode_returns_mean", {})
            if returns:
                break
        roles = env_config["learning_roles"]
        assert returns and all(agent.split("_")[0] in roles for agent in returns)
    finally:
        algo.stop()


def test_train_run_folder(ray_session, tmp_path):
    from rayrec.evaluation.compare import comparison_table
    from rayrec.run import RunOptions, train

    env = load_yaml(ROOT / "envs" / "marketplace.yaml")
    env["config"]["num_periods"] = 5
    policy = load_yaml(ROOT / "policies" / "marketplace_ppo.yaml")
    policy["training"].update(train_batch_size_per_learner=50, minibatch_size=25, num_epochs=1)
    options = RunOptions(out=tmp_path / "market", iterations=1, eval_users=128)
    results = train(EnvSpec.from_dict(env), PolicySpec.from_dict(policy), options, quiet=True)
    assert (tmp_path / "market" / "spec.yaml").is_file()
    assert (tmp_path / "market" / "results.json").is_file()
    assert (tmp_path / "market" / "checkpoints" / "final").is_dir()
    assert results["policy"]["episodes"] == 2
    rows = comparison_table(results)
    assert [r[0] for r in rows] == ["policy", "trained", "scripted"]


def test_a_marketplace_run_resumes_and_evaluates_its_own_checkpoint(ray_session, tmp_path):
    """The one training loop: a marketplace run has the session runs' folder, resumes from its
    latest checkpoint and is evaluated from the checkpoint (also by `rayrec evaluate`)."""
    import json

    from rayrec.cli import main

    env = load_yaml(ROOT / "envs" / "marketplace.yaml")
    env["config"]["num_periods"] = 5
    policy = load_yaml(ROOT / "policies" / "marketplace_ppo.yaml")
    policy["training"].update(train_batch_size_per_learner=50, minibatch_size=25, num_epochs=1)
    (tmp_path / "env.yaml").write_text(json.dumps(env))
    (tmp_path / "policy.yaml").write_text(json.dumps(policy))
    out = tmp_path / "market"
    base = ["--eval-users", "128", "--checkpoint-every", "1", "--quiet"]
    args = ["train", "--env", str(tmp_path / "env.yaml"), "--policy", str(tmp_path / "policy.yaml")]
    assert main([*args, "--iterations", "2", "--out", str(out), *base]) == 0
    for name in ("latest", "best", "final"):
        assert (out / "checkpoints" / name / "rllib_checkpoint.json").is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert set(rows[0]["agent_returns"]) == {"platform"}

    assert main(["train", "--out", str(out), "--resume", "--iterations", "3", *base]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert rows[2]["env_steps"] > rows[1]["env_steps"]
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["iterations"] == 3 and results["training"]["kind"] == "marketplace"
    assert results["learning_roles"] == ["platform"]

    from rayrec.evaluation.compare import evaluate_checkpoint

    again = evaluate_checkpoint(out / "checkpoints" / "final", None, 128, 12345, None)
    assert again["policy"] == results["policy"]
    assert again["baselines"] == results["baselines"]
