"""The run's log directory: fixed file names and columns, atomic writes, and who may use it.

Every file is written to a temporary name in the same directory and renamed into place, so a
crash (or `kill -9`) at any moment leaves either the previous complete file or the new one,
never half of one. CSVs are kept in memory and rewritten whole for the same reason; they hold a
row per learning call or eval round, so this stays cheap.

`RunDir.prepare` decides whether a directory may take a run: a new run never goes into a
directory that already holds one (their files would mix), `--overwrite` removes only the files
a run writes, and `--resume` needs a run to continue. It first takes an exclusive lock on the
directory (`lock_dir`), held for the run's life, so two processes never run in one directory.

No TensorFlow here: this is Python I/O only.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

# The columns of metrics.csv and eval.csv are defined once, in metrics.py.
CONFIG_JSON, SUMMARY_JSON, TIMINGS_JSON = "config.json", "summary.json", "timings.json"
METRICS_CSV, EVAL_CSV, FIGURE_PNG = "metrics.csv", "eval.csv", "training_metrics.png"
PROFILE_PROF, PROFILE_TXT, PROFILE_FOLDED = "profile.prof", "profile.txt", "profile.folded"
LOCK_FILE = ".cartpole.lock"  # never removed: see lock_dir
CHECKPOINT_DIR, MODEL_DIR, SCRIPTS_DIR = "checkpoints", "model", "scripts"
BEST_MODEL, FINAL_MODEL = "best.keras", "final.keras"


def process_start_time() -> float:
    """Epoch seconds at which this process started, to the kernel's tick (~10 ms).

    Reported times run from here, so they include Python and TensorFlow start-up as a user at
    the terminal waits through them. Not psutil's create_time(): it adds the boot time from
    /proc/stat, which is whole seconds, so its result is early by the boot's fractional second
    (up to a second) and every duration would come out that much too long. Here the process's start tick is compared with CLOCK_BOOTTIME directly.

    Started through run_cartpole_training.sh, the process is the launcher shell itself (`exec`
    keeps its PID and its start tick), so the kernel's start time is when the shell started,
    before the venv set-up. The launcher therefore exports the moment of its `exec` with its
    PID; that moment wins here when the PID is ours, so set-up is never counted as training.
    """
    exec_time = os.environ.get("CARTPOLE_EXEC_TIME")
    if exec_time and os.environ.get("CARTPOLE_EXEC_PID") == str(os.getpid()):
        try:
            return float(exec_time)
        except ValueError:
            pass
    try:
        with open("/proc/self/stat") as f:
            # Field 22 (starttime, in ticks since boot); the command name in field 2 may hold
            # spaces, so count from the closing parenthesis.
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        import psutil
        return psutil.Process().create_time()


class LogDirError(OSError):
    """The log directory cannot be used; the message is one line for the user."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; the log dir's files should get the usual mode (0644 under 022).
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Inf; null is honest and parseable
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return _jsonable(value.item())
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buf.getvalue()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


#: What a run writes at the top of its log dir (globs); `--overwrite` removes exactly these.
RUN_FILES = (CONFIG_JSON, SUMMARY_JSON, TIMINGS_JSON, METRICS_CSV, EVAL_CSV, FIGURE_PNG,
             "profile.*", "cartpole_demo.*", "events.out.tfevents.*")
#: The subdirectories a run owns, with the files it writes in each. Only these files are
#: removed, and the directory only once empty, so a file a user put there survives.
RUN_SUBDIRS = {CHECKPOINT_DIR: ("checkpoint", "ckpt-*", "state-*.json"),
               MODEL_DIR: (BEST_MODEL, FINAL_MODEL),
               SCRIPTS_DIR: ("**/*.py", "**/*.sh", "**/*.txt", "pyproject.toml", "**/.*.tmp")}
#: What `copy_scripts` takes: these file names, in the project's top level, its packages (folders
#: with an `__init__.py`) and SOURCE_FOLDERS, so a venv or a log dir inside the project is skipped.
SOURCE_NAMES = ("*.py", "*.sh", "requirements*.txt", "pyproject.toml")
SOURCE_FOLDERS = {"requirements": ("*.txt",), "tests": ("*.py",), "benchmarks": ("*.py", "*.sh", "*.txt")}
#: Any one of these shows that a directory already holds a run.
RUN_MARKERS = (CONFIG_JSON, SUMMARY_JSON, METRICS_CSV, EVAL_CSV, f"{CHECKPOINT_DIR}/checkpoint",
               f"{MODEL_DIR}/{BEST_MODEL}", f"{MODEL_DIR}/{FINAL_MODEL}")
#: Leftovers of an interrupted write: `atomic_write_bytes` temporaries (anywhere in the run) and
#: a Keras export's `<name>.tmp.keras` (model/).
TEMP_GLOBS = (".*.tmp", "*.tmp.keras")
PREPARE_MODES = ("new", "overwrite", "resume")


