"""Run the trainer over many seeds in parallel, one fresh process per seed, then write the report.

One seed, one fresh process: `cartpole.py` is started per seed (never imported) so that
TensorFlow's global state, thread pools and memory cannot leak from one seed into the next, and a
crash takes down only its own seed. At most `workers` children run at a time; each writes into
`<log_dir>/seed_<n>/` with its stdout and stderr captured to `output.log` there.

The runner keeps its own manifest, `multiseed.json`, of what it started and how each process ended
(exit code, last lines of its log), because a child that is killed cannot report that about
itself; `seed_dirs.py` describes the layout and how the manifest and the seed dirs are read
together. When the seeds have ended (or on Ctrl-C) `seeds_report.write_report` renders
report.json / .md / .png, with the statistics from `stats.py`. This module only starts, watches
and stops processes.

The command line is `cartpole.py --seeds 0-19 --log-dir DIR [--workers N] [trainer flags]`
(`run_seeds` here); the report alone is rewritten with `seeds_report.write_report(log_dir)`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common import run_log
from experiments.seed_dirs import CLEAN_EXITS, MANIFEST_JSON, OUTPUT_LOG, fresh_summary, load_json, seed_dir, tail
from experiments.seeds_report import write_report
from experiments.stats import finite_or_none

MAX_SEEDS = 10_000
MAX_SEED_VALUE = 2**31 - 1  # the trainer's own --seed limit

#: On Ctrl-C children get SIGINT (the trainer's own clean-stop path: checkpoint and summary),
#: then SIGTERM, then SIGKILL, each after this many seconds without exiting.
GRACE_SIGINT_S, GRACE_SIGTERM_S = 15.0, 5.0
POLL_S = 0.05


# --------------------------------------------------------------------------------------------
# Seed specs
# --------------------------------------------------------------------------------------------
def _seed_range(token: str) -> tuple[int, int]:
    """'7' -> (7, 7); '3-9' -> (3, 9); one-line ValueError for anything else."""
    lo_s, dash, hi_s = token.partition("-")
    if token.startswith("-") or hi_s.startswith("-"):
        raise ValueError(f"negative seed in {token!r}; seeds are >= 0")
    if not lo_s.strip().isdigit() or (dash and not hi_s.strip().isdigit()):
        raise ValueError(f"bad seed item {token!r}; expected N or N-M with integers N <= M")
    lo = int(lo_s)
    hi = int(hi_s) if dash else lo
    if hi < lo:
        raise ValueError(f"reversed seed range {token!r}; write it as {hi}-{lo}")
    if hi > MAX_SEED_VALUE:
        raise ValueError(f"seed {hi} too large; seeds must be < 2^31")
    return lo, hi


def parse_seeds(spec: str) -> list[int]:
    """'0-19', '3', '0,2,5', '0-4,10-12' -> sorted-as-written list of distinct seeds.

    Raises ValueError (one line) for empty parts, negative numbers, reversed ranges, duplicates
    or more than MAX_SEEDS seeds. Sizes are checked before ranges are expanded, so '0-999999999'
    fails fast instead of building a billion-element list.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty seed spec; expected e.g. 0-19, 3, 0,2,5 or 0-4,10-12")
    seeds: list[int] = []
    seen: set[int] = set()
    for part in spec.split(","):
        token = part.strip()
        if not token:
            raise ValueError(f"empty item in seed spec {spec!r}")
        lo, hi = _seed_range(token)
        if len(seeds) + (hi - lo + 1) > MAX_SEEDS:
            raise ValueError(f"seed spec {spec!r} names more than {MAX_SEEDS} seeds")
        for s in range(lo, hi + 1):
            if s in seen:
                raise ValueError(f"seed {s} appears more than once in {spec!r}")
            seen.add(s)
            seeds.append(s)
    return seeds


# --------------------------------------------------------------------------------------------
# Bookkeeping: the runner's manifest and what the user sees
# --------------------------------------------------------------------------------------------
def default_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve().parent.parent / "cartpole.py")]


@dataclass
class _Child:
    seed: int
    proc: subprocess.Popen
    log_file: Any
    started: float
    t0: float


