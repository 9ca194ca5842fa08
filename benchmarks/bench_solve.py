"""Time-to-solve over many seeds, each in a fresh process, from process start.

    benchmarks/run.sh bench_solve --seeds 20 [--cold] [--workers 1] [--args "--hidden 12,12"]

Runs `cartpole.py` once per seed through the multi-seed runner (one at a time by default, so
runs never share the two cores), then prints per seed: solved, seconds from process start, env
and learning steps, and the fixed start-up cost ("floor": import + setup + first call, i.e.
trace and XLA compile) read from each run's timings.json; then median and IQM with 95%
bootstrap intervals, and the median time-to-solve minus the floor.

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
sys.path.insert(0, str(ROOT))

import multiseed  # noqa: E402
import seeds_report  # noqa: E402
import stats  # noqa: E402
from seed_dirs import seed_dir  # noqa: E402

FLOOR_PARTS = ("import", "setup", "first_call_trace_compile")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="runs at a time (1 = no core sharing)")
    p.add_argument("--cold", action="store_true", help="no XLA compile cache (fresh machine)")
    p.add_argument("--profile", action="store_true", help="keep the trainer's default cProfile on")
    p.add_argument("--args", default="", help="extra training flags, e.g. \"--hidden 12,12\"")
    p.add_argument("--out", default=None, help="log dir (default: a new temp dir)")
    return p.parse_args(argv)


def _print_seeds(out: Path, seeds: list[int]) -> tuple[list[dict], list[float]]:
    """One line per seed from its summary.json and timings.json; (summaries, floors)."""
    rows, floors = [], []
    print(f"\n{'seed':>4} {'solved':>6} {'s from start':>12} {'env steps':>10} {'learn steps':>11} "
          f"{'floor s':>8} {'import':>6} {'compile':>7} {'learn s':>7} {'eval s':>6} {'peak MB':>7}")
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
        fmt = (lambda v, f: format(v, f) if v is not None else "-")
        print(f"{seed:>4} {'yes' if s['solved'] else 'NO':>6} {fmt(s['solve_wall_s'], '12.2f')} "
              f"{fmt(s['solve_env_steps'], '10,')} {fmt(s['solve_learn_steps'], '11,')} "
              f"{floor:8.2f} {tm.get('import', 0):6.2f} {tm.get('first_call_trace_compile', 0):7.2f} "
              f"{tm.get('store_and_learn', 0):7.2f} {tm.get('eval', 0):6.2f} {s['peak_rss_mb']:7.0f}")
    return rows, floors


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
    # --no-profile unless asked: cProfile's per-call hooks slow the Python parts (see README).
    train_args = ([] if a.profile else ["--no-profile"]) + shlex.split(a.args) + (["--no-xla-cache"] if a.cold else [])
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    print(f"bench_solve: {len(seeds)} seeds, workers {a.workers}, "
          f"{'cold (no XLA cache)' if a.cold else 'XLA cache on'}, flags: {' '.join(train_args)}")
    print(f"logs: {out}")
    t = time.time()
    try:
        multiseed.run_seeds(seeds, out, train_args, workers=a.workers, quiet=True)
    except ValueError as e:  # e.g. --out already holds these seeds' runs
        print(f"bench_solve: error: {e}", file=sys.stderr)
        return 2
    report = seeds_report.build_report(out)  # run_seeds wrote report.md/.json/.png there
    rows, floors = _print_seeds(out, seeds)
    _print_summary(report, len(seeds), rows, floors)
    print(f"benchmark wall time {time.time() - t:.0f} s")
    return 0 if report["success"]["solved"] == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