def lock_dir(path: str | os.PathLike) -> Any:
    """Take the exclusive lock of the existing directory `path` for this process; return the open
    lock file, which holds the lock until it is closed. LogDirError (one line) if another
    process holds it.

    `flock` on a file in the directory: the kernel releases it when the process ends however it
    ends (kill -9 included), so a crashed run never leaves a stale lock behind, and it is taken
    atomically, so of two runs started at the same moment exactly one gets the directory. The
    lock file is never deleted (not even by --overwrite): a run locking a new file of the same
    name would not exclude one still holding the old one. Its content (the holder's PID) is only
    for the message. Where there is no flock (not POSIX), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        return None
    p = Path(path)
    f = open(p / LOCK_FILE, "a+")  # not inherited by child processes (PEP 446)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise LogDirError(f"log dir {p} is in use by another run{pid}; wait for it to end "
                          "or choose another --log-dir") from None
    except BaseException:
        f.close()
        raise
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def run_markers(path: str | os.PathLike) -> list[str]:
    """The `RUN_MARKERS` present in `path` (empty if it holds no run or does not exist)."""
    p = Path(path)
    return [m for m in RUN_MARKERS if (p / m).is_file()]


def project_sources(root: Path) -> list[Path]:
    """The project's source files under `root` (see SOURCE_NAMES), in a stable order."""
    def visit(d: Path, names: Iterable[str]) -> list[Path]:
        found = sorted(f for n in names for f in d.glob(n) if f.is_file())
        for sub in sorted(x for x in d.iterdir() if x.is_dir() and not x.is_symlink()):
            if (sub / "__init__.py").is_file():
                found += visit(sub, SOURCE_NAMES)
            elif d == root and sub.name in SOURCE_FOLDERS:
                found += visit(sub, SOURCE_FOLDERS[sub.name])
        return found
    return visit(Path(root), SOURCE_NAMES)


def _remove_run_files(p: Path) -> None:
    """Remove what a run wrote into `p` (see RUN_FILES, RUN_SUBDIRS), nothing else."""
    def unlink_files(d: Path, patterns: Iterable[str]) -> None:
        for pattern in patterns:
            for f in d.glob(pattern):
                if f.is_file() or f.is_symlink():  # a directory matching is not ours
                    f.unlink()

    unlink_files(p, RUN_FILES)
    for sub, patterns in RUN_SUBDIRS.items():
        d = p / sub
        if d.is_dir() and not d.is_symlink():
            unlink_files(d, (*patterns, *TEMP_GLOBS))
            for sd in sorted((x for x in d.glob("**/") if x != d), reverse=True):  # deepest first
                if not any(sd.iterdir()):
                    sd.rmdir()
            if not any(d.iterdir()):
                d.rmdir()


def _remove_temporaries(p: Path) -> None:
    """Remove leftovers of writes that were interrupted (a crash between write and rename, or
    TensorFlow's ckpt-N_temp/ of a checkpoint save that never finished)."""
    for d in (p, *(p / sub for sub in RUN_SUBDIRS), *(p / SCRIPTS_DIR).glob("**/")):
        for pattern in TEMP_GLOBS:
            for f in d.glob(pattern):
                if f.is_file():
                    f.unlink()
    for d in (p / CHECKPOINT_DIR).glob("ckpt-*_temp"):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)


class RunDir:
    """A log directory that has been checked to be usable, with paths to everything in it."""

    def __init__(self, path: str | os.PathLike, lock: Any = None):
        self.path = Path(path)
        self._lock = lock  # the open lock file (lock_dir); closing it releases the directory

    def release(self) -> None:
        """Give up the directory's lock (also done by the kernel when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @classmethod
    def prepare(cls, path: str | None, mode: str = "new") -> "RunDir":
        """Check the directory for `mode`, make it ready and prove it writable; one-line errors.

        "new": refuse a directory that already holds a run, so two runs never mix their files
        (a second run would overwrite config.json while the first run's checkpoints stayed).
        "overwrite": remove the run files of an earlier run first, keeping anything else.
        "resume": the directory must hold a run. In every mode, temporaries left by an
        interrupted write are removed.
        """
        if mode not in PREPARE_MODES:
            raise ValueError(f"mode must be one of {PREPARE_MODES}, got {mode!r}")
        p = Path(path) if path else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        if p.exists() and not p.is_dir():
            raise LogDirError(f"log dir {p} exists and is not a directory")
        if mode == "resume" and not p.is_dir():
            raise LogDirError(f"no run directory at {p}")
        try:
            p.mkdir(parents=True, exist_ok=True)
            lock = lock_dir(p)  # before looking at what the directory holds: see lock_dir
        except LogDirError:
            raise
        except OSError as e:
            raise LogDirError(f"log dir {p} is not writable: {e.strerror or e}") from None
        try:
            cls._make_ready(p, mode)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        return cls(p, lock)

    @staticmethod
    def _make_ready(p: Path, mode: str) -> None:
        used = run_markers(p)
        if mode == "resume" and not used:
            raise LogDirError(f"no run to resume in {p}")
        if mode == "new" and used:
            raise LogDirError(f"log dir {p} already holds a run ({', '.join(used[:2])}); continue "
                              f"it with --resume {shlex.quote(str(p))} or replace it with --overwrite")
        try:
            if mode == "overwrite":
                _remove_run_files(p)
            _remove_temporaries(p)
            (p / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
            (p / MODEL_DIR).mkdir(exist_ok=True)
            atomic_write_text(p / ".write-test", "ok\n")
            os.unlink(p / ".write-test")
        except OSError as e:
            raise LogDirError(f"log dir {p} is not writable: {e.strerror or e}") from None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_csv(self, name: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
        atomic_write_text(self.path / name, csv_text(columns, rows))

    def copy_scripts(self, source_dir: str | os.PathLike) -> None:
        """Copy the project's source tree as run, subfolders kept, for reproducing the run later."""
        dest = self.path / SCRIPTS_DIR
        dest.mkdir(exist_ok=True)
        src = Path(source_dir)
        for f in project_sources(src):
            (dest / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest / f.relative_to(src), f.read_bytes())
