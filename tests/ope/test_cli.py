"""``rayrec ope`` end to end: the OBD JSON shape, simulator logs, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrec.cli import main
from rayrec.datasets import fetch_obd, load_obd, obd_dir
from rayrec.specs import EnvSpec, PolicySpec
from tests.ope.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]
STEP_KEYS = ["ipw", "snipw", "dm", "dr", "sndr", "switch-dr"]
TRAJECTORY_KEYS = ["tis", "pdis", "wpdis", "dr-rl", "fqe"]


@pytest.fixture(scope="module")
def obd() -> Path:
    return fetch_obd()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["ope", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_obd_json_shape_and_ground_truth(obd, capsys):
    code, out, _ = _run(capsys, "--data", "obd:all", "--policy", "bts", "--json")
    assert code == 0
    result = json.loads(out)
    assert list(result) == ["data", "policy", "ground_truth", "estimates"]
    assert result["data"] == "obd:all" and result["policy"] == "bts"
    assert result["ground_truth"] == pytest.approx(load_obd("all", "bts").reward.mean())
    assert list(result["estimates"]) == STEP_KEYS
    for name, entry in result["estimates"].items():
        assert list(entry) == ["value", "ci95", "ess"], name
        lo, hi = entry["ci95"]
        assert lo <= entry["value"] <= hi, name
        assert 0 < entry["ess"] <= 10_000


def test_obd_is_seeded(obd, capsys):
    argv = ("--data", "obd:women", "--policy", "bts", "--json", "--bootstrap", "50", "--seed", "4")
    first = _run(capsys, *argv)[1]
    assert _run(capsys, *argv)[1] == first


def test_sim_log_step_and_trajectory(logs, capsys):
    code, out, _ = _run(
        capsys, "--data", str(logs["eps"]), "--policy", "random", "--json", "--bootstrap", "20"
    )
    step = json.loads(out)
    assert code == 0 and step["ground_truth"] is None  # per-decision value: no simulator truth
    assert list(step["estimates"]) == STEP_KEYS
    code, out, _ = _run(
        capsys,
        *("--data", str(logs["eps"]), "--policy", "heuristic", "--level", "trajectory"),
        *("--json", "--bootstrap", "20"),
    )
    trajectory = json.loads(out)
    assert code == 0 and list(trajectory["estimates"]) == TRAJECTORY_KEYS
    assert trajectory["ground_truth"] > 0  # the heuristic played in the log's world


def test_network_fqe_replaces_the_linear_q_function(logs, capsys):
    """--fqe network: fqe and dr-rl come from the candidate Q network, the IS estimators and the
    ground truth do not change."""
    common = ("--data", str(logs["eps"]), "--policy", "heuristic", "--level", "trajectory")
    found = {}
    for fqe in ("linear", "network"):
        extra = ("--fqe-phases", "2", "--fqe-updates", "3") if fqe == "network" else ()
        code, out, _ = _run(capsys, *common, "--json", "--bootstrap", "20", "--fqe", fqe, *extra)
        assert code == 0
        found[fqe] = json.loads(out)
    linear, network = found["linear"], found["network"]
    assert network["ground_truth"] == linear["ground_truth"]
    for name in ("tis", "pdis", "wpdis"):
        assert network["estimates"][name] == linear["estimates"][name]
    for name in ("fqe", "dr-rl"):
        assert network["estimates"][name]["value"] != linear["estimates"][name]["value"]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """An untrained PPO checkpoint of the logs' world (random scores, distinct per candidate)."""
    from rayrec.experiment import save_untrained_run

    policy = PolicySpec.from_dict(yaml.safe_load((ROOT / "policies" / "ppo.yaml").read_text()))
    env = EnvSpec.from_dict({"config": SMALL})
    return save_untrained_run(tmp_path_factory.mktemp("ope-run") / "ppo", env, policy, seed=3)


def test_a_checkpoint_in_greedy_mode_is_its_top_candidate(logs, untrained, capsys):
    """--mode greedy evaluates the checkpoint's argmax (as rayrec evaluate plays it), --mode sample
    (the default) its softmax: the greedy distribution is one-hot at the softmax's mode."""
    from rayrec.ope.policies import load_sim_logs

    greedy, _ = load_sim_logs(logs["eps"], str(untrained), mode="greedy")
    sample, _ = load_sim_logs(logs["eps"], str(untrained))
    dist = sample.step.eval_dist
    assert 0 < dist.max(axis=1).min() and dist.max(axis=1).max() < 1  # stochastic
    assert np.array_equal(greedy.step.eval_dist, np.eye(dist.shape[1])[dist.argmax(axis=1)])
    argv = ("--data", str(logs["eps"]), "--policy", str(untrained), "--level", "trajectory")
    argv += ("--estimators", "pdis", "--bootstrap", "10", "--json")
    truth = {
        mode: json.loads(_run(capsys, *argv, "--mode", mode)[1])["ground_truth"]
        for mode in ("greedy", "sample")
    }
    assert truth["greedy"] > 0 and truth["sample"] > 0 and truth["greedy"] != truth["sample"]


