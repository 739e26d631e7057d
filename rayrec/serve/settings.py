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
from rayrec.serve.policy import find_module_dir
from rayrec.specs import MARKETPLACE_ENV_ID, EnvSpec, load_yaml

__all__ = ["ServiceSettings", "load_env"]


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
    """Hex key that signs request ids; every replica of a deployment must share it."""
    flush_rows: int = 1024
    """The log writes a file whenever this many rows are waiting..."""
    flush_seconds: float = 5.0
    """... or this many seconds after the first waiting row, and at shutdown."""

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
        try:
            key = bytes.fromhex(self.request_id_key)
        except ValueError:
            raise SpecError("request_id_key must be a hex string") from None
        if self.request_id_key and len(key) < 16:
            raise SpecError("request_id_key must hold at least 16 bytes (32 hex digits)")

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
            request_id_key=self.request_id_key or secrets.token_hex(32),
        )

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
            if self.env is None and find_run_dir(ckpt.resolve()) is None:
                raise SpecError(f"{flag} {ckpt}: no spec.yaml above it; pass --env")
        if self.env is not None:
            load_env(self.env)
        if self.log_dir is not None:
            folder = Path(self.log_dir)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SpecError(f"--log-dir {folder}: cannot create it ({e.strerror})") from None
            if not os.access(folder, os.W_OK):
                raise SpecError(f"--log-dir {folder}: not writable")


def load_env(path: str) -> EnvSpec:
    return EnvSpec.from_dict(load_yaml(path), path)
