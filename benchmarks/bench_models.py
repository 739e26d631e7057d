"""Forward passes per second of rayrec's RLModules, and inference-only load time.

For each history encoder (none, mean, gru, attention) and batch size (1 and 1024) this times
``forward_inference`` of the candidate policy module on real observations of the default session
env (M = 20 candidates, H = 10, d = 16), single-threaded, and prints the median of repeats. The
load column times ``RLModule.from_checkpoint`` of a module checkpoint (no Algorithm, no env
runners), which is what `rayrec evaluate` and serving do.

    python benchmarks/bench_models.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from rayrec.envs import SessionVectorEnv
from rayrec.models import CandidatePolicyModule

ENCODERS = ("none", "mean", "gru", "attention")


def _observations(batch: int) -> dict[str, torch.Tensor]:
    env = SessionVectorEnv(num_envs=batch, seed=0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(12):  # fill the history
        obs, *_ = env.step(rng.integers(0, env.config.num_candidates, batch))
    return env, {k: torch.from_numpy(v) for k, v in obs.items()}


def _time(fn, repeats: int, inner: int) -> float:
    """Median seconds per call."""
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", help="also write the table as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 3 if args.quick else 7
    rows = []
    for encoder in ENCODERS:
        row = {"encoder": encoder}
        for batch in (1, 1024):
            env, obs = _observations(batch)
            module = CandidatePolicyModule(
                observation_space=env.single_observation_space,
                action_space=env.single_action_space,
                model_config={"encoder": encoder, "hidden": 64},
                inference_only=True,
            ).eval()
            inner = 200 if batch == 1 else 10
            with torch.no_grad():
                sec = _time(
                    lambda m=module, o=obs: m.forward_inference({Columns.OBS: o}), repeats, inner
                )
            row[f"batch {batch}: passes/s"] = 1.0 / sec
            row[f"batch {batch}: users/s"] = batch / sec
        with tempfile.TemporaryDirectory() as tmp:
            module.save_to_path(tmp)
            row["load ms"] = 1000 * _time(lambda t=tmp: RLModule.from_checkpoint(t), repeats, 1)
        row["params"] = sum(p.numel() for p in module.parameters())
        rows.append(row)

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            f"{v:,.0f}"
            if isinstance(v, float) and v >= 100
            else (f"{v:.2f}" if isinstance(v, float) else str(v))
            for v in row.values()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(
        f"RLModule forward_inference, 1 thread, median of {repeats} repeats (torch {torch.__version__})"
    )
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
