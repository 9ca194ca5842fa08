"""Time-to-solve over many seeds, each in a fresh process, from process start.

    benchmarks/run.sh bench_solve --seeds 20 [--cold] [--workers 1] [--args "--hidden 12,12"]

Runs `cartpole.py` once per seed through the multi-seed runner (one at a time by default, so
runs never share the two cores), then prints per seed: solved, seconds from process start, env
and learning steps, and the fixed start-up cost ("floor": import + setup + first call, i.e.
trace and XLA compile) read from each run's timings.json; then median and IQM with 95%
bootstrap intervals, and the median time-to-solve minus the floor.

Two yardsticks measured in the same run, for the speed targets:
- the **bare TensorFlow import**: fresh `python -c "import tensorflow"` processes (half before
  the seeds, half after), each timed from its own process start (the kernel's start tick, as the
  trainer's clock) until the import returns; interpreter exit not counted. The ratio
  "median time to solve / median bare import" says how close a run comes to the cost of merely
  starting TensorFlow.
- the **whole process**: from the runner starting a child to the child's exit (the shell prompt
  coming back), and how long after the solve that was (`after solve` = whole - solve).

`--cold` runs with `--no-xla-cache`, so every run compiles from scratch as on a fresh machine;
without it, runs after the first of a configuration load the compiled program from the cache.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from experiments import multiseed  # noqa: E402
from experiments import seeds_report  # noqa: E402
from experiments import stats  # noqa: E402
from experiments.seed_dirs import read_manifest, seed_dir  # noqa: E402

IMPORT_PROBE = ("import sys, time; from common.run_log import process_start_time; "
                "t0 = process_start_time(); import tensorflow; print(time.time() - t0)")

FLOOR_PARTS = ("import", "setup", "first_call_trace_compile")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="runs at a time (1 = no core sharing)")
    p.add_argument("--cold", action="store_true", help="no XLA compile cache (fresh machine)")
    p.add_argument("--profile", action="store_true", help="keep the trainer's default cProfile on")
    p.add_argument("--args", default="", help="extra training flags, e.g. --args=\"--hidden 12,12\" "
                   "(write it with = : a lone flag such as --args=--no-layer-norm would otherwise "
                   "be read as an option of this benchmark)")
    p.add_argument("--out", default=None, help="log dir (default: a new temp dir)")
    p.add_argument("--import-probes", type=int, default=10,
                   help="fresh bare `import tensorflow` processes timed (half before, half after)")
    return p.parse_args(argv)


def _print_seeds(out: Path, seeds: list[int]) -> tuple[list[dict], list[float]]:
    """One line per seed from its summary.json and timings.json; (summaries, floors)."""
    rows, floors = [], []
    print(f"\n{'seed':>4} {'solved':>6} {'s from start':>12} {'env steps':>10} {'learn steps':>11} "
          f"{'floor s':>8} {'import':>6} {'compile':>7} {'learn s':>7} {'evwait':>6} {'peak MB':>7}")
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


def bare_import_seconds(n: int) -> list[float]:
    """Seconds from process start until `import tensorflow` returns, in `n` fresh processes."""
    import os
    import subprocess
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = IMPORT_PROBE.format(root=str(ROOT))
    out = []
    for _ in range(n):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out


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


def _print_yardsticks(imports: list[float], rows: list[dict], whole: list[float],
                      after: list[float]) -> None:
    solved = [r["solve_wall_s"] for r in rows if r.get("solved")]
    if imports:
        imp = stats.median(imports)
        print(f"bare TensorFlow import (process start -> import returns): median {imp:.2f} s over "
              f"{len(imports)} fresh processes (min {min(imports):.2f}, max {max(imports):.2f})")
        if solved:
            print(f"ratio median time to solve / bare import: {stats.median(solved) / imp:.2f}")
    if whole:
        print(f"whole process (start -> exit): median {stats.median(whole):.2f} s; after the solve: "
              f"median {stats.median(after):.2f} s, max {max(after):.2f} s")


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
        print(f"floor (import + setup + first call) median {floor_s:.2f} s; "
              f"median time to solve minus floor {stats.median(solved_times) - floor_s:.2f} s")


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_solve-"))
    # --no-profile unless asked: cProfile's per-call hooks slow the Python parts.
    train_args = ([] if a.profile else ["--no-profile"]) + shlex.split(a.args) + (["--no-xla-cache"] if a.cold else [])
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    print(f"bench_solve: {len(seeds)} seeds, workers {a.workers}, "
          f"{'cold (no XLA cache)' if a.cold else 'XLA cache on'}, flags: {' '.join(train_args)}")
    print(f"logs: {out}")
    t = time.time()
    imports = bare_import_seconds(a.import_probes // 2)
    try:
        multiseed.run_seeds(seeds, out, train_args, workers=a.workers, quiet=True)
    except ValueError as e:  # e.g. --out already holds these seeds' runs
        print(f"bench_solve: error: {e}", file=sys.stderr)
        return 2
    report = seeds_report.build_report(out)  # run_seeds wrote report.md/.json/.png there
    imports += bare_import_seconds(a.import_probes - a.import_probes // 2)
    rows, floors = _print_seeds(out, seeds)
    _print_summary(report, len(seeds), rows, floors)
    _print_yardsticks(imports, rows, *_whole_process(out, rows))
    print(f"benchmark wall time {time.time() - t:.0f} s")
    return 0 if report["success"]["solved"] == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
