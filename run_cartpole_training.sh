#!/usr/bin/env bash
# Train (or evaluate, resume, run many seeds, sweep): sets up .venv on first use, then runs
# cartpole.py with every argument passed through.
#   ./run_cartpole_training.sh --log-dir runs/exp1 --graphics
# Ray (requirements-sweep.txt) is installed only when a --sweep is asked for.
set -euo pipefail
cd "$(dirname "$0")"
reqs=(requirements.txt)
case " $* " in *" --sweep "*|*" --sweep="*) reqs+=(requirements-sweep.txt) ;; esac
source ./setup_env.sh "${reqs[@]}"
exec "$CARTPOLE_PY" cartpole.py "$@"
