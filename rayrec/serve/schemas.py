"""The HTTP API's request and response models, and the limits that bound every request.

Models are strict: ids are JSON integers (no strings, floats or booleans), numbers are finite (no
NaN or Infinity), unknown fields are rejected, and every list is bounded. Item ids that are
integers but not in the catalog are the service's business (see :mod:`rayrec.serve.service`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from rayrec.sim.config import NUM_CONTEXT, SCALAR_LIMIT

__all__ = [
    "API_VERSION",
    "INT64_MAX",
    "MAX_BODY_BYTES",
    "MAX_CANDIDATES",
    "MAX_HISTORY",
    "MAX_K",
    "MODES",
    "REQUEST_ID_PATTERN",
    "ErrorBody",
    "FeedbackRequest",
    "FeedbackResponse",
    "HistoryEntry",
    "RecommendRequest",
    "RecommendResponse",
    "Responses",
]

API_VERSION = "1"
INT64_MAX = 2**63 - 1
MAX_HISTORY = 256
"""Most history entries a request may carry (the model sees the last H of them)."""
MAX_CANDIDATES = 100
"""Most candidates a request may carry; also the width M of the impression log."""
MAX_K = 10
"""Largest slate a request may ask for; also the width K of the impression log."""
MAX_BODY_BYTES = 64 * 1024
"""Larger request bodies are rejected with 413 before they are parsed."""
MODES = ("greedy", "sample")
REQUEST_ID_PATTERN = r"^[0-9a-f]{70}$"

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

Id = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Flag = StrictBool | Unit
ContextValue = Annotated[float, Field(ge=-1.0, le=SCALAR_LIMIT, allow_inf_nan=False)]


class Responses(BaseModel):
    """A user's responses to one shown item: click, watch fraction, like, skip (0..1 or bool)."""

    model_config = _STRICT

    click: Flag = 0.0
    watch: Unit = 0.0
    like: Flag = 0.0
    skip: Flag = 0.0

    def values(self) -> tuple[float, float, float, float]:
        return float(self.click), float(self.watch), float(self.like), float(self.skip)


class HistoryEntry(Responses):
    """One history entry with its responses. A bare item id in ``history`` means a click with
    nothing else known: ``{"item_id": i, "click": 1}``."""

    item_id: Id
    click: Flag = 1.0


class RecommendRequest(BaseModel):
    """``POST /v1/recommend``."""

    model_config = _STRICT

    user_id: Id
    history: Annotated[list[Id | HistoryEntry], Field(max_length=MAX_HISTORY)] = []
    """Recent items, oldest first: ids or entries with responses. Ids the catalog does not hold are
    dropped (and reported in ``warnings``); the model sees the last H that remain."""
    context: Annotated[
        list[ContextValue] | None, Field(min_length=NUM_CONTEXT, max_length=NUM_CONTEXT)
    ] = None
    """Session index, step in session, sin and cos of the hour of day, log gap (scaled, as the
    environment's observation). Default: first step of a first session at the current UTC hour."""
    candidates: Annotated[list[Id] | None, Field(min_length=1, max_length=MAX_CANDIDATES)] = None
    """Distinct item ids to rank, all in the catalog; omitted: retrieved from the catalog."""
    k: Annotated[int | None, Field(strict=True, ge=1, le=MAX_K)] = None
    """Slate size; default: the served environment's slate_size."""
    mode: Literal["greedy", "sample"] = "sample"
    """'sample' draws the slate from the policy (propensities < 1); 'greedy' takes its top k."""
    seed: Id | None = None
    """Makes retrieval and sampling reproducible; omitted: fresh randomness per request."""

    @model_validator(mode="after")
    def _consistent(self) -> RecommendRequest:
        if self.candidates is not None:
            if len(set(self.candidates)) != len(self.candidates):
                seen: set[int] = set()
                repeated = sorted({c for c in self.candidates if c in seen or seen.add(c)})
                raise ValueError(f"candidates must be distinct; repeated: {repeated[:10]}")
            if self.k is not None and self.k > len(self.candidates):
                raise ValueError(
                    f"k ({self.k}) must be <= the number of candidates ({len(self.candidates)})"
                )
        return self


class RecommendResponse(BaseModel):
    """A served slate and the probability with which the policy chose it."""

    request_id: str
    """Pass it to ``POST /v1/feedback`` with the user's responses."""
    model_version: str
    items: list[int]
    """The slate, in order."""
    scores: list[float]
    """The model's score (logit, or Q-value for Q modules) of each slate item."""
    propensities: list[float]
    """Per position: probability of that item given the items before it (Plackett-Luce); 1.0 in
    greedy mode."""
    propensity: float
    """Probability of the whole slate: the product of ``propensities``."""
    mode: str
    """The mode the slate was chosen in: ``greedy`` also when a ``sample`` request came beyond the
    exploration budget (then a warning says so), or from the fallback policy."""
    warnings: list[str] = []
    fallback: bool = False
    """True when the model could not score the request and the fallback policy chose the slate
    (greedy, propensity 1.0)."""
    fallback_policy: str | None = None
    """The fallback policy that chose the slate (``fallback/popular``, ``fallback/ctr``)."""
    option: str | None = None
    """Two-level models: the option the high level chose (its probability is in
    ``option_propensity`` and, multiplied in, in the first position's propensity)."""
    option_propensity: float | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: the user's responses to each item of a served slate, in order."""

    model_config = _STRICT

    request_id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
    responses: Annotated[list[Responses], Field(min_length=1, max_length=MAX_K)]


class FeedbackResponse(BaseModel):
    request_id: str
    model_version: str
    """The version that served the slate (read from the request id: also one since replaced)."""
    reward: float
    """The served environment's reward of the responses, summed over the slate."""


class ErrorBody(BaseModel):
    """Every error answer: a one-line message, plus the offending fields for invalid input."""

    error: str
    details: list[dict[str, Any]] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Malformed JSON"),
        (401, "Missing or wrong API key (services started with an API key file)"),
        (404, "Unknown request id"),
        (409, "Feedback for this request id was already received"),
        (410, "Feedback for a slate served longer ago than the feedback TTL"),
        (413, "Request body too large"),
        (422, "Invalid request"),
        (503, "Overload, a full log backlog, or a model that cannot score and no fallback"),
    )
}
