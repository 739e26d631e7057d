"""Simulator logs the OPE tests share: a small world, an epsilon-ctr and a popular behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.evaluation.collect import collect
from rayrec.specs import EnvSpec

SMALL = {"num_items": 400, "num_candidates": 8, "max_sessions": 2, "max_steps_per_session": 12}


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ope-logs")
    env = EnvSpec.from_dict({"config": SMALL})
    out = {}
    for name, behavior in (("eps", "epsilon-ctr:0.3"), ("popular", "popular")):
        out[name] = root / name
        collect(env, behavior, users=40, out=out[name], seed=1)
    return out
