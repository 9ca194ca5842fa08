"""Run the trainer over many seeds in parallel and report how reliably, and how fast, it solves.

One seed, one fresh process: `cartpole.py` is started per seed (never imported) so that
TensorFlow's global state, thread pools and memory cannot leak from one seed into the next, and a
crash takes down only its own seed. At most `workers` children run at a time; each writes into
`<log_dir>/seed_<n>/` with its stdout and stderr captured to `output.log` there.

The runner keeps its own record, `multiseed.json`, of what it started and how each process
ended (exit code, last lines of its log). The child's `summary.json` says what the run learned;
the runner's record says whether the process itself finished cleanly, which the child cannot
report about itself when it is killed. A seed counts as "ran" only if both agree: a summary
written by this run and an exit code of 0 (solved) or 3 (budget used up unsolved).

`write_report` turns the seed directories into `report.json`, `report.md` and `report.png`.
Aggregates follow Agarwal et al. 2021 ("Deep RL at the edge of the statistical precipice"):
median and interquartile mean (IQM) with 95% bootstrap confidence intervals, plus a performance
profile. The `rliable` package is not used: it pulls in a heavy stack (arch, statsmodels,
seaborn) for what is, with one task and tens of seeds, a plain percentile bootstrap, so
`scipy.stats.bootstrap` is used instead, with a fixed generator seed so that regenerating the
report from the same directories gives the same numbers. No timestamps are written into the
report files for the same reason.

Time-to-solve statistics are necessarily over the solved seeds only; the report always says how
many unsolved seeds that excludes, and also gives the median over all seeds with an unsolved
seed counted as taking forever (so it is infinite once half or more failed), which cannot flatter
an unreliable configuration.

Usage:
    python multiseed.py --seeds 0-19 --log-dir runs/ms [--workers 2] [trainer flags...]
    python multiseed.py --log-dir runs/ms --report-only
Unrecognised flags (and everything after `--`) are passed to every `cartpole.py` child.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import run_log

MANIFEST_JSON = "multiseed.json"
REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"
OUTPUT_LOG = "output.log"
SEED_DIR_PREFIX = "seed_"

MAX_SEEDS = 10_000
MAX_SEED_VALUE = 2**31 - 1  # the trainer's own --seed limit
EXIT_SOLVED, EXIT_UNSOLVED = 0, 3
CLEAN_EXITS = (EXIT_SOLVED, EXIT_UNSOLVED)

#: Percentile bootstrap, as rliable does by default; BCa's jackknife breaks down on the ties that
#: small seed counts produce. The generator seed is fixed so the report is reproducible.
BOOTSTRAP = {"method": "percentile", "n_resamples": 10_000, "confidence_level": 0.95, "seed": 20210901}
MIN_FOR_CI = 3  # with fewer values a resampled interval says nothing the raw values don't

#: On Ctrl-C children get SIGINT (the trainer's own clean-stop path: checkpoint and summary),
#: then SIGTERM, then SIGKILL, each after this many seconds without exiting.
GRACE_SIGINT_S, GRACE_SIGTERM_S = 15.0, 5.0
TAIL_LINES = 20
POLL_S = 0.05


# --------------------------------------------------------------------------------------------
# Seed specs
# --------------------------------------------------------------------------------------------
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
        if len(seeds) + (hi - lo + 1) > MAX_SEEDS:
            raise ValueError(f"seed spec {spec!r} names more than {MAX_SEEDS} seeds")
        for s in range(lo, hi + 1):
            if s in seen:
                raise ValueError(f"seed {s} appears more than once in {spec!r}")
            seen.add(s)
            seeds.append(s)
    return seeds


def seed_dir(log_dir: str | os.PathLike, seed: int) -> Path:
    return Path(log_dir) / f"{SEED_DIR_PREFIX}{seed}"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def default_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve().parent / "cartpole.py")]


def _tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 64_000) -> list[str]:
    """Last lines of a (possibly huge) log without reading all of it."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fresh_summary(sdir: Path, started: float | None) -> dict[str, Any] | None:
    """summary.json if it parses and (when the start time is known) was written by this run.

    A rerun into an old log dir leaves the previous summary in place until the child rewrites
    it; a child that dies first must not inherit its predecessor's result. The one-second slack
    covers filesystems with coarse mtimes.
    """
    path = sdir / run_log.SUMMARY_JSON
    summary = _load_json(path)
    if not isinstance(summary, dict):
        return None
    if started is not None:
        try:
            if path.stat().st_mtime < started - 1.0:
                return None
        except OSError:
            return None
    return summary


