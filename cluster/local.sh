#!/usr/bin/env bash
# A real local multi-node Ray cluster: a head and one worker node on 127.0.0.1, with their own
# temp dir, ports and auth token under --dir (default /tmp/rayrec-cluster).
#   cluster/local.sh start [--dir DIR] [--head-cpus 1] [--worker-cpus 2]
#   cluster/local.sh status [--dir DIR]
#   cluster/local.sh stop [--dir DIR]     # this cluster's processes only, never `ray stop`
# PYTHON selects the interpreter (default: the project's .venv if there is one, else python3);
# it needs ray and rayrec's dependencies, and the nodes run jobs with it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x "${root}/.venv/bin/python" ]]; then
  python="${root}/.venv/bin/python"
fi
exec "${python}" -m rayrec.cluster_local "$@"