@dataclass
class _Manifest:
    """The runner's own manifest, rewritten atomically after every change of state."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, log_dir: Path) -> "_Manifest":
        path = log_dir / MANIFEST_JSON
        data = load_json(path)
        # Reruns into the same directory add to the manifest, so seeds 0-9 then 10-19 report as 20.
        if not isinstance(data, dict) or not isinstance(data.get("seeds"), dict):
            data = {"seeds": {}}
        return cls(path, data)

    def start(self, command: list[str], train_args: list[str], workers: int, seeds: list[int]) -> None:
        self.data.update(command=command, train_args=list(train_args), workers=workers)
        for s in seeds:
            self.data["seeds"][str(s)] = {"state": "pending"}
        self.save()

    def set(self, seed: int, **entry: Any) -> None:
        self.data["seeds"][str(seed)] = entry
        self.save()

    def save(self) -> None:
        run_log.atomic_write_json(self.path, self.data)


class _SeedsConsole:
    """What the user sees while seeds run (a tqdm bar on a terminal, else one line per seed),
    and the tally of seeds done, solved and failed that it shows."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm
        self.total, self.quiet = total, quiet
        self.show_bar = not quiet and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc="seeds", unit="seed", file=sys.stderr,
                        disable=not self.show_bar, dynamic_ncols=True)
        self.done = self.solved = self.failed = 0

    def say(self, msg: str) -> None:
        if self.quiet:
            return
        if self.show_bar:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def count(self, ok: bool, solved: bool) -> None:
        self.done += 1
        self.solved += solved
        self.failed += not ok

    def tick(self, postfix: bool = True) -> None:
        if postfix:
            self.bar.set_postfix_str(f"solved {self.solved}/{self.done}"
                                     + (f", failed {self.failed}" if self.failed else ""))
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the child's whole process group, so helpers it spawned stop with it."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == signal.SIGINT:
            proc.terminate()  # no SIGINT delivery to another process on Windows
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _stop_children(children: Sequence[_Child], say: Callable[[str], None]) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, waiting a grace period between; a second Ctrl-C skips ahead."""
    if not children:
        return
    say(f"stopping {len(children)} running seed(s)...")
    steps = [(signal.SIGINT, GRACE_SIGINT_S), (signal.SIGTERM, GRACE_SIGTERM_S),
             (getattr(signal, "SIGKILL", signal.SIGTERM), None)]
    for sig, grace in steps:
        alive = [c for c in children if c.proc.poll() is None]
        if not alive:
            break
        for c in alive:
            _signal_group(c.proc, sig)
        if grace is None:
            for c in alive:
                c.proc.wait()
            break
        deadline = time.monotonic() + grace
        try:
            while time.monotonic() < deadline and any(c.proc.poll() is None for c in alive):
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            continue  # impatient user: go straight to the next, harder signal


class _SeedRunner:
    """Starts seeds, notices them end and records each outcome in the manifest."""

    def __init__(self, log_dir: Path, command: list[str], train_args: list[str],
                 manifest: _Manifest, console: _SeedsConsole) -> None:
        self.log_dir, self.command, self.train_args = log_dir, command, train_args
        self.manifest, self.console = manifest, console
        self.running: list[_Child] = []
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")  # live, readable logs

    def run(self, pending: deque, workers: int) -> None:
        """Keep `workers` children busy until `pending` is empty and every child has ended."""
        while pending or self.running:
            while pending and len(self.running) < workers:
                self.launch(pending.popleft())
            still: list[_Child] = []
            for c in self.running:
                code = c.proc.poll()
                if code is None:
                    still.append(c)
                else:
                    self.finish(c, code)
            self.running[:] = still
            if self.running:
                time.sleep(POLL_S)

    def launch(self, seed: int) -> None:
        sdir = seed_dir(self.log_dir, seed)
        argv = [*self.command, "--seed", str(seed), "--log-dir", str(sdir), "--quiet", *self.train_args]
        started = time.time()
        try:
            sdir.mkdir(parents=True, exist_ok=True)
            log_file = open(sdir / OUTPUT_LOG, "wb")
        except OSError as e:
            return self.fail_to_start(seed, started, f"cannot write {sdir}: {e.strerror or e}")
        try:
            # Own session: a terminal Ctrl-C reaches only this runner, which then stops the
            # children in order, instead of every process getting SIGINT at once mid-write.
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env,
                                    start_new_session=os.name == "posix")
        except OSError as e:
            log_file.close()
            return self.fail_to_start(seed, started, f"cannot start {self.command[0]}: {e.strerror or e}")
        # Tracked before anything else can raise, so a Ctrl-C here still stops this child.
        self.running.append(_Child(seed, proc, log_file, started, time.monotonic()))
        self.manifest.set(seed, state="running", started=started, pid=proc.pid, argv=argv)

    def fail_to_start(self, seed: int, started: float, error: str) -> None:
        """Record a seed whose process never ran (no log dir, no executable); go on."""
        self.console.count(ok=False, solved=False)
        self.manifest.set(seed, state="failed", exit_code=None, started=started, wall_s=0.0,
                          error=error, tail=[])
        self.console.say(f"seed {seed}: {error}")
        self.console.tick(postfix=False)

    def finish(self, child: _Child, code: int) -> None:
        child.log_file.close()
        sdir = seed_dir(self.log_dir, child.seed)
        summary = fresh_summary(sdir, child.started)
        wall = time.monotonic() - child.t0
        ok = code in CLEAN_EXITS and summary is not None
        solved = ok and bool(summary.get("solved"))
        entry: dict[str, Any] = dict(state="done" if ok else "failed", exit_code=code,
                                     started=child.started, wall_s=round(wall, 3))
        if not ok:
            entry["tail"] = tail(sdir / OUTPUT_LOG)
            entry["error"] = ("no summary.json written" if summary is None and code in CLEAN_EXITS
                              else f"exit code {code}")
        self.manifest.set(child.seed, **entry)
        self.console.count(ok, solved)
        self._tell_end(child.seed, entry, summary if ok else None, solved)
        self.console.tick()

    def _tell_end(self, seed: int, entry: dict[str, Any], summary: dict[str, Any] | None,
                  solved: bool) -> None:
        p = self.console
        if summary is None:
            last = entry["tail"][-1] if entry["tail"] else "(no output)"
            p.say(f"seed {seed}: FAILED ({entry['error']}): {last}")
        elif not p.show_bar:
            t = finite_or_none(summary.get("solve_wall_s"))
            what = ((f"solved at {t:.1f} s" if t is not None else "solved") if solved
                    else f"unsolved ({summary.get('stop_reason', '?')})")
            p.say(f"seed {seed}: {what}  [{p.done}/{p.total} done, {p.solved} solved]")

    def stop(self, pending: deque) -> None:
        """After Ctrl-C: keep the results of children that had ended, stop the rest, record all."""
        for c in [c for c in self.running if c.proc.poll() is not None]:
            self.finish(c, c.proc.returncode)
            self.running.remove(c)
        _stop_children(self.running, self.console.say)
        for c in self.running:
            c.log_file.close()
            self.manifest.set(c.seed, state="interrupted", exit_code=c.proc.poll(), started=c.started,
                              wall_s=round(time.monotonic() - c.t0, 3),
                              tail=tail(seed_dir(self.log_dir, c.seed) / OUTPUT_LOG))
        for s in pending:
            self.manifest.set(s, state="not started")


def _checked_workers(seeds: list[int], train_args: list[str], workers: int | None) -> int:
    """Validate the run's arguments; the number of workers to use."""
    if not seeds:
        raise ValueError("no seeds to run")
    if len(set(seeds)) != len(seeds):
        raise ValueError("duplicate seeds")
    for flag in ("--seed", "--log-dir", "--log_dir", "--resume"):
        if any(a == flag or a.startswith(flag + "=") for a in train_args):
            raise ValueError(f"{flag} is set per seed by the runner; remove it from the training flags")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return min(workers, len(seeds))


