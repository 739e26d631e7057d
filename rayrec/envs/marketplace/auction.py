"""Ad auctions with a reserve price: generalised second price (GSP) and second price.

Pure numpy and stateless, so every price can be checked against a hand computation. Equations in
docs/marketplace.md, section "Auction".

Bidders are ranked by score s_i = w_i b_i (quality weight times bid per click; w_i = 1 by
default). Only bids b_i >= r with b_i > 0 take part. Ties go to the lower bidder index. The bidder
in position j pays per click p_j = max(r, s_(j+1) / w_(j)), the smallest bid that keeps its
position, where s_(j+1) is the score of the next eligible bidder (0 when there is none).
``second_price`` sells a single slot (Vickrey's auction: GSP with one position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AuctionResult", "run_auction"]


@dataclass(frozen=True)
class AuctionResult:
    """Winners in slot order and the price per click each pays."""

    winners: np.ndarray
    """(s,) int64 bidder indices, best slot first (s <= slots offered)."""
    prices: np.ndarray
    """(s,) float64 price per click of each winner."""

    @property
    def num_sold(self) -> int:
        return int(self.winners.size)


def run_auction(
    bids: np.ndarray,
    num_slots: int,
    reserve: float,
    kind: str = "gsp",
    weights: np.ndarray | None = None,
) -> AuctionResult:
    """Allocate up to ``num_slots`` ad positions among bidders and price them.

    Args:
        bids: (n,) bids per click, >= 0.
        num_slots: positions offered (``second_price`` offers at most one).
        reserve: r >= 0, the lowest eligible bid and the lowest price.
        kind: 'gsp' or 'second_price'.
        weights: (n,) positive quality weights w_i; None means all ones.
    """
    bids = np.asarray(bids, dtype=np.float64)
    if bids.ndim != 1 or (bids < 0).any() or not np.isfinite(bids).all():
        raise ValueError(f"bids must be a 1-D array of finite numbers >= 0, got {bids!r}")
    if num_slots < 0:
        raise ValueError(f"num_slots ({num_slots}) must be >= 0")
    if reserve < 0:
        raise ValueError(f"reserve ({reserve}) must be >= 0")
    if kind not in ("gsp", "second_price"):
        raise ValueError(f"kind ({kind!r}) must be one of gsp, second_price")
    w = np.ones_like(bids) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != bids.shape or (w <= 0).any():
        raise ValueError("weights must be positive and have the shape of bids")
    if kind == "second_price":
        num_slots = min(num_slots, 1)
    eligible = np.flatnonzero((bids >= reserve) & (bids > 0))
    score = w[eligible] * bids[eligible]
    # Descending score, ties to the lower index (lexsort's last key is the primary one).
    order = eligible[np.lexsort((eligible, -score))]
    sold = min(num_slots, order.size)
    winners = order[:sold]
    ranked_scores = w[order] * bids[order]
    next_score = np.zeros(sold)
    following = min(sold + 1, order.size) - 1
    next_score[:following] = ranked_scores[1 : following + 1]
    prices = np.maximum(reserve, next_score / w[winners]) if sold else np.zeros(0)
    return AuctionResult(winners=winners.astype(np.int64), prices=prices.astype(np.float64))
