"""SlateQ's decomposition, slate optimisers and loss against hand-computed values."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

import rayrec.envs  # noqa: F401  (registers the env ids)
from rayrec.algorithms.slateq import SlateQConfig, clicked_slots, slateq_loss
from rayrec.contracts.observation import Obs
from rayrec.models.slateq import (
    SLATEQ_CHOICE,
    SLATEQ_ITEM_Q,
    SLATEQ_NULL_Q,
    best_slates,
    slate_click_logits,
    slate_scores,
    slate_value,
)

LOG_EPS = torch.log(torch.tensor([1.0, 0.5]))


def _case():
    q = torch.tensor([[10.0, 2.0, 5.0, 1.0]])
    q_null = torch.tensor([3.0])
    log_w = torch.log(torch.tensor([[1.0, 2.0, 0.5, 1.0]]))
    mask = torch.ones(1, 4)
    return q, q_null, log_w, mask


def test_slate_value_by_hand():
    q, q_null, log_w, mask = _case()
    # Slot weights eps_j w: 1 * 1 and 0.5 * 0.5 = 0.25.
    value = slate_value(q, q_null, log_w, torch.tensor([[0, 2]]), LOG_EPS, mask)
    assert value.item() == pytest.approx((3.0 + 1.0 * 10.0 + 0.25 * 5.0) / (1.0 + 1.0 + 0.25))


def test_click_probabilities_are_the_mnl_with_position_bias():
    _, _, log_w, mask = _case()
    logits = slate_click_logits(log_w, torch.tensor([[1, 0]]), LOG_EPS, mask)
    # [no click, slot 0 (w 2), slot 1 (0.5 x w 1)] over 1 + 2 + 0.5.
    expected = torch.tensor([[1.0, 2.0, 0.5]]) / 3.5
    assert torch.softmax(logits, dim=1) == pytest.approx(expected, abs=1e-6)


def test_a_slot_that_shows_nothing_adds_nothing():
    q, q_null, log_w, mask = _case()
    mask[0, 2] = 0
    single = slate_value(q, q_null, log_w, torch.tensor([[0, -1]]), LOG_EPS, mask)
    assert single.item() == pytest.approx((3.0 + 10.0) / 2.0)
    for slate in ([[0, 2]], [[0, 0]]):  # a masked candidate, a repeat
        value = slate_value(q, q_null, log_w, torch.tensor(slate), LOG_EPS, mask)
        assert value.item() == pytest.approx(single.item())
        logits = slate_click_logits(log_w, torch.tensor(slate), LOG_EPS, mask)
        assert logits[0, 2].item() == -math.inf


def _brute_force(q, q_null, log_w, log_eps, mask, k):
    best = []
    for b in range(q.shape[0]):
        valid = [i for i in range(q.shape[1]) if mask[b, i] > 0]
        values = [
            slate_value(
                q[b : b + 1],
                q_null[b : b + 1],
                log_w[b : b + 1],
                torch.tensor([s]),
                log_eps,
                mask[b : b + 1],
            ).item()
            for s in itertools.permutations(valid, k)
        ]
        best.append(max(values))
    return torch.tensor(best)


def _random_case(seed: int, b: int = 48, m: int = 7, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, m, generator=g) * 5 + 10
    q_null = torch.randn(b, generator=g) * 5 + 10
    log_w = torch.randn(b, m, generator=g) * 1.5
    log_eps = -torch.sort(torch.rand(k, generator=g) * 2, descending=False).values
    log_eps = log_eps - log_eps[0]
    mask = (torch.rand(b, m, generator=g) > 0.2).float()
    mask[:, :k] = 1.0
    return q, q_null, log_w, log_eps, mask, k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_optimiser_finds_the_best_ordered_slate(seed):
    q, q_null, log_w, log_eps, mask, k = _random_case(seed)
    slates, value = best_slates(q, q_null, log_w, log_eps, mask, k, "exact")
    assert value == pytest.approx(_brute_force(q, q_null, log_w, log_eps, mask, k), abs=1e-4)
    assert bool((torch.gather(mask, 1, slates) > 0).all())
    assert all(len(set(row.tolist())) == k for row in slates)


@pytest.mark.parametrize("method", ["topk", "greedy"])
def test_heuristic_optimisers_are_at_most_exact_and_sometimes_below(method):
    q, q_null, log_w, log_eps, mask, k = _random_case(3, b=200)
    _, exact = best_slates(q, q_null, log_w, log_eps, mask, k, "exact")
    slates, value = best_slates(q, q_null, log_w, log_eps, mask, k, method)
    assert bool((value <= exact + 1e-4).all())
    assert bool((value < exact - 1e-4).any())
    assert bool((torch.gather(mask, 1, slates) > 0).all())


def test_greedy_picks_the_best_single_item_first():
    q, q_null, log_w, mask = _case()
    slates, _ = best_slates(q, q_null, log_w, LOG_EPS[:1], mask, 1, "greedy")
    # Alone in slot 0: (3 + w q) / (1 + w) = 6.5, 2.33, 3.67, 2 -> item 0.
    assert slates.tolist() == [[0]]


@pytest.mark.parametrize("method", ["exact", "topk", "greedy"])
def test_scores_rank_the_optimisers_slate_first_in_slot_order(method):
    q, q_null, log_w, log_eps, mask, k = _random_case(4)
    slates, _ = best_slates(q, q_null, log_w, log_eps, mask, k, method)
    scores = slate_scores(q, q_null, log_w, log_eps, mask, k, method)
    assert torch.equal(torch.topk(scores, k, dim=1).indices, slates)
    assert bool(torch.isinf(scores[mask == 0]).all())


def test_fewer_valid_candidates_than_slots_leave_slots_empty():
    q, q_null, log_w, mask = _case()
    mask[0] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    slates, value = best_slates(q, q_null, log_w, LOG_EPS, mask, 2, "exact")
    assert slates.tolist() == [[1, -1]]
    assert value.item() == pytest.approx((3.0 + 2.0 * 2.0) / 3.0)


def test_clicked_slot_is_read_from_the_next_observation():
    env = gym.make_vec(
        "rayrec/Session-v0",
        num_envs=16,
        vectorization_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
        slate_size=3,
        num_items=300,
    )
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    clicks = misses = 0
    for _ in range(30):
        slates = np.stack([rng.permutation(20)[:3] for _ in range(16)])
        next_obs, reward, *_ = env.step(slates)
        slot = clicked_slots(
            {k: torch.from_numpy(v) for k, v in obs.items()},
            torch.from_numpy(slates),
            {k: torch.from_numpy(v) for k, v in next_obs.items()},
        ).numpy()
        # The click reward is 1 per click: a slot is found exactly when the user clicked.
        assert np.array_equal(slot >= 0, reward > 0)
        for b in np.flatnonzero(slot >= 0):
            item = obs[Obs.CANDIDATE_ITEMS][b, slates[b, slot[b]]]
            assert item == next_obs[Obs.HISTORY_ITEMS][b, -1]
        clicks, misses = clicks + int((slot >= 0).sum()), misses + int((slot < 0).sum())
        obs = next_obs
    assert clicks > 20 and misses > 20


def _batch(clicked_item: list[int]) -> dict:
    """Two transitions over 3 candidates (ids 10, 11, 12), slates of 2."""
    hist = torch.full((2, 2), -1)
    hist[:, -1] = torch.tensor(clicked_item)
    responses = torch.zeros(2, 2, 4)
    responses[:, -1, 0] = torch.tensor([1.0 if i >= 0 else 0.0 for i in clicked_item])
    obs = {
        Obs.CANDIDATE_ITEMS: torch.tensor([[10, 11, 12], [10, 11, 12]]),
        Obs.ACTION_MASK: torch.ones(2, 3),
    }
    next_obs = {
        Obs.HISTORY_ITEMS: hist,
        Obs.HISTORY_RESPONSES: responses,
        Obs.ACTION_MASK: torch.ones(2, 3),
    }
    return {
        Columns.OBS: obs,
        Columns.NEXT_OBS: next_obs,
        Columns.ACTIONS: torch.tensor([[2, 0], [1, 2]]),
        Columns.REWARDS: torch.tensor([1.0, 0.0]),
        Columns.TERMINATEDS: torch.tensor([False, True]),
    }


def test_loss_by_hand():
    """Row 0 clicked slot 0 (item 12 = candidate 2); row 1 clicked nothing and terminated."""
    q = torch.tensor([[4.0, 1.0, 6.0], [2.0, 3.0, 5.0]])
    q_null = torch.tensor([2.0, 1.5])
    log_w = torch.zeros(2, 3)
    next_q = torch.tensor([[1.0, 8.0, 2.0], [0.0, 0.0, 0.0]])
    next_null = torch.tensor([4.0, 0.0])
    fwd = {
        SLATEQ_ITEM_Q: q,
        SLATEQ_NULL_Q: q_null,
        SLATEQ_CHOICE: log_w,
        "next_" + SLATEQ_ITEM_Q: next_q,
        "next_" + SLATEQ_NULL_Q: next_null,
        "next_" + SLATEQ_CHOICE: torch.zeros(2, 3),
        "target_next_" + SLATEQ_ITEM_Q: next_q - 1.0,
        "target_next_" + SLATEQ_NULL_Q: next_null,
    }
    out = slateq_loss(
        fwd, _batch([12, -1]), LOG_EPS, gamma=0.9, double_q=True, method="exact", loss_fn="mse"
    )
    assert out["slot"].tolist() == [0, -1]
    # Row 0: the online net's best slate at s' is [1, 2] (all w = 1, eps (1, 0.5)): its value
    # (4 + 8 + 0.5 * 2) / 2.5 = 5.2 beats the runner-up [1, 0]'s (4 + 8 + 0.5 * 1) / 2.5 = 5.0;
    # valued by the target net (item values - 1): (4 + 7 + 0.5 * 1) / 2.5 = 4.6.
    target0 = 1.0 + 0.9 * 4.6
    assert out["td"][0].item() == pytest.approx(target0 - 6.0)
    # Row 1: terminated, no click: target 0, the taken value is Qbar(null) = 1.5.
    assert out["td"][1].item() == pytest.approx(-1.5)
    assert out["td_loss"].tolist() == pytest.approx([0.5 * (target0 - 6.0) ** 2, 0.5 * 1.5**2])
    # Choice: all w = 1, eps (1, 0.5): P(slot 0) = 1 / 2.5, P(null) = 1 / 2.5.
    assert out["choice"].tolist() == pytest.approx([math.log(2.5), math.log(2.5)])


def test_config_refuses_multi_step_and_bad_settings():
    for setting, message in (
        ({"n_step": 3}, "n_step"),
        ({"slate_optimizer": "lp"}, "slate_optimizer"),
        ({"choice_loss_coeff": 0.0}, "choice_loss_coeff"),
        ({"num_atoms": 51}, "num_atoms"),
    ):
        config = SlateQConfig().environment("CartPole-v1").training(**setting)
        with pytest.raises(ValueError, match=message):
            config.validate()