def _refuse_existing_runs(log_dir: Path, seeds: list[int], train_args: list[str]) -> None:
    """Refuse, before anything starts, seeds whose directory already holds a run.

    Each child would refuse such a directory itself (a trainer's log dir must be new unless
    --overwrite), but only after the runner had truncated that seed's output.log and replaced
    its entry in the manifest, so the earlier run would then be reported as a crash. Checked here,
    the earlier runs and their report stay as they were. With --overwrite the children replace them.
    """
    if "--overwrite" in train_args:
        return
    taken = [f"seed_{s}" for s in seeds if run_log.run_markers(seed_dir(log_dir, s))]
    if taken:
        names = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        verb = "holds a run" if len(taken) == 1 else "hold runs"
        raise ValueError(f"{names} in {log_dir} already {verb}; choose other seeds or another "
                         "log dir, or pass --overwrite to replace them")


def run_seeds(seeds: list[int], log_dir: str | Path, train_args: list[str],
              workers: int | None = None, command: list[str] | None = None,
              quiet: bool = False) -> int:
    """Train every seed in its own process, `workers` at a time, then write the report.

    Each child runs `command + [--seed N, --log-dir <log_dir>/seed_N, --quiet, *train_args]`
    with TF_CPP_MIN_LOG_LEVEL=2, its output going to `seed_N/output.log`. A child that crashes
    is recorded (exit code, last lines of its log) and the others carry on.

    Raises ValueError (one line) before starting anything for bad arguments or for a seed whose
    directory already holds a run (unless --overwrite is among `train_args`). Seeds new to
    `log_dir` are added to its manifest and report.

    Returns 0 if every seed ran to a clean end (solved or not), 1 otherwise. On Ctrl-C the
    running children are stopped (SIGINT, then SIGTERM, then SIGKILL), the report is written
    over what finished, and KeyboardInterrupt is re-raised for the caller to exit with 130.
    """
    seeds = list(seeds)
    workers = _checked_workers(seeds, train_args, workers)
    command = list(command) if command is not None else default_command()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    # One runner per directory (its record would mix); each seed_<n> is locked by its own run.
    lock = run_log.lock_dir(log_dir)  # held until this function returns; LogDirError if taken
    try:
        _refuse_existing_runs(log_dir, seeds, train_args)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    manifest = _Manifest.open(log_dir)
    manifest.start(command, train_args, workers, seeds)
    console = _SeedsConsole(len(seeds), quiet)
    runner = _SeedRunner(log_dir, command, train_args, manifest, console)
    pending = deque(seeds)
    interrupted = False
    try:
        runner.run(pending, workers)
    except KeyboardInterrupt:
        interrupted = True
        runner.stop(pending)
    finally:
        console.close()
    manifest.data["interrupted"] = interrupted
    manifest.save()
    write_report(log_dir)
    if lock is not None:
        lock.close()  # (an exception before here leaves it to the process's end)
    if interrupted:
        raise KeyboardInterrupt
    return 0 if console.failed == 0 else 1
