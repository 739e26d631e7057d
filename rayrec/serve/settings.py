"""What a replica needs to build the service: checkpoints, A/B split, log folder, signing key."""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayrec.contracts.errors import SpecError
from rayrec.contracts.fields import check_fields
from rayrec.contracts.layout import RunFolder, find_run_dir
from rayrec.serve.explore import FALLBACKS
from rayrec.serve.policy import find_module_dir
from rayrec.serve.schemas import MAX_CANDIDATES, MAX_K
from rayrec.specs import MARKETPLACE_ENV_ID, EnvSpec, load_run_spec, load_yaml

__all__ = ["KEY_ENV", "ServiceSettings", "load_env"]


@dataclass(frozen=True)
class ServiceSettings:
    """What a replica needs to build the service (plain values: they travel to replicas)."""

    checkpoint: str
    """Checkpoint of model A (an Algorithm checkpoint or an RLModule folder)."""
    ab_checkpoint: str | None = None
    """Checkpoint of model B; with it, users are split between A and B."""
    split: float = 0.5
    """Share of users (by a stable hash of the user id) routed to B."""
    env: str | None = None
    """Environment spec to serve with; default: the spec saved in each checkpoint's run folder."""
    log_dir: str | None = None
    """Folder of the impression log; None: nothing is logged."""
    request_id_key: str = ""
    """Hex key that signs request ids; every replica of a deployment must share it. Prefer
    ``request_id_key_file`` or the environment variable ``RAYREC_REQUEST_ID_KEY`` (a key written
    here ends up in the Serve config). None of the three: each deployment draws its own, and
    feedback for requests served before a redeploy is refused."""
    request_id_key_file: str | None = None
    """File holding the hex request-id key (read by each replica; the same on every node)."""
    api_key_file: str | None = None
    """File holding an API key: ``/v1/*`` then needs ``Authorization: Bearer KEY`` (or
    ``X-API-Key: KEY``); None: no authentication (bind the loopback interface only)."""
    feedback_ttl_s: float = 7 * 86400.0
    """Feedback for a slate served longer ago than this is refused (410)."""
    max_feedback_ids: int = 1_000_000
    """Request ids a replica remembers to refuse repeated feedback (409); the oldest are forgotten
    beyond this."""
    flush_rows: int = 1024
    """The log writes a file whenever this many rows are waiting..."""
    flush_seconds: float = 5.0
    """... or this many seconds after the first waiting row, and at shutdown."""
    explore_budget: float | None = None
    """Most share of a replica's last 1,000 slates that may be sampled (in [0, 1]); a ``sample``
    request beyond it is served greedily (and logged so). None: no cap."""
    propensity_floor: float = 0.0
    """eps in [0, 1): sampled slates mix the policy with eps-uniform over the valid candidates,
    so each keeps probability >= eps / m per position; the log holds the mixed propensities."""
    fallback: str | None = None
    """``popular`` or ``ctr``: serves a greedy slate by that candidate scalar when the model
    raises or gives non-finite scores; None: such requests get 503."""

    def __post_init__(self) -> None:
        split_ok = isinstance(self.split, int | float) and not isinstance(self.split, bool)
        if not (split_ok and 0.0 <= self.split <= 1.0):
            raise SpecError(f"--split ({self.split!r}) must be a number in [0, 1]")
        if isinstance(self.flush_rows, bool) or not (
            isinstance(self.flush_rows, int) and self.flush_rows >= 1
        ):
            raise SpecError(f"flush_rows ({self.flush_rows!r}) must be an integer >= 1")
        if not (isinstance(self.flush_seconds, int | float) and 0 < self.flush_seconds < math.inf):
            raise SpecError(f"flush_seconds ({self.flush_seconds!r}) must be a positive number")
        parse_key(self.request_id_key, "request_id_key")
        _check_exploration(self.explore_budget, self.propensity_floor, self.fallback)
        if not (
            isinstance(self.feedback_ttl_s, int | float)
            and not isinstance(self.feedback_ttl_s, bool)
            and 0 < self.feedback_ttl_s < math.inf
        ):
            raise SpecError(f"feedback_ttl_s ({self.feedback_ttl_s!r}) must be a positive number")
        if isinstance(self.max_feedback_ids, bool) or not (
            isinstance(self.max_feedback_ids, int) and self.max_feedback_ids >= 1
        ):
            raise SpecError(f"max_feedback_ids ({self.max_feedback_ids!r}) must be an integer >= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ServiceSettings:
        try:
            check_fields(cls, values, "serve setting")
        except ValueError as e:
            raise SpecError(str(e)) from None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> ServiceSettings:
        """Absolute paths (replicas may run elsewhere) and a signing key (fresh if none)."""

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).expanduser().resolve())

        return dataclasses.replace(
            self,
            checkpoint=absolute(self.checkpoint),
            ab_checkpoint=absolute(self.ab_checkpoint),
            env=absolute(self.env),
            log_dir=absolute(self.log_dir),
            request_id_key_file=absolute(self.request_id_key_file),
            api_key_file=absolute(self.api_key_file),
            request_id_key=self.request_id_key
            or (
                "" if self.request_id_key_file or os.environ.get(KEY_ENV) else secrets.token_hex(32)
            ),
        )

    def signing_key(self) -> bytes:
        """The request-id key: ``request_id_key``, else ``request_id_key_file``, else
        ``$RAYREC_REQUEST_ID_KEY`` (as this process sees them)."""
        if self.request_id_key:
            return parse_key(self.request_id_key, "request_id_key")
        if self.request_id_key_file:
            return parse_key(
                _read_secret(self.request_id_key_file, "request_id_key_file"),
                (f"request_id_key_file {self.request_id_key_file}"),
            )
        if os.environ.get(KEY_ENV):
            return parse_key(os.environ[KEY_ENV], f"${KEY_ENV}")
        raise SpecError(
            f"no request-id key: set request_id_key_file or ${KEY_ENV} on every node (or leave "
            "all unset for a key drawn per deployment)"
        )

    def api_key(self) -> str | None:
        """The API key every ``/v1/*`` request must carry, or None."""
        if self.api_key_file is None:
            return None
        key = _read_secret(self.api_key_file, "--api-key-file")
        if len(key) < 16:
            raise SpecError(
                f"--api-key-file {self.api_key_file}: the key must have >= 16 characters"
            )
        return key

    def check(self) -> None:
        """Cheap checks before Ray starts: checkpoints, run specs and the log folder."""
        for flag, path in (("--checkpoint", self.checkpoint), ("--ab", self.ab_checkpoint)):
            if path is None:
                continue
            ckpt = Path(path)
            if not ckpt.is_dir():
                raise SpecError(f"{flag} {ckpt}: no such directory")
            run = find_run_dir(ckpt.resolve())
            if run is not None and load_yaml(RunFolder(run).spec).get("env", {}).get("id") == (
                MARKETPLACE_ENV_ID
            ):
                raise SpecError(
                    f"{flag} {ckpt}: a marketplace checkpoint plays the multi-stakeholder game "
                    "(platform, creators, advertisers); there are no user slates to serve"
                )
            find_module_dir(ckpt)
            if self.env is None and run is None:
                raise SpecError(f"{flag} {ckpt}: no spec.yaml above it; pass --env")
            env = load_env(self.env) if self.env is not None else load_run_spec(run)[0]
            _check_api_bounds(env, f"{flag} {ckpt}")
        if self.log_dir is not None:
            folder = Path(self.log_dir)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SpecError(f"--log-dir {folder}: cannot create it ({e.strerror})") from None
            if not os.access(folder, os.W_OK):
                raise SpecError(f"--log-dir {folder}: not writable")
        if self.request_id_key_file is not None or os.environ.get(KEY_ENV):
            self.signing_key()
        self.api_key()