@dataclass
class _Child:
    seed: int
    proc: subprocess.Popen
    log_file: Any
    started: float
    t0: float


@dataclass
class _Manifest:
    """The runner's own record, rewritten atomically after every change of state."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, log_dir: Path) -> "_Manifest":
        path = log_dir / MANIFEST_JSON
        data = _load_json(path)
        # Reruns into the same directory add to the record, so seeds 0-9 then 10-19 report as 20.
        if not isinstance(data, dict) or not isinstance(data.get("seeds"), dict):
            data = {"seeds": {}}
        return cls(path, data)

    def set(self, seed: int, **entry: Any) -> None:
        self.data["seeds"][str(seed)] = entry
        self.save()

    def save(self) -> None:
        run_log.atomic_write_json(self.path, self.data)


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


def run_seeds(seeds: list[int], log_dir: str | Path, train_args: list[str],
              workers: int | None = None, command: list[str] | None = None,
              quiet: bool = False) -> int:
    """Train every seed in its own process, `workers` at a time, then write the report.

    Each child runs `command + [--seed N, --log-dir <log_dir>/seed_N, --quiet, *train_args]`
    with TF_CPP_MIN_LOG_LEVEL=2, its output going to `seed_N/output.log`. A child that crashes
    is recorded (exit code, last lines of its log) and the others carry on.

    Returns 0 if every seed ran to a clean end (solved or not), 1 otherwise. On Ctrl-C the
    running children are stopped (SIGINT, then SIGTERM, then SIGKILL), the report is written
    over what finished, and KeyboardInterrupt is re-raised for the caller to exit with 130.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds to run")
    if len(set(seeds)) != len(seeds):
        raise ValueError("duplicate seeds")
    for flag in ("--seed", "--log-dir", "--log_dir"):
        if any(a == flag or a.startswith(flag + "=") for a in train_args):
            raise ValueError(f"{flag} is set per seed by the runner; remove it from the training flags")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(workers, len(seeds))
    command = list(command) if command is not None else default_command()

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest.open(log_dir)
    manifest.data.update(command=command, train_args=list(train_args), workers=workers)
    for s in seeds:
        manifest.data["seeds"][str(s)] = {"state": "pending"}
    manifest.save()

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")  # live, readable logs

    from tqdm import tqdm
    show_bar = not quiet and sys.stderr.isatty()
    bar = tqdm(total=len(seeds), desc="seeds", unit="seed", file=sys.stderr, disable=not show_bar,
               dynamic_ncols=True)

    def say(msg: str) -> None:
        if quiet:
            return
        if show_bar:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    pending = deque(seeds)
    running: list[_Child] = []
    n_solved = n_failed = n_done = 0

    def fail_to_start(seed: int, started: float, error: str) -> None:
        """Record a seed whose process never ran (no log dir, no executable); go on."""
        nonlocal n_failed, n_done
        n_failed += 1
        n_done += 1
        manifest.set(seed, state="failed", exit_code=None, started=started, wall_s=0.0,
                     error=error, tail=[])
        say(f"seed {seed}: {error}")
        bar.update(1)

    def launch(seed: int) -> None:
        sdir = seed_dir(log_dir, seed)
        argv = [*command, "--seed", str(seed), "--log-dir", str(sdir), "--quiet", *train_args]
        started = time.time()
        try:
            sdir.mkdir(parents=True, exist_ok=True)
            log_file = open(sdir / OUTPUT_LOG, "wb")
        except OSError as e:
            return fail_to_start(seed, started, f"cannot write {sdir}: {e.strerror or e}")
        try:
            # Own session: a terminal Ctrl-C reaches only this runner, which then stops the
            # children in order, instead of every process getting SIGINT at once mid-write.
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=os.name == "posix")
        except OSError as e:
            log_file.close()
            return fail_to_start(seed, started, f"cannot start {command[0]}: {e.strerror or e}")
        # Tracked before anything else can raise, so a Ctrl-C here still stops this child.
        running.append(_Child(seed, proc, log_file, started, time.monotonic()))
        manifest.set(seed, state="running", started=started, pid=proc.pid, argv=argv)

    def finish(child: _Child, code: int) -> None:
        nonlocal n_solved, n_failed, n_done
        child.log_file.close()
        sdir = seed_dir(log_dir, child.seed)
        summary = _fresh_summary(sdir, child.started)
        wall = time.monotonic() - child.t0
        ok = code in CLEAN_EXITS and summary is not None
        solved = ok and bool(summary.get("solved"))
        entry: dict[str, Any] = dict(state="done" if ok else "failed", exit_code=code,
                                     started=child.started, wall_s=round(wall, 3))
        if not ok:
            entry["tail"] = _tail(sdir / OUTPUT_LOG)
            entry["error"] = ("no summary.json written" if summary is None and code in CLEAN_EXITS
                              else f"exit code {code}")
        manifest.set(child.seed, **entry)
        n_done += 1
        n_solved += solved
        n_failed += not ok
        if not ok:
            last = entry["tail"][-1] if entry["tail"] else "(no output)"
            say(f"seed {child.seed}: FAILED ({entry['error']}): {last}")
        elif not show_bar:
            t = finite_or_none(summary.get("solve_wall_s"))
            what = ((f"solved at {t:.1f} s" if t is not None else "solved") if solved
                    else f"unsolved ({summary.get('stop_reason', '?')})")
            say(f"seed {child.seed}: {what}  [{n_done}/{len(seeds)} done, {n_solved} solved]")
        bar.set_postfix_str(f"solved {n_solved}/{n_done}" + (f", failed {n_failed}" if n_failed else ""))
        bar.update(1)

    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < workers:
                launch(pending.popleft())
            still: list[_Child] = []
            for c in running:
                code = c.proc.poll()
                if code is None:
                    still.append(c)
                else:
                    finish(c, code)
            running[:] = still
            if running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        # Children that had already ended before the Ctrl-C keep their real result.
        for c in [c for c in running if c.proc.poll() is not None]:
            finish(c, c.proc.returncode)
            running.remove(c)
        _stop_children(running, say)
        for c in running:
            c.log_file.close()
            code = c.proc.poll()
            manifest.set(c.seed, state="interrupted", exit_code=code, started=c.started,
                         wall_s=round(time.monotonic() - c.t0, 3), tail=_tail(seed_dir(log_dir, c.seed) / OUTPUT_LOG))
        for s in pending:
            manifest.set(s, state="not started")
    finally:
        bar.close()

    manifest.data["interrupted"] = interrupted
    manifest.save()
    write_report(log_dir)
    if interrupted:
        raise KeyboardInterrupt
    return 0 if n_failed == 0 else 1


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def iqm(values: Any, axis: int = -1) -> Any:
    """Interquartile mean: the mean after cutting the lowest and highest 25% of values.

    Same convention as rliable (`scipy.stats.trim_mean(x, 0.25)`): floor(n/4) values are cut
    from each end, so for n < 4 it is the plain mean.
    """
    from scipy.stats import trim_mean
    return trim_mean(values, 0.25, axis=axis)


