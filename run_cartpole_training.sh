#!/usr/bin/env bash
# Train (or evaluate, resume, run many seeds, sweep): sets up .venv on first use, then runs
# cartpole.py with every argument passed through.
#   ./run_cartpole_training.sh --log-dir runs/exp1 --graphics
# Optional dependencies are installed only when asked for:
#   --sweep SPEC.yaml                 Ray Tune and PyYAML (requirements/sweep.txt)
#   --video-format mp4|webm           imageio-ffmpeg (requirements/video.txt)
#   CARTPOLE_GPU=1 (environment)      TensorFlow's CUDA libraries for an NVIDIA GPU
#                                     (requirements/gpu.txt; docs/gpu.md)
set -euo pipefail
cd "$(dirname "$0")"
if [ "${CARTPOLE_GPU:-0}" = "1" ]; then reqs=(requirements/gpu.txt); else reqs=(requirements.txt); fi
want_sweep=0 want_video=0 prev=""
for arg in "$@"; do
  case "$arg" in
    --sweep|--sweep=*) want_sweep=1 ;;
    --video-format=mp4|--video-format=webm) want_video=1 ;;
  esac
  if [ "$prev" = "--video-format" ]; then
    case "$arg" in mp4|webm) want_video=1 ;; esac
  fi
  prev="$arg"
done
if [ "$want_sweep" = 1 ]; then reqs+=(requirements/sweep.txt); fi
if [ "$want_video" = 1 ]; then reqs+=(requirements/video.txt); fi
source ./setup_env.sh "${reqs[@]}"
# `exec` keeps this shell's process, and with it the kernel's start time of the process: that is
# when the shell started, before any set-up above. The trainer's clock must start here instead,
# so the moment of the exec (and the PID it belongs to) travels in the environment.
CARTPOLE_EXEC_TIME="$(_now)"
export CARTPOLE_EXEC_TIME CARTPOLE_EXEC_PID="$$"
exec "$CARTPOLE_PY" cartpole.py "$@"
