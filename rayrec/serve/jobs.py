"""A prepared request (:class:`Job`), its scores (:class:`Scored`) and the error a request can
end in (:class:`RequestError`): what the service, the API and the Serve deployment pass around."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rayrec.serve.hierarchy import OptionChoice

__all__ = ["Job", "RequestError", "Scored", "default_context"]


class RequestError(Exception):
    """A request the service cannot answer; the API turns it into ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)  # args rebuild it: Ray re-raises it for handle callers
        self.status, self.message = status, message

    def __str__(self) -> str:
        return self.message


def default_context(now: float) -> np.ndarray:
    """First step of a first session, just arrived, at the UTC hour of ``now``."""
    hour = (now / 3600.0) % 24.0
    angle = 2.0 * math.pi * hour / 24.0
    return np.array([0.0, 0.0, math.sin(angle), math.cos(angle), 0.0], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Scored:
    """A job's candidate scores and, from a two-level model, the option they were scored under."""

    scores: np.ndarray
    """(m,) scores of the job's candidates."""
    option: OptionChoice | None = None
    failure: str | None = None
    """Why the model could not score the job (an exception in its forward pass); None: it did."""


@dataclass(frozen=True, eq=False)
class Job:
    """One prepared recommendation request."""

    request_id: str
    version: int
    user_id: int
    time: float
    history_items: np.ndarray
    """(H,) int64, -1 padding first."""
    history_responses: np.ndarray
    """(H, 4) float32."""
    context: np.ndarray
    """(5,) float32."""
    candidates: np.ndarray
    """(m,) int64 distinct catalog ids."""
    k: int
    mode: str
    """The mode the slate is chosen in: the request's, except that a ``sample`` request beyond
    the replica's exploration budget is served ``greedy``."""
    rng: np.random.Generator
    warnings: tuple[str, ...]
