"""The admin route of a rollout: load a new version beside the served one and move traffic to it
by stable user hash, in place (docs/serving.md, "Rollouts").

``POST /v1/admin/rollout`` ``{"checkpoint": PATH, "share": S}`` loads PATH (in a thread: the
replica keeps serving) into the A/B slot that serves nobody now and gives it the share S of users
by their stable hash ``ab_share(user_id)``; ``{"share": S}`` alone moves the share of the version
being rolled out (0 rolls back, 1 sends everyone to it). A user who moved stays moved while S
grows. The old version is the one serving everyone when the rollout starts: A at split 0, B at
split 1 (a finished rollout), so rollouts follow each other without a restart; a checkpoint sent
while both versions serve users is refused (409). ``GET /v1/admin/rollout`` answers the old and
new versions, the share and the guard's counts. Under ``/v1/``, the routes need the API key when
the service has one (:class:`~rayrec.serve.api.ApiKeyAuth`).
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

__all__ = ["ROLLOUT_PATH", "Rollout", "RolloutRequest", "add_admin_routes"]

ROLLOUT_PATH = "/v1/admin/rollout"


class RolloutRequest(BaseModel):
    """A rollout step."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(default=None, min_length=1, max_length=4096)
    """Start a rollout of this checkpoint (a path on the replica's machine)."""
    share: float = Field(ge=0.0, le=1.0)
    """The new version's share of users."""


class Rollout:
    """Which A/B slot holds the version being rolled out (None before the first rollout)."""

    def __init__(self, service: RecommenderService) -> None:
        self.service = service
        self.new_slot: int | None = None

    @property
    def share(self) -> float:
        split = self.service.split
        return 0.0 if self.new_slot is None else split if self.new_slot == 1 else 1.0 - split

    def move(self, share: float) -> None:
        if self.new_slot is None:
            raise RequestError(409, "share: no rollout under way (send a checkpoint first)")
        self.service.split = share if self.new_slot == 1 else 1.0 - share

    def start(self, policy: ServedPolicy) -> None:
        """Put ``policy`` in the slot that serves nobody, at share 0; the guard starts over."""
        service, policies = self.service, self.service.policies
        if len(policies) == 1 or service.split == 0.0:
            self.new_slot = 1
            service.serve_policies([policies[0], policy], 0.0)
        elif service.split == 1.0:
            self.new_slot = 0
            service.serve_policies([policy, policies[1]], 1.0)
        else:
            raise RequestError(
                409,
                f"checkpoint: both versions serve users (split {service.split:g}); move the "
                "share to 0 or 1 first",
            )
        service.guard.reset()

    def status(self) -> dict[str, Any]:
        """The old and new versions, the new one's share and the guard's per-version counts."""
        versions = [p.version for p in self.service.policies]
        new = None if self.new_slot is None else versions[self.new_slot]
        old = versions[0] if self.new_slot in (None, 1) else versions[1]
        return {
            "old": old,
            "new": new,
            "share": self.share,
            "versions": versions,
            "checkpoints": [str(p.checkpoint) for p in self.service.policies],
            "split": self.service.split,
            "guard": self.service.guard.snapshot(),
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
    lock = asyncio.Lock()  # one step at a time: a load must not race a move
    rollout = Rollout(service)

    @api.get(ROLLOUT_PATH, summary="Rollout state: old and new version, share, feedback counts")
    async def status() -> JSONResponse:
        return JSONResponse(rollout.status())

    @api.post(ROLLOUT_PATH, summary="Start a rollout of a checkpoint and/or move its share")
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
                rollout.start(await _load(service, body.checkpoint))
            rollout.move(body.share)
        return JSONResponse(rollout.status())
