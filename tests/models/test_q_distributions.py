"""The Q module's return distributions: C51's Q = sum_k p_k z_k and QR-DQN's Q = the mean of the
quantiles, on known head outputs; the train outputs RLlib's and rayrec's learners read; bad or
mixed distribution settings (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch
from ray.rllib.core.columns import Columns
from torch import nn

from rayrec.contracts.observation import Obs
from rayrec.envs import SessionVectorEnv
from rayrec.models.q_module import (
    QF_QUANTILES,
    QF_TARGET_NEXT_QUANTILES,
    CandidateQModule,
    head_width,
)

SMALL = {"num_items": 300, "num_topics": 5, "num_candidates": 3, "history_len": 6, "embed_dim": 8}
NEG = float("-inf")


class Fixed(nn.Module):
    """A stand-in Q network whose head outputs are given: (rows, M, width) whatever the obs."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("values", values)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.values


def _module(**model_config) -> CandidateQModule:
    env = SessionVectorEnv(num_envs=2, seed=0, **SMALL)
    module = CandidateQModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config={"epsilon": 0.0, **model_config},
    )
    module.make_target_networks()
    return module


def _obs(mask: list[list[int]]) -> dict[str, torch.Tensor]:
    # The stand-in network reads nothing; the module reads the action mask.
    return {Obs.ACTION_MASK: torch.tensor(mask, dtype=torch.int8)}


def test_c51_q_is_the_probability_weighted_sum_of_the_atoms():
    module = _module(num_atoms=3, v_min=0.0, v_max=10.0)  # atoms z = (0, 5, 10)
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]])
    module.q_net = Fixed(probs.log())  # logits whose softmax is `probs`
    out = module.compute_q_values({Columns.OBS: _obs([[1, 1, 0]])})
    # By hand: 0.2*0 + 0.3*5 + 0.5*10 = 6.5; 0.5*0 + 0.25*5 + 0.25*10 = 3.75; candidate 2 masked.
    torch.testing.assert_close(out["qf_preds"], torch.tensor([[6.5, 3.75, NEG]]))
    torch.testing.assert_close(out["atoms"], torch.tensor([0.0, 5.0, 10.0]))
    torch.testing.assert_close(out["qf_probs"], probs)


def test_quantile_q_is_the_mean_of_the_quantiles():
    module = _module(num_quantiles=4)
    quantiles = torch.tensor([[[0.0, 1.0, 2.0, 5.0], [1.0, 1.0, 4.0, 6.0], [9.0, 9.0, 9.0, 9.0]]])
    module.q_net = Fixed(quantiles)
    out = module.compute_q_values({Columns.OBS: _obs([[1, 1, 0]])})
    # By hand: (0 + 1 + 2 + 5) / 4 = 2; (1 + 1 + 4 + 6) / 4 = 3; candidate 2 masked.
    torch.testing.assert_close(out["qf_preds"], torch.tensor([[2.0, 3.0, NEG]]))
    torch.testing.assert_close(out[QF_QUANTILES], quantiles)
    greedy = module.forward_inference({Columns.OBS: _obs([[1, 1, 0]])})[Columns.ACTIONS]
    assert greedy.tolist() == [1]


@pytest.mark.parametrize("double_q", [True, False])
def test_quantile_train_outputs(double_q):
    """Current quantiles of s; online Q of s' (double Q) from the same pass; target quantiles."""
    module = _module(num_quantiles=2, double_q=double_q)
    current = torch.tensor([[[0.0, 2.0], [1.0, 3.0], [5.0, 5.0]]])
    following = torch.tensor([[[4.0, 6.0], [0.0, 0.0], [7.0, 7.0]]])
    # With double Q the online network sees current and next observations as one batch.
    module.q_net = Fixed(torch.cat([current, following]) if double_q else current)
    module._target_q_net = Fixed(following + 10.0)
    mask = _obs([[1, 1, 0]])
    out = module.forward_train({Columns.OBS: mask, Columns.NEXT_OBS: mask})
    torch.testing.assert_close(out[QF_QUANTILES], current)
    torch.testing.assert_close(out["qf_preds"], torch.tensor([[1.0, 2.0, NEG]]))
    torch.testing.assert_close(out[QF_TARGET_NEXT_QUANTILES], following + 10.0)
    torch.testing.assert_close(out["qf_target_next_preds"], torch.tensor([[15.0, 10.0, NEG]]))
    if double_q:
        torch.testing.assert_close(out["qf_next_preds"], torch.tensor([[5.0, 0.0, NEG]]))
    else:
        assert "qf_next_preds" not in out


