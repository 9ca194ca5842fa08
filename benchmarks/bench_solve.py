"""Time-to-solve over many seeds, each in a fresh process, from process start.

    benchmarks/run.sh bench_solve --seeds 20 [--cold] [--workers 1] [--args "--hidden 12,12"]

Runs `cartpole.py` once per seed through the multi-seed runner (one at a time by default, so
runs never share the two cores), then prints per seed: solved, seconds from process start, env
and learning steps, and the fixed start-up cost (import + setup + first call, i.e. trace and
XLA compile) read from each run's timings.json; then median and IQM with 95% bootstrap
intervals, and the median time-to-solve minus that start-up.

Yardsticks measured in the same run, interleaved with the seeds (one probe of each kind before
every seed and one after the last), so that load from other work falls on all of them alike:
- the **floor**: `import tensorflow` in a venv that holds only the pinned TensorFlow
  (requirements.txt's tensorflow line; created on first use under ~/.cache/cartpole/, or
  $CARTPOLE_TF_FLOOR_VENV, and reused while the line is unchanged), in a fresh process timed
  from its own start (the kernel's start tick, as the trainer's clock) until the import
  returns; interpreter exit not counted. Whatever our own venv adds to that import (Keras
  pulling in optional packages because they are installed) is then ours to answer for.
- the same **import in our venv**, as the trainer does it (tf_import.KEPT_OUT_OF_TRAINER kept
  out, the garbage collector off), probed the same way, to see what our install still adds.
- the **whole process**: from the runner starting a child to the child's exit (the shell prompt
  coming back), and how long after the solve that was (`after solve` = whole - solve).
Ratios printed: median time to solve / median floor, and whole process - solve.

The trainer runs with its defaults, cProfile included (what a user's run does); `--no-profile`
measures without it (what profiling costs is in docs/performance.md).

`--cold` runs with `--no-xla-cache`, so every run compiles from scratch as on a fresh machine;
without it, runs after the first of a configuration load the compiled program from the cache.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from common.tf_import import KEPT_OUT_OF_TRAINER  # noqa: E402  (imports no TensorFlow)
from experiments import multiseed  # noqa: E402
from experiments import seeds_report  # noqa: E402
from experiments import stats  # noqa: E402
from experiments.seed_dirs import read_manifest, seed_dir  # noqa: E402

# Self-contained (the floor venv holds only TensorFlow): seconds from this process's start tick
# (the kernel's, compared with CLOCK_BOOTTIME as run_log.process_start_time does) until
# `import tensorflow` returns.
IMPORT_PROBE = (
    "import os, time\n"
    "with open('/proc/self/stat') as f: ticks = int(f.read().rsplit(')', 1)[1].split()[19])\n"
    "t0 = time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf('SC_CLK_TCK'))\n"
    "import tensorflow\n"
    "print(time.time() - t0)\n")
#: Our venv's probe imports TensorFlow as the trainer does: with what it keeps out kept out,
#: and Python's cyclic garbage collector off (training.trainer.train).
IMPORT_PROBE_OURS = IMPORT_PROBE.replace(
    "import tensorflow\n",
    "import gc\ngc.disable()\n"
    "from common.tf_import import KEPT_OUT_OF_TRAINER, modules_kept_out\n"
    "with modules_kept_out(KEPT_OUT_OF_TRAINER):\n    import tensorflow\n")
FLOOR_VENV_ENV = "CARTPOLE_TF_FLOOR_VENV"

FLOOR_PARTS = ("import", "setup", "first_call_trace_compile")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="runs at a time (1 = no core sharing)")
    p.add_argument("--cold", action="store_true", help="no XLA compile cache (fresh machine)")
    p.add_argument("--no-profile", action="store_true",
                   help="run the trainer without its default cProfile (default: as a user runs it)")
    p.add_argument("--args", default="", help="extra training flags, e.g. --args=\"--hidden 12,12\" "
                   "(write it with = : a lone flag such as --args=--no-layer-norm would otherwise "
                   "be read as an option of this benchmark)")
    p.add_argument("--out", default=None, help="log dir (default: a new temp dir)")
    p.add_argument("--floor-venv", default=None,
                   help=f"the TensorFlow-only venv (default ${FLOOR_VENV_ENV} or ~/.cache/cartpole/tf-floor)")
    return p.parse_args(argv)


def _print_seeds(out: Path, seeds: list[int]) -> tuple[list[dict], list[float]]:
    """One line per seed from its summary.json and timings.json; (summaries, start-ups)."""
    rows, floors = [], []
    print(f"\n{'seed':>4} {'solved':>6} {'s from start':>12} {'env steps':>10} {'learn steps':>11} "
          f"{'start-up':>8} {'import':>6} {'compile':>7} {'learn s':>7} {'evwait':>6} {'peak MB':>7}")
    for seed in seeds:
        d = seed_dir(out, seed)
        try:
            s = json.loads((d / "summary.json").read_text())
            tm = json.loads((d / "timings.json").read_text())["seconds"]
        except (OSError, ValueError):
            print(f"{seed:>4} {'crash':>6}  (see {d / 'output.log'})")
            continue
        floor = sum(tm.get(k, 0.0) for k in FLOOR_PARTS)
        floors.append(floor)
        rows.append(s)
        fmt = (lambda v, f: format(v, f) if v is not None else "-")  # noqa: E731
        print(f"{seed:>4} {'yes' if s['solved'] else 'NO':>6} {fmt(s['solve_wall_s'], '12.2f')} "
              f"{fmt(s['solve_env_steps'], '10,')} {fmt(s['solve_learn_steps'], '11,')} "
              f"{floor:8.2f} {tm.get('import', 0):6.2f} {tm.get('first_call_trace_compile', 0):7.2f} "
              f"{tm.get('store_and_learn', 0):7.2f} {tm.get('eval_wait', 0):6.2f} {s['peak_rss_mb']:7.0f}")
    return rows, floors


def pinned_tensorflow() -> str:
    """requirements.txt's tensorflow line (the floor venv installs exactly that)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("tensorflow") and line[len("tensorflow"):][:1] in ("=", "<", ">", "~", "!", "["):
            return line
    raise ValueError("requirements.txt has no tensorflow line")


