"""Top-K off-policy-corrected REINFORCE: lambda_K, capped weights and the loss on hand-computed
batches, the behaviour head's blocked gradient, its config errors (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rayrec.algorithms.topk_reinforce import (
    LOGGED_PROPENSITY,
    RETURNS,
    TopKReinforceConfig,
    TopKReinforceTorchLearner,
    capped_weights,
    topk_multiplier,
    topk_reinforce_loss,
)
from rayrec.contracts.observation import Obs
from rayrec.envs import SessionVectorEnv
from rayrec.models import CandidatePolicyModule
from rayrec.models.policy_module import BEHAVIOR_HEAD_KEY, BEHAVIOR_LOGITS
from rayrec.models.towers import MASKED_LOGIT

M = MASKED_LOGIT
LN = math.log

# Three rows over three candidates (M: masked). Policy probabilities pi:
#   row 0: logits (0, ln 3, M)  -> (1/4, 3/4, 0), logged action 0: pi = 1/4
#   row 1: logits (0, 0, 0)     -> (1/3, 1/3, 1/3), action 2: pi = 1/3
#   row 2: logits (M, ln 4, 0)  -> (0, 4/5, 1/5), action 2: pi = 1/5
LOGITS = torch.tensor([[0.0, LN(3.0), M], [0.0, 0.0, 0.0], [M, LN(4.0), 0.0]])
ACTIONS = torch.tensor([0, 2, 2])
PI = [0.25, 1 / 3, 0.2]
RETURNS_BY_ROW = [2.0, 1.0, 3.0]
# Behaviour probabilities of the logged actions; with cap 5 the ratios pi / beta are
# 0.5, 3.33 and 20 -> 5 (capped).
BETA = [0.5, 0.1, 0.01]
CAP = 5.0
# Behaviour-head logits whose softmax gives exactly BETA at the logged actions:
#   row 0: (0, 0, M) -> 1/2; row 1: (ln 8, 0, 0) -> (0.8, 0.1, 0.1); row 2: (M, ln 99, 0) -> 0.01.
BEHAVIOR = torch.tensor([[0.0, 0.0, M], [LN(8.0), 0.0, 0.0], [M, LN(99.0), 0.0]])


def _expected(k: int) -> float:
    """-mean[min(pi / beta, c) * K (1 - pi)^(K - 1) * R * ln pi], worked out row by row."""
    total = 0.0
    for pi, beta, r in zip(PI, BETA, RETURNS_BY_ROW, strict=True):
        total += min(pi / beta, CAP) * k * (1 - pi) ** (k - 1) * r * LN(pi)
    return -total / 3


@pytest.mark.parametrize(("k", "expected"), [(1, 1.0), (2, 1.6), (5, 5 * 0.8**4)])
def test_topk_multiplier_by_hand(k, expected):
    # lambda_K = K (1 - pi)^(K - 1) at pi = 0.2: 1, 2 * 0.8 = 1.6, 5 * 0.8^4 = 2.048.
    got = topk_multiplier(torch.tensor([0.2]), k)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_topk_multiplier_edges():
    # K = 1 is 1 even at pi = 1 (0^0 = 1); with K > 1 an item the policy already picks
    # surely gets no push, and a rare item gets almost K.
    pi = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(topk_multiplier(pi, 1), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(topk_multiplier(pi, 3), torch.tensor([0.0, 3.0]))


def test_capped_weights_by_hand():
    pi = torch.tensor([0.2, 0.5, 0.9, 0.3])
    beta = torch.tensor([0.1, 0.5, 0.05, 0.9])
    # Ratios 2, 1, 18 (capped to 5), 1/3.
    got = capped_weights(pi, beta, 5.0)
    torch.testing.assert_close(got, torch.tensor([2.0, 1.0, 5.0, 1 / 3]))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_loss_on_a_hand_computed_batch(k):
    loss = topk_reinforce_loss(
        LOGITS, ACTIONS, torch.tensor(RETURNS_BY_ROW), torch.tensor(BETA), k, CAP
    )
    assert float(loss) == pytest.approx(_expected(k), rel=1e-6)


def test_k1_is_plain_capped_off_policy_reinforce():
    # K = 1 by hand: -(0.5 * 2 * ln 1/4 + 10/3 * 1 * ln 1/3 + 5 * 3 * ln 1/5) / 3.
    by_hand = -(0.5 * 2 * LN(0.25) + (10 / 3) * LN(1 / 3) + 5 * 3 * LN(0.2)) / 3
    loss = topk_reinforce_loss(
        LOGITS, ACTIONS, torch.tensor(RETURNS_BY_ROW), torch.tensor(BETA), 1, CAP
    )
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)
    # Without the cap, row 2's weight would be 20 instead of 5.
    uncapped = topk_reinforce_loss(
        LOGITS, ACTIONS, torch.tensor(RETURNS_BY_ROW), torch.tensor(BETA), 1, 100.0
    )
    assert float(uncapped - loss) == pytest.approx(-(20 - 5) * 3 * LN(0.2) / 3, rel=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_gradient_treats_the_weights_as_constants(k):
    """d loss / d logits = -(1/B) w lambda_K R (onehot(a) - pi): the REINFORCE gradient with the
    stop-gradient weights (eq. 7's surrogate), nothing on masked candidates."""
    logits = LOGITS.clone().requires_grad_(True)
    returns = torch.tensor(RETURNS_BY_ROW)
    topk_reinforce_loss(logits, ACTIONS, returns, torch.tensor(BETA), k, CAP).backward()
    probs = torch.softmax(LOGITS, dim=-1)
    onehot = torch.nn.functional.one_hot(ACTIONS, 3).float()
    coeff = torch.tensor(
        [
            min(pi / beta, CAP) * k * (1 - pi) ** (k - 1) * r
            for pi, beta, r in zip(PI, BETA, RETURNS_BY_ROW, strict=True)
        ]
    )
    expected = -(coeff[:, None] * (onehot - probs)) / 3
    torch.testing.assert_close(logits.grad, expected)
    assert logits.grad[0, 2] == 0 and logits.grad[2, 0] == 0


def _learner_loss(
    mode: str, k: int, logged: list[float]
) -> tuple[torch.Tensor, TopKReinforceTorchLearner]:
    config = TopKReinforceConfig().training(top_k=k, weight_cap=CAP, behavior_propensity=mode)
    learner = TopKReinforceTorchLearner(config=config)
    batch = {
        Columns.ACTIONS: ACTIONS,
        RETURNS: torch.tensor(RETURNS_BY_ROW),
        LOGGED_PROPENSITY: torch.tensor(logged),
    }
    fwd_out = {Columns.ACTION_DIST_INPUTS: LOGITS, BEHAVIOR_LOGITS: BEHAVIOR}
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=config, batch=batch, fwd_out=fwd_out
    )
    return loss, learner


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize(
    ("mode", "logged"),
    # The head's beta equals BETA, so both modes see the same beta; `learned` ignores the log.
    [("logged", BETA), ("learned", BETA), ("learned", [1.0, 1.0, 1.0])],
)
def test_learner_loss_adds_the_behaviour_nll(mode, logged, k):
    loss, learner = _learner_loss(mode, k, logged)
    nll = -(LN(0.5) + LN(0.1) + LN(0.01)) / 3
    assert float(loss) == pytest.approx(_expected(k) + nll, rel=1e-5)
    metrics = learner.metrics.peek("default_policy")
    assert float(metrics["behavior_nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(metrics["capped_share"]) == pytest.approx(1 / 3)


def test_logged_mode_uses_the_logged_propensities():
    loss, _ = _learner_loss("logged", 1, [1.0, 1.0, 1.0])
    # beta = 1: weights are pi itself (none capped).
    reinforce = -sum(pi * r * LN(pi) for pi, r in zip(PI, RETURNS_BY_ROW, strict=True)) / 3
    nll = -(LN(0.5) + LN(0.1) + LN(0.01)) / 3
    assert float(loss) == pytest.approx(reinforce + nll, rel=1e-5)


def test_a_module_without_a_behaviour_head_is_a_clear_error():
    config = TopKReinforceConfig()
    learner = TopKReinforceTorchLearner(config=config)
    batch = {Columns.ACTIONS: ACTIONS, RETURNS: torch.ones(3), LOGGED_PROPENSITY: torch.ones(3)}
    with pytest.raises(ValueError, match="TopKReinforce needs behaviour logits"):
        learner.compute_loss_for_module(
            module_id="default_policy",
            config=config,
            batch=batch,
            fwd_out={Columns.ACTION_DIST_INPUTS: LOGITS},
        )


SMALL = {"num_items": 300, "num_topics": 5, "num_candidates": 8, "history_len": 6, "embed_dim": 8}


def _module_and_obs(inference_only: bool = False):
    env = SessionVectorEnv(num_envs=6, seed=0, **SMALL)
    obs, _ = env.reset(seed=0)
    for _ in range(3):  # a few steps, so the GRU reads a real history
        obs, *_ = env.step(np.argmax(obs[Obs.ACTION_MASK], axis=1))
    torch.manual_seed(0)
    module = CandidatePolicyModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        inference_only=inference_only,
        model_config={"encoder": "gru", "hidden": 16, BEHAVIOR_HEAD_KEY: True},
    )
    return module, {k: torch.from_numpy(v) for k, v in obs.items()}


def test_behaviour_head_gradient_stops_at_the_user_state():
    module, obs = _module_and_obs()
    out = module.forward_train({Columns.OBS: obs})
    behavior = out[BEHAVIOR_LOGITS]
    assert behavior.shape == (6, SMALL["num_candidates"])
    mask = obs[Obs.ACTION_MASK] > 0
    assert torch.all(behavior[~mask] == MASKED_LOGIT)
    actions = torch.argmax(obs[Obs.ACTION_MASK].float(), dim=1)
    nll = -torch.log_softmax(behavior, dim=-1).gather(1, actions.view(-1, 1)).mean()
    nll.backward()
    for name, p in module.towers.named_parameters():
        assert p.grad is None or torch.all(p.grad == 0), name
    assert module.towers.encoder is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.behavior.parameters())