def _median(values: Any, axis: int = -1) -> Any:
    return np.median(values, axis=axis)


def _estimate(values: np.ndarray, stat: Callable[..., Any]) -> dict[str, Any]:
    """Point estimate with a 95% percentile-bootstrap interval, or no interval when n < 3."""
    n = len(values)
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    value = float(stat(values))
    if n < MIN_FOR_CI:
        return {"value": value, "ci_low": None, "ci_high": None}
    if np.ptp(values) == 0:
        return {"value": value, "ci_low": value, "ci_high": value}  # every resample is identical
    from scipy.stats import bootstrap
    res = bootstrap((values,), stat, vectorized=True, axis=-1,
                    n_resamples=BOOTSTRAP["n_resamples"], method=BOOTSTRAP["method"],
                    confidence_level=BOOTSTRAP["confidence_level"],
                    rng=np.random.default_rng(BOOTSTRAP["seed"]))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def _metric_stats(solved: list[float], n_ran: int) -> dict[str, Any]:
    x = np.sort(np.asarray(solved, dtype=float))
    # Unsolved seeds are "never": +inf sorts above every solve time, so the median of all seeds
    # is finite only while more than half of them solved.
    everything = np.concatenate([x, np.full(n_ran - len(x), np.inf)]) if n_ran else x
    med_all = float(np.median(everything)) if len(everything) else None
    return {
        "n": int(len(x)),
        "excluded_unsolved": int(n_ran - len(x)),
        "median": _estimate(x, _median),
        "iqm": _estimate(x, iqm),
        "mean": float(x.mean()) if len(x) else None,
        "min": float(x[0]) if len(x) else None,
        "max": float(x[-1]) if len(x) else None,
        "median_all_seeds": {"value": med_all if med_all is not None and math.isfinite(med_all) else None,
                             "infinite": med_all is not None and math.isinf(med_all),
                             "n": int(n_ran)},
    }


