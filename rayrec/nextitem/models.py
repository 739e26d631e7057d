"""Next-item models over item-index histories: most-popular, GRU4Rec, SASRec and SQN.

Every neural model reads left-aligned item sequences (``PAD`` = 0 at the end) and returns a state
per position with ``encode_all``: (B, L) -> (B, L, D), where position j has seen items 0..j only.
``encode`` takes the protocol's right-aligned histories (B, L) and returns the state after the
newest item, (B, D); ``logits`` scores all items: (B, D) -> (B, N), item index i + 1 in column i
(padding is never scored). Sizes default to RecBole 1.2.1's model yaml files.

These modules do not reuse ``rayrec.models.encoders``: those encoders return one vector per history
(the final state), while next-item training here scores every position of a window in one pass
(about five times fewer GRU steps than one pass per prefix, which is what lets GRU4Rec train in
minutes on 2 CPUs); and rayrec's ``AttentionEncoder`` reads a summary token without a causal mask,
with no dropout and a 2x feed-forward, while SASRec (Kang & McAuley 2018) is a causal transformer
whose 0.5 dropout and 4x feed-forward matter on a dataset as small as ML-100k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rayrec.nextitem.protocol import PAD

__all__ = [
    "SQN",
    "GRU4Rec",
    "GRU4RecConfig",
    "MostPopular",
    "SASRec",
    "SASRecConfig",
    "left_align",
]


def left_align(history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-aligned (B, L) histories -> left-aligned (B, L) and their (B,) lengths."""
    length = history.shape[1]
    lengths = (history != PAD).sum(dim=1)
    index = (torch.arange(length, device=history.device) + (length - lengths).unsqueeze(1)) % length
    return history.gather(1, index), lengths


class _Sequential(nn.Module):
    """``encode`` and ``logits`` from ``encode_all`` and a tied item embedding."""

    item_embedding: nn.Embedding

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) right-aligned histories -> (B, D) state after the newest item."""
        seq, lengths = left_align(history)
        out = self.encode_all(seq)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N) scores of items 1..N (dot product with the item embeddings)."""
        return state @ self.item_embedding.weight[1:].T


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{owner}.{name} ({value}) must be > 0")


def _check_dropout(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{owner}.{name} ({value}) must be in [0, 1)")


class MostPopular:
    """Scores every item by how often it is a training target (RecBole's ``Pop``)."""

    def __init__(self, num_items: int) -> None:
        self.counts = np.zeros(num_items, dtype=np.int64)

    def fit(self, targets: np.ndarray) -> MostPopular:
        """Count the (N,) target item indices (1..num_items)."""
        self.counts += np.bincount(targets - 1, minlength=len(self.counts))
        return self

    def scores(self, batch: int) -> torch.Tensor:
        """(batch, N) the same popularity scores for every example."""
        return torch.as_tensor(self.counts, dtype=torch.float32).expand(batch, -1)


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec (Hidasi et al. 2016) sizes; defaults are RecBole 1.2.1's ``GRU4Rec.yaml``."""

    embedding_size: int = 64
    """Width of the item embeddings (input and output)."""
    hidden_size: int = 128
    """Width of the GRU state."""
    dropout: float = 0.3
    """Dropout on the input item embeddings."""

    def __post_init__(self) -> None:
        _check_positive(
            "GRU4RecConfig", embedding_size=self.embedding_size, hidden_size=self.hidden_size
        )
        _check_dropout("GRU4RecConfig", dropout=self.dropout)


class GRU4Rec(_Sequential):
    """RecBole's GRU4Rec: item embedding -> dropout -> 1-layer GRU (no bias) -> dense; tied output."""

    def __init__(self, num_items: int, max_len: int, config: GRU4RecConfig | None = None) -> None:
        super().__init__()
        cfg = config or GRU4RecConfig()
        self.item_embedding = nn.Embedding(num_items + 1, cfg.embedding_size, padding_idx=PAD)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.embedding_size, cfg.hidden_size, bias=False, batch_first=True)
        self.dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.state_dim = cfg.embedding_size
        nn.init.xavier_normal_(self.item_embedding.weight)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)
        nn.init.xavier_uniform_(self.gru.weight_hh_l0)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-aligned -> (B, L, D); the GRU is causal, so trailing padding is harmless."""
        out, _ = self.gru(self.emb_dropout(self.item_embedding(seq)))
        return self.dense(out)


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec (Kang & McAuley 2018) sizes; defaults are RecBole 1.2.1's ``SASRec.yaml``."""

    n_layers: int = 2
    """Transformer layers."""
    n_heads: int = 2
    """Attention heads; must divide hidden_size."""
    hidden_size: int = 64
    """Width of item and position embeddings and of every layer."""
    inner_size: int = 256
    """Width of the feed-forward layer."""
    hidden_dropout: float = 0.5
    """Dropout on embeddings and residual branches."""
    attn_dropout: float = 0.5
    """Dropout on attention weights."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon (RecBole's value)."""
    initializer_range: float = 0.02
    """Standard deviation of the normal initialisation of weights."""

    def __post_init__(self) -> None:
        _check_positive(
            "SASRecConfig",
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            hidden_size=self.hidden_size,
            inner_size=self.inner_size,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        _check_dropout(
            "SASRecConfig", hidden_dropout=self.hidden_dropout, attn_dropout=self.attn_dropout
        )
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"SASRecConfig.hidden_size ({self.hidden_size}) must be a multiple of "
                f"n_heads ({self.n_heads})"
            )


