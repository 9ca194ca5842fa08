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
import shutil
import sys
from pathlib import Path
from typing import Any

from common.errors import CheckpointError
from common.run_log import CHECKPOINT_DIR, atomic_write_json, atomic_write_text
from common.tf_import import import_tensorflow

tf = import_tensorflow()


class Checkpointer:
    def __init__(self, run_dir: str | os.PathLike, trackables: dict[str, Any], max_to_keep: int = 3):
        self.directory = Path(run_dir) / CHECKPOINT_DIR
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._repair_index()
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                  max_to_keep=max_to_keep)

    def save(self, number: int, state: dict[str, Any]) -> str:
        state_file = self.directory / f"state-{number}.json"
        had_checkpoint = (self.directory / f"ckpt-{number}.index").is_file()
        try:
            atomic_write_json(state_file, state)
            path = self.manager.save(checkpoint_number=number)
        except BaseException:
            # A failed save (a full disk above all) leaves TensorFlow's ckpt-N_temp/ and a state
            # file without its checkpoint; neither is worth the space, and the orphan state would
            # read as a damaged checkpoint on --resume.
            shutil.rmtree(self.directory / f"ckpt-{number}_temp", ignore_errors=True)
            if not had_checkpoint:
                state_file.unlink(missing_ok=True)
            raise
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
        """Restore every variable from the newest intact checkpoint; return its trainer state.

        A damaged newer checkpoint (a truncated data file, a lost .index, a garbled state file)
        is skipped with a one-line notice on stderr, so one bad file does not cost the run."""
        latest, skipped = find_intact(self.directory.parent)
        if skipped:
            print(f"cartpole.py: notice: {'; '.join(skipped)}; resuming from {Path(latest).name}",
                  file=sys.stderr, flush=True)
        try:
            status = self.checkpoint.restore(latest)
            status.assert_existing_objects_matched()
        except Exception as e:  # TF's reader raises OpError, ValueError, IndexError, ...
            raise CheckpointError(f"checkpoint {latest} does not fit this run's networks or "
                                  f"replay buffer ({_first_line(e)[:200]})") from None
        return read_state(latest)

    def _repair_index(self) -> None:
        """Rewrite a lost, empty or unparseable index (`checkpoints/checkpoint`) from the
        checkpoints' own files. TensorFlow's CheckpointManager refuses to start on an empty one,
        and without one it would never prune the older checkpoints."""
        try:
            if tf.train.get_checkpoint_state(str(self.directory)) is not None:
                return
        except (ValueError, tf.errors.OpError):
            pass
        indexes = [self.directory / f"ckpt-{n}.index" for n in sorted(_numbers(self.directory))]
        indexes = [f for f in indexes if f.is_file()]
        if not indexes:
            (self.directory / INDEX_FILE).unlink(missing_ok=True)
            return
        # TensorFlow's text format of CheckpointState; the manager keeps (and later prunes)
        # only checkpoints listed with a timestamp, taken here from their files.
        names = [f.name[:-len(".index")] for f in indexes]
        lines = [f'model_checkpoint_path: "{names[-1]}"']
        lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
        lines += [f"all_model_checkpoint_timestamps: {f.stat().st_mtime}" for f in indexes]
        lines.append(f"last_preserved_timestamp: {min(f.stat().st_mtime for f in indexes) - 1}")
        atomic_write_text(self.directory / INDEX_FILE, "\n".join(lines) + "\n")


INDEX_FILE = "checkpoint"


def op_error_cause(e: Any) -> str:
    """The reason in a TensorFlow I/O error, without its graph-node prefix and op suffix:
    "{{function_node __wrapped__SaveV2_...}} <path>; No space left on device [Op:SaveV2]"
    -> "No space left on device" (the operating system's words come after the path)."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(getattr(e, "message", e)))
    text = re.sub(r"\s*\[Op:\w+\]\s*$", "", text.strip())
    lines = text.splitlines() or [type(e).__name__]
    _path, sep, cause = lines[0].rpartition("; ")
    return cause if sep and cause else lines[0]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _numbers(directory: Path) -> set[int]:
    """Checkpoint numbers that any file in `directory` belongs to."""
    found = set()
    for f in directory.glob("*"):
        m = re.fullmatch(r"(?:ckpt-(\d+)\.(?:index|data-\d+-of-\d+)|state-(\d+)\.json)", f.name)
        if m:
            found.add(int(m.group(1) or m.group(2)))
    return found


def damage(prefix: str) -> str | None:
    """What is wrong with the checkpoint at `prefix` (its state file, index and every tensor of
    its data are read), or None if it is intact."""
    path = Path(prefix)
    number = Checkpointer._number(prefix)
    try:
        read_state(prefix)
    except CheckpointError as e:
        return str(e)
    if not path.with_name(path.name + ".index").is_file():
        return f"{path.name}.index is missing"
    if not list(path.parent.glob(f"{path.name}.data-*")):
        return f"{path.name}'s data file is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - TF's reader raises OpError, IndexError, ValueError ...
        return (f"checkpoint ckpt-{number} cannot be read (truncated or damaged data file: "
                f"{_first_line(e)[:120]})")
    return None


def find_intact(run_dir: str | os.PathLike) -> tuple[str, list[str]]:
    """The path prefix of the newest intact checkpoint in a run directory, and what is wrong with
    each newer one; CheckpointError (one line, saying what is wrong) if none is intact.

    Checkpoints are found by their files, not by TensorFlow's index (`checkpoints/checkpoint`),
    so a lost or emptied index costs nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    directory = run_dir / CHECKPOINT_DIR
    numbers = sorted(_numbers(directory), reverse=True) if directory.is_dir() else []
    if not numbers:
        raise CheckpointError(f"no checkpoint in {directory}: the run stopped before its first "
                              "one, so there is nothing to resume (start it anew with --overwrite)")
    skipped = []
    for n in numbers:
        problem = damage(str(directory / f"ckpt-{n}"))
        if problem is None:
            return str(directory / f"ckpt-{n}"), skipped
        skipped.append(problem)
    raise CheckpointError(f"no intact checkpoint in {directory}: {'; '.join(skipped)}")


def latest_checkpoint(run_dir: str | os.PathLike) -> str:
    """Path prefix of the newest intact checkpoint in a run directory, or CheckpointError."""
    return find_intact(run_dir)[0]


def read_state(ckpt_path: str) -> dict[str, Any]:
    """The trainer state saved with a checkpoint: a JSON object ("progress", "config")."""
    number = Checkpointer._number(ckpt_path)
    state_file = Path(ckpt_path).parent / f"state-{number}.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint ckpt-{number} has no {state_file.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{state_file.name} is not valid JSON (damaged)") from None
    if not isinstance(state, dict):  # its parts are checked by their readers
        raise CheckpointError(f"{state_file.name} holds no trainer state (not a JSON object)")
    return state