def test_sim_log_slate_level_equals_ips_for_single_item_slates(logs, capsys):
    argv = ("--data", str(logs["eps"]), "--policy", "popular", "--json", "--bootstrap", "20")
    slate = json.loads(_run(capsys, *argv, "--level", "slate")[1])["estimates"]
    step = json.loads(_run(capsys, *argv, "--estimators", "ipw")[1])["estimates"]
    assert list(slate) == ["sips", "rips"]
    assert slate["sips"]["value"] == pytest.approx(step["ipw"]["value"])
    assert slate["rips"]["value"] == pytest.approx(step["ipw"]["value"])


def test_table_output_flags_degenerate_weights(logs, capsys):
    code, out, err = _run(
        capsys,
        *("--data", str(logs["eps"]), "--policy", "heuristic", "--level", "trajectory"),
        *("--estimators", "tis", "--bootstrap", "20"),
    )
    assert code == 0
    assert "ground truth:" in out
    # The heuristic disagrees with the logging ctr ranker somewhere in nearly every lifetime.
    assert "LOW ESS: do not trust" in out
    assert err.startswith("rayrec: warning: tis: ESS")


def _another_world(tmp_path: Path) -> Path:
    """A run folder whose spec says world_seed 7, with a checkpoint folder inside it."""
    policy = yaml.safe_load((ROOT / "policies" / "ppo.yaml").read_text())
    spec = {"env": {"config": {**SMALL, "world_seed": 7}}, "policy": policy}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    checkpoint = tmp_path / "checkpoints" / "final"
    checkpoint.mkdir(parents=True)
    return checkpoint


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "obd:kids", "--policy", "bts"], "unknown OBD campaign 'kids'"),
        (["--data", "obd:all", "--policy", "bts", "--level", "arm"], "--level 'arm': unknown"),
        (["--data", "obd:all", "--policy", "bts", "--estimators", "ipw,x"], "--estimators 'x'"),
        (["--data", "obd:all", "--policy", "bts", "--level", "slate"], "use --level step"),
        (["--data", "obd:all", "--policy", "heuristic"], "not an OBD evaluation policy"),
        (["--data", "LOG:eps", "--policy", "greedy"], "peeks at the latent user state"),
        (["--data", "LOG:eps", "--policy", "nope"], "neither a policy"),
        (["--data", "LOG:popular", "--policy", "random"], "behaviour propensity 0"),
        (["--data", "LOG:eps", "--policy", "WORLD"], "comes from another world: world_seed 7"),
        (["--data", "no/such/log", "--policy", "random"], "no such log folder"),
        (["--data", "LOG:eps", "--policy", "random", "--mode", "greedy"], "random has no top k"),
        (["--data", "LOG:eps", "--policy", "heuristic", "--mode", "best"], "--mode 'best'"),
        (["--data", "obd:all", "--policy", "bts", "--mode", "greedy"], "applies to checkpoints"),
        (["--data", "obd:all", "--policy", "bts", "--fqe", "network"], "applies to simulator logs"),
        (
            [
                "--data",
                "LOG:eps",
                "--policy",
                "heuristic",
                "--level",
                "trajectory",
                "--fqe",
                "deep",
            ],
            "--fqe 'deep': must be one of linear, network",
        ),
        (
            ["--data", "LOG:eps", "--policy", "heuristic", "--fqe-phases", "3"],
            "--fqe-phases and --fqe-updates apply to --fqe network",
        ),
        (
            [
                *("--data", "LOG:eps", "--policy", "heuristic", "--level", "trajectory"),
                *("--fqe", "network", "--fqe-updates", "0"),
            ],
            "network FQE updates (0) must be an integer >= 1",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(obd, logs, tmp_path, capsys, argv, message):
    argv = [
        str(logs[a[4:]])
        if a.startswith("LOG:")
        else str(_another_world(tmp_path))
        if a == "WORLD"
        else a
        for a in argv
    ]
    code, out, err = _run(capsys, *argv, "--bootstrap", "10")
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("rayrec: error: ")
    assert out == ""


def test_data_fetch_command(obd, capsys):
    # A cached, intact dataset: the fetch checks it and answers with its folder.
    assert main(["data", "fetch", "obd"]) == 0
    assert capsys.readouterr().out.strip() == f"obd: {obd_dir()}"
