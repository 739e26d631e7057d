"""rayrec RLModules: shapes, masking, equivariance, slate probabilities, dueling, encoders."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import Obs
from rayrec.envs import SessionVectorEnv
from rayrec.models import CandidatePolicyModule, make_encoder
from rayrec.models.q_module import CandidateQModule, dueling_aggregate
from rayrec.models.slate import plackett_luce
from rayrec.models.towers import MASKED_LOGIT, RecommenderTowers

SMALL = {"num_items": 300, "num_topics": 5, "num_candidates": 8, "history_len": 6, "embed_dim": 8}
ENCODERS = ["none", "mean", "gated", "gru", "attention"]


def _obs(num_envs: int = 16, steps: int = 3, **config):
    env = SessionVectorEnv(num_envs=num_envs, seed=0, **{**SMALL, **config})
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        mask = obs[Obs.ACTION_MASK]
        k = env.config.slate_size
        action = np.argsort(-mask, axis=1, kind="stable")[:, :k]
        obs, *_ = env.step(action if k > 1 else action[:, 0])
    return env, {k: torch.from_numpy(v) for k, v in obs.items()}


def _policy(env, **model):
    return CandidatePolicyModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config=model,
    )


def _q(env, **model):
    module = CandidateQModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config={"epsilon": 0.1, **model},
    )
    module.make_target_networks()
    return module


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("scorer", ["dot", "mlp"])
def test_policy_shapes_and_mask(encoder, scorer):
    env, obs = _obs()
    module = _policy(env, encoder=encoder, scorer=scorer)
    obs[Obs.ACTION_MASK][:, :3] = 0
    out = module.forward_train({Columns.OBS: obs})
    logits = out[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (16, 8)
    assert torch.all(logits[:, :3] == MASKED_LOGIT)
    probs = torch.softmax(logits, dim=-1)
    assert torch.all(probs[:, :3] == 0)
    assert torch.isfinite(module.compute_values({Columns.OBS: obs})).all()
    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    for _ in range(20):
        assert (dist.sample() >= 3).all()


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(
    "inputs",
    [{}, {"candidate_context": True}, {"relations": True, "separate_critic": True}],
    ids=["plain", "candidate_context", "relations"],
)
def test_scores_are_permutation_equivariant(encoder, inputs):
    env, obs = _obs()
    module = _policy(env, encoder=encoder, scorer="mlp", **inputs)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    permuted = dict(obs)
    for key in (
        Obs.CANDIDATE_ITEMS,
        Obs.CANDIDATE_FEATURES,
        Obs.CANDIDATE_SCALARS,
        Obs.ACTION_MASK,
    ):
        permuted[key] = obs[key][:, perm]
    with torch.no_grad():
        a = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        b = module.forward_inference({Columns.OBS: permuted})[Columns.ACTION_DIST_INPUTS]
        va = module.compute_values({Columns.OBS: obs})
        vb = module.compute_values({Columns.OBS: permuted})
    torch.testing.assert_close(a[:, perm], b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-5)


def test_parameter_count_does_not_depend_on_catalog_size():
    counts = []
    for n in (300, 30_000):
        env, _ = _obs(num_items=n, num_envs=2, steps=0)
        counts.append(sum(p.numel() for p in _policy(env, encoder="gru").parameters()))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("m, k", [(4, 2), (5, 3), (4, 4)])
def test_slate_log_probs_sum_to_one(m, k):
    logits = torch.randn(3, m, generator=torch.Generator().manual_seed(m * 10 + k))
    dist = plackett_luce(k).from_logits(logits)
    slates = torch.tensor(list(itertools.permutations(range(m), k)))
    total = torch.zeros(3)
    for slate in slates:
        total += dist.logp(slate.expand(3, k)).exp()
    torch.testing.assert_close(total, torch.ones(3))


def test_slate_samples_follow_plackett_luce():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, MASKED_LOGIT]])
    dist = plackett_luce(2).from_logits(logits)
    draws = torch.cat([dist.sample() for _ in range(4000)])
    assert (draws != 3).all() and (draws[:, 0] != draws[:, 1]).all()
    p_first = torch.softmax(logits, dim=-1)[0, 0].item()
    observed = (draws[:, 0] == 0).float().mean().item()
    assert abs(observed - p_first) < 4 * (p_first * (1 - p_first) / 4000) ** 0.5


def test_slate_policy_module_end_to_end():
    env, obs = _obs(slate_size=3)
    module = _policy(env, encoder="attention")
    out = module.forward_exploration({Columns.OBS: obs})
    dist = module.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    slate = dist.sample()
    assert slate.shape == (16, 3)
    assert torch.isfinite(dist.logp(slate)).all()
    assert env.single_action_space.contains(slate[0].numpy())


def test_dueling_aggregation_identity():
    torch.manual_seed(0)
    value = torch.randn(5, 1)
    advantage = torch.randn(5, 7)
    mask = (torch.rand(5, 7) > 0.3).float()
    mask[:, 0] = 1
    q = dueling_aggregate(value, advantage, mask)
    mean_valid = ((q - value) * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(mean_valid, torch.zeros(5), atol=1e-6, rtol=0)
    # Advantage differences survive aggregation.
    torch.testing.assert_close(q[:, 1] - q[:, 0], advantage[:, 1] - advantage[:, 0])


@pytest.mark.parametrize("atoms", [1, 11])
@pytest.mark.parametrize("dueling", [True, False])
def test_q_module_masks_and_targets(atoms, dueling):
    env, obs = _obs()
    module = _q(env, num_atoms=atoms, dueling=dueling, v_min=-1.0, v_max=20.0)
    obs[Obs.ACTION_MASK][:, 1] = 0
    batch = {Columns.OBS: obs, Columns.NEXT_OBS: obs}
    out = module.forward_train(batch)
    q = out["qf_preds"]
    assert q.shape == (16, 8)
    valid = obs[Obs.ACTION_MASK] > 0
    assert torch.isneginf(q[~valid]).all() and torch.isfinite(q[valid]).all()
    assert out["qf_target_next_preds"].shape == (16, 8)
    if atoms > 1:
        assert out["qf_probs"].shape == (16, 8, atoms)
        torch.testing.assert_close(out["qf_probs"].sum(-1), torch.ones(16, 8))
    for t in range(5):
        actions = module.forward_exploration({Columns.OBS: obs}, t=t)[Columns.ACTIONS]
        assert valid[torch.arange(16), actions].all()


def test_q_target_network_is_separate():
    env, obs = _obs()
    module = _q(env)
    with torch.no_grad():
        for p in module.q_net.parameters():
            p.add_(1.0)
    a = module.compute_q_values({Columns.OBS: obs})["qf_preds"]
    b = module.forward_target({Columns.OBS: obs})["qf_preds"]
    assert not torch.allclose(a[torch.isfinite(a)], b[torch.isfinite(b)])


@pytest.mark.parametrize("encoder", ["mean", "gated", "gru", "attention"])
def test_encoders_ignore_padding(encoder):
    torch.manual_seed(0)
    enc = make_encoder(encoder, in_dim=5, hidden=8, history_len=6).eval()
    x = torch.randn(2, 6, 5)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    x[1, :3] = torch.randn(3, 5) * 100  # garbage in the padding of row 1 only
    out = enc(x.clone(), mask)
    x2 = x.clone()
    x2[1, :3] = x[0, :3]
    torch.testing.assert_close(out[0], enc(x2, mask)[0])
    torch.testing.assert_close(out[1], enc(x2, mask)[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("encoder", ["mean", "gated", "gru", "attention"])
def test_encoders_handle_empty_and_variable_history(encoder):
    torch.manual_seed(0)
    enc = make_encoder(encoder, in_dim=5, hidden=8, history_len=6).eval()
    x = torch.randn(3, 6, 5)
    mask = torch.tensor([[0] * 6, [0, 0, 0, 0, 1, 1], [1] * 6], dtype=torch.float32)
    out = enc(x, mask)
    assert out.shape == (3, 8) and torch.isfinite(out).all()
    # Longer histories change the encoding (the encoder reads them).
    assert not torch.allclose(out[1], out[2])


@pytest.mark.parametrize("encoder", ["gru", "attention"])
def test_order_aware_encoders_see_order(encoder):
    torch.manual_seed(0)
    enc = make_encoder(encoder, in_dim=5, hidden=8, history_len=4).eval()
    x = torch.randn(1, 4, 5)
    mask = torch.ones(1, 4)
    assert not torch.allclose(enc(x, mask), enc(x.flip(1), mask))


def test_model_config_validation():
    with pytest.raises(ValueError, match=r"model\.hidden"):
        ModelConfig(hidden=0)
    with pytest.raises(ValueError, match="unknown model field"):
        ModelConfig.from_dict({"hiden": 3})
    with pytest.raises(ValueError, match=r"model\.candidate_context"):
        ModelConfig(candidate_context="yes")


def test_candidate_context_feeds_the_user_tower():
    """With candidate_context, what is on offer changes the user vector; without, it does not."""
    env, obs = _obs()
    other = dict(obs)
    other[Obs.CANDIDATE_FEATURES] = obs[Obs.CANDIDATE_FEATURES].roll(1, dims=0)
    for on in (False, True):
        towers = _policy(env, candidate_context=on).towers
        with torch.no_grad():
            changed = not torch.allclose(towers(obs)[0], towers(other)[0])
        assert changed == on


def test_relation_inputs_match_a_hand_computation():
    """Every user's row against numpy: response-weighted mean dot products with the history,
    the newest item, the closest item and the offer, then scalars, logit(CTR) and context."""
    _, obs = _obs(steps=4)
    rel = RecommenderTowers.relation_inputs(obs)
    b, m = obs[Obs.ACTION_MASK].shape
    n_resp, n_scalar = obs[Obs.HISTORY_RESPONSES].shape[-1], obs[Obs.CANDIDATE_SCALARS].shape[-1]
    assert rel.shape == (b, m, n_resp + 4 + n_scalar + 1 + obs[Obs.CONTEXT].shape[-1])
    for row in range(b):
        valid = obs[Obs.HISTORY_MASK][row] > 0
        hist = obs[Obs.HISTORY_FEATURES][row][valid].double().numpy()
        resp = obs[Obs.HISTORY_RESPONSES][row][valid].double().numpy()
        cand = obs[Obs.CANDIDATE_FEATURES][row].double().numpy()
        dots = cand @ hist.T  # (M, n)
        expected = [*(dots @ resp / len(hist)).T, dots.mean(axis=1), dots[:, -1], dots.max(1)]
        keep = obs[Obs.ACTION_MASK][row].numpy() > 0
        expected.append(cand @ cand[keep].mean(axis=0))
        for i, want in enumerate(expected):
            np.testing.assert_allclose(rel[row, :, i].numpy(), want, rtol=1e-4, atol=1e-5)
        ctr = obs[Obs.CANDIDATE_SCALARS][row, :, 1].double().clamp(1e-4, 1 - 1e-4)
        np.testing.assert_allclose(
            rel[row, :, n_resp + 4 + n_scalar].numpy(), torch.logit(ctr).numpy(), rtol=1e-4
        )


def test_the_relation_head_adds_to_the_score_and_reads_the_clicks():
    env, obs = _obs(steps=4)
    towers = _policy(env, relations=True).towers
    with torch.no_grad():
        before = towers(obs)[2]
        towers.relation[-1].bias += 5.0
        torch.testing.assert_close(towers(obs)[2], before + 5.0)
    flipped = dict(obs)
    responses = obs[Obs.HISTORY_RESPONSES].clone()
    responses[:, -1, 0] = 1.0 - responses[:, -1, 0]
    flipped[Obs.HISTORY_RESPONSES] = responses
    assert not torch.allclose(towers.relation_inputs(obs), towers.relation_inputs(flipped))
    assert _policy(env).towers.relation is None


def test_separate_critic_leaves_the_policy_towers_out_of_the_value():
    env, obs = _obs()
    for separate in (False, True):
        module = _policy(env, separate_critic=separate)
        module.compute_values({Columns.OBS: obs}).sum().backward()
        grads = [p.grad for p in module.towers.parameters()]
        assert all(g is None for g in grads) == separate
    inference = CandidatePolicyModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config={"separate_critic": True},
        inference_only=True,
    )
    assert not hasattr(inference, "critic") and not hasattr(inference, "value_head")
    assert module.get_non_inference_attributes() == ["critic"]


def test_space_mismatch_is_a_clear_error():
    env, _ = _obs(num_envs=2, steps=0)
    with pytest.raises(ValueError, match="Discrete or MultiDiscrete"):
        CandidatePolicyModule(
            observation_space=env.single_observation_space,
            action_space=gym.spaces.Box(0, 1, (2,)),
            model_config={},
        )


def test_gated_pooling_can_keep_the_clicked_entries_only():
    """The gate reads the responses: with a gate on the click column the encoding is the mean of
    the clicked entries' projections, whatever was shown and passed over."""
    from rayrec.models.encoders import GatedPoolEncoder

    torch.manual_seed(0)
    enc = GatedPoolEncoder(in_dim=5, hidden=8, history_len=6).eval()
    with torch.no_grad():
        enc.gate.weight.zero_()
        enc.gate.weight[0, 4] = 40.0  # column 4: the click
        enc.gate.bias.fill_(-20.0)
    x = torch.randn(1, 6, 5)
    x[0, :, 4] = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    mask = torch.ones(1, 6)
    h = torch.cat([enc.linear(x), enc.proj(x)], dim=-1)[0]
    torch.testing.assert_close(enc(x, mask)[0], h[[1, 3]].mean(0), rtol=1e-4, atol=1e-4)
    x[0, [0, 2], :4] += 5.0  # what was not clicked does not move it
    torch.testing.assert_close(enc(x, mask)[0], h[[1, 3]].mean(0), rtol=1e-4, atol=1e-4)
