"""The admin route of a rollout: load a new version beside the served one and move traffic to it
by stable user hash, in place (docs/serving.md, "Rollouts").

``POST /v1/admin/rollout`` ``{"checkpoint": PATH, "split": S}`` loads PATH as model B (in a
thread: the replica keeps serving) and gives it the users with ``ab_share(user_id) < S``;
``{"split": S}`` alone moves the split of the B already loaded (0 rolls back, 1 sends everyone to
B). Since users move by a fixed hash, a user who moved to B stays on B while S grows.
``GET /v1/admin/rollout`` answers the versions, the split and the guard's counts. Under
``/v1/``, the routes need the API key when the service has one (:class:`~rayrec.serve.api.ApiKeyAuth`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rayrec.contracts.errors import SpecError
from rayrec.serve.policy import ServedPolicy, check_same_world
from rayrec.serve.service import RecommenderService, RequestError
from rayrec.serve.settings import load_env

__all__ = ["ROLLOUT_PATH", "RolloutRequest", "add_admin_routes", "rollout_status"]

ROLLOUT_PATH = "/v1/admin/rollout"


class RolloutRequest(BaseModel):
    """A rollout step."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(default=None, min_length=1, max_length=4096)
    """Load this checkpoint (a path on the replica's machine) as model B first."""
    split: float = Field(ge=0.0, le=1.0)
    """B's share of users (those with ``ab_share(user_id) < split``)."""


def rollout_status(service: RecommenderService) -> dict[str, Any]:
    """The served versions (A first), B's share and the guard's per-version feedback counts."""
    return {
        "versions": [p.version for p in service.policies],
        "checkpoints": [str(p.checkpoint) for p in service.policies],
        "split": service.split,
        "guard": service.guard.snapshot(),
    }


async def _load(service: RecommenderService, checkpoint: str) -> ServedPolicy:
    env = load_env(service.settings.env) if service.settings.env else None
    try:
        policy = await asyncio.to_thread(ServedPolicy.load, checkpoint, env)
        check_same_world(service.policies[0], policy, "checkpoint")
    except SpecError as e:
        raise RequestError(422, str(e).replace("--checkpoint ", "checkpoint ")) from None
    return policy


def add_admin_routes(
    api: FastAPI, service: RecommenderService, replicas: Callable[[], int] | None = None
) -> None:
    """Add ``GET``/``POST`` :data:`ROLLOUT_PATH` to ``api``. ``replicas``: how many replicas the
    deployment runs now (None: one, a plain ASGI server); a step is refused with more than one,
    since each replica holds its own split and a request reaches only one of them."""
    lock = asyncio.Lock()  # one step at a time: a load must not race a split

    @api.get(ROLLOUT_PATH, summary="Rollout state: versions, B's share, feedback per version")
    async def status() -> JSONResponse:
        return JSONResponse(rollout_status(service))

    @api.post(ROLLOUT_PATH, summary="Load a new version as B and/or move B's share of users")
    async def step(body: RolloutRequest) -> JSONResponse:
        count = 1 if replicas is None else replicas()
        if count != 1:
            raise RequestError(
                409,
                f"rollout: the deployment runs {count} replicas; a rollout through this route "
                "needs 1 (each replica holds its own split)",
            )
        async with lock:
            if body.checkpoint is not None:
                policy = await _load(service, body.checkpoint)
                service.split = 0.0  # nobody meets the new B before it is in place
                service.serve_policies([service.policies[0], policy], 0.0)
                service.guard.reset()
            elif len(service.policies) < 2:
                raise RequestError(409, "split: no model B is loaded (send a checkpoint first)")
            service.split = body.split
        return JSONResponse(rollout_status(service))
