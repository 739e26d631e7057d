"""Simulated users against a live rayrec endpoint: the closed loop of an A/B test.

Users come from rayrec's own :class:`~rayrec.sim.SessionSimulator`, built from the env spec of the
served checkpoint (the same world, checked against ``GET /v1/models``). Each step every active user
asks ``POST /v1/recommend`` for a slate of the candidates the simulator retrieved, with its history
(and responses) and context; the slate's items are mapped back to candidate indices, the simulator
says how the user responds (click, watch, like, skip) and ``POST /v1/feedback`` reports it. A
user's lifetime is one episode of the simulator: sessions, gaps and churn are the simulator's.
Users are batched in one simulator and their requests sent concurrently (``concurrency`` in
flight); a user's arm is the ``model_version`` that served it (the service assigns A/B by a
stable hash of the user id, so a user stays in one arm).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from rayrec.contracts.errors import SpecError
from rayrec.evaluation.simulate import refill_slots
from rayrec.loop.abtest import ALPHA, ab_report, msprt
from rayrec.sim import SessionSimulator, SimConfig, StepResult

MODES = ("sample", "greedy")
"""``POST /v1/recommend``'s modes (the HTTP contract; ``rayrec.serve.schemas.MODES``)."""

__all__ = [
    "METRICS",
    "MODES",
    "RESPONSES",
    "WORLD_FIELDS",
    "TrafficError",
    "TrafficFailed",
    "TrafficOptions",
    "check_world",
    "run_traffic",
    "traffic_user_ids",
]

METRICS = ("return", "clicks", "sessions")
"""Per-user outcomes compared between arms: lifetime return (the simulator's reward summed over the
lifetime), clicks and sessions per lifetime."""
WORLD_FIELDS = (
    "world_seed",
    "num_items",
    "embed_dim",
    "num_candidates",
    "history_len",
    "slate_size",
)
"""``GET /v1/models`` fields that must equal the env spec's (besides the catalog fingerprint)."""
RESPONSES = ("click", "watch", "like", "skip")
"""The API's names of a user's responses, in the order of the simulator's response columns."""
SEED_LIMIT = 2**31
"""Seeds are in [0, SEED_LIMIT): a user's id is ``seed * 2**32 + i`` (see traffic_user_ids)."""
SMALL_ARM = 100
"""Below this many users in an arm the report warns: the calibration tests measured up to 7.6%
false positives at alpha 0.05 with 40 users in the smaller arm (docs/loop.md)."""
_REQUEST_SEED_SALT = 0x7EAFF1C
_RETRY_STATUSES = (408, 503)
_ATTEMPTS = 6


class TrafficError(SpecError):
    """Bad input to ``rayrec traffic`` (a URL that is not rayrec, another world): one line, exit 2."""


class TrafficFailed(RuntimeError):
    """The endpoint failed during the run (refused requests, went away): one line, exit 1."""


def traffic_user_ids(seed: int, sim_ids: np.ndarray) -> np.ndarray:
    """The user ids sent for the simulator's users ``sim_ids`` (0, 1, ... in start order) in a run
    with ``seed``: ``seed * 2**32 + i``, so runs with different seeds meet different users (and
    different A/B assignments), and one run never repeats an id."""
    return np.int64(seed) * np.int64(2**32) + np.asarray(sim_ids, dtype=np.int64)


