"""RecBole 1.2.1 itself, with its defaults, on MovieLens-100k: the reference for rayrec's next-item.

Runs RecBole's quick start (``run_recbole``) for GRU4Rec and SASRec on ml-100k and writes each
model's best validation and test metrics to a JSON file. It runs in its OWN virtual environment,
never rayrec's (RecBole is not a rayrec dependency):

    python3.11 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0            # a CPU build
    /tmp/recbole-venv/bin/pip install recbole==1.2.1
    /tmp/recbole-venv/bin/pip install numpy==1.26.4 pandas==2.2.3 scipy==1.13.1 setuptools==80.9.0
    /tmp/recbole-venv/bin/python benchmarks/recbole_reference.py --out docs/recbole_reference.json

(recbole 1.2.1 breaks on numpy 2 and pandas 3, and ray 2.6.3, which it imports, needs
``pkg_resources``, gone from setuptools 81.) The data are rayrec's cached atomic files
(``make data``): ``--data`` is the folder holding ``ml-100k/ml-100k.inter``, so nothing is
downloaded. RecBole writes its logs, tensorboard files and checkpoints under ``--workdir``. The
script sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 so that RecBole 1.2.1's ``torch.load`` of its own
best-epoch checkpoint still works under torch >= 2.6 (whose default became weights_only=True).

Settings: RecBole's defaults for each model and for ml-100k (its ml-100k.yaml applies no filter,
so every rating is an interaction), except what the protocol needs: ``train_neg_sample_args: None``
(RecBole refuses CE loss otherwise), CPU, selection on NDCG@10 instead of MRR@10, metrics Hit, NDCG
and MRR at 10 and 20, no progress bars. Best epoch and epochs run are 1-based (RecBole logs 0-based).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import recbole
import torch
from recbole.quick_start import run_recbole
from recbole.trainer import Trainer

OVERRIDES = {
    "train_neg_sample_args": None,
    "use_gpu": False,
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [10, 20],
    "valid_metric": "NDCG@10",
    "seed": 2020,
    "reproducibility": True,
    "epochs": 300,
    "stopping_step": 10,
    "show_progress": False,
}
KEYS = ["hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20", "mrr@20"]
CURVE: list[float] = []  # validation NDCG@10 per epoch of the run in progress
_fit = Trainer.fit


def _recording_fit(self, *args, **kwargs):
    """Trainer.fit unchanged, plus a callback that keeps each epoch's validation score."""
    return _fit(self, *args, callback_fn=lambda epoch, score: CURVE.append(score), **kwargs)


def run_model(model: str, data: Path, epochs: int) -> dict:
    CURVE.clear()
    config = {**OVERRIDES, "data_path": str(data), "epochs": epochs}
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_recbole(model=model, dataset="ml-100k", config_dict=config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # RecBole keeps the last epoch with the best score (a tie counts as an improvement).
    best = max(i for i, score in enumerate(CURVE) if score == max(CURVE))
    return {
        "valid": {k: float(result["best_valid_result"][k]) for k in KEYS},
        "test": {k: float(result["test_result"][k]) for k in KEYS},
        "best_epoch": best + 1,
        "epochs_run": len(CURVE),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "torch_threads": torch.get_num_threads(),
        "valid_ndcg@10_curve": CURVE[:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/recbole_reference.json"))
    parser.add_argument("--models", default="GRU4Rec,SASRec")
    parser.add_argument("--data", type=Path, default=Path("~/.cache/rayrec").expanduser())
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recbole-reference"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=300, help="lower only for a smoke test")
    args = parser.parse_args()
    out, data = args.out.resolve(), args.data.resolve()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    Trainer.fit = _recording_fit
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # RecBole reloads its own checkpoint
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)  # RecBole writes log/, log_tensorboard/ and saved/ into the cwd

    # Models already in --out are kept, so each model can run in its own process.
    done = json.loads(out.read_text())["models"] if out.exists() else {}
    report = {
        "what": "RecBole 1.2.1 run_recbole, its defaults for the model and ml-100k, plus overrides",
        "overrides": OVERRIDES | {"epochs": args.epochs},
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "models": done,
    }
    for model in args.models.split(","):
        report["models"][model] = run_model(model, data, args.epochs)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(model, json.dumps(report["models"][model]["test"]))


if __name__ == "__main__":
    main()
