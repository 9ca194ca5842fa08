"""The layout of a multi-seed log directory, and what one seed's directory says about its run.

    <log_dir>/multiseed.json     the runner's manifest: what it started and how each process ended
    <log_dir>/seed_<n>/          one trainer run (`cartpole.py --log-dir seed_<n>`), plus
    <log_dir>/seed_<n>/output.log  that process's stdout and stderr

Two files describe each seed. The child's `summary.json` says what the run learned; the
runner's manifest says whether the process itself finished cleanly, which a child cannot report
about itself when it is killed. A seed counts as having run only if both agree: a summary
written by this run and an exit code of 0 (solved) or 3 (budget used up unsolved).

Written by `multiseed.py` (the runner), read by it and by `seeds_report.py`. Reading only here:
no statistics, no rendering.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common import run_log
from experiments.stats import finite_or_none

MANIFEST_JSON = "multiseed.json"
OUTPUT_LOG = "output.log"
SEED_DIR_PREFIX = "seed_"
EXIT_SOLVED, EXIT_UNSOLVED = 0, 3
CLEAN_EXITS = (EXIT_SOLVED, EXIT_UNSOLVED)
TAIL_LINES = 20
#: Summary fields copied into the report for each seed, each a finite number or None. The
#: post-solve fields count evaluation rounds after the solve (with --keep-training): they say
#: whether a solved agent stays solved.
#: `champion_post_solve_pass_fraction` is the same share for the delivered model (best.keras)
#: replayed on those rounds' episodes; `post_solve_pass_fraction` is the learner's.
NUMBER_FIELDS = ("confirm_mean_return", "total_wall_s", "total_env_steps", "post_solve_rounds",
                 "post_solve_passed", "post_solve_pass_fraction", "champion_post_solve_pass_fraction")


def seed_dir(log_dir: str | os.PathLike, seed: int) -> Path:
    return Path(log_dir) / f"{SEED_DIR_PREFIX}{seed}"


def load_json(path: Path) -> Any:
    """The parsed file, or None if it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_manifest(log_dir: Path) -> tuple[dict[str, Any], bool]:
    """The runner manifest's per-seed entries (keyed by seed as a string) and its interrupted flag."""
    manifest = load_json(log_dir / MANIFEST_JSON)
    if not isinstance(manifest, dict):
        return {}, False
    entries = manifest.get("seeds", {})
    return (entries if isinstance(entries, dict) else {}), bool(manifest.get("interrupted"))


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 64_000) -> list[str]:
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


def fresh_summary(sdir: Path, started: float | None) -> dict[str, Any] | None:
    """summary.json if it parses and (when the start time is known) was written by this run.

    A rerun into an old log dir leaves the previous summary in place until the child rewrites
    it; a child that dies first must not inherit its predecessor's result. The one-second slack
    covers filesystems with coarse mtimes.
    """
    path = sdir / run_log.SUMMARY_JSON
    summary = load_json(path)
    if not isinstance(summary, dict):
        return None
    if started is not None:
        try:
            if path.stat().st_mtime < started - 1.0:
                return None
        except OSError:
            return None
    return summary


def read_eval(sdir: Path) -> list[tuple[float, float]]:
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


def post_solve_min_mean(sdir: Path, summary: dict[str, Any]) -> float | None:
    """The lowest round mean among the evaluation rounds after the solve, from eval.csv.

    The solving round is the row whose env_steps equals the summary's solve_env_steps; the
    post-solve rounds are the rows numbered after it. None when the run did not solve, had no
    post-solve round, or eval.csv does not hold exactly the summary's `post_solve_rounds` rows
    after the solve (a partial file cannot tell the lowest).
    """
    solve_steps, n_post = finite_or_none(summary.get("solve_env_steps")), summary.get("post_solve_rounds")
    if not summary.get("solved") or solve_steps is None or not n_post:
        return None
    try:
        rows = run_log.read_csv(sdir / run_log.EVAL_CSV)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    parsed = [(finite_or_none(r.get("round")), finite_or_none(r.get("env_steps")),
               finite_or_none(r.get("mean"))) for r in rows]
    solve_rounds = [rnd for rnd, steps, _ in parsed if rnd is not None and steps == solve_steps]
    if len(solve_rounds) != 1:
        return None
    after = [m for rnd, _, m in parsed if rnd is not None and rnd > solve_rounds[0]]
    if len(after) != n_post or any(m is None for m in after):
        return None
    return min(after)


