"""Serving metrics for Prometheus through Ray's metrics API (``ray.util.metrics``).

The service reports to a :class:`ServeMetrics` (the base class records nothing: the service stays
framework-free and runs without Ray); a Serve replica gives it :class:`RayServeMetrics`, whose
series Ray's per-node metrics agent exports in Prometheus text format on the node's metrics
export port (``ray.init(_metrics_export_port=P)`` / ``ray start --metrics-export-port P``; by
default a free port, read from ``ray.nodes()[i]["MetricsExportPort"]``), every name prefixed
with ``ray_``. :class:`RequestMetrics` is the ASGI middleware that counts every HTTP answer.
The series and their tags are documented in docs/serving.md, "Monitoring".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.util import metrics as ray_metrics

__all__ = ["LATENCY_BOUNDARIES_S", "ROUTES", "RayServeMetrics", "RequestMetrics", "Series"]


class Series:
    """Metric names (Ray exports each as ``ray_<name>``) and tag keys."""

    REQUESTS = "rayrec_serve_requests_total"
    """Counter: HTTP answers by ``route``, ``status``, ``model_version``."""
    LATENCY = "rayrec_serve_request_seconds"
    """Histogram: seconds from request to answer, by ``route``, ``status``, ``model_version``."""
    SLATES = "rayrec_serve_slates_total"
    """Counter: served slates by ``model_version`` (the served policy), ``mode``, ``fallback``."""
    FEEDBACK = "rayrec_serve_feedback_total"
    """Counter: accepted feedback events by ``model_version``."""
    CLICKS = "rayrec_serve_clicks_total"
    """Counter: clicked slate positions by ``model_version`` (from feedback)."""
    POSITIONS = "rayrec_serve_feedback_positions_total"
    """Counter: slate positions with feedback by ``model_version`` (the CTR's denominator)."""
    CTR = "rayrec_serve_ctr"
    """Gauge: clicks / positions of this replica since it started, by ``model_version``."""
    EXPLORE_SHARE = "rayrec_serve_explore_share"
    """Gauge: the sampled share of the replica's exploration window."""
    FALLBACKS = "rayrec_serve_fallbacks_total"
    """Counter: slates served by the fallback policy, by ``fallback`` and ``reason``."""
    LOG_BACKLOG = "rayrec_serve_log_backlog_rows"
    """Gauge: rows appended to a log and not yet in a parquet file, by ``table``."""


ROUTES = ("/v1/recommend", "/v1/feedback", "/v1/models", "/healthz")
"""Routes counted by name; any other path is counted as ``other`` (bounded label values)."""

LATENCY_BOUNDARIES_S = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


class ServeMetrics:
    """What the service reports; this base records nothing (tests, plain uvicorn)."""

    def request(self, route: str, status: int, version: str, seconds: float) -> None:
        """One HTTP answer."""

    def slate(self, version: str, mode: str, fallback: str) -> None:
        """One served slate (``fallback``: the fallback policy's name, or ``""``)."""

    def feedback(self, version: str, clicks: int, positions: int) -> None:
        """One accepted feedback event: ``clicks`` of its ``positions`` slate positions."""

    def explore_share(self, share: float) -> None:
        """The replica's sampled share now."""

    def fallback(self, fallback: str, reason: str) -> None:
        """A slate served by the fallback policy (``reason``: ``error`` or ``unsupported``)."""

    def backlog(self, table: str, rows: int) -> None:
        """Rows waiting in a log table."""


class RayServeMetrics(ServeMetrics):
    """:class:`ServeMetrics` as Ray metrics; every series carries the ``replica`` tag."""

    def __init__(self, replica: str) -> None:
        def tags(*keys: str) -> tuple[str, ...]:
            return ("replica", *keys)

        by_request = tags("route", "status", "model_version")
        self._requests = ray_metrics.Counter(Series.REQUESTS, "HTTP answers", by_request)
        self._latency = ray_metrics.Histogram(
            Series.LATENCY, "Seconds to answer", LATENCY_BOUNDARIES_S, by_request
        )
        self._slates = ray_metrics.Counter(
            Series.SLATES, "Served slates", tags("model_version", "mode", "fallback")
        )
        by_version = tags("model_version")
        self._feedback = ray_metrics.Counter(Series.FEEDBACK, "Feedback events", by_version)
        self._clicks = ray_metrics.Counter(Series.CLICKS, "Clicked slate positions", by_version)
        self._positions = ray_metrics.Counter(
            Series.POSITIONS, "Slate positions with feedback", by_version
        )
        self._ctr = ray_metrics.Gauge(Series.CTR, "Clicks per position (replica)", by_version)
        self._share = ray_metrics.Gauge(Series.EXPLORE_SHARE, "Sampled share", tags())
        self._fallbacks = ray_metrics.Counter(
            Series.FALLBACKS, "Slates of the fallback policy", tags("fallback", "reason")
        )
        self._backlog = ray_metrics.Gauge(Series.LOG_BACKLOG, "Unwritten log rows", tags("table"))
        for metric in (
            self._requests,
            self._latency,
            self._slates,
            self._feedback,
            self._clicks,
            self._positions,
            self._ctr,
            self._share,
            self._fallbacks,
            self._backlog,
        ):
            metric.set_default_tags({"replica": replica})
        self._seen: dict[str, list[int]] = {}

    def request(self, route: str, status: int, version: str, seconds: float) -> None:
        tags = {"route": route, "status": str(status), "model_version": version}
        self._requests.inc(1, tags)
        self._latency.observe(seconds, tags)

    def slate(self, version: str, mode: str, fallback: str) -> None:
        self._slates.inc(1, {"model_version": version, "mode": mode, "fallback": fallback})

    def feedback(self, version: str, clicks: int, positions: int) -> None:
        tags = {"model_version": version}
        self._feedback.inc(1, tags)
        if clicks:
            self._clicks.inc(clicks, tags)
        self._positions.inc(positions, tags)
        seen = self._seen.setdefault(version, [0, 0])
        seen[0] += clicks
        seen[1] += positions
        self._ctr.set(seen[0] / seen[1], tags)

    def explore_share(self, share: float) -> None:
        self._share.set(share)

    def fallback(self, fallback: str, reason: str) -> None:
        self._fallbacks.inc(1, {"fallback": fallback, "reason": reason})

    def backlog(self, table: str, rows: int) -> None:
        self._backlog.set(rows, {"table": table})


class RequestMetrics:
    """ASGI middleware: every HTTP answer of the app (errors included) to ``metrics.request``.

    The handlers name the model version they answered for in ``request.state.model_version``
    (the ASGI scope's ``state``); other answers are counted under ``none``.
    """

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an app that raises without answering: Starlette answers 500

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope.get("path", "")
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            route = path if path in ROUTES else "other"
            version = scope.get("state", {}).get("model_version", "none")
            self.metrics.request(route, status, version, time.perf_counter() - start)
