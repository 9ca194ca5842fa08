"""Every error a user can be shown, importable without TensorFlow.

Each carries a one-line message meant for the user; `cartpole.main()` catches them by name, prints
`cartpole.py: error: <message>` and exits with code 2. They are defined next to the code that
raises them where that code is TensorFlow-free (`config`, `run_log`), and here otherwise, so a
module that imports TensorFlow (e.g. `checkpoints`) is never needed just to catch its error.
"""
from __future__ import annotations

from common.config import ConfigError
from common.run_log import LogDirError


#: Process exit codes: solved, a usage error or fault (one line on stderr), budget spent unsolved.
EXIT_SOLVED, EXIT_USAGE, EXIT_UNSOLVED = 0, 2, 3


class CheckpointError(RuntimeError):
    """A missing, empty, unreadable or incompatible checkpoint."""


class TrainingFault(RuntimeError):
    """Training had to stop (non-finite loss, unwritable log files); the last checkpoint is kept."""


#: What `main()` turns into one line and exit code 2.
USER_ERRORS = (ConfigError, LogDirError, CheckpointError, TrainingFault)

__all__ = ["ConfigError", "LogDirError", "CheckpointError", "TrainingFault", "USER_ERRORS",
           "EXIT_SOLVED", "EXIT_USAGE", "EXIT_UNSOLVED"]
