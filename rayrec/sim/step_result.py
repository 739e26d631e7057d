"""What one step of the batched simulator returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StepResult"]


@dataclass(frozen=True)
class StepResult:
    """What one step produced, per user slot (all arrays have leading dimension B)."""

    reward: np.ndarray
    """(B,) float32 configured weighted sum of the responses."""
    clicked: np.ndarray
    """(B,) bool."""
    click_position: np.ndarray
    """(B,) int64 slate position clicked, -1 for none."""
    item: np.ndarray
    """(B,) int64 item clicked, or the first shown item when nothing was clicked (-1: none shown)."""
    watch: np.ndarray
    """(B,) float32 watch fraction of the clicked item (0 without a click)."""
    like: np.ndarray
    """(B,) bool."""
    skip: np.ndarray
    """(B,) bool: clicked and watched less than ``skip_threshold``."""
    shown: np.ndarray
    """(B, k) bool: slate slots actually shown (masked or duplicate choices show nothing)."""
    slate_items: np.ndarray
    """(B, k) int64 item ids of the slate (-1 where not shown)."""
    session_ended: np.ndarray
    """(B,) bool: the user's session ended at this step."""
    terminated: np.ndarray
    """(B,) bool: the user left for good (churn)."""
    truncated: np.ndarray
    """(B,) bool: the user reached ``max_sessions`` (lifetime bound)."""
