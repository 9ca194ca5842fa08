"""setup_env.sh reinstalls when any requirement file it reads changes, nested `-r` files included.

The script runs on a copy of the project's set-up files with a stand-in venv whose `python`
only records how it was called, so no package is installed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/calls.log"
exit 0
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "requirements").mkdir(parents=True)
    shutil.copy(ROOT / "setup_env.sh", root / "setup_env.sh")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "requirements.txt").write_text("numpy\n")
    (root / "requirements" / "dev.txt").write_text("-r ../requirements.txt\n-r nested.txt\npytest\n")
    (root / "requirements" / "nested.txt").write_text("pyyaml==6.0.3\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return root


def _installs(root: Path) -> int:
    """Source the set-up as run_tests.sh does; return how many `pip install -r` it ran so far."""
    subprocess.run(["bash", "-c", "source ./setup_env.sh requirements/dev.txt"], cwd=root,
                   check=True, capture_output=True, text=True, timeout=60)
    calls = (root / ".venv" / "bin" / "calls.log").read_text().splitlines()
    return sum(1 for c in calls if c.startswith("-m pip install") and " -r " in f" {c} ")


def test_a_changed_nested_requirement_file_reinstalls(tmp_path):
    root = _project(tmp_path)
    assert _installs(root) == 1, "the first set-up installs"
    assert _installs(root) == 1, "nothing changed: no reinstall"
    (root / "requirements" / "nested.txt").write_text("pyyaml==6.0.2\n")
    assert _installs(root) == 2, "a nested -r file changed: reinstall"
    (root / "requirements.txt").write_text("numpy\nscipy\n")
    assert _installs(root) == 3, "a file named by a relative -r path changed: reinstall"