KEY_ENV = "RAYREC_REQUEST_ID_KEY"
"""Environment variable with the hex request-id key (when no setting names one)."""


def parse_key(text: str, what: str) -> bytes:
    """Bytes of a hex key of at least 16 bytes (empty text: empty bytes)."""
    try:
        key = bytes.fromhex(text.strip())
    except (ValueError, AttributeError):
        raise SpecError(f"{what} must be a hex string") from None
    if text and len(key) < 16:
        raise SpecError(f"{what} must hold at least 16 bytes (32 hex digits)")
    return key


def _read_secret(path: str, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise SpecError(f"{what} {path}: cannot read it ({e.strerror})") from None
    if not text:
        raise SpecError(f"{what} {path}: the file is empty")
    return text


def _check_api_bounds(env: EnvSpec, what: str) -> None:
    """The API's requests carry at most MAX_CANDIDATES candidates and slates of at most MAX_K:
    a model trained on more could answer no request that leaves ``k`` to it, and its feedback
    could never be accepted."""
    config = env.config
    for field, value, limit in (
        ("slate_size", getattr(config, "slate_size", 0), MAX_K),
        ("num_candidates", getattr(config, "num_candidates", 0), MAX_CANDIDATES),
    ):
        if value > limit:
            raise SpecError(
                f"{what}: its environment has {field} {value}; the serving API allows at most "
                f"{limit}"
            )


def _check_exploration(budget: Any, floor: Any, fallback: Any) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if budget is not None and not (number(budget) and 0.0 <= budget <= 1.0):
        raise SpecError(f"--explore-budget ({budget!r}) must be a number in [0, 1]")
    if not (number(floor) and 0.0 <= floor < 1.0):
        raise SpecError(f"--propensity-floor ({floor!r}) must be a number in [0, 1)")
    if fallback is not None and fallback not in FALLBACKS:
        raise SpecError(f"--fallback ({fallback!r}) must be one of {', '.join(FALLBACKS)}")


def load_env(path: str) -> EnvSpec:
    return EnvSpec.from_dict(load_yaml(path), path)
