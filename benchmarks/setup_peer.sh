#!/usr/bin/env bash
# The peer queue (pgqueuer) for the side-by-side benchmarks, in a virtualenv of its own:
# PGQUEUE_BENCH_PEER_VENV, else .venv-peer at the top of the repository. The benchmarks
# find its interpreter there (or through PGQUEUE_BENCH_PEER_PYTHON) and leave the peer
# column out when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PGQUEUE_BENCH_PEER_VENV:-.venv-peer}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q pgqueuer asyncpg
"$venv/bin/python" -c "import importlib.metadata as m; print('pgqueuer', m.version('pgqueuer'))"
echo "peer interpreter: $venv/bin/python"
