"""What the live window costs the solve: the same seeds with and without a window, paired.

    benchmarks/run.sh bench_live_window --seeds 10 [--first-seed 1] [--args "..."]

Each seed runs twice, `cartpole.py --graphics --quiet`: once with a display (the live window,
redrawn as training goes) and once without one (no window; the figure's process still starts,
off-screen, to render the final PNG, as in every run). The order alternates from seed to seed
so that a drift in the machine's speed falls on both arms alike. Without $DISPLAY the
benchmark starts its own virtual display (Xvfb) for the window runs.

A seed follows the same trajectory in both runs (same CPU, same seed: identical env steps to
solve, which is checked), so each pair compares the same work. Printed per seed: seconds to
solve from process start (summary.json `solve_wall_s`) in each arm, their ratio, the CPU
seconds of the live redraws, and when the window was on screen and each redraw done, in
seconds from the launch (timings.json `figure_process`: the window's process notes the wall
clock when the window was shown and after each redraw); then the median of the per-seed
ratios with a 95% bootstrap interval, the window's cost to the solve, when the window was on
screen, and the gaps between its redraws during training.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from experiments import stats  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="number of seeds (pairs of runs)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--args", default="", help="extra training flags for both arms")
    p.add_argument("--out", default=None, help="log dir (default: a new temp dir)")
    return p.parse_args(argv)


def start_display() -> tuple[str, subprocess.Popen | None]:
    """$DISPLAY if there is one, else a fresh Xvfb on the first free display number."""
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"], None
    if shutil.which("Xvfb") is None:
        raise OSError("no $DISPLAY and no Xvfb to make one (apt-get install xvfb)")
    for n in range(90, 100):
        if Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
            continue
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                return f":{n}", proc
            time.sleep(0.1)
        proc.kill()
    raise OSError("could not start Xvfb on displays :90-:99")


def run_one(log_dir: Path, seed: int, display: str | None, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "CI")}
    if display:
        env["DISPLAY"] = display
    cmd = [sys.executable, str(ROOT / "cartpole.py"), "--log-dir", str(log_dir), "--seed", str(seed),
           "--graphics", "--quiet", *extra]
    launched = time.time()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-300:]
        raise RuntimeError(f"seed {seed} ({'window' if display else 'no window'}) exited "
                           f"{proc.returncode}: {tail}")
    summary = json.loads((log_dir / "summary.json").read_text())
    timings = json.loads((log_dir / "timings.json").read_text())
    figure = timings.get("figure_process") or {}
    # The window's times on the launch clock: when it was on screen, and each live redraw.
    shown = figure.get("window_shown_at")
    return {"solve_s": summary.get("solve_wall_s"), "steps": summary.get("solve_env_steps"),
            "figure": figure, "shown_s": None if shown is None else shown - launched,
            "redraws_s": [t - launched for t in figure.get("live_draw_done_at", [])]}


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_live_window-"))
    extra = shlex.split(a.args)
    try:
        display, xvfb = start_display()
    except OSError as e:
        print(f"bench_live_window: error: {e}", file=sys.stderr)
        return 2
    print(f"bench_live_window: seeds {a.first_seed}..{a.first_seed + a.seeds - 1}, display {display}, "
          f"flags: --graphics --quiet {' '.join(extra)}")
    print(f"logs: {out}")
    print(f"{'seed':>4}  {'window s':>9}  {'none s':>7}  {'ratio':>6}  {'draw CPU s':>10}  "
          "window shown, then redrawn at (s from launch)")
    ratios, shown, gaps, t0 = [], [], [], time.time()
    try:
        for i, seed in enumerate(range(a.first_seed, a.first_seed + a.seeds)):
            arms = [("window", display), ("none", None)]
            res = {name: run_one(out / f"seed_{seed}_{name}", seed, disp, extra)
                   for name, disp in (arms if i % 2 == 0 else arms[::-1])}
            w, n = res["window"], res["none"]
            if w["solve_s"] is None or n["solve_s"] is None or w["steps"] != n["steps"]:
                print(f"{seed:>4}  not paired (solved at {w['steps']} and {n['steps']} env steps)")
                continue
            ratios.append(w["solve_s"] / n["solve_s"])
            times = [w["shown_s"], *w["redraws_s"]] if w["shown_s"] is not None else w["redraws_s"]
            shown += [w["shown_s"]] if w["shown_s"] is not None else []
            gaps += [b - a for a, b in zip(w["redraws_s"], w["redraws_s"][1:])]
            print(f"{seed:>4}  {w['solve_s']:>9.2f}  {n['solve_s']:>7.2f}  {ratios[-1]:>6.3f}  "
                  f"{w['figure'].get('live_draw_cpu_s', float('nan')):>10.2f}  "
                  + ", ".join(f"{t:.2f}" for t in times), flush=True)
    except RuntimeError as e:
        print(f"bench_live_window: error: {e}", file=sys.stderr)
        return 1
    finally:
        if xvfb is not None:
            xvfb.terminate()
    est = stats.bootstrap_estimate(ratios, np.median)
    if est["value"] is None:
        print("no paired seeds")
        return 1
    ci = f" [{est['ci_low']:.3f}, {est['ci_high']:.3f}]" if est["ci_low"] is not None else ""
    print(f"window / no window, time to solve, median of {len(ratios)} per-seed ratios: "
          f"{est['value']:.3f}{ci} (95% bootstrap)")
    if shown:
        print(f"window on screen (empty) at a median {np.median(shown):.2f} s from the launch, "
              f"latest {max(shown):.2f} s")
    if gaps:
        print(f"between redraws during training: median {np.median(gaps):.2f} s, "
              f"longest {max(gaps):.2f} s ({len(gaps)} gaps)")
    print(f"benchmark wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
