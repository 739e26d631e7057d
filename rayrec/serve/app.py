"""rayrec on Ray Serve: one FastAPI ingress deployment whose replicas hold the policies.

Each replica loads the inference-only RLModule(s) and the catalog once, serves the API of
:mod:`rayrec.serve.api`, scores concurrent requests together with ``@serve.batch`` (one forward
pass per model version per batch) and writes its own impression log files. The request goes from
Serve's HTTP proxy straight to a replica: no second hop between an ingress and a model deployment.
With direct ingress (``serve_forever(direct_port=...)``, Ray Serve's
``RAY_SERVE_ENABLE_DIRECT_INGRESS``; what ``rayrec serve`` does by default) each replica also
answers HTTP on its own port, skipping the proxy hop.

``build_app`` is the application builder for ``serve run`` / ``serve deploy`` (configs/serve.yaml);
``serve_forever`` is what ``rayrec serve`` runs.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from pydantic import ValidationError
from ray import serve
from ray.serve.config import BackpressureConfig

from rayrec.contracts.errors import SpecError
from rayrec.serve.api import make_api
from rayrec.serve.metrics import RayServeMetrics
from rayrec.serve.schemas import RecommendRequest
from rayrec.serve.service import Job, RecommenderService, RequestError, Scored, ServiceSettings

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "REQUEST_TIMEOUT_S",
    "DeploymentOptions",
    "build_app",
    "direct_ingress_env",
    "direct_urls",
    "free_direct_port",
    "serve_env",
    "serve_forever",
]

APP_NAME = "rayrec"
DEPLOYMENT_NAME = "Recommender"


@dataclasses.dataclass(frozen=True)
class DeploymentOptions:
    """How the deployment runs (everything that is not the service itself)."""

    replicas: int = 1
    """Number of replicas; each holds every served model."""
    num_cpus: float = 0.5
    """CPUs reserved per replica."""
    max_batch_size: int = 32
    """Most requests scored in one forward pass."""
    batch_wait_s: float = 0.0
    """How long a batch waits for more requests after its first (adds to a lone request's latency).
    0 batches what queued while the previous batch ran, which under load is most of it."""
    max_ongoing_requests: int = 64
    """Requests a replica accepts at once before Serve queues them elsewhere."""
    max_queued_requests: int = 128
    """Requests each caller (a proxy, a handle) queues for the deployment when every replica
    holds ``max_ongoing_requests``; beyond it a request is refused at once with 503 and
    ``Retry-After`` (overload never becomes an unbounded queue)."""
    retry_after_s: float = 1.0
    """The ``Retry-After`` of those 503 answers (whole seconds, rounded up)."""
    score_delay_s: float = 0.0
    """Testing only: each scoring batch sleeps this long first (a slow model; the overload test)."""

    def __post_init__(self) -> None:
        checks = (
            ("replicas", self.replicas, 1, 1024, int),
            ("num_cpus", self.num_cpus, 0.0, 1024.0, float),
            ("max_batch_size", self.max_batch_size, 1, 4096, int),
            ("batch_wait_s", self.batch_wait_s, 0.0, 1.0, float),
            ("max_ongoing_requests", self.max_ongoing_requests, 1, 100_000, int),
            ("max_queued_requests", self.max_queued_requests, 1, 1_000_000, int),
            ("retry_after_s", self.retry_after_s, 0.0, 3600.0, float),
            ("score_delay_s", self.score_delay_s, 0.0, 60.0, float),
        )
        for name, value, lo, hi, kind in checks:
            ok_type = isinstance(value, int) if kind is int else isinstance(value, int | float)
            if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
                what = "an integer" if kind is int else "a number"
                raise SpecError(f"{name} ({value!r}) must be {what} in [{lo}, {hi}]")


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    health_check_period_s=2.0,
    health_check_timeout_s=30.0,
    graceful_shutdown_timeout_s=20.0,
)
@serve.ingress()
class Recommender:
    """A Serve replica: the service, its batched scorer and its log writers."""

    def __init__(
        self,
        settings: dict[str, Any],
        max_batch_size: int = 32,
        batch_wait_s: float = 0.0,
        score_delay_s: float = 0.0,
    ) -> None:
        import torch

        # A replica owns a fraction of a CPU; torch's thread pool would only fight its neighbours.
        torch.set_num_threads(1)
        replica = serve.get_replica_context().replica_id.unique_id
        self.service = RecommenderService.load(
            ServiceSettings.from_dict(settings), replica, RayServeMetrics(replica)
        )
        self._score.set_max_batch_size(max_batch_size)
        self._score.set_batch_wait_timeout_s(batch_wait_s)
        self._delay = score_delay_s

    def __serve_build_asgi_app__(self) -> Any:
        # Serve's count of this deployment's replicas (its world size) when a rollout step comes.
        return make_api(self.service, self._score, lambda: serve.get_replica_context().world_size)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _score(self, jobs: list[Job]) -> list[Scored]:
        if self._delay:
            time.sleep(self._delay)  # blocks the replica as a slow forward pass would
        return self.service.score(jobs)

    async def recommend(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/recommend`` for in-process callers of a ``DeploymentHandle``
        (``handle.recommend.remote(body)``): the same validation, batching and impression log,
        no HTTP. Invalid or refused bodies raise :class:`~rayrec.serve.service.RequestError`
        with the HTTP status the API would answer (422 for invalid input)."""
        try:
            request = RecommendRequest.model_validate(body)
        except ValidationError as e:
            raise RequestError(422, f"invalid request: {e}") from None
        job = self.service.prepare(request)
        return self.service.finish(job, await self._score(job))

    def check_health(self) -> None:
        self.service.check()

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: write what the logs still buffer.
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


def build_app(args: dict[str, Any]) -> serve.Application:
    """The Serve application for ``args``: :class:`ServiceSettings` fields (``checkpoint`` is
    required) plus :class:`DeploymentOptions` fields. Used by ``serve run``/``serve deploy``
    through ``import_path: rayrec.serve.app:build_app`` and by ``rayrec serve``."""
    args = dict(args or {})
    option_names = {f.name for f in dataclasses.fields(DeploymentOptions)}
    options = DeploymentOptions(**{k: args.pop(k) for k in list(args) if k in option_names})
    if "checkpoint" not in args:
        raise SpecError("serve: the application needs a checkpoint argument")
    settings = ServiceSettings.from_dict(args).resolved()
    settings.check()
    return Recommender.options(
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.num_cpus},
        max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests,
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=options.retry_after_s
        ),
    ).bind(settings.to_dict(), options.max_batch_size, options.batch_wait_s, options.score_delay_s)