def discover_seeds(log_dir: Path) -> set[int]:
    """Seeds that have a `seed_<n>` directory, whether or not the runner's manifest lists them."""
    found = set()
    for p in log_dir.glob(f"{SEED_DIR_PREFIX}*"):
        rest = p.name[len(SEED_DIR_PREFIX):]
        if p.is_dir() and rest.isdigit():
            found.add(int(rest))
    return found


def _exit_code(entry: dict[str, Any], state: Any, summary: dict[str, Any] | None) -> Any:
    """The runner saw the process end, so its exit code beats the one the child wrote about itself."""
    exit_code = entry.get("exit_code")
    if exit_code is None and summary is not None and state not in ("interrupted", "failed"):
        exit_code = summary.get("exit_code")
        if exit_code is None:  # older summaries: infer from the result
            exit_code = EXIT_SOLVED if summary.get("solved") else EXIT_UNSOLVED
    return exit_code


def _status(sdir: Path, entry: dict[str, Any], state: Any, summary: dict[str, Any] | None,
            exit_code: Any) -> tuple[str, str]:
    """(solved / unsolved / crashed / missing, a note saying why when it is not a clean run)."""
    if state in ("pending", "running", "not started") or (not sdir.is_dir() and not entry):
        return "missing", f"never finished ({state})" if state else "no seed directory"
    if state == "interrupted":
        return "missing", "interrupted by Ctrl-C"
    if summary is not None and exit_code in CLEAN_EXITS:
        return ("solved" if summary.get("solved") else "unsolved"), ""
    if entry.get("error"):
        return "crashed", entry["error"]
    if summary is None:
        stale = (sdir / run_log.SUMMARY_JSON).exists()
        return "crashed", "stale or unreadable summary.json" if stale else "no summary.json"
    return "crashed", f"exit code {exit_code}"


def seed_outcome(log_dir: Path, seed: int, entry: dict[str, Any] | None) -> dict[str, Any]:
    """Classify one seed as solved / unsolved / crashed / missing, with what is known about it."""
    sdir = seed_dir(log_dir, seed)
    entry = entry or {}
    state = entry.get("state")
    summary = fresh_summary(sdir, entry.get("started")) if sdir.is_dir() else None
    if state == "running" and summary is not None:
        # The runner itself died (e.g. kill -9) before seeing this child end; the child's own
        # summary is then the best account there is.
        entry, state = {}, None
    exit_code = _exit_code(entry, state, summary)
    status, note = _status(sdir, entry, state, summary, exit_code)
    failed = status in ("crashed", "missing")
    lines = entry.get("tail")
    if failed and not lines:
        lines = tail(sdir / OUTPUT_LOG)
    s = summary or {}
    solved = status == "solved"
    return {
        "seed": seed, "status": status, "solved": solved,
        "solve_wall_s": finite_or_none(s.get("solve_wall_s")) if solved else None,
        "solve_env_steps": finite_or_none(s.get("solve_env_steps")) if solved else None,
        **{k: finite_or_none(s.get(k)) for k in NUMBER_FIELDS},
        "post_solve_min_mean": post_solve_min_mean(sdir, s) if solved else None,
        "exit_code": exit_code, "stop_reason": s.get("stop_reason"), "note": note,
        "tail": (lines or []) if failed else [],
    }
