"""Train and evaluate a next-item model under the RecBole protocol (docs/data.md).

One loop for every neural model: Adam, full softmax cross-entropy over all items (RecBole's
``loss_type: CE``) on every training target once per epoch, validation every epoch, early stopping
on validation NDCG@10 exactly as RecBole's ``early_stopping`` (a tie counts as an improvement; stop
after ``stopping_step`` + 1 evaluations without one), and the best epoch's weights for the test.

The one departure from RecBole is how an epoch is computed, not what it contains: RecBole runs the
model once per training prefix (97,171 passes over up to 50 items on ML-100k); here the training
sequences are cut into windows of 50 items every ``window_stride`` items and every position of a
window predicts its next item in the same pass (``protocol.training_windows``). Each target still
counts once per epoch, with at least 40 previous items when they exist (RecBole: up to 50), and an
epoch costs about a fifth. Mini-batches hold ``batch_size`` targets on average, so an epoch has as
many Adam steps as RecBole's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rayrec.nextitem.metrics import metrics_from_ranks, ranks_from_scores
from rayrec.nextitem.models import SQN, GRU4Rec, MostPopular, SASRec
from rayrec.nextitem.names import MODELS, VALID_METRIC
from rayrec.nextitem.protocol import PAD, NextItemData, Split, training_windows

__all__ = [
    "NextItemResult",
    "TrainConfig",
    "build_model",
    "evaluate_model",
    "train_and_evaluate",
    "train_model",
]


@dataclass(frozen=True)
class TrainConfig:
    """How to train; defaults are RecBole 1.2.1's ``overall.yaml`` training settings."""

    model: str = "gru4rec"
    """One of ``MODELS``."""
    epochs: int = 300
    """Most epochs (RecBole's ``epochs``); early stopping usually ends sooner."""
    batch_size: int = 2048
    """Training targets per step on average (RecBole's ``train_batch_size``)."""
    window_stride: int = 10
    """Training windows of the history length start every this many items (1..50)."""
    lr: float = 1e-3
    """Adam learning rate (RecBole's ``learning_rate``)."""
    stopping_step: int = 10
    """Stop after more than this many epochs without a better validation NDCG@10."""
    seed: int = 2020
    """Seeds initialisation, dropout and shuffling (RecBole's default seed)."""
    eval_batch_size: int = 4096
    """Examples per evaluation batch."""
    time_budget_s: float | None = None
    """Stop after the epoch during which this many seconds of training passed; None: no limit."""
    num_threads: int = 1
    """torch CPU threads (1: one core, so two trainings share a 2-core machine)."""
    sqn_base: str = "gru4rec"
    """SQN's encoder and supervised head: ``gru4rec`` or ``sasrec``."""
    sqn_gamma: float = 0.5
    """SQN discount (Xin et al. 2020 use 0.5)."""
    sqn_reward: float = 1.0
    """SQN reward of every observed interaction."""
    sqn_target_sync_steps: int = 50
    """SQN: copy the online network into the target network every this many steps."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(
                f"TrainConfig.model ({self.model!r}) must be one of {', '.join(MODELS)}"
            )
        if self.sqn_base not in ("gru4rec", "sasrec"):
            raise ValueError(f"TrainConfig.sqn_base ({self.sqn_base!r}) must be gru4rec or sasrec")
        for name in ("epochs", "batch_size", "eval_batch_size", "num_threads", "window_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} ({getattr(self, name)}) must be >= 1")
        if self.sqn_target_sync_steps < 1:
            raise ValueError(
                f"TrainConfig.sqn_target_sync_steps ({self.sqn_target_sync_steps}) must be >= 1"
            )
        if self.stopping_step < 0:
            raise ValueError(f"TrainConfig.stopping_step ({self.stopping_step}) must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr ({self.lr}) must be > 0")
        if not 0.0 <= self.sqn_gamma < 1.0:
            raise ValueError(f"TrainConfig.sqn_gamma ({self.sqn_gamma}) must be in [0, 1)")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(
                f"TrainConfig.time_budget_s ({self.time_budget_s}) must be > 0 or None"
            )


@dataclass(frozen=True)
class NextItemResult:
    """Metrics of the selected (best validation NDCG@10) model, and how training went."""

    config: TrainConfig
    valid: dict[str, float]
    """Validation metrics of the selected epoch."""
    test: dict[str, float]
    """Test metrics of the selected epoch."""
    best_epoch: int
    """1-based epoch whose weights were kept (0 for most-popular)."""
    epochs_run: int
    train_seconds: float
    """Wall-clock seconds of training and validation."""
    cpu_seconds: float
    """CPU seconds of this process over the same span (wall time grows when others share the CPU)."""
    stopped_by: str
    """``early-stopping``, ``epochs``, ``time-budget`` or ``none`` (most-popular)."""
    curve: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``loss`` and the validation metric."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(cfg: TrainConfig, num_items: int, max_len: int) -> GRU4Rec | SASRec | SQN:
    """The neural model ``cfg.model`` (seed torch before calling for reproducible weights)."""
    if cfg.model == "gru4rec":
        return GRU4Rec(num_items, max_len)
    if cfg.model == "sasrec":
        return SASRec(num_items, max_len)
    if cfg.model == "sqn":
        base = (
            GRU4Rec(num_items, max_len) if cfg.sqn_base == "gru4rec" else SASRec(num_items, max_len)
        )
        return SQN(base, num_items)
    raise ValueError(f"model ({cfg.model!r}) has no network; neural models: gru4rec, sasrec, sqn")


@torch.no_grad()
def evaluate_model(model: nn.Module, split: Split, batch_size: int = 4096) -> dict[str, float]:
    """Full-ranking metrics of a trained neural model on ``split`` (any next-item examples)."""
    model.eval()
    ranks = []
    for start in range(0, len(split), batch_size):
        history = torch.from_numpy(split.history[start : start + batch_size])
        target = torch.from_numpy(split.target[start : start + batch_size]) - 1
        ranks.append(ranks_from_scores(model.logits(model.encode(history)), target))
    return metrics_from_ranks(torch.cat(ranks))


def _popular(cfg: TrainConfig, data: NextItemData) -> NextItemResult:
    start, cpu_start = time.perf_counter(), time.process_time()
    pop = MostPopular(data.num_items).fit(data.train.target)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    def evaluate(split: Split) -> dict[str, float]:
        target = torch.from_numpy(split.target) - 1
        return metrics_from_ranks(ranks_from_scores(pop.scores(len(split)), target))

    return NextItemResult(
        cfg, evaluate(data.valid), evaluate(data.test), 0, 0, seconds, cpu_seconds, "none", []
    )


def _loss(
    cfg: TrainConfig,
    model: nn.Module,
    target_net: nn.Module | None,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Mean cross-entropy over the window positions in ``mask`` (+ SQN's TD loss)."""
    states = model.encode_all(inputs)
    loss = F.cross_entropy(model.logits(states[mask]), targets[mask] - 1)
    if isinstance(model, SQN):
        assert target_net is not None
        # SQN, Xin et al. 2020: one-step TD on a Q head that shares the encoder. The next state of
        # the action at position j is the state at j + 1 (its input is that action); the last
        # position of a window has none in the window and trains the supervised head only.
        has_next = mask[:, :-1] & (inputs[:, 1:] != PAD)
        q_sa = model.q_values(states[:, :-1][has_next])
        q_sa = q_sa.gather(1, (targets[:, :-1][has_next] - 1).unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_states = target_net.encode_all(inputs)[:, 1:][has_next]
            y = cfg.sqn_reward + cfg.sqn_gamma * target_net.q_values(next_states).max(dim=1).values
        loss = loss + F.mse_loss(q_sa, y)
    return loss


def train_and_evaluate(
    data: NextItemData,
    cfg: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> NextItemResult:
    """Train ``cfg.model`` on ``data.train``, select on ``data.valid``, report ``data.test``.

    ``on_epoch`` receives each epoch's ``{"epoch", "loss", "ndcg@10", "seconds"}`` as it ends.
    """
    torch.set_num_threads(cfg.num_threads)
    if cfg.model == "pop":
        return _popular(cfg, data)
    return train_model(data, cfg, on_epoch)[1]


def train_model(
    data: NextItemData,
    cfg: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[GRU4Rec | SASRec | SQN, NextItemResult]:
    """As ``train_and_evaluate`` for a neural ``cfg.model``, also returning the selected model."""
    if cfg.model == "pop":
        raise ValueError("train_model trains neural models; most-popular has no model")
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.num_items, data.max_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    target_net = copy.deepcopy(model).eval() if isinstance(model, SQN) else None
    shuffle = torch.Generator().manual_seed(cfg.seed)
    windows = training_windows(data.train_sequences, data.max_len, cfg.window_stride)
    inputs_all = torch.from_numpy(windows.inputs)
    targets_all = torch.from_numpy(windows.targets)
    mask_all = torch.from_numpy(windows.loss_mask)
    per_batch = max(1, round(cfg.batch_size * len(windows) / int(windows.loss_mask.sum())))

    best_score, best_epoch, best_state, bad_epochs = -np.inf, 0, None, 0
    curve: list[dict[str, float]] = []
    stopped_by, steps, epoch = "epochs", 0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(windows), generator=shuffle)
        total, batches = 0.0, 0
        for i in range(0, len(order), per_batch):
            index = order[i : i + per_batch]
            loss = _loss(
                cfg, model, target_net, inputs_all[index], targets_all[index], mask_all[index]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches, steps = total + loss.item(), batches + 1, steps + 1
            if target_net is not None and steps % cfg.sqn_target_sync_steps == 0:
                target_net.load_state_dict(model.state_dict())
        score = evaluate_model(model, data.valid, cfg.eval_batch_size)[VALID_METRIC]
        point = {"epoch": epoch, "loss": total / batches, VALID_METRIC: score}
        point["seconds"] = time.perf_counter() - start
        curve.append(point)
        if on_epoch is not None:
            on_epoch(point)
        # RecBole's early_stopping: ">=" updates the best; stop once cur_step > stopping_step.
        if score >= best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs > cfg.stopping_step:
                stopped_by = "early-stopping"
                break
        if cfg.time_budget_s is not None and time.perf_counter() - start > cfg.time_budget_s:
            stopped_by = "time-budget"
            break
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    assert best_state is not None
    model.load_state_dict(best_state)
    valid = evaluate_model(model, data.valid, cfg.eval_batch_size)
    test = evaluate_model(model, data.test, cfg.eval_batch_size)
    result = NextItemResult(
        cfg, valid, test, best_epoch, epoch, seconds, cpu_seconds, stopped_by, curve
    )
    return model, result
