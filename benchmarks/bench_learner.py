"""Learner throughput on CPU vs GPU: PPO updates of rayrec's candidate policy module.

Builds the PPO preset twice (``num_gpus_per_learner`` 0 and 1 when CUDA is available), trains a
few iterations with a large train batch, and reports the learner's update time per iteration and
learner samples/s (median over iterations, after one warm-up iteration). Run by
``benchmarks/gpu_learner.sh`` on a GPU machine; on a CPU-only machine it reports the CPU row only.

    python benchmarks/bench_learner.py [--iterations 4] [--batch 16384] [--encoder attention]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(gpus: int, args: argparse.Namespace) -> dict:
    from rayrec.experiment import build_config, learner_devices
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / "ppo.yaml"),
        [
            f"model.encoder={args.encoder}",
            f"model.hidden={args.hidden}",
            f"training.train_batch_size_per_learner={args.batch}",
            "training.minibatch_size=2048",
            "training.num_epochs=2",
            "env_runners.num_envs_per_env_runner=256",
            "learners.num_learners=1",
            f"learners.num_gpus_per_learner={gpus}",
        ],
    )
    config = build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw))
    algo = config.build_algo()
    device = learner_devices(algo)[0]
    times = []
    try:
        for i in range(args.iterations + 1):
            t = time.perf_counter()
            result = algo.train()
            update = result["timers"].get("learner_update_timer", time.perf_counter() - t)
            if i:
                times.append(update)
    finally:
        algo.stop()
    sec = statistics.median(times)
    return {"device": device, "update_s": sec, "samples_per_s": args.batch * 2 / sec}


def main() -> None:
    import ray
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--encoder", default="attention")
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = [("cpu", _run(0, args))]
    if torch.cuda.is_available():
        rows.append(("gpu", _run(1, args)))
    ray.shutdown()
    base = rows[0][1]["update_s"]
    print(f"PPO learner update, batch {args.batch}, {args.encoder} encoder, hidden {args.hidden}")
    print("| learner | device | update s/iter | samples/s (x epochs) | speed-up vs CPU |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['device']} | {r['update_s']:.2f} | {r['samples_per_s']:,.0f} | "
            f"{base / r['update_s']:.1f}x |"
        )


if __name__ == "__main__":
    main()
