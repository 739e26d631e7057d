#!/usr/bin/env bash
# A real local multi-node Ray cluster: a head and one worker node on 127.0.0.1, with their own
# temp dir, ports and auth token under --dir (default /tmp/rayrec-cluster).
#   cluster/local.sh start [--dir DIR] [--head-cpus 1] [--worker-cpus 2]
#   cluster/local.sh status [--dir DIR]
#   cluster/local.sh stop [--dir DIR]     # this cluster's processes only, never `ray stop`
# PYTHON selects the interpreter (default: python3 on PATH, with ray and rayrec installed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m rayrec.cluster_local "$@"