def floor_venv(path: str | None) -> Path:
    """The TensorFlow-only venv, created (once, under a lock) or recreated when the pinned
    line changed; returns its python. A stamp file holds the line it was built for."""
    import fcntl
    import os
    import shutil
    import subprocess
    root = Path(path or os.environ.get(FLOOR_VENV_ENV)
                or Path.home() / ".cache" / "cartpole" / "tf-floor")
    want, python = pinned_tensorflow(), root / "bin" / "python"
    stamp = root / ".installed"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmarks at once build it once
        if stamp.is_file() and stamp.read_text() == want and python.is_file():
            return python
        print(f"bench_solve: creating the TensorFlow-only venv {root} ({want}); first use only",
              flush=True)
        shutil.rmtree(root, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", want], check=True)
        stamp.write_text(want)
    return python


def import_seconds(python: str | Path, probe: str = IMPORT_PROBE) -> float | None:
    """Seconds from process start until `import tensorflow` returns, in one fresh process."""
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def probe_imports(floor_python: Path, probes: dict[str, list[float]]) -> None:
    """One floor probe and one probe of our venv's import, alternating which goes first."""
    order = [("floor", floor_python, IMPORT_PROBE), ("ours", sys.executable, IMPORT_PROBE_OURS)]
    if len(probes["floor"]) % 2:
        order.reverse()
    for name, python, probe in order:
        t = import_seconds(python, probe)
        if t is not None:
            probes[name].append(t)


def _whole_process(out: Path, rows: list[dict]) -> tuple[list[float], list[float]]:
    """Per solved seed: whole-process seconds (runner's record) and seconds after the solve."""
    entries, _ = read_manifest(out)
    whole, after = [], []
    for r in rows:
        e = entries.get(str(r.get("seed")), {})
        if r.get("solved") and isinstance(e.get("wall_s"), (int, float)):
            whole.append(float(e["wall_s"]))
            after.append(float(e["wall_s"]) - float(r["solve_wall_s"]))
    return whole, after


def _print_yardsticks(probes: dict[str, list[float]], rows: list[dict], whole: list[float],
                      after: list[float]) -> None:
    solved = [r["solve_wall_s"] for r in rows if r.get("solved")]
    floor, ours = probes["floor"], probes["ours"]
    if floor:
        f = stats.median(floor)
        print(f"floor, `import tensorflow` in a TensorFlow-only venv (process start -> import "
              f"returns): median {f:.2f} s over {len(floor)} fresh processes "
              f"(min {min(floor):.2f}, max {max(floor):.2f})")
        if ours:
            o = stats.median(ours)
            print(f"the same import in our venv, as the trainer does it "
                  f"({', '.join(KEPT_OUT_OF_TRAINER)} kept out, no garbage collection): median {o:.2f} s over {len(ours)} "
                  f"(ratio to the floor {o / f:.2f})")
        if solved:
            print(f"ratio median time to solve / floor: {stats.median(solved) / f:.2f}")
    if whole:
        print(f"whole process (start -> exit): median {stats.median(whole):.2f} s; "
              f"whole process - solve: median {stats.median(after):.2f} s, max {max(after):.2f} s")


def _est(e: dict, unit: str, fmt: str) -> str:
    if e["value"] is None:
        return "-"
    ci = f" [{format(e['ci_low'], fmt)}, {format(e['ci_high'], fmt)}]" if e["ci_low"] is not None else ""
    return f"{format(e['value'], fmt)}{unit}{ci}"


def _print_summary(report: dict, n_seeds: int, rows: list[dict], floors: list[float]) -> None:
    st, steps = report["solve_wall_s"], report["solve_env_steps"]
    print(f"\nsolved {report['success']['solved']}/{n_seeds}")
    print(f"time to solve (s from process start): median {_est(st['median'], ' s', '.2f')}, "
          f"IQM {_est(st['iqm'], ' s', '.2f')}  (95% bootstrap CI; {st['n']} solved seeds)")
    print(f"env steps to solve: median {_est(steps['median'], '', ',.0f')}, "
          f"IQM {_est(steps['iqm'], '', ',.0f')}")
    solved_times = [r["solve_wall_s"] for r in rows if r["solved"]]
    if floors and solved_times:
        floor_s = stats.median(floors)
        print(f"fixed start-up (import + setup + first call, from timings.json) median "
              f"{floor_s:.2f} s; median time to solve minus it "
              f"{stats.median(solved_times) - floor_s:.2f} s")


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_solve-"))
    # cProfile is on by default in the trainer, so the benchmark measures it unless told not to.
    train_args = (["--no-profile"] if a.no_profile else []) + shlex.split(a.args) \
        + (["--no-xla-cache"] if a.cold else [])
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    try:
        floor_python = floor_venv(a.floor_venv)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"bench_solve: error: cannot prepare the TensorFlow-only venv: {e}", file=sys.stderr)
        return 2
    print(f"bench_solve: {len(seeds)} seeds, workers {a.workers}, "
          f"{'cold (no XLA cache)' if a.cold else 'XLA cache on'}, flags: {' '.join(train_args)}")
    print(f"logs: {out}")
    t = time.time()
    probes: dict[str, list[float]] = {"floor": [], "ours": []}
    # One seed at a time with a probe pair before each (and after the last), unless the seeds
    # are to share the cores (--workers > 1): then the probes bracket the whole batch.
    batches = [[s] for s in seeds] if a.workers == 1 else [seeds]
    try:
        for batch in batches:
            probe_imports(floor_python, probes)
            multiseed.run_seeds(batch, out, train_args, workers=a.workers, quiet=True)
    except ValueError as e:  # e.g. --out already holds these seeds' runs
        print(f"bench_solve: error: {e}", file=sys.stderr)
        return 2
    probe_imports(floor_python, probes)
    report = seeds_report.build_report(out)  # run_seeds wrote report.md/.json/.png there
    rows, floors = _print_seeds(out, seeds)
    _print_summary(report, len(seeds), rows, floors)
    _print_yardsticks(probes, rows, *_whole_process(out, rows))
    print(f"benchmark wall time {time.time() - t:.0f} s")
    return 0 if report["success"]["solved"] == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
