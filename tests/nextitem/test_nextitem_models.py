"""Next-item modules: shapes, causality, right- vs left-aligned inputs, config validation."""

from __future__ import annotations

import pytest
import torch

from rayrec.nextitem.models import (
    SQN,
    GRU4Rec,
    GRU4RecConfig,
    SASRec,
    SASRecConfig,
    left_align,
)

NUM_ITEMS, MAX_LEN = 30, 8


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "gru4rec": GRU4Rec(NUM_ITEMS, MAX_LEN),
        "sasrec": SASRec(NUM_ITEMS, MAX_LEN),
        "sqn": SQN(GRU4Rec(NUM_ITEMS, MAX_LEN), NUM_ITEMS),
    }


def test_left_align() -> None:
    seq, lengths = left_align(torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4], [0, 0, 0, 9]]))
    assert seq.tolist() == [[3, 4, 0, 0], [1, 2, 3, 4], [9, 0, 0, 0]]
    assert lengths.tolist() == [2, 4, 1]


@pytest.mark.parametrize("name", ["gru4rec", "sasrec", "sqn"])
def test_shapes_and_causality(name: str) -> None:
    model = _models()[name].eval()
    seq = torch.randint(1, NUM_ITEMS + 1, (3, MAX_LEN))
    out = model.encode_all(seq)
    assert out.shape == (3, MAX_LEN, model.state_dim)
    assert model.logits(out[:, -1]).shape == (3, NUM_ITEMS)
    changed = seq.clone()
    changed[:, 5:] = (changed[:, 5:] % NUM_ITEMS) + 1  # a different future
    with torch.no_grad():
        assert torch.allclose(model.encode_all(changed)[:, :5], out[:, :5], atol=1e-6)
        assert not torch.allclose(model.encode_all(changed)[:, 5:], out[:, 5:], atol=1e-6)


@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_encode_reads_right_aligned_histories(name: str) -> None:
    model = _models()[name].eval()
    history = torch.tensor([[0, 0, 0, 0, 0, 4, 7, 2], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        state = model.encode(history)
        left = model.encode_all(torch.tensor([[4, 7, 2, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8]]))
    assert torch.allclose(state[0], left[0, 2], atol=1e-6)
    assert torch.allclose(state[1], left[1, 7], atol=1e-6)


def test_sqn_ranks_with_its_supervised_head() -> None:
    model = _models()["sqn"]
    state = torch.randn(2, model.state_dim)
    assert torch.equal(model.logits(state), model.base.logits(state))
    assert model.q_values(state).shape == (2, NUM_ITEMS)


def test_configs_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match=r"GRU4RecConfig.dropout \(1.0\) must be in \[0, 1\)"):
        GRU4RecConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"GRU4RecConfig.hidden_size \(0\) must be > 0"):
        GRU4RecConfig(hidden_size=0)
    with pytest.raises(ValueError, match=r"hidden_size \(64\) must be a multiple of n_heads \(3\)"):
        SASRecConfig(n_heads=3)
    assert SASRecConfig() == SASRecConfig(2, 2, 64, 256, 0.5, 0.5, 1e-12, 0.02)
