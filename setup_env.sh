#!/usr/bin/env bash
# Sourced by run_cartpole_training.sh, run_tests.sh and benchmarks/run.sh: creates .venv with
# Python 3.11 on first use and (re)installs the given requirement files whenever they change.
# Idempotent: a stamp holding the hash of the requirement files skips pip when nothing changed.
# When it did install something it says so, with how long it took, so that set-up time is never
# mistaken for training time (the trainer's clock starts when Python starts, after this).
# Usage: source setup_env.sh requirements.txt [more-requirements.txt ...]
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_venv="${CARTPOLE_VENV:-$_root/.venv}"
_py="${PYTHON:-}"
# Seconds since the epoch with a fraction; EPOCHREALTIME (bash >= 5) needs no fork. Its decimal
# mark follows the locale, so a comma becomes a point.
_now() { local t="${EPOCHREALTIME:-}"; [ -n "$t" ] || t="$(date +%s)"; echo "${t/,/.}"; }
_setup_t0="$(_now)"
_setup_did=""
if [ -z "$_py" ]; then
  for c in python3.11 python3 python; do
    if command -v "$c" >/dev/null 2>&1; then _py="$c"; break; fi
  done
fi
if [ -z "$_py" ]; then echo "setup: no python3 found; install Python 3.11" >&2; exit 2; fi
if [ ! -x "$_venv/bin/python" ]; then
  if ! "$_py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "setup: warning: $("$_py" --version 2>&1) found; this project is pinned and tested on Python 3.11" >&2
  fi
  echo "setup: creating $_venv (first run only)" >&2
  "$_py" -m venv "$_venv"
  _setup_did="created $_venv"
fi
_reqs=()
for r in "$@"; do _reqs+=("$_root/$r"); done
_hash="$(cat "$_root/requirements.txt" "${_reqs[@]}" | sha256sum | cut -d' ' -f1)"
_stamp="$_venv/.installed-$(printf '%s' "$*" | tr ' /' '__')"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_hash" ]; then
  case " $* " in
    *" requirements-gpu.txt "*) echo "setup: installing ${*} into $_venv: TensorFlow with its CUDA libraries, a few GB; this takes a while" >&2 ;;
    *) echo "setup: installing ${*} into $_venv (first run or requirements changed)" >&2 ;;
  esac
  _args=()
  for r in "${_reqs[@]}"; do _args+=(-r "$r"); done
  "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${_args[@]}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$_venv/bin/python" -c "import tensorflow, gymnasium" 2>/dev/null \
    || { echo "setup: installation failed (see pip output above)" >&2; exit 2; }
  echo "$_hash" > "$_stamp"
  _setup_did="installed ${*} into $_venv"
fi
if [ -n "$_setup_did" ]; then
  echo "setup: $_setup_did in $(awk -v a="$_setup_t0" -v b="$(_now)" 'BEGIN { printf "%.1f", b - a }') s" \
       "(not part of any training time)" >&2
fi
unset _setup_t0 _setup_did
export PATH="$_venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
CARTPOLE_PY="$_venv/bin/python"
