#!/usr/bin/env bash
# Run the test suite: sets up .venv (with the test tools) on first use, then pytest.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k sumtree
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh requirements/dev.txt
exec "$CARTPOLE_PY" -m pytest -q "$@"
