"""``rayrec rollout``: move a live endpoint's traffic to a new checkpoint in steps, with a guard.

::

    rayrec rollout --url URL --checkpoint NEW [--ramp 10,50,100] [--step-seconds S]
                   [--guard-min-clicks X] [--margin M] [--api-key-file F]

The service loads NEW beside the version it serves (``POST /v1/admin/rollout``, no restart) and
gives it the users whose stable hash ``ab_share(user_id)`` is below each step's share in turn, so
a user who moved stays moved. While a step lasts, the guard reads the feedback CTR of both
versions (``GET /v1/admin/rollout``); once each has at least X clicks and NEW's CTR is below the
old one's by more than M, every user goes back to the old version (share 0) and the command exits
1. Bad input: one line, exit 2. It talks to ``serve`` only through HTTP (docs/serving.md,
"Rollouts").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from rayrec.contracts.errors import SpecError
from rayrec.loop.cli import read_api_key
from rayrec.loop.traffic import TrafficFailed, probe

__all__ = ["ROLLOUT_PATH", "RolloutOptions", "add_parser", "parse_ramp", "run", "run_rollout"]

ROLLOUT_PATH = "/v1/admin/rollout"
"""The service's admin route (``rayrec.serve.admin``; the path is the HTTP contract)."""
_POLL_S = 0.25


def parse_ramp(text: str) -> tuple[float, ...]:
    """``"10,50,100"`` -> (10.0, 50.0, 100.0): percentages, strictly increasing, in (0, 100]."""
    try:
        steps = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"--ramp ({text!r}) must be comma-separated percentages") from None
    if any(not 0.0 < s <= 100.0 for s in steps):
        raise SpecError(f"--ramp ({text!r}): every step must be a percentage in (0, 100]")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise SpecError(f"--ramp ({text!r}) must be strictly increasing")
    return steps


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """One rollout."""

    url: str
    """The rayrec endpoint."""
    checkpoint: str
    """The new version's checkpoint, as a path the service can read."""
    ramp: tuple[float, ...] = (10.0, 50.0, 100.0)
    """NEW's share of users (percent) at each step; strictly increasing, in (0, 100]."""
    step_seconds: float = 60.0
    """How long each step lasts (the guard watches throughout)."""
    guard_min_clicks: int = 100
    """Clicks each version needs in feedback before the guard compares their CTRs."""
    margin: float = 0.0
    """How far (absolute CTR) NEW may fall behind the old version before it is rolled back."""
    api_key: str | None = None
    """The service's API key, if it has one."""
    timeout_s: float = 120.0
    """HTTP timeout (loading a checkpoint takes seconds)."""

    def __post_init__(self) -> None:
        parse_ramp(",".join(str(s) for s in self.ramp))
        if not 0.0 < self.step_seconds <= 86_400.0:
            raise SpecError(f"--step-seconds ({self.step_seconds}) must be in (0, 86400]")
        if not 0 <= self.guard_min_clicks <= 10**9:
            raise SpecError(f"--guard-min-clicks ({self.guard_min_clicks}) must be >= 0")
        if not 0.0 <= self.margin <= 1.0:
            raise SpecError(f"--margin ({self.margin}) must be a CTR difference in [0, 1]")


def guard_verdict(status: dict[str, Any], options: RolloutOptions) -> str | None:
    """Why NEW must roll back (one line), or None: both versions have enough clicks and NEW's
    feedback CTR is below the old one's by more than the margin."""
    old, new = status["old"], status["new"]
    counts = status["guard"]
    a, b = counts.get(old), counts.get(new)
    if a is None or b is None or min(a["clicks"], b["clicks"]) < options.guard_min_clicks:
        return None
    if a["ctr"] is None or b["ctr"] is None or b["ctr"] >= a["ctr"] - options.margin:
        return None
    return (
        f"CTR of {new} {b['ctr']:.4f} ({b['clicks']} clicks / {b['slots']} slots) is below "
        f"{old}'s {a['ctr']:.4f} ({a['clicks']} / {a['slots']}) by more than {options.margin:g}"
    )


