"""The HTTP API as a FastAPI app over a :class:`~rayrec.serve.service.RecommenderService`.

The same app runs inside a Ray Serve replica (:mod:`rayrec.serve.app`, with ``@serve.batch``
scoring) and under plain uvicorn (the benchmark's floor, scoring one request at a time).

Every error answer is JSON ``{"error": "<one line>", "details": [...]}``: 400 for malformed JSON,
401 for a missing or wrong API key (when the service has one), 404 for unknown paths and request
ids, 409 for repeated feedback and for a rollout step refused now (:mod:`rayrec.serve.admin`), 410
for expired feedback, 405 for wrong methods, 413 for bodies over ``MAX_BODY_BYTES``, 415 for a
POST without a JSON content type, 422 for anything that parses but is invalid. Request bodies are
parsed as JSON by pydantic; nothing from a request is ever unpickled.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rayrec.serve.admin import add_admin_routes
from rayrec.serve.metrics import RequestMetrics
from rayrec.serve.schemas import (
    API_VERSION,
    ERROR_RESPONSES,
    MAX_BODY_BYTES,
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RecommendResponse,
)
from rayrec.serve.service import Job, RecommenderService, RequestError, Scored

__all__ = ["ApiKeyAuth", "RequestLimits", "Scorer", "make_api"]

Scorer = Callable[[Job], Awaitable[Scored]]
"""Scores one job's candidates; inside Serve a ``@serve.batch`` method that batches jobs."""

logger = logging.getLogger(__name__)


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


class RequestLimits:
    """ASGI middleware: bodies over ``max_bytes`` get 413 before anything parses them, and a POST
    that does not declare a JSON body (``Content-Type: application/json``) gets 415.

    A declared Content-Length over the limit is refused at once; otherwise the body is read up to
    the limit (chunked uploads included) and replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if scope.get("method") == "POST" and not _is_json(headers.get(b"content-type", b"")):
            await _error(415, "Content-Type must be application/json")(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _error(400, "invalid Content-Length header")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict, receive: Callable, send: Callable) -> None:
        await _error(413, f"request body larger than {self.max_bytes} bytes")(scope, receive, send)


class ApiKeyAuth:
    """ASGI middleware: every ``/v1/*`` request must carry the API key, as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; otherwise 401 (compared in constant
    time). ``/healthz`` and the OpenAPI pages stay open."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/v1/"):
            headers = dict(scope.get("headers", []))
            given = headers.get(b"x-api-key", b"")
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if not hmac.compare_digest(given, self.key):
                reply = _error(401, "missing or wrong API key (Authorization: Bearer KEY)")
                reply.headers["WWW-Authenticate"] = "Bearer"
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def _details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]


def _summary(details: list[dict[str, Any]]) -> str:
    """``field.path: message; ...`` with the 'body' prefix dropped (at most three fields)."""
    parts = []
    for d in details[:3]:
        loc = [p for p in d["loc"] if p != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {d['msg']}")
    more = f" (+{len(details) - 3} more)" if len(details) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more


def make_api(
    service: RecommenderService, score: Scorer, replicas: Callable[[], int] | None = None
) -> FastAPI:
    """The versioned API (OpenAPI schema at /openapi.json) over ``service``; ``replicas`` counts
    the deployment's replicas now (for the rollout route, :mod:`rayrec.serve.admin`)."""
    api = FastAPI(
        title="rayrec",
        version=API_VERSION,
        description="Recommendations from trained rayrec policies, with propensities.",
    )
    api.add_middleware(RequestLimits, max_bytes=MAX_BODY_BYTES)
    if service.api_key is not None:  # a request without the key is not even read
        api.add_middleware(ApiKeyAuth, key=service.api_key)
    api.add_middleware(RequestMetrics, metrics=service.metrics)  # outermost: counts every answer

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _details(exc)
        bad_json = [d for d in details if d["type"] == "json_invalid"]
        if bad_json:
            ctx = exc.errors()[0].get("ctx") or {}
            return _error(400, f"malformed JSON: {ctx.get('error', bad_json[0]['msg'])}")
        return _error(422, _summary(details), details)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @api.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @api.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__})")

    @api.post(
        "/v1/recommend",
        response_model=RecommendResponse,
        responses=ERROR_RESPONSES,
        summary="A slate for a user, with the propensities of the choice",
    )
    async def recommend(body: RecommendRequest, request: Request) -> JSONResponse:
        job = service.prepare(body)
        request.state.model_version = service.policies[job.version].version
        scores = await score(job)
        return JSONResponse(service.finish(job, scores))

    @api.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        responses=ERROR_RESPONSES,
        summary="The user's responses to a served slate",
    )
    async def feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
        answer = service.feedback(body)
        request.state.model_version = answer["model_version"]
        return JSONResponse(answer)

    @api.get("/healthz", summary="Liveness and readiness: models loaded, log writable")
    async def healthz() -> JSONResponse:
        health = service.health()
        return JSONResponse(health, status_code=503 if health["status"] == "unavailable" else 200)

    @api.get("/v1/models", summary="Served model versions, traffic split and request limits")
    async def models() -> JSONResponse:
        return JSONResponse(service.models())

    add_admin_routes(api, service, replicas)
    return api
