"""Shared test helpers: the project root and a way to run the CLI (the set-up installs the
project into .venv, so its packages import without any sys.path edit)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A Ray node started by a test (the sweep tests' local instance, the cluster test's nodes) gives
# up when its GCS server has not published its port within 30 s; on a loaded or fresh machine
# a start took longer than that. Ray reads this when a node starts (and passes it to children).
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "300")


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python cartpole.py ARGS` from the project root, capturing text output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cartpole.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)
