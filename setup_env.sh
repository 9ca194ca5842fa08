#!/usr/bin/env bash
# Sourced by run_cartpole_training.sh, run_tests.sh and benchmarks/run.sh: creates .venv with
# Python 3.11 on first use and (re)installs the given requirement files whenever they change,
# then the project itself in editable mode (pyproject.toml), so its packages import from anywhere.
# Idempotent: a stamp holding the hash of the requirement files (nested `-r` files included) and
# of pyproject.toml skips pip when nothing changed.
# When it did install something it says so, with how long it took, so that set-up time is never
# mistaken for training time (the trainer's clock starts when Python starts, after this).
# Usage: source setup_env.sh requirements.txt [requirements/more.txt ...]
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_venv="${CARTPOLE_VENV:-$_root/.venv}"
_py="${PYTHON:-}"
# Seconds since the epoch with a fraction; EPOCHREALTIME (bash >= 5) needs no fork. Its decimal
# mark follows the locale, so a comma becomes a point. Older bash (macOS ships 3.2): GNU date's
# %N, else Perl's Time::HiRes (macOS's date has no %N and prints it literally), and whole
# seconds only when neither is there. The trainer's clock starts from this moment, so whole
# seconds would put its origin up to a second early.
_now() {
  local t="${EPOCHREALTIME:-}"
  if [ -z "$t" ]; then
    t="$(date +%s.%N 2>/dev/null)"
    case "$t" in
      *[!0-9.]*|*.|"") t="$(perl -MTime::HiRes=time -e 'printf "%.6f", time' 2>/dev/null)" ;;
    esac
    [ -n "$t" ] || t="$(date +%s)"
  fi
  echo "${t/,/.}"
}
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
# Every file the given ones pull in through `-r` (pip reads a nested path relative to the file
# that names it), so that editing a nested requirement file reinstalls too.
_seen=()
_req_closure() {
  local f line
  f="$(realpath -m "$1")"
  case " ${_seen[*]:-} " in *" $f "*) return 0 ;; esac
  _seen+=("$f")
  [ -f "$f" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    case "$line" in
      -r\ *|--requirement\ *|--requirement=*)
        line="${line#*[ =]}"; line="${line#"${line%%[! ]*}"}"; line="${line%"${line##*[! ]}"}"
        _req_closure "$(dirname "$f")/$line" ;;
    esac
  done < "$f"
}
for r in "$_root/requirements.txt" "${_reqs[@]}"; do _req_closure "$r"; done
_hash="$(cat "${_seen[@]}" "$_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
_stamp="$_venv/.installed-$(printf '%s' "$*" | tr ' /' '__')"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_hash" ]; then
  case " $* " in
    *" requirements/gpu.txt "*) echo "setup: installing ${*} into $_venv: TensorFlow with its CUDA libraries, a few GB; this takes a while" >&2 ;;
    *) echo "setup: installing ${*} into $_venv (first run or requirements changed)" >&2 ;;
  esac
  _args=()
  for r in "${_reqs[@]}"; do _args+=(-r "$r"); done
  "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${_args[@]}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  # The project itself, editable: its .pth names this folder, so the packages import from any
  # working directory and edits need no reinstall. Its dependencies came from the files above,
  # so pip needs neither an index nor an isolated build (the venv's setuptools builds it).
  "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$_root" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$_venv/bin/python" -c "import tensorflow, gymnasium, common.config" 2>/dev/null \
    || { echo "setup: installation failed (see pip output above)" >&2; exit 2; }
  echo "$_hash" > "$_stamp"
  _setup_did="installed ${*} into $_venv"
fi
if [ -n "$_setup_did" ]; then
  echo "setup: $_setup_did in $(awk -v a="$_setup_t0" -v b="$(_now)" 'BEGIN { printf "%.1f", b - a }') s" \
       "(not part of any training time)" >&2
fi
unset _setup_t0 _setup_did _seen
unset -f _req_closure
export PATH="$_venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
CARTPOLE_PY="$_venv/bin/python"
