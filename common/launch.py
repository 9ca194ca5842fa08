"""Starting the project's own Python child processes: the evaluation worker and the live window.

Each child is a fresh interpreter started as a module of its package (`python -m
acting.eval_rounds --worker`, `python -m outputs.live_view --child`), never a fork of the
trainer, which holds TensorFlow's threads. `-m` finds the package through the interpreter's
path: the project installed into .venv (what the set-up does) covers it, and the project root at
the front of the child's PYTHONPATH covers a checkout run by a Python it was not installed into,
from any working directory. No project imports here.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra`, with the project root leading PYTHONPATH."""
    paths = [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