class _Block(nn.Module):
    """Post-LN transformer layer as RecBole's: attention and feed-forward, each residual + LN."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.attn = nn.MultiheadAttention(
            h, cfg.n_heads, dropout=cfg.attn_dropout, batch_first=True
        )
        self.drop1 = nn.Dropout(cfg.hidden_dropout)
        self.norm1 = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.ff = nn.Sequential(
            nn.Linear(h, cfg.inner_size), nn.GELU(), nn.Linear(cfg.inner_size, h)
        )
        self.drop2 = nn.Dropout(cfg.hidden_dropout)
        self.norm2 = nn.LayerNorm(h, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """(B, L, H) with an (L, L) boolean mask, True where attention is blocked."""
        a, _ = self.attn(x, x, x, attn_mask=blocked, need_weights=False)
        x = self.norm1(x + self.drop1(a))
        return self.norm2(x + self.drop2(self.ff(x)))


class SASRec(_Sequential):
    """RecBole's SASRec: item + position embeddings, LayerNorm, dropout, causal post-LN layers.

    Sequences are left-aligned, so position j is the (j + 1)-th item of the window, as in RecBole,
    and the causal mask alone keeps every real position away from the trailing padding.
    """

    def __init__(self, num_items: int, max_len: int, config: SASRecConfig | None = None) -> None:
        super().__init__()
        cfg = config or SASRecConfig()
        self.item_embedding = nn.Embedding(num_items + 1, cfg.hidden_size, padding_idx=PAD)
        self.position_embedding = nn.Embedding(max_len, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.state_dim = cfg.hidden_size
        blocked = torch.ones(max_len, max_len, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("blocked", blocked, persistent=False)
        self.apply(lambda m: self._init(m, cfg.initializer_range))

    @staticmethod
    def _init(module: nn.Module, std: float) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, 0.0, std)
            nn.init.zeros_(module.in_proj_bias)

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-aligned -> (B, L, D)."""
        length = seq.shape[1]
        positions = torch.arange(length, device=seq.device)
        x = self.dropout(self.norm(self.item_embedding(seq) + self.position_embedding(positions)))
        blocked = self.blocked[:length, :length]
        for block in self.blocks:
            x = block(x, blocked)
        return x


class SQN(nn.Module):
    """Supervised Q-network (Xin et al., SIGIR 2020): one encoder, two heads.

    The supervised head is the base model's item logits (trained with cross-entropy) and ranks
    items at evaluation, as in the paper; the Q head is a linear layer over the same state, trained
    with a one-step TD loss whose gradient also shapes the shared encoder.
    """

    def __init__(self, base: GRU4Rec | SASRec, num_items: int) -> None:
        super().__init__()
        self.base = base
        self.q_head = nn.Linear(base.state_dim, num_items)
        self.state_dim = base.state_dim

    def encode_all(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-aligned -> (B, L, D) the base model's states."""
        return self.base.encode_all(seq)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) right-aligned -> (B, D) the base model's state."""
        return self.base.encode(history)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N) supervised-head scores (used for ranking)."""
        return self.base.logits(state)

    def q_values(self, state: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N) Q(s, a) for every item a."""
        return self.q_head(state)
