#!/usr/bin/env bash
# Run one benchmark with the project venv: benchmarks/run.sh NAME [args...] runs benchmarks/NAME.py.
# Only compare_peers needs torch + Stable-Baselines3, so only it installs
# benchmarks/requirements.txt; every other benchmark gets the trainer's own dependencies.
#   CARTPOLE_GPU=1 benchmarks/run.sh bench_gpu    the GPU check (docs/gpu.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/run.sh NAME [args...]   (runs benchmarks/NAME.py)" >&2
  exit 2
fi
name="$1"; shift
if [ ! -f "benchmarks/$name.py" ]; then
  echo "run.sh: no benchmark benchmarks/$name.py" >&2
  exit 2
fi
# CARTPOLE_GPU=1 (as for run_cartpole_training.sh) measures with TensorFlow's CUDA libraries.
base=requirements.txt
if [ "${CARTPOLE_GPU:-0}" = "1" ]; then base=requirements/gpu.txt; fi
if [ "$name" = "compare_peers" ]; then
  source ./setup_env.sh "$base" benchmarks/requirements.txt
else
  source ./setup_env.sh "$base"
fi
exec "$CARTPOLE_PY" "benchmarks/$name.py" "$@"