def test_c51_train_outputs_keep_the_current_half_under_double_q():
    """RLlib's C51 loss gathers logits at the taken actions of the current observations only."""
    module = _module(num_atoms=3, v_min=0.0, v_max=10.0, double_q=True)
    current = torch.zeros(1, 3, 3)
    following = torch.tensor([[[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    module.q_net = Fixed(torch.cat([current, following]))
    module._target_q_net = Fixed(following)
    mask = _obs([[1, 1, 1]])
    out = module.forward_train({Columns.OBS: mask, Columns.NEXT_OBS: mask})
    torch.testing.assert_close(out["qf_logits"], current)
    torch.testing.assert_close(out["qf_probs"], torch.full((1, 3, 3), 1 / 3))
    torch.testing.assert_close(out["qf_preds"], torch.full((1, 3), 5.0))
    assert out["qf_next_preds"][0, 0] > 5.0 > out["qf_next_preds"][0, 1]
    torch.testing.assert_close(out["qf_target_next_probs"], torch.softmax(following, dim=-1))


@pytest.mark.parametrize("kind", ["c51", "quantile"])
def test_the_real_head_gives_q_from_its_distribution(kind):
    """With the real network, Q is the same function of the distribution's outputs."""
    env = SessionVectorEnv(num_envs=4, seed=0, **SMALL)
    obs, _ = env.reset(seed=0)
    obs = {k: torch.from_numpy(v) for k, v in obs.items()}
    config = {"num_atoms": 5, "v_min": 0.0, "v_max": 8.0} if kind == "c51" else {"num_quantiles": 5}
    module = _module(**config)
    with torch.no_grad():
        out = module.compute_q_values({Columns.OBS: obs})
    if kind == "c51":
        assert out["qf_probs"].shape == (4, 3, 5)
        expected = (out["qf_probs"] * torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0])).sum(-1)
    else:
        assert out[QF_QUANTILES].shape == (4, 3, 5)
        expected = out[QF_QUANTILES].mean(-1)
    valid = obs[Obs.ACTION_MASK] > 0
    torch.testing.assert_close(out["qf_preds"][valid], expected[valid])


@pytest.mark.parametrize(
    "config, width",
    [
        ({}, 1),
        ({"num_atoms": 1, "v_min": -10.0, "v_max": 10.0}, 1),
        ({"num_atoms": 51, "v_min": 0.0, "v_max": 100.0}, 51),
        ({"num_quantiles": 2}, 2),
        ({"num_quantiles": 51, "num_atoms": 1, "v_min": None, "v_max": None}, 51),
    ],
)
def test_head_width(config, width):
    assert head_width(config) == width


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_quantiles": 1}, r"num_quantiles \(1\) must be a whole number >= 2"),
        ({"num_quantiles": 2.5}, r"num_quantiles \(2.5\) must be a whole number >= 2"),
        ({"num_quantiles": True}, r"num_quantiles \(True\) must be a whole number >= 2"),
        ({"num_atoms": 0}, r"num_atoms \(0\) must be a whole number >= 1"),
        (
            {"num_quantiles": 8, "num_atoms": 51},
            r"num_atoms \(51\) must be 1 with num_quantiles \(8\)",
        ),
        ({"num_quantiles": 8, "v_min": 0.0}, r"v_min \(0.0\) is C51's fixed support"),
        ({"num_quantiles": 8, "v_max": 100.0}, r"v_max \(100.0\) is C51's fixed support"),
        (
            {"num_atoms": 51, "v_min": 10.0, "v_max": 0.0},
            r"v_min \(10.0\) and v_max \(0.0\) must be finite numbers with v_min < v_max",
        ),
        ({"num_atoms": 51, "v_min": 0.0, "v_max": math.inf}, r"v_max \(inf\)"),
    ],
)
def test_bad_distribution_settings_are_clear_errors(config, message):
    with pytest.raises(ValueError, match=message):
        head_width(config)
    with pytest.raises(ValueError, match=message):
        _module(**config)


def test_rllib_c51_loss_reads_the_module_outputs_on_a_hand_computed_batch():
    """RLlib's C51 learner on this module's train outputs: gamma 0.5, atoms z = (0, 5, 10).

    s: the taken candidate 0 has p = (0.2, 0.3, 0.5). s': the online Q is (5, 8.5, masked), so
    double Q bootstraps from candidate 1, whose target-network p' = (0.25, 0.5, 0.25) (candidate
    0's (0.9, 0.05, 0.05) must not be read). Reward 1, one step: r + gamma z = (1, 3.5, 6), at
    (0.2, 0.7, 1.2) atom spacings; projected onto the atoms:
        1   -> 0.8 * 0.25 to z0, 0.2 * 0.25 to z1
        3.5 -> 0.3 * 0.5 to z0, 0.7 * 0.5 to z1
        6   -> 0.8 * 0.25 to z1, 0.2 * 0.25 to z2
        m = (0.35, 0.6, 0.05)
    Loss = weight 2 * cross-entropy -(0.35 ln 0.2 + 0.6 ln 0.3 + 0.05 ln 0.5) (about 2.6407).
    """
    from ray.rllib.algorithms.dqn.dqn import DQNConfig
    from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner

    config = DQNConfig().training(num_atoms=3, v_min=0.0, v_max=10.0, gamma=0.5, double_q=True)
    module = _module(**{k: config.model_config[k] for k in ("num_atoms", "v_min", "v_max")})
    current = torch.tensor([[[0.2, 0.3, 0.5], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]])
    online_next = torch.tensor([[[1 / 3, 1 / 3, 1 / 3], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]]])
    target_next = torch.tensor([[[0.9, 0.05, 0.05], [0.25, 0.5, 0.25], [0.0, 0.0, 1.0]]])
    module.q_net = Fixed(torch.cat([current, online_next]).clamp(min=1e-9).log())
    module._target_q_net = Fixed(target_next.clamp(min=1e-9).log())
    mask = _obs([[1, 1, 0]])
    fwd_out = module.forward_train({Columns.OBS: mask, Columns.NEXT_OBS: mask})
    batch = {
        Columns.ACTIONS: torch.tensor([0]),
        Columns.REWARDS: torch.tensor([1.0]),
        Columns.TERMINATEDS: torch.tensor([False]),
        "n_step": torch.tensor([1.0]),
        "weights": torch.tensor([2.0]),
    }
    loss = DQNTorchLearner(config=config).compute_loss_for_module(
        module_id="default_policy", config=config, batch=batch, fwd_out=fwd_out
    )
    expected = -2.0 * (0.35 * math.log(0.2) + 0.6 * math.log(0.3) + 0.05 * math.log(0.5))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
