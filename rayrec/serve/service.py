"""The recommendation service without any web framework: requests in, slates and log rows out.

The FastAPI routes (:mod:`rayrec.serve.app`) call :meth:`RecommenderService.prepare` (validation
against the catalog, history, context, candidates; cheap, per request), then the batched
:meth:`RecommenderService.score` (one forward pass per model version for many requests), then
:meth:`RecommenderService.finish` (slate, propensities, response, impression log row).

Documented rules (docs/serving.md):

- History ids not in the catalog are dropped and named in the response's ``warnings``.
- Candidate ids not in the catalog are an error (422 naming them): the caller asked to rank an
  item the model cannot see. Candidates must be distinct (422 otherwise).
- A/B: a user goes to model B when ``ab_share(user_id) < split``, a stable hash of the user id
  (the same user always meets the same version, on every replica, across restarts).
- Request ids are signed with the deployment's key and carry the user, the version and k, so any
  replica can check a feedback event without shared state.
- Safe exploration (:mod:`rayrec.serve.explore`): ``sample`` requests beyond the replica's
  exploration budget are served greedily; sampled slates mix in the propensity floor; a model that
  raises or gives non-finite scores is replaced by the fallback policy (or the request gets 503).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from rayrec.data.journal import LogBacklogFull, ParquetLog
from rayrec.data.served import (
    FEEDBACK_DIR,
    IMPRESSIONS_DIR,
    PAD_ID,
    VERSIONS_FILE,
    Feedback,
    Impressions,
    VersionRegistry,
    feedback_schema,
    impression_schema,
    logged_request_ids,
)
from rayrec.serve.explore import ExplorationBudget, fallback_name, fallback_scores, unsupported
from rayrec.serve.identity import (
    SeenFeedback,
    ab_share,
    sign_request_id,
    verify_request_id,
    version_tag,
)
from rayrec.serve.jobs import Job, RequestError, Scored, default_context
from rayrec.serve.metrics import ServeMetrics
from rayrec.serve.policy import ServedPolicy, check_same_world, choose_slate
from rayrec.serve.rollout import GuardCounts
from rayrec.serve.schemas import (
    MAX_BODY_BYTES,
    MAX_CANDIDATES,
    MAX_HISTORY,
    MAX_K,
    FeedbackRequest,
    HistoryEntry,
    RecommendRequest,
)
from rayrec.serve.settings import ServiceSettings, load_env
from rayrec.sim.config import NUM_RESPONSES

__all__ = [
    "Job",
    "RecommenderService",
    "RequestError",
    "Scored",
    "ServiceSettings",
    "default_context",
]

logger = logging.getLogger(__name__)


class RecommenderService:
    """One or two served policies (A/B), the impression log, and counters."""

    def __init__(
        self,
        policies: list[ServedPolicy],
        settings: ServiceSettings,
        writer: str = "local",
        metrics: ServeMetrics | None = None,
    ) -> None:
        if not 1 <= len(policies) <= 2:
            raise ValueError(f"serve one or two policies, got {len(policies)}")
        a = policies[0]
        for b in policies[1:]:
            check_same_world(a, b, "--ab")
        self.policies = policies
        self.settings = settings
        self.split = settings.split if len(policies) == 2 else 0.0
        self.writer = writer
        self._key = settings.signing_key()
        self.api_key = settings.api_key()
        self._tags = {version_tag(p.version): i for i, p in enumerate(policies)}
        self.guard = GuardCounts()
        self.seen = SeenFeedback(settings.feedback_ttl_s, settings.max_feedback_ids)
        self.versions: VersionRegistry | None = None
        self.history_len = a.config.history_len
        self.num_items = a.config.num_items
        self.started = time.time()
        self.metrics = metrics or ServeMetrics()
        self.budget = ExplorationBudget(settings.explore_budget)
        self.stats = {
            "requests": 0,
            "batches": 0,
            "largest_batch": 0,
            "feedback": 0,
            "feedback_repeated": 0,
            "feedback_expired": 0,
            "sampled": 0,
            "explore_budget_greedy": 0,
            "fallbacks": 0,
        }
        self.impressions: ParquetLog | None = None
        self.feedback_log: ParquetLog | None = None
        if settings.log_dir is not None:
            root = Path(settings.log_dir)
            flush = {"flush_rows": settings.flush_rows, "flush_seconds": settings.flush_seconds}
            schema = impression_schema(self.history_len, MAX_CANDIDATES, MAX_K)
            self.impressions = ParquetLog(root / IMPRESSIONS_DIR, schema, writer, **flush)
            self.feedback_log = ParquetLog(root / FEEDBACK_DIR, feedback_schema(), writer, **flush)
            self.versions = VersionRegistry(root / VERSIONS_FILE)
            self.versions.register(
                [(version_tag(p.version), p.version, str(p.checkpoint)) for p in policies]
            )
            self._remember_logged_feedback(root / FEEDBACK_DIR)

    @classmethod
    def load(
        cls, settings: ServiceSettings, writer: str = "local", metrics: ServeMetrics | None = None
    ) -> RecommenderService:
        env = load_env(settings.env) if settings.env else None
        paths = [p for p in (settings.checkpoint, settings.ab_checkpoint) if p is not None]
        return cls([ServedPolicy.load(p, env) for p in paths], settings, writer, metrics)

    def serve_policies(self, policies: list[ServedPolicy], split: float) -> None:
        """Serve ``policies`` (A, then B) with B's share ``split`` from now on, in place (a
        rollout's step, :mod:`rayrec.serve.rollout`). Lists only grow or change B, so a request
        prepared before the change still finds its version's index."""
        if not 1 <= len(policies) <= 2 or len(policies) < len(self.policies):
            raise ValueError(f"serve one or two policies, not fewer than now, got {len(policies)}")
        if self.versions is not None:
            self.versions.register(
                [(version_tag(p.version), p.version, str(p.checkpoint)) for p in policies]
            )
        self._tags = {version_tag(p.version): i for i, p in enumerate(policies)}
        self.policies, self.split = policies, split if len(policies) == 2 else 0.0

    # ---- recommend -----------------------------------------------------------------------------
    def variant(self, user_id: int) -> int:
        """0 (model A) or 1 (model B) for this user."""
        return int(len(self.policies) == 2 and ab_share(user_id) < self.split)

    def prepare(self, req: RecommendRequest) -> Job:
        """Check the request against the catalog and build its model inputs."""
        if self.impressions is not None and self.impressions.full:
            raise RequestError(503, self._log_full_message())
        now = time.time()
        version = self.variant(req.user_id)
        policy = self.policies[version]
        n, h = self.num_items, self.history_len
        warnings: list[str] = []
        entries = [
            e if isinstance(e, HistoryEntry) else HistoryEntry(item_id=e) for e in req.history
        ]
        unknown = [e.item_id for e in entries if e.item_id >= n]
        if unknown:
            warnings.append(
                f"history: dropped {len(unknown)} item id(s) not in the catalog "
                f"(ids 0..{n - 1}): {unknown[:10]}"
            )
            entries = [e for e in entries if e.item_id < n]
        entries = entries[-h:] if entries else []
        history = np.full(h, PAD_ID, dtype=np.int64)
        responses = np.zeros((h, NUM_RESPONSES), dtype=np.float32)
        if entries:
            history[h - len(entries) :] = [e.item_id for e in entries]
            responses[h - len(entries) :] = [e.values() for e in entries]
        context = (
            default_context(now)
            if req.context is None
            else np.asarray(req.context, dtype=np.float32)
        )
        if req.seed is None:
            retrieval_rng = sample_rng = np.random.default_rng()
        else:
            retrieval_rng = np.random.default_rng([req.user_id, req.seed, 0])
            sample_rng = np.random.default_rng([req.user_id, req.seed, 1])
        if req.candidates is not None:
            candidates = np.asarray(req.candidates, dtype=np.int64)
            outside = candidates[candidates >= n]
            if len(outside):
                raise RequestError(
                    422,
                    f"candidates: {len(outside)} item id(s) not in the catalog (ids 0..{n - 1}): "
                    f"{outside[:10].tolist()}",
                )
        else:
            candidates = policy.retrieve(history, retrieval_rng)[:MAX_CANDIDATES]
        k = policy.config.slate_size if req.k is None else req.k
        if k > len(candidates):
            raise RequestError(
                422, f"k ({k}) must be <= the number of candidates ({len(candidates)})"
            )
        mode = req.mode
        allowed = self.budget.take(mode == "sample")  # every slate counts, greedy ones too
        if mode == "sample" and not allowed:
            mode = "greedy"
            self.stats["explore_budget_greedy"] += 1
            warnings.append(
                f"mode: served greedy, not sample: this replica's exploration budget "
                f"({self.budget.budget:g} of its last slates) is spent"
            )
        self.metrics.explore_share(self.budget.share)
        return Job(
            request_id=sign_request_id(
                self._key, req.user_id, version_tag(policy.version), k, int(now)
            ),
            version=version,
            user_id=req.user_id,
            time=now,
            history_items=history,
            history_responses=responses,
            context=context,
            candidates=candidates,
            k=k,
            mode=mode,
            rng=sample_rng,
            warnings=tuple(warnings),
        )

    def score(self, jobs: list[Job]) -> list[Scored]:
        """Scores of each job's candidates: one forward pass per model version in the batch
        (two for a two-level model: its high level picks each job's option first)."""
        self.stats["batches"] += 1
        self.stats["requests"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        out: list[Scored] = [Scored(np.empty(0))] * len(jobs)
        for version, policy in enumerate(self.policies):
            rows = [i for i, job in enumerate(jobs) if job.version == version]
            if not rows:
                continue
            group = [jobs[i] for i in rows]
            try:
                obs = policy.observation(
                    np.stack([j.history_items for j in group]),
                    np.stack([j.history_responses for j in group]),
                    np.stack([j.context for j in group]),
                    [j.candidates for j in group],
                )
                scores, options = policy.slate_scores(
                    obs, [j.mode for j in group], [j.rng for j in group]
                )
            except Exception as e:  # the fallback policy, or a 503, answers (finish)
                logger.exception(
                    "model %s failed to score %d request(s)", policy.version, len(group)
                )
                for i in rows:
                    out[i] = Scored(np.empty(0), failure=f"{type(e).__name__}: {e}")
                continue
            for n, (i, job, row) in enumerate(zip(rows, group, scores, strict=True)):
                out[i] = Scored(row[: len(job.candidates)], None if options is None else options[n])
        return out

    def finish(self, job: Job, scored: Scored) -> dict[str, Any]:
        """The response for a scored job; its impression goes to the log. A job the model could
        not score (it raised, or its scores are not finite) is served by the fallback policy's
        greedy slate, or refused with 503 when the service has none."""
        policy = self.policies[job.version]
        scores, mode, option = scored.scores, job.mode, scored.option
        served, fallback = policy.version, self.settings.fallback
        failure = scored.failure or unsupported(scores)
        if failure is not None:
            reason = "error" if scored.failure else "unsupported"
            if fallback is None:
                raise RequestError(
                    503,
                    f"model {policy.version} cannot score this request ({failure}) and the "
                    "service has no fallback policy (--fallback popular|ctr)",
                )
            scores = fallback_scores(policy.catalog, job.candidates, fallback)
            mode, option, served = "greedy", None, fallback_name(fallback)
            self.stats["fallbacks"] += 1
            self.metrics.fallback(fallback, reason)
        valid = np.ones(len(job.candidates), dtype=bool)
        floor = self.settings.propensity_floor
        action, props = choose_slate(scores, valid, job.k, mode, job.rng, floor)
        if option is not None:
            props = props.copy()
            props[0] *= option.propensity  # both levels' choices: the slate's probability
        items = job.candidates[action]
        propensity = float(np.prod(props))
        if self.impressions is not None:
            row = self._impression_row(job, action, items, props, scores, served, mode)
            try:
                self.impressions.append(row)
            except LogBacklogFull:
                raise RequestError(503, self._log_full_message()) from None
            self.metrics.backlog(IMPRESSIONS_DIR, self.impressions.backlog)
        self.stats["sampled"] += mode == "sample"
        self.metrics.slate(served, mode, fallback if failure is not None else "")
        response = {
            "request_id": job.request_id,
            "model_version": policy.version,
            "items": items.tolist(),
            "scores": scores[action].astype(np.float64).tolist(),
            "propensities": props.tolist(),
            "propensity": propensity,
            "mode": mode,
            "warnings": list(job.warnings),
            "fallback": failure is not None,
            "fallback_policy": served if failure is not None else None,
        }
        if failure is not None:
            response["warnings"].append(f"served by {served}: {failure}")
        if option is not None:
            response["option"] = option.name
            response["option_propensity"] = option.propensity
        return response

    def _impression_row(
        self,
        job: Job,
        action: np.ndarray,
        items: np.ndarray,
        props: np.ndarray,
        scores: np.ndarray,
        policy: str,
        mode: str,
    ) -> dict[str, Any]:
        """The log row of a served slate; ``policy`` and ``mode`` are what actually chose it (a
        fallback policy's name, ``greedy`` past the exploration budget)."""
        m, k = len(job.candidates), job.k

        def pad(values: np.ndarray, width: int, fill: float, dtype: Any) -> np.ndarray:
            out = np.full(width, fill, dtype=dtype)
            out[: len(values)] = values
            return out

        return {
            Impressions.REQUEST_ID: job.request_id,
            Impressions.USER_ID: job.user_id,
            Impressions.TIME: job.time,
            Impressions.POLICY: policy,
            Impressions.HISTORY_ITEMS: job.history_items,
            Impressions.HISTORY_RESPONSES: job.history_responses,
            Impressions.CONTEXT: job.context,
            Impressions.CANDIDATE_ITEMS: pad(job.candidates, MAX_CANDIDATES, PAD_ID, np.int64),
            Impressions.ACTION_MASK: pad(np.ones(m), MAX_CANDIDATES, 0, np.int8),
            Impressions.ACTION: pad(action, MAX_K, PAD_ID, np.int64),
            Impressions.SLATE_ITEMS: pad(items, MAX_K, PAD_ID, np.int64),
            Impressions.PROPENSITY: float(np.prod(props)),
            Impressions.PROPENSITIES: pad(props, MAX_K, 0.0, np.float64),
            Impressions.MODE: mode,
            Impressions.SLATE_SIZE: k,
            Impressions.NUM_CANDIDATES: m,
            Impressions.SCORES: pad(scores[action], MAX_K, 0.0, np.float32),
        }

    # ---- feedback ------------------------------------------------------------------------------
    def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        """Check a feedback event against its request id and log it, attributed to the model
        version that served the slate (also one no longer served: the id names it)."""
        found = verify_request_id(self._key, req.request_id)
        if found is None:
            raise RequestError(404, "request_id: unknown (not issued by this service)")
        now = time.time()
        if found.issued < now - self.settings.feedback_ttl_s:
            self.stats["feedback_expired"] += 1
            raise RequestError(
                410,
                f"request_id: served more than {self.settings.feedback_ttl_s:g} s ago; "
                "feedback for it is no longer accepted",
            )
        if req.request_id in self.seen:
            self.stats["feedback_repeated"] += 1
            raise RequestError(409, "request_id: feedback for this request was already received")
        if len(req.responses) != found.k:
            raise RequestError(
                422,
                f"responses: expected {found.k} (one per slate item), got {len(req.responses)}",
            )
        responses = np.array([r.values() for r in req.responses], dtype=np.float32)
        served = self._tags.get(found.tag)
        # A version no longer served is scored with model A's reward weights (docs/serving.md).
        policy = self.policies[0 if served is None else served]
        version = policy.version if served is not None else self._version_name(found.tag)
        reward = policy.reward(responses)
        if self.feedback_log is not None:
            try:
                self.feedback_log.append(
                    {
                        Feedback.REQUEST_ID: req.request_id,
                        Feedback.USER_ID: found.user_id,
                        Feedback.TIME: now,
                        Feedback.POLICY: version,
                        Feedback.RESPONSES: responses.reshape(-1),
                        Feedback.REWARD: reward,
                    }
                )
            except LogBacklogFull:  # not logged, so not seen: the client may send it again
                raise RequestError(503, self._log_full_message()) from None
            self.metrics.backlog(FEEDBACK_DIR, self.feedback_log.backlog)
        self.seen.add(req.request_id, found.issued, now)
        self.stats["feedback"] += 1
        clicks = int(np.count_nonzero(responses[:, 0] > 0))
        self.metrics.feedback(version, clicks, found.k)
        self.guard.count(version, clicks, found.k)
        return {"request_id": req.request_id, "model_version": version, "reward": reward}

    def _version_name(self, tag: bytes) -> str:
        """The version string of a tag this deployment does not serve: from the log folder's
        registry of every version served there, else ``unknown@TAG``."""
        name = None if self.versions is None else self.versions.lookup(tag)
        return name or f"unknown@{tag.hex()}"

    def _remember_logged_feedback(self, folder: Path) -> None:
        """Request ids already in the feedback log (a restarted replica refuses their replays)."""
        now = time.time()
        for request_id in logged_request_ids(folder):
            found = verify_request_id(self._key, request_id)
            if found is not None and found.issued >= now - self.settings.feedback_ttl_s:
                self.seen.add(request_id, found.issued, now)

    # ---- introspection and lifecycle -----------------------------------------------------------
    def models(self) -> dict[str, Any]:
        shares = [1.0 - self.split, self.split]
        return {
            "models": [
                {"variant": "AB"[i], "traffic": shares[i], **p.describe()}
                for i, p in enumerate(self.policies)
            ],
            "split": self.split,
            "limits": {
                "max_history": MAX_HISTORY,
                "max_candidates": MAX_CANDIDATES,
                "max_k": MAX_K,
                "max_body_bytes": MAX_BODY_BYTES,
            },
        }

    def _log_full_message(self) -> str:
        return (
            "the impression log cannot keep up (its backlog is full): not serving without logging; "
            "retry later"
        )

    def _logs(self) -> dict[str, ParquetLog]:
        logs = {"impressions": self.impressions, "feedback": self.feedback_log}
        return {name: log for name, log in logs.items() if log is not None}

    def health(self) -> dict[str, Any]:
        """``status``: ``ok``; ``degraded`` (serving, with ``reasons``: e.g. log writes being
        retried); or ``unavailable`` (a log's backlog is full: requests get 503)."""
        logs = {name: log.status() for name, log in self._logs().items()}
        reasons = [f"{name}: {r}" for name, st in logs.items() for r in st["reasons"]]
        broken = [name for name, log in self._logs().items() if log.full]
        if broken:
            reasons.insert(0, f"log backlog full: {', '.join(broken)}")
        try:
            self.check()
        except RuntimeError as e:
            broken.append("check")
            reasons.insert(0, str(e))
        status = "unavailable" if broken else "degraded" if reasons else "ok"
        return {
            "status": status,
            "reasons": reasons,
            "replica": self.writer,
            "pid": os.getpid(),
            "models": [p.version for p in self.policies],
            "uptime_s": round(time.time() - self.started, 3),
            "logging": self.impressions is not None,
            "logs": logs,
            "stats": dict(self.stats),
        }

    def check(self) -> None:
        """Raise if the service cannot do its job (a log's flushing thread died)."""
        for log in self._logs().values():
            log.check()

    def flush(self) -> None:
        for log in self._logs().values():
            log.flush()

    def close(self) -> None:
        for log in self._logs().values():
            log.close()
