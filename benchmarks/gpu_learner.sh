#!/usr/bin/env bash
# Learner throughput on CPU vs GPU, for a machine with a CUDA GPU (about 3-4 minutes):
#   bash benchmarks/gpu_learner.sh
# It installs rayrec (with the CUDA torch build this machine's pip resolves; no constraints file,
# whose torch pin is the CPU build), runs the GPU test tier, then the learner benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/python -m pip install --quiet --upgrade pip
.venv-gpu/bin/python -m pip install --quiet -e ".[test]"
.venv-gpu/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
.venv-gpu/bin/python -m pytest -m gpu -q
.venv-gpu/bin/python benchmarks/bench_learner.py --iterations 3