# --------------------------------------------------------------------------------------------
# Reading seed directories
# --------------------------------------------------------------------------------------------
def finite_or_none(v: Any) -> float | None:
    """A number from a CSV/JSON field, or None for missing, non-numeric, NaN or infinite."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_eval(sdir: Path) -> list[tuple[float, float]]:
    """(env_steps, mean return) pairs from eval.csv, skipping unreadable rows."""
    path = sdir / run_log.EVAL_CSV
    if not path.is_file():
        return []
    try:
        rows = run_log.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    out = []
    for r in rows:
        x, y = finite_or_none(r.get("env_steps")), finite_or_none(r.get("mean"))
        if x is not None and y is not None:
            out.append((x, y))
    return out


def _discover_seeds(log_dir: Path) -> set[int]:
    found = set()
    for p in log_dir.glob(f"{SEED_DIR_PREFIX}*"):
        tail = p.name[len(SEED_DIR_PREFIX):]
        if p.is_dir() and tail.isdigit():
            found.add(int(tail))
    return found


def _seed_record(log_dir: Path, seed: int, entry: dict[str, Any] | None) -> dict[str, Any]:
    """Classify one seed as solved / unsolved / crashed / missing, with what is known about it."""
    sdir = seed_dir(log_dir, seed)
    entry = entry or {}
    state = entry.get("state")
    summary = _fresh_summary(sdir, entry.get("started")) if sdir.is_dir() else None
    if state == "running" and summary is not None:
        # The runner itself died (e.g. kill -9) before seeing this child end; the child's own
        # summary is then the best record there is.
        entry, state = {}, None
    # The runner saw the process end, so its exit code beats the one the child wrote about itself.
    exit_code = entry.get("exit_code")
    if exit_code is None and summary is not None and state not in ("interrupted", "failed"):
        exit_code = summary.get("exit_code")
        if exit_code is None:  # older summaries: infer from the result
            exit_code = EXIT_SOLVED if summary.get("solved") else EXIT_UNSOLVED

    if state in ("pending", "running", "not started") or (not sdir.is_dir() and not entry):
        status, note = "missing", f"never finished ({state})" if state else "no seed directory"
    elif state == "interrupted":
        status, note = "missing", "interrupted by Ctrl-C"
    elif summary is not None and exit_code in CLEAN_EXITS:
        status, note = ("solved" if summary.get("solved") else "unsolved"), ""
    else:
        status = "crashed"
        if entry.get("error"):
            note = entry["error"]
        elif summary is None:
            note = "no summary.json" if not (sdir / run_log.SUMMARY_JSON).exists() else "stale or unreadable summary.json"
        else:
            note = f"exit code {exit_code}"
    tail = entry.get("tail")
    if status in ("crashed", "missing") and not tail:
        tail = _tail(sdir / OUTPUT_LOG)
    s = summary or {}
    return {
        "seed": seed,
        "status": status,
        "solved": status == "solved",
        "solve_wall_s": finite_or_none(s.get("solve_wall_s")) if status == "solved" else None,
        "solve_env_steps": finite_or_none(s.get("solve_env_steps")) if status == "solved" else None,
        "confirm_mean_return": finite_or_none(s.get("confirm_mean_return")),
        "total_wall_s": finite_or_none(s.get("total_wall_s")),
        "total_env_steps": finite_or_none(s.get("total_env_steps")),
        "exit_code": exit_code,
        "stop_reason": s.get("stop_reason"),
        "note": note,
        "tail": (tail or []) if status in ("crashed", "missing") else [],
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def write_report(log_dir: str | Path) -> dict[str, Any]:
    """Aggregate every `seed_*` directory (plus any seeds the runner record lists) into
    report.json / report.md / report.png, written atomically; returns the report dict."""
    log_dir = Path(log_dir)
    manifest = _load_json(log_dir / MANIFEST_JSON)
    entries = manifest.get("seeds", {}) if isinstance(manifest, dict) else {}
    entries = entries if isinstance(entries, dict) else {}
    listed = {int(k) for k in entries if str(k).isdigit()}
    seeds = sorted(listed | _discover_seeds(log_dir))
    records = [_seed_record(log_dir, s, entries.get(str(s))) for s in seeds]

    ran = [r for r in records if r["status"] in ("solved", "unsolved")]
    solved = [r for r in ran if r["solved"]]
    n_ran, k = len(ran), len(solved)
    report: dict[str, Any] = {
        "log_dir": str(log_dir),
        "n_seeds": len(records),
        "counts": {st: sum(r["status"] == st for r in records)
                   for st in ("solved", "unsolved", "crashed", "missing")},
        "success": {
            "solved": k, "ran": n_ran, "rate": k / n_ran if n_ran else None,
            # Conservative view: every seed that did not finish cleanly counts as a failure.
            "rate_counting_failures": k / len(records) if records else None,
        },
        "solve_wall_s": _metric_stats([r["solve_wall_s"] for r in solved if r["solve_wall_s"] is not None], n_ran),
        "solve_env_steps": _metric_stats([r["solve_env_steps"] for r in solved if r["solve_env_steps"] is not None], n_ran),
        "bootstrap": dict(BOOTSTRAP, min_n=MIN_FOR_CI),
        "interrupted": bool(manifest.get("interrupted")) if isinstance(manifest, dict) else False,
        "seeds": [{k_: v for k_, v in r.items() if k_ != "tail"} for r in records],
        "failures": [{"seed": r["seed"], "status": r["status"], "exit_code": r["exit_code"],
                      "note": r["note"], "tail": r["tail"]}
                     for r in records if r["status"] in ("crashed", "missing")],
    }
    curves = {r["seed"]: _read_eval(seed_dir(log_dir, r["seed"])) for r in records}

    log_dir.mkdir(parents=True, exist_ok=True)
    run_log.atomic_write_json(log_dir / REPORT_JSON, report)
    run_log.atomic_write_text(log_dir / REPORT_MD, render_markdown(report))
    run_log.atomic_write_bytes(log_dir / REPORT_PNG, render_png(report, curves))
    return report


def _fmt_time(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fmt_steps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _fmt_est(est: dict[str, Any], fmt: Callable[[float | None], str]) -> str:
    if est["value"] is None:
        return "-"
    if est["ci_low"] is None:
        return f"{fmt(est['value'])} (no CI, n < {MIN_FOR_CI})"
    return f"{fmt(est['value'])} [{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]"


def render_markdown(report: dict[str, Any]) -> str:
    c, s = report["counts"], report["success"]
    n = report["n_seeds"]
    lines = [f"# Multi-seed report: `{Path(report['log_dir']).name}`", ""]
    if report["interrupted"]:
        lines += ["**Interrupted (Ctrl-C): this report covers only the seeds that finished.**", ""]
    lines += [f"{n} seeds: {s['ran']} ran to a clean end ({c['solved']} solved, {c['unsolved']} unsolved), "
              f"{c['crashed']} crashed, {c['missing']} missing.", ""]
    if s["ran"]:
        lines.append(f"**Success rate: {s['solved']}/{s['ran']} ({100 * s['rate']:.1f}%)** of the seeds that ran.")
        if c["crashed"] or c["missing"]:
            lines.append(f"Counting the {c['crashed'] + c['missing']} crashed or missing seed(s) as failures: "
                         f"{s['solved']}/{n} ({100 * s['rate_counting_failures']:.1f}%).")
    else:
        lines.append("**No seed ran to a clean end.**")
    lines.append("")

    b = report["bootstrap"]
    t, e = report["solve_wall_s"], report["solve_env_steps"]
    lines += [
        "## Time and environment steps to solve", "",
        f"Over the {t['n']} solved seed(s); {t['excluded_unsolved']} unsolved seed(s) excluded. "
        f"Brackets: {100 * b['confidence_level']:.0f}% {b['method']} bootstrap confidence interval "
        f"({b['n_resamples']:,} resamples, fixed seed), given from {b['min_n']} values up. "
        "IQM = mean of the middle 50% (Agarwal et al. 2021). Time is wall-clock seconds from "
        "process start, so it includes start-up.", "",
        f"| metric | median | IQM | mean | min | max | median of all {s['ran']} (unsolved = inf) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m, fmt in (("wall time to solve (s)", t, _fmt_time), ("env steps to solve", e, _fmt_steps)):
        ma = m["median_all_seeds"]
        all_txt = "inf" if ma["infinite"] else fmt(ma["value"])
        lines.append(f"| {label} | {_fmt_est(m['median'], fmt)} | {_fmt_est(m['iqm'], fmt)} | "
                     f"{fmt(m['mean'])} | {fmt(m['min'])} | {fmt(m['max'])} | {all_txt} |")
    lines += ["", "## Per seed", "",
              "| seed | status | solved | time to solve (s) | env steps to solve | confirm mean | exit code | stop reason |",
              "|---:|---|---|---:|---:|---:|---:|---|"]
    for r in report["seeds"]:
        cm = r["confirm_mean_return"]
        lines.append(f"| {r['seed']} | {r['status']} | {'yes' if r['solved'] else 'no'} | "
                     f"{_fmt_time(r['solve_wall_s'])} | {_fmt_steps(r['solve_env_steps'])} | "
                     f"{'-' if cm is None else f'{cm:.1f}'} | "
                     f"{'-' if r['exit_code'] is None else r['exit_code']} | {r['stop_reason'] or '-'} |")
    if report["failures"]:
        lines += ["", "## Crashed or missing seeds", ""]
        for f in report["failures"]:
            code = "" if f["exit_code"] is None else f", exit code {f['exit_code']}"
            lines.append(f"- seed {f['seed']}: {f['status']}{code}: {f['note']}")
            if f["tail"]:
                lines += ["", "  ```", *[f"  {ln}" for ln in f["tail"][-10:]], "  ```", ""]
    lines += ["", f"![eval curves and performance profile]({REPORT_PNG})", ""]
    return "\n".join(lines)


def render_png(report: dict[str, Any], curves: dict[int, list[tuple[float, float]]]) -> bytes:
    """Eval curves (left) and the performance profile (right), as PNG bytes."""
    # The object API with an explicit Agg canvas: no pyplot, so no global backend or figure
    # state is touched, and it works headless and from any thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_eval, ax_prof = fig.subplots(1, 2)
    colours = {"solved": "tab:blue", "unsolved": "tab:orange", "crashed": "tab:red", "missing": "tab:gray"}
    status = {r["seed"]: r["status"] for r in report["seeds"]}
    drawn = set()
    for seed, pts in sorted(curves.items()):
        if not pts:
            continue
        x, y = zip(*pts)
        st = status.get(seed, "missing")
        ax_eval.plot(x, y, lw=0.8, alpha=0.75, color=colours[st],
                     label=st if st not in drawn else None)
        drawn.add(st)
    ax_eval.axhline(500, color="k", ls="--", lw=1, label="500 (max return)")
    ax_eval.set(xlabel="environment steps", ylabel="greedy eval mean return",
                title=f"Eval curves, one line per seed ({sum(bool(p) for p in curves.values())} seeds)",
                ylim=(0, 520))
    ax_eval.legend(loc="lower right", fontsize=8)
    ax_eval.grid(alpha=0.3)

    n_ran = report["success"]["ran"]
    times = sorted(r["solve_wall_s"] for r in report["seeds"] if r["solved"] and r["solve_wall_s"] is not None)
    if n_ran:
        ends = [r["total_wall_s"] for r in report["seeds"] if r["total_wall_s"] is not None]
        x_end = max([*times, *ends, 1.0])
        # Step function from (0, 0): each solve lifts the curve by 1/n_ran; unsolved seeds never do.
        xs = [0.0, *times, x_end]
        ys = [0.0, *[(i + 1) / n_ran for i in range(len(times))], len(times) / n_ran]
        ax_prof.step(xs, ys, where="post", color="tab:blue", lw=1.5)
        ax_prof.set_xlim(0, x_end * 1.02)
    else:
        ax_prof.text(0.5, 0.5, "no seed ran to a clean end", ha="center", va="center",
                     transform=ax_prof.transAxes)
    ax_prof.set(xlabel="wall time from process start (s)", ylabel="fraction of seeds solved",
                title=f"Performance profile ({len(times)}/{n_ran} seeds solved)", ylim=(0, 1.02))
    ax_prof.grid(alpha=0.3)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    # No abbreviations: a trainer flag must never be taken as a prefix of one of ours.
    parser = argparse.ArgumentParser(
        description="Train cartpole.py over many seeds in parallel and write a statistical report. "
                    "Unrecognised flags (and anything after --) are passed to every child.",
        allow_abbrev=False)
    parser.add_argument("--seeds", default="0-9", help="Seeds, e.g. 0-19, 3, 0,2,5 or 0-4,10-12 (default 0-9).")
    parser.add_argument("--log-dir", default=None, help="Output directory (default runs/multiseed-<timestamp>).")
    parser.add_argument("--workers", type=int, default=None, help="Seeds run at once (default: CPU count).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar or messages.")
    parser.add_argument("--report-only", action="store_true",
                        help="Only (re)write the report from an existing --log-dir.")
    args, unknown = parser.parse_known_args(argv)
    train_args = [*unknown, *passthrough]

    if args.report_only:
        if not args.log_dir or not Path(args.log_dir).is_dir():
            parser.error("--report-only needs an existing --log-dir")
        write_report(args.log_dir)
        print(Path(args.log_dir) / REPORT_MD)
        return 0
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as e:
        parser.error(str(e))
    log_dir = Path(args.log_dir or Path("runs") / time.strftime("multiseed-%Y%m%d-%H%M%S"))
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        run_log.atomic_write_text(log_dir / ".write-test", "ok\n")
        os.unlink(log_dir / ".write-test")
    except OSError as e:
        print(f"error: log dir {log_dir} is not writable: {e.strerror or e}", file=sys.stderr)
        return 2

    # A polite `kill` of the runner should stop the children too, just like Ctrl-C.
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        code = run_seeds(seeds, log_dir, train_args, workers=args.workers, quiet=args.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; partial report in {log_dir / REPORT_MD}", file=sys.stderr)
        return 130
    if not args.quiet:
        rep = json.loads((log_dir / REPORT_JSON).read_text())
        s, t = rep["success"], rep["solve_wall_s"]
        med = t["median"]["value"]
        print(f"solved {s['solved']}/{s['ran']}"
              + (f", median time to solve {med:.1f} s" if med is not None else "")
              + f"; report: {log_dir / REPORT_MD}")
    return code


if __name__ == "__main__":
    sys.exit(main())