REQUEST_TIMEOUT_S = 10.0
"""Default HTTP request timeout of ``rayrec serve`` (Serve answers 408 past it)."""

DIRECT_PORT_SPAN = 100
"""Ports reserved for direct ingress from the first one: replicas, and their replacements while a
dead replica's port is quarantined."""


def direct_ingress_env(first_port: int) -> dict[str, str]:
    """The environment that turns on Ray Serve's direct ingress, replicas taking HTTP ports from
    ``first_port`` on (the first replica gets ``first_port``).

    Ray's processes read it when they start: set it before Ray starts (``ray.init`` in-process, or
    ``ray start`` on every node of a cluster). The drain on shutdown is cut from Serve's 30 s (a
    grace period for an external load balancer to deregister the replica) to 1 s, since nothing
    but the clients sits in front of the replicas here.
    """
    if not 1024 <= first_port <= 65535 - DIRECT_PORT_SPAN:
        raise SpecError(
            f"direct_port ({first_port!r}) must be an integer in [1024, {65535 - DIRECT_PORT_SPAN}]"
        )
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first_port + DIRECT_PORT_SPAN),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        # A replica that replaces a dead one takes its port back (the lowest free one) at once.
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def serve_env(direct_port: int | None = None, throughput: bool = True) -> dict[str, str]:
    """The environment of the Ray that ``rayrec serve`` starts in-process (Ray's processes read it
    when they start).

    ``throughput``: Ray Serve's throughput-optimised mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED``:
    the replica runs request handlers on its event loop instead of a second thread, the proxy
    talks to replicas over gRPC, the router shares the event loop, request logs are buffered);
    measured faster on every path (docs/serving.md, Latency). Direct ingress, which that mode turns
    on by default, stays off unless ``direct_port`` is given.
    """
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if throughput else "0"}
    if direct_port is None:
        env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "0"
    else:
        env.update(direct_ingress_env(direct_port))
    return env


