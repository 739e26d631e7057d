"""Trainer: most-popular on ML-100k, seeded determinism, the SQN loss, config validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rayrec.cli import main
from rayrec.datasets import data_root, load_ml100k
from rayrec.nextitem.models import SQN, GRU4Rec
from rayrec.nextitem.names import metric_keys
from rayrec.nextitem.protocol import build_sequences, training_windows
from rayrec.nextitem.train import TrainConfig, _loss, train_and_evaluate


@pytest.fixture(scope="module")
def inter():
    if not (data_root() / "ml-100k" / "ml-100k.inter").is_file():
        pytest.fail(f"ML-100k is not fetched into {data_root()}; run: make data")
    return load_ml100k().inter


@pytest.fixture(scope="module")
def small(inter):
    """The first 60 users of ML-100k: the same protocol at a sixteenth of the cost."""
    return build_sequences(inter[inter["user_id"] <= 60])


def test_most_popular_on_ml100k(inter) -> None:
    result = train_and_evaluate(build_sequences(inter), TrainConfig(model="pop"))
    # Pinned: 50 of the 943 test items are among the 10 most frequent training targets.
    assert round(result.test["hit@10"] * 943) == 50
    assert result.valid["hit@10"] < result.valid["hit@20"]


@pytest.fixture(scope="module")
def cycle():
    """A known optimum: every user walks the 40-item cycle i -> i + 1 from a random start."""
    rng = np.random.default_rng(0)
    starts = rng.integers(40, size=120)
    rows = [(u, (int(s) + t) % 40 + 1, t) for u, s in enumerate(starts) for t in range(25)]
    return build_sequences(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


@pytest.mark.parametrize("model", ["gru4rec", "sasrec", "sqn"])
def test_learns_a_deterministic_next_item(cycle, model: str) -> None:
    pop = train_and_evaluate(cycle, TrainConfig(model="pop"))
    result = train_and_evaluate(cycle, TrainConfig(model=model, epochs=3, batch_size=64, seed=1))
    # Popularity cannot know the next item (HR@10 about 0.2); the order alone gives it away.
    assert pop.test["hit@10"] < 0.3
    assert result.test["hit@10"] > 0.95 and result.test["mrr@10"] > 0.9, result.curve


@pytest.mark.parametrize("model", ["gru4rec", "sqn"])
def test_same_seed_same_run(small, model: str) -> None:
    cfg = TrainConfig(model=model, epochs=1, seed=3)
    first, second = train_and_evaluate(small, cfg), train_and_evaluate(small, cfg)
    assert [c["loss"] for c in first.curve] == [c["loss"] for c in second.curve]
    assert first.test == second.test
    other = train_and_evaluate(small, TrainConfig(model=model, epochs=1, seed=4))
    assert [c["loss"] for c in other.curve] != [c["loss"] for c in first.curve]


def test_sqn_loss_is_cross_entropy_plus_td_by_hand(small) -> None:
    torch.manual_seed(0)
    model = SQN(GRU4Rec(small.num_items, small.max_len), small.num_items).eval()
    w = training_windows(small.train_sequences, small.max_len, 10)
    x, y, m = (torch.from_numpy(a[:4]) for a in (w.inputs, w.targets, w.loss_mask))
    cfg = TrainConfig(model="sqn", sqn_gamma=0.5, sqn_reward=1.0)
    with torch.no_grad():
        got = _loss(cfg, model, model, x, y, m)
        states = model.encode_all(x)
        ce = F.cross_entropy(model.logits(states[m]), y[m] - 1)
        td = []
        for b in range(4):
            for j in range(small.max_len - 1):
                if m[b, j] and x[b, j + 1] != 0:  # the next state exists in the window
                    q = model.q_values(states[b, j])[y[b, j] - 1]
                    target = 1.0 + 0.5 * model.q_values(states[b, j + 1]).max()
                    td.append((q - target) ** 2)
        assert len(td) > 0
    assert got.item() == pytest.approx((ce + torch.stack(td).mean()).item(), rel=1e-5)


def test_config_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig.model \('bert'\) must be one of pop"):
        TrainConfig(model="bert")
    with pytest.raises(ValueError, match=r"TrainConfig.window_stride \(0\) must be >= 1"):
        TrainConfig(window_stride=0)
    with pytest.raises(ValueError, match=r"TrainConfig.sqn_gamma \(1.0\) must be in \[0, 1\)"):
        TrainConfig(sqn_gamma=1.0)


def test_nextitem_cli_json(inter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nextitem", "--dataset", "ml-100k", "--model", "pop", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["valid", "test"]
    assert list(out["test"]) == metric_keys()
    assert all(0.0 <= v <= 1.0 for split in out.values() for v in split.values())


def test_nextitem_cli_exits_2_with_one_line_on_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["nextitem", "--model", "pop", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(tmp_path / "ml-100k" / "ml-100k.inter") in err and "make data" in err
