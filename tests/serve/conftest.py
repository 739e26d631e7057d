"""Checkpoints for the serving tests: real RLModule checkpoints, made without training."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[2]
# A small world: the catalog builds in milliseconds and every id below 500 is an item. The test
# modules repeat NUM_ITEMS (they need it at import time, for parametrisation).
NUM_ITEMS = 500
WORLD = [f"env.num_items={NUM_ITEMS}"]


def _specs(policy: str, overrides: list[str] | None = None) -> tuple[EnvSpec, PolicySpec]:
    env, pol = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / policy),
        [*WORLD, *(overrides or [])],
    )
    return EnvSpec.from_dict(env), PolicySpec.from_dict(pol)


@pytest.fixture(scope="session")
def serve_specs():
    """``serve_specs(policy_file, overrides)``: env and policy specs of the serving tests' world."""
    return _specs


@pytest.fixture(scope="session")
def module_runs(tmp_path_factory) -> dict[str, Path]:
    """Untrained run folders (spec.yaml + checkpoints/final) of a policy and a Q module."""
    from rayrec.experiment import save_untrained_run

    root = tmp_path_factory.mktemp("serve-runs")
    return {
        "ppo": save_untrained_run(root / "ppo", *_specs("ppo.yaml"), seed=1),
        "dqn": save_untrained_run(root / "dqn", *_specs("apex_dqn.yaml"), seed=2),
        # Beyond the API's bounds (MAX_K 10, MAX_CANDIDATES 100): refused at start.
        "slate12": save_untrained_run(
            root / "slate12", *_specs("ppo.yaml", ["env.slate_size=12"]), seed=3
        ),
        "cands101": save_untrained_run(
            root / "cands101", *_specs("ppo.yaml", ["env.num_candidates=101"]), seed=4
        ),
    }


async def post_all(base_url: str, bodies: list[dict], limit: int = 64) -> list[httpx.Response]:
    """POST every body to ``/v1/recommend`` at ``base_url``, at most ``limit`` at once."""
    gate = asyncio.Semaphore(limit)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one(body: dict) -> httpx.Response:
            async with gate:
                return await client.post("/v1/recommend", json=body)

        return await asyncio.gather(*(one(b) for b in bodies))


def nan_copy(checkpoint: Path, out: Path) -> Path:
    """A copy of the run folder of ``checkpoint`` whose module weights are all NaN (written with
    RLlib's own save_to_path)."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    run = checkpoint.parents[1]
    shutil.copytree(run, out)
    copy = out / checkpoint.relative_to(run)
    module = RLModule.from_checkpoint(str(checkpoint))
    with torch.no_grad():
        for param in module.parameters():
            param.fill_(float("nan"))
    shutil.rmtree(copy)
    module.save_to_path(str(copy))
    return copy


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_apps(*apps: tuple[str, str, dict], **http_options) -> Iterator[str]:
    """Serve on a free local port with each ``(name, route prefix, build_app config)`` app; yields
    the base URL and shuts Serve down afterwards. ``http_options`` go to ``serve.start``."""
    from ray import serve

    from rayrec.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, **http_options})
    try:
        for name, prefix, config in apps:
            serve.run(build_app(config), name=name, route_prefix=prefix)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