async def _call(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await (
        client.get(ROLLOUT_PATH) if body is None else client.post(ROLLOUT_PATH, json=body)
    )
    if reply.status_code == 200:
        return reply.json()
    try:
        message = reply.json().get("error", reply.text)
    except ValueError:
        message = reply.text
    if reply.status_code in (404, 405):
        raise SpecError(f"--url: the service has no rollout route ({ROLLOUT_PATH})")
    if reply.status_code in (401, 409, 422):
        raise SpecError(f"rollout refused ({reply.status_code}): {message}")
    raise TrafficFailed(f"{ROLLOUT_PATH} answered {reply.status_code}: {message}")


def _result(
    old: str, new: str, outcome: str, reason: str | None, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"old": old, "new": new, "outcome": outcome, "reason": reason, "steps": steps}


async def _rollout(options: RolloutOptions, say: Any) -> dict[str, Any]:
    headers = {} if options.api_key is None else {"Authorization": f"Bearer {options.api_key}"}
    async with httpx.AsyncClient(
        base_url=options.url, headers=headers, timeout=options.timeout_s
    ) as client:
        await probe(client, options.url)
        status = await _call(client, {"checkpoint": options.checkpoint, "share": 0.0})
        old, new = status["old"], status["new"]
        say(f"rollout: {new} loaded beside {old}")
        steps: list[dict[str, Any]] = []
        try:
            for percent in options.ramp:
                status = await _call(client, {"share": percent / 100.0})
                say(f"rollout: {percent:g}% of users on {new}")
                end = time.monotonic() + options.step_seconds
                verdict = None
                while verdict is None and time.monotonic() < end:
                    await asyncio.sleep(min(_POLL_S, max(end - time.monotonic(), 0.0)))
                    status = await _call(client)
                    verdict = guard_verdict(status, options)
                steps.append({"percent": percent, "guard": status["guard"]})
                if verdict is not None:
                    await _call(client, {"share": 0.0})
                    say(f"rollout: rolled back, every user on {old}: {verdict}")
                    return _result(old, new, "rolled_back", verdict, steps)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await _call(client, {"share": 0.0})
            say(f"rollout: interrupted, every user on {old}")
            raise
        return _result(old, new, "completed", None, steps)


def run_rollout(options: RolloutOptions, say: Any = None) -> dict[str, Any]:
    """Drive the rollout; ``outcome`` is ``completed`` or ``rolled_back``."""
    return asyncio.run(_rollout(options, say or (lambda line: None)))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rollout`` to the ``rayrec`` subcommands."""
    p = subparsers.add_parser(
        "rollout", help="move a live endpoint's traffic to a new checkpoint, with a CTR guard"
    )
    p.add_argument("--url", required=True, help="the rayrec endpoint, e.g. http://127.0.0.1:8000")
    p.add_argument("--checkpoint", required=True, help="the new version (a path the service reads)")
    p.add_argument(
        "--ramp", default="10,50,100", help="NEW's share per step, %% (default 10,50,100)"
    )
    p.add_argument("--step-seconds", type=float, default=60.0, help="per step (default 60)")
    p.add_argument("--guard-min-clicks", type=int, default=100, help="per version (default 100)")
    p.add_argument("--margin", type=float, default=0.0, help="CTR NEW may lose (default 0)")
    p.add_argument("--api-key-file", type=Path, help="file with the service's API key")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """0: NEW serves the last step's share; 1: rolled back (or the endpoint failed); 2: bad
    input (a SpecError, printed on one line by the ``rayrec`` command)."""
    options = RolloutOptions(
        url=args.url,
        checkpoint=args.checkpoint,
        ramp=parse_ramp(args.ramp),
        step_seconds=args.step_seconds,
        guard_min_clicks=args.guard_min_clicks,
        margin=args.margin,
        api_key=read_api_key(args.api_key_file),
    )
    try:
        result = run_rollout(options, lambda line: sys.stderr.write(line + "\n"))
    except TrafficFailed as e:
        sys.stderr.write(f"rayrec: error: {e}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0 if result["outcome"] == "completed" else 1