def free_direct_port(first: int = 20000, host: str = "127.0.0.1") -> int:
    """The first port from ``first`` up that ``host`` can bind now: a ``direct_port`` above Ray's
    worker ports (10002-19999 by default) and below the usual ephemeral range."""
    for port in range(first, 65536 - DIRECT_PORT_SPAN):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {first} up on {host}")


def direct_urls(host: str, app_name: str = APP_NAME) -> list[str]:
    """The URLs at which the running app's replicas answer directly (empty without direct
    ingress): Serve's controller keeps each replica's port."""
    import ray
    from ray.serve._private.common import RequestProtocol
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    urls = set()
    for group in ray.get(controller.get_target_groups.remote(app_name)):
        if group.protocol != RequestProtocol.HTTP:
            continue
        for target in group.targets:
            ip = target.ip if host in ("0.0.0.0", "::") else host
            urls.add(f"http://{ip}:{target.port}")
    return sorted(urls)


def serve_forever(
    args: dict[str, Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    direct_port: int | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> None:
    """Start Ray (unless connected to ``address``) and Serve, run the app until ``stop`` is set
    (or Ctrl-C), then shut Serve down so that every replica flushes its log.

    ``request_timeout_s``: a request not answered by then gets 408 (Serve's HTTP timeout).

    ``direct_port`` turns on direct ingress (see :func:`direct_ingress_env`): it needs the Ray
    this function starts, since a running Ray's processes cannot take it any more.
    """
    import ray

    app = build_app(args)  # bad arguments fail here, before Ray starts
    if direct_port is not None:
        if address or ray.is_initialized():
            raise SpecError(
                "direct_port needs the Ray that rayrec serve starts in-process; on a running "
                "cluster set RAY_SERVE_ENABLE_DIRECT_INGRESS=1 (and the port range "
                "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT/MAX_HTTP_PORT) in the environment of "
                "`ray start` instead"
            )
    if not address and not ray.is_initialized():
        env = serve_env(direct_port)
        if "RAY_SERVE_THROUGHPUT_OPTIMIZED" in os.environ:  # the user's choice wins
            env.pop("RAY_SERVE_THROUGHPUT_OPTIMIZED")
        os.environ.update(env)
    stop = stop or threading.Event()
    # Ctrl-C sets `stop` instead of raising: a KeyboardInterrupt raised while Ray and Serve start
    # is swallowed by their own wait loops (the command then ran on, ignoring it).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    started_ray = False
    try:
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            started_ray = True
        if not stop.is_set():
            serve.start(
                http_options={"host": host, "port": port, "request_timeout_s": request_timeout_s}
            )
            serve.run(app, name=APP_NAME, route_prefix="/")
        if not stop.is_set():
            if direct_port is None:
                sys.stderr.write(
                    f"rayrec serve: listening on http://{host}:{port} (Ctrl-C stops)\n"
                )
            else:
                for url in direct_urls(host):
                    sys.stderr.write(f"rayrec serve: a replica answers directly on {url}\n")
                sys.stderr.write(
                    f"rayrec serve: listening on http://{host}:{direct_port} (the replica's own "
                    f"server; Serve's proxy, which balances over replicas, on "
                    f"http://{host}:{port}) (Ctrl-C stops)\n"
                )
        if ready is not None:
            ready.set()
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if ray.is_initialized():
            serve.shutdown()
        if started_ray:
            ray.shutdown()