def test_policy_gradient_does_not_train_the_behaviour_head():
    module, obs = _module_and_obs()
    out = module.forward_train({Columns.OBS: obs})
    actions = torch.argmax(obs[Obs.ACTION_MASK].float(), dim=1)
    loss = topk_reinforce_loss(
        out[Columns.ACTION_DIST_INPUTS], actions, torch.ones(6), torch.full((6,), 0.5), 2, CAP
    )
    loss.backward()
    assert all(p.grad is None for p in module.behavior.parameters())
    encoder_grads = [p.grad for p in module.towers.encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)


def test_serving_modules_have_no_behaviour_head():
    module, obs = _module_and_obs(inference_only=True)
    assert not hasattr(module, "behavior")
    out = module.forward_inference({Columns.OBS: obs})
    assert set(out) == {Columns.ACTION_DIST_INPUTS}
    full, _ = _module_and_obs()
    assert "behavior" in full.get_non_inference_attributes()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"top_k": 0}, r"top_k \(0\) must be a whole number >= 1"),
        ({"top_k": 2.5}, r"top_k \(2.5\) must be a whole number >= 1"),
        ({"top_k": True}, r"top_k \(True\) must be a whole number >= 1"),
        ({"weight_cap": 0.0}, r"weight_cap \(0.0\) must be a finite number > 0"),
        ({"weight_cap": math.inf}, r"weight_cap \(inf\) must be a finite number > 0"),
        ({"behavior_propensity": "oracle"}, r"behavior_propensity \('oracle'\) must be one of"),
        ({"gamma": 1.5}, r"gamma \(1.5\) must be a number in \[0, 1\]"),
        ({"beta": 0.5}, r"beta \(0.5\) does not apply to TopKReinforce"),
        ({"vf_coeff": 0.5}, r"vf_coeff \(0.5\) does not apply to TopKReinforce"),
    ],
)
def test_config_errors(settings, message):
    config = TopKReinforceConfig().training(**settings)
    config.offline_data(dataset_num_iters_per_learner=1)
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_config_defaults():
    config = TopKReinforceConfig()
    assert (config.top_k, config.weight_cap, config.behavior_propensity) == (1, 10.0, "logged")
    assert config.model_config[BEHAVIOR_HEAD_KEY] is True
