"""History encoders: (B, H, F) interaction histories with a (B, H) padding mask -> (B, E) vectors.

Histories are right-aligned (oldest first, padding at the start), as the environment builds them.
Every encoder returns zeros' worth of information, not NaN, for a user without history.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ENCODERS",
    "AttentionEncoder",
    "GRUEncoder",
    "GatedPoolEncoder",
    "MeanPoolEncoder",
    "make_encoder",
]


class MeanPoolEncoder(nn.Module):
    """Masked mean of projected history entries (order-free)."""

    def __init__(self, in_dim: int, hidden: int, history_len: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, H, F), (B, H) -> (B, E)."""
        h = self.proj(x) * mask.unsqueeze(-1)
        return h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


class GatedPoolEncoder(nn.Module):
    """Click-aware pooling: each history entry is weighted by a learned gate on its features and
    responses, ``w_h = softplus(g . x_h + c)``, so clicked and watched items can count and shown
    but ignored ones fade; a linear (direction-keeping) and a ReLU projection are pooled with
    those weights. A plain mean over every shown item dilutes the clicks with what the user
    passed over; this encoder can express "the direction of the watched clicks" directly."""

    def __init__(self, in_dim: int, hidden: int, history_len: int) -> None:
        super().__init__()
        self.gate = nn.Linear(in_dim, 1)
        self.linear = nn.Linear(in_dim, hidden // 2)
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden - hidden // 2), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, H, F), (B, H) -> (B, E)."""
        weight = nn.functional.softplus(self.gate(x)).squeeze(-1) * mask
        total = weight.sum(dim=1, keepdim=True).clamp(min=1e-6)
        h = torch.cat([self.linear(x), self.proj(x)], dim=-1)
        return torch.einsum("bh,bhe->be", weight, h) / total


class NoHistoryEncoder(nn.Module):
    """Ignores the history (a memoryless policy); output has width 0."""

    def __init__(self, in_dim: int, hidden: int, history_len: int) -> None:
        super().__init__()
        self.out_dim = 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 0)


class GRUEncoder(nn.Module):
    """A GRU over the valid entries only; the last hidden state is the encoding."""

    def __init__(self, in_dim: int, hidden: int, history_len: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.shape[1]
        lengths = mask.sum(dim=1).long()
        # Left-align the valid entries so packing skips the padding entirely.
        shift = (torch.arange(h, device=x.device).unsqueeze(0) + (h - lengths).unsqueeze(1)) % h
        aligned = torch.gather(self.proj(x), 1, shift.unsqueeze(-1).expand(-1, -1, self.out_dim))
        packed = nn.utils.rnn.pack_padded_sequence(
            aligned, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return last[0] * (lengths > 0).unsqueeze(1).to(x.dtype)


class AttentionEncoder(nn.Module):
    """A small transformer over the history with learned positions and a padding mask.

    A learned summary token is prepended; its output is the encoding, so a user without history
    still attends to one valid position.
    """

    def __init__(
        self, in_dim: int, hidden: int, history_len: int, heads: int = 2, layers: int = 1
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.position = nn.Parameter(torch.randn(history_len + 1, hidden) * 0.02)
        self.summary = nn.Parameter(torch.zeros(1, 1, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        tokens = torch.cat([self.summary.expand(b, -1, -1), self.proj(x)], dim=1)
        tokens = tokens + self.position
        pad = torch.cat([mask.new_ones(b, 1), mask], dim=1) < 0.5
        return self.transformer(tokens, src_key_padding_mask=pad)[:, 0]


ENCODERS = {
    "none": NoHistoryEncoder,
    "mean": MeanPoolEncoder,
    "gated": GatedPoolEncoder,
    "gru": GRUEncoder,
    "attention": AttentionEncoder,
}


def make_encoder(name: str, in_dim: int, hidden: int, history_len: int) -> nn.Module:
    """The history encoder called ``name`` (one of ``ENCODERS``)."""
    if name not in ENCODERS:
        raise ValueError(f"encoder ({name!r}) must be one of {', '.join(ENCODERS)}")
    return ENCODERS[name](in_dim, hidden, history_len)