@dataclass(frozen=True)
class TrafficOptions:
    """How ``rayrec traffic`` runs."""

    url: str
    """Base URL of the rayrec endpoint, e.g. ``http://127.0.0.1:8000``."""
    users: int
    """User lifetimes to play (>= 1)."""
    concurrency: int = 16
    """Requests in flight at once (>= 1)."""
    seed: int = 0
    """Seeds the simulator's users and dynamics and each request's ``seed`` (in [0, 2**31))."""
    batch_size: int = 256
    """Users the simulator steps together (each step sends one request per active user)."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer KEY`` when the service wants one."""
    timeout_s: float = 30.0
    """Per HTTP request."""
    alpha: float = ALPHA
    mode: str = "sample"
    """Every request's ``mode``: ``sample`` (the policy's distribution, within the service's
    exploration budget) or ``greedy`` (its top k)."""

    def __post_init__(self) -> None:
        for name, lo in (("users", 1), ("concurrency", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise TrafficError(f"--{name} ({value!r}) must be an integer >= {lo}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise TrafficError(f"--seed ({self.seed}) must be in [0, {SEED_LIMIT})")
        if not self.url.startswith(("http://", "https://")):
            raise TrafficError(f"--url {self.url!r}: must start with http:// or https://")
        if self.mode not in MODES:
            raise TrafficError(f"--mode {self.mode!r}: must be one of {', '.join(MODES)}")


def check_world(
    models: dict[str, Any], config: SimConfig, fingerprint: str, source: str
) -> list[dict[str, Any]]:
    """The served models of a ``GET /v1/models`` answer, once they are known to serve the world of
    ``config`` whose catalog has ``fingerprint`` (same fingerprint and world fields); else
    :class:`TrafficError`."""
    served = models.get("models") if isinstance(models, dict) else None
    if not isinstance(served, list) or not served or not all(isinstance(m, dict) for m in served):
        raise TrafficError(f"{source}: GET /v1/models did not list models as rayrec does")
    for model in served:
        version = model.get("version")
        if not isinstance(version, str):
            raise TrafficError(f"{source}: GET /v1/models lists a model without a version")
        for name in WORLD_FIELDS:
            if name in model and model[name] != getattr(config, name):
                raise TrafficError(
                    f"--env: {name} is {getattr(config, name)} but {version} is served with "
                    f"{model[name]}: the env spec's world differs from the served one"
                )
        if "catalog" in model and model["catalog"] != fingerprint:
            raise TrafficError(
                f"--env: its catalog (fingerprint {fingerprint}) differs from the one {version} "
                f"is served with ({model['catalog']}): another world"
            )
    return served


class _Endpoint:
    """The HTTP side: requests with retries on overload, errors turned into one line."""

    def __init__(self, client: httpx.AsyncClient, concurrency: int) -> None:
        self.client = client
        self.gate = asyncio.Semaphore(concurrency)
        self.requests = self.feedback = self.retries = 0

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(_ATTEMPTS):
            async with self.gate:
                try:
                    reply = await self.client.post(path, json=body)
                except httpx.TransportError as e:
                    if attempt == _ATTEMPTS - 1:
                        raise TrafficFailed(f"POST {path}: {type(e).__name__}: {e}") from e
                    reply = None
            if reply is not None and reply.status_code == 200:
                return reply.json()
            if reply is not None and reply.status_code not in _RETRY_STATUSES:
                raise TrafficFailed(f"POST {path} answered {reply.status_code}: {_error(reply)}")
            self.retries += 1
            wait = _retry_after(reply) if reply is not None else 0.2 * 2**attempt
            await asyncio.sleep(wait)
        raise TrafficFailed(f"POST {path}: still refused after {_ATTEMPTS} attempts (overloaded)")

    async def recommend(self, body: dict[str, Any]) -> dict[str, Any]:
        out = await self.post("/v1/recommend", body)
        self.requests += 1
        return out

    async def send_feedback(self, body: dict[str, Any]) -> None:
        await self.post("/v1/feedback", body)
        self.feedback += 1


def _error(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("error", reply.text))[:200]
    except ValueError:
        return reply.text[:200]


def _retry_after(reply: httpx.Response) -> float:
    try:
        return min(max(float(reply.headers.get("retry-after", "0.2")), 0.05), 5.0)
    except ValueError:
        return 0.2


async def probe(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """``GET /v1/models``, which must answer like rayrec; else :class:`TrafficError`."""
    try:
        reply = await client.get("/v1/models")
    except httpx.TransportError as e:
        raise TrafficError(f"--url {url}: no answer ({type(e).__name__}: {e})") from e
    if reply.status_code == 401:
        raise TrafficError(f"--url {url}: the service wants an API key (--api-key-file F)")
    try:
        body = reply.json()
    except ValueError:
        body = None
    if reply.status_code != 200 or not isinstance(body, dict) or "models" not in body:
        raise TrafficError(
            f"--url {url}: not a rayrec endpoint (GET /v1/models answered {reply.status_code} "
            "without a list of models)"
        )
    return body


def _request(
    sim: SessionSimulator,
    slot: int,
    user_id: int,
    context: np.ndarray,
    seed: int,
    mode: str = "sample",
) -> tuple[dict[str, Any], dict[int, int]]:
    """The ``POST /v1/recommend`` body of the user in ``slot`` (what the simulator knows of it now)
    and the map from each offered item to its candidate index (the first, if repeated)."""
    valid = np.flatnonzero(sim.candidate_valid[slot])
    position: dict[int, int] = {}
    for j in valid:
        position.setdefault(int(sim.candidates[slot, j]), int(j))
    history = [
        {"item_id": int(item), **dict(zip(RESPONSES, map(float, r), strict=True))}
        for item, r in zip(sim.history_items[slot], sim.history_responses[slot], strict=True)
        if item >= 0
    ]
    body = {
        "user_id": user_id,
        "history": history,
        "context": [float(c) for c in context],
        "candidates": list(position),
        "k": min(sim.config.slate_size, len(position)),
        "mode": mode,
        "seed": seed,
    }
    return body, position


def _responses(result: StepResult, slot: int, k: int) -> list[dict[str, Any]]:
    """The ``POST /v1/feedback`` responses of the user in ``slot`` to a slate of k items: the
    simulator's click, watch, like and skip at the clicked position, nothing elsewhere."""
    responses: list[dict[str, Any]] = [{} for _ in range(k)]
    at = int(result.click_position[slot])
    if 0 <= at < k:
        values = (1.0, result.watch[slot], result.like[slot], result.skip[slot])
        responses[at] = dict(zip(RESPONSES, map(float, values), strict=True))
    return responses


class _Lifetimes:
    """Per-slot accumulators of the users being played, and the rows of those who finished."""

    def __init__(self, b: int) -> None:
        self.ret, self.clicks = np.zeros(b), np.zeros(b)
        self.steps, self.requests = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
        self.arm = np.full(b, -1, dtype=np.int64)
        self.mixed = np.zeros(b, dtype=bool)
        self.rows: list[dict[str, Any]] = []

    def reset(self, idx: np.ndarray) -> None:
        for values in (self.ret, self.clicks, self.steps, self.requests):
            values[idx] = 0
        self.arm[idx], self.mixed[idx] = -1, False

    def finish(self, slot: int, user_id: int, versions: list[str], sessions: int) -> None:
        """The lifetime in ``slot`` ended: keep its row (see ``users.csv`` in docs/loop.md)."""
        self.rows.append(
            {
                "user_id": user_id,
                "version": versions[self.arm[slot]],
                "mixed": bool(self.mixed[slot]),
                "return": float(self.ret[slot]),
                "clicks": int(self.clicks[slot]),
                "sessions": sessions,
                "steps": int(self.steps[slot]),
                "requests": int(self.requests[slot]),
            }
        )

    def serve(self, slot: int, arm: int) -> None:
        if self.arm[slot] >= 0 and self.arm[slot] != arm:
            self.mixed[slot] = True
        self.arm[slot] = arm
        self.requests[slot] += 1


async def _play(
    sim: SessionSimulator,
    endpoint: _Endpoint,
    options: TrafficOptions,
    versions: list[str],
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    cfg, b = sim.config, sim.num_users
    # The requests' seeds: a stream apart from the simulator's (which spawns from the bare seed).
    rng = np.random.default_rng(np.random.SeedSequence([_REQUEST_SEED_SALT, options.seed]))
    k = cfg.slate_size
    life = _Lifetimes(b)
    active = np.ones(b, dtype=bool)
    started = b
    pending: list[asyncio.Task] = []
    while active.any():
        slots = np.flatnonzero(active)
        ids = traffic_user_ids(options.seed, sim.user_id)
        context = sim.context()
        seeds = rng.integers(0, 2**63 - 1, b)
        asked = [
            _request(sim, s, int(ids[s]), context[s], int(seeds[s]), options.mode) for s in slots
        ]
        # This step's requests and the previous step's feedback are in flight together.
        answers = await asyncio.gather(*(endpoint.recommend(body) for body, _ in asked), *pending)
        answers = answers[: len(asked)]
        slate = np.full((b, k), -1, dtype=np.int64)
        for s, (_, position), answer in zip(slots, asked, answers, strict=True):
            version = answer["model_version"]
            if version not in versions:
                versions.append(version)
            life.serve(s, versions.index(version))
            unknown = [item for item in answer["items"] if item not in position]
            if unknown:
                raise TrafficFailed(
                    f"{version} served items {unknown[:5]} that were not among the candidates"
                )
            chosen = [position[item] for item in answer["items"]]
            slate[s, : len(chosen)] = chosen
        result = sim.step(slate)
        pending = [
            asyncio.ensure_future(
                endpoint.send_feedback(
                    {
                        "request_id": answer["request_id"],
                        "responses": _responses(result, s, len(answer["items"])),
                    }
                )
            )
            for s, answer in zip(slots, answers, strict=True)
        ]
        life.ret += result.reward
        life.clicks += result.clicked
        life.steps += 1
        done = (result.terminated | result.truncated) & active
        if not done.any():
            continue
        idx = np.flatnonzero(done)
        for s in idx:
            life.finish(s, int(ids[s]), versions, int(sim.session_index[s] + 1))
        refill, started = refill_slots(sim, idx, active, started, options.users)
        life.reset(refill)
        if progress is not None:
            progress(len(life.rows), options.users)
    await asyncio.gather(*pending)
    return life.rows


async def _run(
    config: SimConfig, options: TrafficOptions, progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    headers = {} if options.api_key is None else {"Authorization": f"Bearer {options.api_key}"}
    limits = httpx.Limits(max_connections=options.concurrency)
    async with httpx.AsyncClient(
        base_url=options.url, headers=headers, timeout=options.timeout_s, limits=limits
    ) as client:
        sim = SessionSimulator(config, min(options.users, options.batch_size), seed=options.seed)
        models = await probe(client, options.url)
        served = check_world(models, config, sim.catalog.fingerprint, f"--url {options.url}")
        # Variants in the order the service lists them: A (the main checkpoint), then B (--ab).
        versions = [m["version"] for m in served]
        names = {m["version"]: str(m.get("variant", m["version"])) for m in served}
        endpoint = _Endpoint(client, options.concurrency)
        sim.reset()
        began = time.perf_counter()
        rows = await _play(sim, endpoint, options, versions, progress)
        elapsed = time.perf_counter() - began
    for row in rows:
        row["arm"] = names.get(row["version"], row["version"])
    return _report(rows, options, endpoint, elapsed, names)


def _report(
    rows: list[dict[str, Any]],
    options: TrafficOptions,
    endpoint: _Endpoint,
    elapsed: float,
    names: dict[str, str],
) -> dict[str, Any]:
    clean = [r for r in rows if not r["mixed"]]
    order = [names[v] for v in names] + sorted({r["arm"] for r in clean} - set(names.values()))
    arms = {}
    for arm in order:
        mine = [r for r in clean if r["arm"] == arm]
        if mine:
            arms[arm] = {m: np.array([r[m] for r in mine], dtype=np.float64) for m in METRICS}
    report = ab_report(arms, METRICS, options.alpha)
    if report["difference"] is not None:
        # The always-valid p-value, as if one had looked after every user that finished.
        in_b = np.array([r["arm"] == list(arms)[1] for r in clean])
        for m in METRICS:
            values = np.array([r[m] for r in clean], dtype=np.float64)
            report["difference"][m].update(msprt(values, in_b, alpha=options.alpha).to_dict())
    warnings = []
    if len(arms) < 2:
        warnings.append(
            f"{len(arms)} arm(s) served: is the service running an A/B split (rayrec serve --ab)?"
        )
    elif min(len(a[METRICS[0]]) for a in arms.values()) < SMALL_ARM:
        warnings.append(
            f"an arm has fewer than {SMALL_ARM} users: the t intervals of skewed per-user outcomes "
            "are less reliable there (docs/loop.md)"
        )
    versions = {arm: v for v, arm in names.items()}
    for row in report["arms"]:
        row["version"] = versions.get(row["arm"], row["arm"])
    return {
        "url": options.url,
        "users": len(rows),
        "seed": options.seed,
        "mode": options.mode,
        "concurrency": options.concurrency,
        "requests": endpoint.requests,
        "feedback": endpoint.feedback,
        "retries": endpoint.retries,
        "mixed_users": len(rows) - len(clean),
        "elapsed_s": round(elapsed, 3),
        **report,
        "warnings": warnings,
        "per_user": rows,
    }


def run_traffic(
    config: SimConfig,
    options: TrafficOptions,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Play ``options.users`` simulated lifetimes of ``config``'s world against the endpoint at
    ``options.url`` and compare its arms.

    Returns:
        The report (docs/loop.md): ``users``, ``requests``, ``feedback``, ``arms`` (per arm: users,
        version, each metric's mean and 95% CI), ``difference`` (B - A per metric: estimate, CI,
        p-value; None with one arm), ``mixed_users`` (users served by more than one version:
        left out of the arms) and ``per_user`` (one row per user lifetime).

    Raises:
        TrafficError: the URL is not a rayrec endpoint, or it serves another world.
        TrafficFailed: the endpoint refused or failed requests during the run.
    """
    return asyncio.run(_run(config, options, progress))
