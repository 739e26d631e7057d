"""What a rollout's guard reads: clicks and slots of feedback per served version, since the
rollout began (docs/serving.md, "Rollouts").

The counts are this replica's (no shared state): a rollout is driven through one replica's admin
route (:mod:`rayrec.serve.admin`), so it needs a deployment of one replica.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["GuardCounts"]


class GuardCounts:
    """Feedback clicks and slots per model version (a version's CTR = clicks / slots)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}

    def count(self, version: str, clicks: int, slots: int) -> None:
        with self._lock:
            row = self._counts.setdefault(version, [0, 0])
            row[0] += clicks
            row[1] += slots

    def reset(self) -> None:
        with self._lock:
            self._counts = {}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{version: {"clicks", "slots", "ctr"}}`` (``ctr`` None before any slot)."""
        with self._lock:
            return {
                v: {"clicks": c, "slots": s, "ctr": c / s if s else None}
                for v, (c, s) in self._counts.items()
            }
