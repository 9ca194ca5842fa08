"""Checkpoints a run can resume from: networks, optimizer, replay buffer and trainer state.

A checkpoint is two parts written in a fixed order, so a crash between any two writes still
leaves a consistent latest checkpoint:
1. `state-N.json` (trainer counters, schedules' positions, NumPy RNG state, CSV rows so far),
   written atomically;
2. TensorFlow's `ckpt-N` (every variable: online/target networks, Adam slots and loss scale,
   the whole replay buffer with its sum tree and sampling RNG), via `tf.train.CheckpointManager`,
   whose `checkpoint` index file TensorFlow updates atomically and only after the data is down.
So `latest_checkpoint` always names a complete `ckpt-N`, and its `state-N.json` already exists.
The replay buffer is included on purpose: a DQN resumed with an empty buffer forgets what it
learned from its early failures and degrades.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from common.errors import CheckpointError
from common.run_log import CHECKPOINT_DIR, atomic_write_json
from common.tf_import import import_tensorflow

tf = import_tensorflow()


class Checkpointer:
    def __init__(self, run_dir: str | os.PathLike, trackables: dict[str, Any], max_to_keep: int = 3):
        self.directory = Path(run_dir) / CHECKPOINT_DIR
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                  max_to_keep=max_to_keep)

    def save(self, number: int, state: dict[str, Any]) -> str:
        atomic_write_json(self.directory / f"state-{number}.json", state)
        path = self.manager.save(checkpoint_number=number)
        self._drop_stale_states()
        return path

    def _drop_stale_states(self) -> None:
        kept = {self._number(p) for p in self.manager.checkpoints}
        for f in self.directory.glob("state-*.json"):
            m = re.fullmatch(r"state-(\d+)\.json", f.name)
            if m and int(m.group(1)) not in kept:
                f.unlink(missing_ok=True)

    @staticmethod
    def _number(ckpt_path: str) -> int:
        return int(ckpt_path.rsplit("-", 1)[1])

    def restore_latest(self) -> dict[str, Any]:
        """Restore every variable from the newest complete checkpoint; return its trainer state."""
        latest = latest_checkpoint(self.directory.parent)
        try:
            status = self.checkpoint.restore(latest)
            status.assert_existing_objects_matched()
        except Exception as e:  # TF's reader raises OpError, ValueError, IndexError, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {latest} is corrupt or incompatible: {first[:200]}") from None
        return read_state(latest)


def latest_checkpoint(run_dir: str | os.PathLike) -> str:
    """Path prefix of the newest complete checkpoint in a run directory, or CheckpointError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    directory = run_dir / CHECKPOINT_DIR
    try:
        latest = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"checkpoint index in {directory} is unreadable: {type(e).__name__}") from None
    if latest is None:
        raise CheckpointError(f"no checkpoint in {directory} (was the run stopped before its first one?)")
    return latest


def read_state(ckpt_path: str) -> dict[str, Any]:
    number = Checkpointer._number(ckpt_path)
    state_file = Path(ckpt_path).parent / f"state-{number}.json"
    try:
        return json.loads(state_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt_path} has no {state_file.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{state_file} is corrupt") from None
