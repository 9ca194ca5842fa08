#!/usr/bin/env bash
# Train (or evaluate, or run many seeds): sets up .venv on first use, then runs cartpole.py with
# every argument passed through.  Example: ./run_cartpole_training.sh --log-dir runs/exp1 --graphics
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh requirements.txt
exec "$CARTPOLE_PY" cartpole.py "$@"
