"""Where a sweep's results live, and how a trial's files get there from the machine that ran it.

A sweep's *storage* (`--storage PATH_OR_URI`, default the sweep's `--log-dir`) holds everything
the sweep produced: `trials/<trial>/` with each trial's summary.json, eval.csv, metrics.csv,
training_metrics.png, model/ and checkpoints/; `ray_tune/` with Tune's own records; and copies of
the sweep's report files. On one machine it is simply the log dir. On a cluster the trials run
on other machines, and since Ray 2.7 Tune no longer copies anything from worker machines to the
head: a trial writing to a local path writes to *its own* machine's disk. So:

* a **local path** is a path on the launching machine. A trial that runs elsewhere trains into a
  temporary directory on its own machine and, when it ends, sends the files home through Ray to
  a small `Collector` actor pinned to the launching machine, which writes them under the
  storage path (`read_tree` / `write_tree`);
* a **URI** (`s3://bucket/sweeps/x`, `gs://...`, anything pyarrow's filesystems open, which is
  what Tune itself uses) is written by each trial directly (`upload_tree`); every machine
  needs credentials for it. `file:///path` counts as a local path.

Nothing here imports Ray; sweep.py turns `Collector` into an actor.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from common import run_log
from experiments.sweep_spec import SweepError


class StorageError(SweepError):
    """The storage cannot be used; one line for the user (the CLI exits 2)."""


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def resolve_storage(storage: str | None, log_dir: str | os.PathLike) -> str:
    """The sweep's storage as used everywhere else: an absolute local path or a URI."""
    if not storage:
        return str(Path(log_dir).expanduser().resolve())
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    if is_uri(storage):
        return storage.rstrip("/")
    # Resolved here, on the launching machine: a relative path means relative to where the
    # user typed the command, not to some worker's working directory.
    return str(Path(storage).expanduser().resolve())


def join(storage: str, *parts: str) -> str:
    """A path inside the storage: URIs always use '/', local paths the OS's separator."""
    if is_uri(storage):
        return "/".join([storage.rstrip("/"), *parts])
    return os.path.join(storage, *parts)


def is_temporary(name: str) -> bool:
    """run_log's atomic writer's in-flight files ('.<name>.<random>.tmp'): never shipped."""
    return name.startswith(".") and name.endswith(".tmp")


def _walk(root: Path):
    """(relative '/'-path, path) of every finished regular file under root, in a stable order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not is_temporary(path.name):
            yield path.relative_to(root).as_posix(), path


def read_tree(root: str | os.PathLike) -> dict[str, bytes]:
    """Every finished file under `root`, by its relative '/'-separated path."""
    return {rel: path.read_bytes() for rel, path in _walk(Path(root))}


def write_tree(dest: str | os.PathLike, files: dict[str, bytes]) -> int:
    """Write `files` (from read_tree) under `dest`, each atomically; return how many.

    The names arrive from another machine, so a name that would land outside `dest` (absolute,
    or climbing with '..') is refused rather than trusted.
    """
    dest = Path(dest)
    for rel in files:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise StorageError(f"refusing to write {rel!r} outside {dest}")
    for rel, data in files.items():
        target = dest.joinpath(*PurePosixPath(rel).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        run_log.atomic_write_bytes(target, data)
    return len(files)


def relocate_config(local_dir: str | os.PathLike, log_dir: str, trained_in: str) -> None:
    """Make a staged trial's config.json record where its files will be (`log_dir`, in the
    storage) rather than the temporary directory it trained in, which is kept as `trained_in`
    ("host:path"). A config.json that is missing or not the trainer's is left as it is."""
    path = Path(local_dir) / run_log.CONFIG_JSON
    try:
        record = json.loads(path.read_text())
        record["config"]["log_dir"] = log_dir
    except (OSError, ValueError, KeyError, TypeError):
        return
    record["trained_in"] = trained_in
    run_log.atomic_write_json(path, record)


def _filesystem(uri: str):
    import pyarrow.fs  # comes with ray[tune]; only URIs need it
    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise StorageError(f"--storage {uri}: {str(e).strip().splitlines()[0]}") from None


def check_uri(uri: str) -> None:
    """Fail in one line, before any trial runs, when a storage URI cannot be opened or written."""
    fs, path = _filesystem(uri)
    try:
        fs.create_dir(path, recursive=True)
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"--storage {uri}: cannot create it: {str(e).strip().splitlines()[0]}") from None


def upload_tree(local_dir: str | os.PathLike, uri: str) -> None:
    """Copy a local directory's files to `uri` (a directory there), keeping relative paths."""
    import pyarrow.fs
    fs, path = _filesystem(uri)
    local = pyarrow.fs.LocalFileSystem()
    for rel, _ in _walk(Path(local_dir)):
        target = f"{path}/{rel}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pyarrow.fs.copy_files(str(Path(local_dir) / rel), target, source_filesystem=local,
                              destination_filesystem=fs)


def publish(local_dir: str | os.PathLike, names: list[str], storage: str) -> None:
    """Copy the named files of the sweep's log dir into its storage, when that is elsewhere."""
    local_dir = Path(local_dir)
    present = [n for n in names if (local_dir / n).is_file()]
    if is_uri(storage):
        import pyarrow.fs
        fs, path = _filesystem(storage)
        for n in present:
            pyarrow.fs.copy_files(str(local_dir / n), f"{path}/{n}",
                                  source_filesystem=pyarrow.fs.LocalFileSystem(),
                                  destination_filesystem=fs)
    elif Path(storage).resolve() != local_dir.resolve():
        write_tree(storage, {n: (local_dir / n).read_bytes() for n in present})


class Collector:
    """Receives a trial's files on the launching machine (sweep.py runs it as a Ray actor pinned
    there) and writes them under the storage path."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def receive(self, rel_dir: str, files: dict[str, bytes]) -> int:
        return write_tree(self.root.joinpath(*PurePosixPath(rel_dir).parts), files)
