"""Who a request is: A/B assignment, version tags and signed request ids, and the replay guard.

Request ids are signed with the deployment's key and carry the user, the version and k, so any
replica can check a feedback event without shared state (docs/serving.md, "Request ids").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

__all__ = [
    "REQUEST_ID_HEX",
    "RequestIdentity",
    "SeenFeedback",
    "ab_share",
    "sign_request_id",
    "verify_request_id",
    "version_tag",
]

_ID_PAYLOAD = struct.Struct(">Q4sBI")  # user id, version tag, k, issued at (unix seconds)
_NONCE_BYTES, _TAG_BYTES = 8, 10
REQUEST_ID_HEX = 2 * (_ID_PAYLOAD.size + _NONCE_BYTES + _TAG_BYTES)
_AB_SALT = b"rayrec-ab"


def ab_share(user_id: int) -> float:
    """A stable number in [0, 1) for a user id (BLAKE2b): users with share < split get B."""
    digest = hashlib.blake2b(user_id.to_bytes(8, "big"), digest_size=8, person=_AB_SALT).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def version_tag(version: str) -> bytes:
    """4 bytes that name a model version inside request ids (a hash of the version string, which
    itself holds a hash of the weights)."""
    return hashlib.sha256(version.encode()).digest()[:4]


@dataclass(frozen=True)
class RequestIdentity:
    """What a signed request id carries."""

    user_id: int
    tag: bytes
    """:func:`version_tag` of the model version that served the slate."""
    k: int
    issued: int
    """Unix seconds at which the slate was served."""


def sign_request_id(key: bytes, user_id: int, tag: bytes, k: int, issued: int) -> str:
    """A fresh request id carrying (user, version tag, k, issue time), with a truncated
    HMAC-SHA256 tag over all of it."""
    payload = _ID_PAYLOAD.pack(user_id, tag, k, issued) + secrets.token_bytes(_NONCE_BYTES)
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    return (payload + mac).hex()


def verify_request_id(key: bytes, request_id: str) -> RequestIdentity | None:
    """What a request id this key signed carries, else None."""
    try:
        raw = bytes.fromhex(request_id)
    except ValueError:
        return None
    if len(raw) != _ID_PAYLOAD.size + _NONCE_BYTES + _TAG_BYTES:
        return None
    payload, mac = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES], mac):
        return None
    return RequestIdentity(*_ID_PAYLOAD.unpack(payload[: _ID_PAYLOAD.size]))


class SeenFeedback:
    """Request ids whose feedback this replica accepted, so that a replay is refused.

    Bounded: ids older than the feedback TTL are dropped (their feedback is refused as expired
    anyway), and past ``max_ids`` the oldest accepted ids are forgotten (counted in ``evicted``).
    """

    def __init__(self, ttl_s: float, max_ids: int) -> None:
        self.ttl_s, self.max_ids = ttl_s, max_ids
        self._ids: dict[str, int] = {}  # request id -> issued at; insertion order = acceptance
        self.evicted = 0

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, request_id: str, issued: int, now: float) -> None:
        self._ids[request_id] = issued
        horizon = now - self.ttl_s
        while self._ids:
            oldest, when = next(iter(self._ids.items()))
            if when < horizon:
                del self._ids[oldest]
            elif len(self._ids) > self.max_ids:
                del self._ids[oldest]
                self.evicted += 1
            else:
                break
