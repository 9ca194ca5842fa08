"""Tests for multiseed.py (seed specs, the parallel runner) and seeds_report.py (the report).

No TensorFlow and no real training: the report is checked on hand-made seed directories against
NumPy computed here, and the runner drives a tiny fake trainer script written into tmp_path,
which sleeps, writes a plausible summary.json/eval.csv and exits 0, 3 or 1 depending on its seed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

from common import metrics  # noqa: E402
from common import run_log  # noqa: E402
from experiments.multiseed import parse_seeds, run_seeds  # noqa: E402
from experiments.seed_dirs import MANIFEST_JSON  # noqa: E402
from experiments.seeds_report import write_report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# parse_seeds
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("0-19", list(range(20))),
    ("3", [3]),
    ("0,2,5", [0, 2, 5]),
    ("0-4,10-12", [0, 1, 2, 3, 4, 10, 11, 12]),
    (" 7 - 9 , 1 ", [7, 8, 9, 1]),
    ("5-5", [5]),
    ("0-9999", list(range(10_000))),
])
def test_parse_seeds_good(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("1,,2", "empty item"),
    ("-3", "negative"),
    ("2--3", "negative"),
    ("5-2", "reversed"),
    ("0-10000", "more than"),
    ("0-999999999", "more than"),
    ("0-5,3", "more than once"),
    ("0-4,2-6", "more than once"),
    ("a", "bad seed item"),
    ("1.5", "bad seed item"),
    ("1-", "bad seed item"),
    ("3000000000", "too large"),
])
def test_parse_seeds_bad(spec, fragment):
    with pytest.raises(ValueError) as info:
        parse_seeds(spec)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------
# write_report on synthetic seed directories
# --------------------------------------------------------------------------------------------
def make_seed(log_dir: Path, seed: int, solved: bool, solve_wall_s: float | None = None,
              solve_env_steps: int | None = None, exit_code: int | None = None,
              rounds: int = 6, post_solve: tuple[int, int] | None = None) -> None:
    """A seed dir as the trainer leaves it; `post_solve` = (rounds passed, rounds) after the solve."""
    d = log_dir / f"seed_{seed}"
    d.mkdir(parents=True)
    total_steps = solve_env_steps or 200_000
    summary = {
        "solved": solved, "solve_wall_s": solve_wall_s if solved else None,
        "solve_env_steps": solve_env_steps if solved else None,
        "solve_learn_steps": (solve_env_steps // 64 if solved else None),
        "confirm_mean_return": 500.0 if solved else None, "confirm_episodes": 100 if solved else 0,
        "confirm_at_500": 100 if solved else 0, "total_wall_s": (solve_wall_s or 90.0) + 5.0,
        "total_env_steps": total_steps, "total_learn_steps": total_steps // 64,
        "eval_rounds": rounds, "stop_reason": "solved" if solved else "max_env_steps",
        "exit_code": (0 if solved else 3) if exit_code is None else exit_code,
        "seed": seed, "peak_rss_mb": 700.0,
    }
    if post_solve is not None:
        passed, n = post_solve
        summary.update(post_solve_rounds=n, post_solve_passed=passed,
                       post_solve_pass_fraction=passed / n if n else None)
    run_log.atomic_write_json(d / run_log.SUMMARY_JSON, summary)
    rows = []
    for i in range(rounds):
        frac = (i + 1) / rounds
        mean = 500.0 if solved and i >= rounds - 3 else 20 + 400 * frac * (0.5 if not solved else 1)
        rows.append({"round": i + 1, "wall_s": 10.0 * frac, "env_steps": int(total_steps * frac),
                     "learn_steps": int(total_steps * frac) // 64, "episodes": 64, "mean": mean,
                     "min": mean - 10, "max": min(500.0, mean + 10), "at_500": 64 if mean == 500 else 0,
                     "passed": int(mean == 500), "consecutive": max(0, i - rounds + 4) if solved else 0})
    run_log.atomic_write_text(d / run_log.EVAL_CSV, run_log.csv_text(metrics.EVAL_COLUMNS, rows))


def numpy_iqm(x) -> float:
    x = np.sort(np.asarray(x, float))
    cut = len(x) // 4  # floor(n/4) from each end, as rliable's trim_mean(0.25)
    return float(x[cut:len(x) - cut].mean())


SOLVE_TIMES = [41.0, 55.5, 38.2, 120.0, 47.9, 60.1]
SOLVE_STEPS = [90_112, 120_832, 81_920, 300_032, 102_400, 131_072]


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    """9 seed dirs: 6 solved, 2 unsolved (exit 3) and 1 that crashed without a summary."""
    log = tmp_path / "ms"
    for seed, (t, steps) in enumerate(zip(SOLVE_TIMES, SOLVE_STEPS)):
        make_seed(log, seed, True, t, steps)
    make_seed(log, 6, False)
    make_seed(log, 7, False)
    crashed = log / "seed_8"
    crashed.mkdir()
    (crashed / "output.log").write_text("starting\nTraceback (most recent call last):\nMemoryError\n")
    return log


def test_report_numbers_match_numpy(synthetic: Path):
    rep = write_report(synthetic)
    assert rep["n_seeds"] == 9
    assert rep["counts"] == {"solved": 6, "unsolved": 2, "crashed": 1, "missing": 0}
    assert rep["success"]["solved"] == 6 and rep["success"]["ran"] == 8
    assert rep["success"]["rate"] == pytest.approx(6 / 8)
    assert rep["success"]["rate_counting_failures"] == pytest.approx(6 / 9)

    for key, values in (("solve_wall_s", SOLVE_TIMES), ("solve_env_steps", SOLVE_STEPS)):
        m = rep[key]
        assert m["n"] == 6 and m["excluded_unsolved"] == 2
        assert m["median"]["value"] == pytest.approx(np.median(values))
        assert m["iqm"]["value"] == pytest.approx(numpy_iqm(values))
        assert m["min"] == min(values) and m["max"] == max(values)
        for est in (m["median"], m["iqm"]):
            assert est["ci_low"] <= est["value"] <= est["ci_high"]
            assert min(values) <= est["ci_low"] and est["ci_high"] <= max(values)
        # 6 solved + 2 unsolved as +inf: the median is the mean of the 4th and 5th sorted values.
        everything = np.sort(np.concatenate([values, [np.inf, np.inf]]))
        assert m["median_all_seeds"]["value"] == pytest.approx(np.median(everything))
        assert m["median_all_seeds"]["infinite"] is False

    by_seed = {r["seed"]: r for r in rep["seeds"]}
    assert by_seed[8]["status"] == "crashed" and "no summary.json" in by_seed[8]["note"]
    assert by_seed[6]["status"] == "unsolved" and by_seed[6]["exit_code"] == 3
    assert by_seed[3]["solve_wall_s"] == 120.0 and by_seed[3]["exit_code"] == 0
    fail = rep["failures"]
    assert [f["seed"] for f in fail] == [8] and fail[0]["tail"][-1] == "MemoryError"


def test_report_files_well_formed_and_reproducible(synthetic: Path):
    write_report(synthetic)
    first = (synthetic / "report.json").read_bytes()
    parsed = json.loads(first)
    assert parsed["success"]["solved"] == 6

    png = (synthetic / "report.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    import matplotlib.image as mpimg
    img = mpimg.imread(synthetic / "report.png")
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 600

    md = (synthetic / "report.md").read_text()
    assert "Success rate: 6/8 (75.0%)" in md
    assert "2 unsolved seed(s) excluded" in md
    assert "| seed | status | solved | time to solve (s) | env steps to solve | confirm mean | exit code | stop reason |" in md
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]
    assert len(table_rows) == 9
    assert "seed 8: crashed" in md and "MemoryError" in md
    assert not list(synthetic.glob(".*.tmp"))  # atomic writes leave no temporaries

    # Fixed bootstrap seed and no timestamps: regenerating gives the same bytes.
    write_report(synthetic)
    assert (synthetic / "report.json").read_bytes() == first


def test_report_small_and_failing_sets(tmp_path: Path):
    # Two solved out of five: point estimates only, and the all-seeds median is infinite.
    log = tmp_path / "few"
    make_seed(log, 0, True, 30.0, 50_000)
    make_seed(log, 1, True, 50.0, 70_000)
    for s in (2, 3, 4):
        make_seed(log, s, False)
    rep = write_report(log)
    m = rep["solve_wall_s"]
    assert m["median"] == {"value": 40.0, "ci_low": None, "ci_high": None}
    assert m["iqm"]["value"] == pytest.approx(40.0) and m["iqm"]["ci_low"] is None
    assert m["median_all_seeds"] == {"value": None, "infinite": True, "n": 5}
    md = (log / "report.md").read_text()
    assert "no CI" in md and "| inf |" in md

    # Nothing solved, and an empty directory: still a complete, valid report.
    log2 = tmp_path / "none"
    make_seed(log2, 0, False)
    rep2 = write_report(log2)
    assert rep2["success"]["rate"] == 0.0 and rep2["solve_wall_s"]["median"]["value"] is None
    assert (log2 / "report.png").read_bytes().startswith(PNG_MAGIC)
    empty = tmp_path / "empty"
    empty.mkdir()
    rep3 = write_report(empty)
    assert rep3["n_seeds"] == 0 and (empty / "report.png").read_bytes().startswith(PNG_MAGIC)


def test_report_describes_staying_solved(tmp_path: Path):
    """min/median/mean of each solved seed's post-solve pass fraction (issue 12's question)."""
    log = tmp_path / "keep"
    post = {0: (40, 40), 1: (30, 40), 2: (9, 12), 3: (0, 20), 4: (0, 0)}  # seed 4: no rounds after
    for seed, ps in post.items():
        make_seed(log, seed, True, 30.0 + seed, 50_000, post_solve=ps)
    make_seed(log, 5, False, post_solve=(3, 4))  # never solved: not part of staying solved
    make_seed(log, 6, True, 40.0, 60_000)        # summary without post-solve fields (older run)
    rep = write_report(log)
    st = rep["staying_solved"]
    fractions = [1.0, 0.75, 0.75, 0.0]
    assert (st["solved"], st["measured"], st["all_rounds_passed"]) == (6, 4, 1)
    assert st["pass_fraction"] == {"n": 4, "min": 0.0, "median": pytest.approx(np.median(fractions)),
                                   "mean": pytest.approx(np.mean(fractions)), "max": 1.0}
    assert st["post_solve_rounds"]["median"] == pytest.approx(np.median([40, 40, 12, 20]))
    by_seed = {r["seed"]: r for r in rep["seeds"]}
    assert by_seed[2]["post_solve_pass_fraction"] == 0.75 and by_seed[2]["post_solve_passed"] == 9
    md = (log / "report.md").read_text()
    assert "## Staying solved" in md and "4 of the 6 solved seeds" in md
    assert "| post-solve rounds passed | 0.0% | 75.0% | 62.5% | 100.0% |" in md
    assert "| 2 | 12 | 9 | 75.0% |" in md and "| 5 | 4 |" not in md


def test_report_without_post_solve_rounds_has_no_staying_solved_section(synthetic: Path):
    rep = write_report(synthetic)
    assert rep["staying_solved"]["measured"] == 0 and rep["staying_solved"]["pass_fraction"]["mean"] is None
    assert "Staying solved" not in (synthetic / "report.md").read_text()


def test_runner_record_overrides_child_summary(tmp_path: Path):
    """A killed child's exit code beats its summary; an old summary is not this run's result."""
    log = tmp_path / "ms"
    make_seed(log, 0, True, 10.0, 1000)   # summary says solved, but the process was killed
    make_seed(log, 1, True, 12.0, 1200)   # summary predates the run that was started
    make_seed(log, 2, True, 14.0, 1400)
    now = time.time()
    run_log.atomic_write_json(log / MANIFEST_JSON, {"seeds": {
        "0": {"state": "failed", "exit_code": -9, "started": now - 50, "error": "exit code -9", "tail": ["Killed"]},
        "1": {"state": "failed", "exit_code": 0, "started": now + 100, "error": "no summary.json written"},
        "2": {"state": "done", "exit_code": 0, "started": now - 50},
        "3": {"state": "not started"},
    }})
    rep = write_report(log)
    status = {r["seed"]: r["status"] for r in rep["seeds"]}
    assert status == {0: "crashed", 1: "crashed", 2: "solved", 3: "missing"}
    assert rep["success"] == {"solved": 1, "ran": 1, "rate": 1.0, "rate_counting_failures": 0.25}


# --------------------------------------------------------------------------------------------
# run_seeds with a fake trainer
# --------------------------------------------------------------------------------------------
FAKE_TRAINER = textwrap.dedent('''
    """Stand-in for cartpole.py: seed % 5 == 4 crashes, seed % 5 == 3 runs out of budget."""
    import argparse, json, os, sys, time
    from pathlib import Path

    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--log-dir", required=True)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--extra", default=None)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    start = time.time()
    d = Path(a.log_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "started.json").write_text(json.dumps({"pid": os.getpid(), "start": start}))
    print(f"fake trainer seed {a.seed}", flush=True)

    def summary(solved, code, reason):
        s = {"solved": solved, "solve_wall_s": 20.0 + a.seed if solved else None,
             "solve_env_steps": 10000 * (a.seed + 1) if solved else None, "solve_learn_steps": None,
             "confirm_mean_return": 500.0 if solved else None, "confirm_episodes": 100,
             "confirm_at_500": 100, "total_wall_s": 25.0 + a.seed, "total_env_steps": 50000,
             "total_learn_steps": 800, "eval_rounds": 3, "stop_reason": reason, "exit_code": code,
             "seed": a.seed, "peak_rss_mb": 1.0}
        (d / "summary.json").write_text(json.dumps(s))

    try:
        time.sleep(a.sleep)
    except KeyboardInterrupt:
        summary(False, 130, "interrupted")
        sys.exit(130)
    (d / "eval.csv").write_text("round,wall_s,env_steps,learn_steps,episodes,mean,min,max,at_500,passed,consecutive\\n"
                                "1,1.0,1000,10,64,120.0,90,200,0,0,0\\n2,2.0,2000,20,64,500,500,500,64,1,1\\n")
    (d / "probe.json").write_text(json.dumps({"argv": sys.argv[1:], "start": start, "end": time.time(),
                                              "tf_log": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}))
    if a.seed % 5 == 4:
        raise RuntimeError(f"boom in seed {a.seed}")
    if a.seed % 5 == 3:
        summary(False, 3, "max_env_steps")
        sys.exit(3)
    summary(True, 0, "solved")
''')


@pytest.fixture
def fake_trainer(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_cartpole.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script)]


def test_run_seeds_parallel_with_a_crash(tmp_path: Path, fake_trainer: list[str]):
    log = tmp_path / "ms"
    seeds = [0, 1, 2, 3, 4, 5]
    rc = run_seeds(seeds, log, ["--sleep", "0.6", "--extra", "x"], workers=2,
                   command=fake_trainer, quiet=True)
    assert rc == 1  # seed 4 crashed

    probes = {}
    for s in seeds:
        d = log / f"seed_{s}"
        assert (d / "output.log").is_file()
        assert (d / "probe.json").is_file()
        probes[s] = json.loads((d / "probe.json").read_text())
    p0 = probes[0]
    assert p0["argv"][:5] == ["--seed", "0", "--log-dir", str(log / "seed_0"), "--quiet"]
    assert p0["argv"][5:] == ["--sleep", "0.6", "--extra", "x"] and p0["tf_log"] == "2"

    # Two at a time: some intervals overlap, never three at once.
    events = sorted([(p["start"], 1) for p in probes.values()] + [(p["end"], -1) for p in probes.values()],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == 2

    rep = json.loads((log / "report.json").read_text())
    assert rep["counts"] == {"solved": 4, "unsolved": 1, "crashed": 1, "missing": 0}
    fail = rep["failures"][0]
    assert fail["seed"] == 4 and fail["exit_code"] == 1
    assert any("RuntimeError: boom in seed 4" in ln for ln in fail["tail"])
    manifest = json.loads((log / MANIFEST_JSON).read_text())
    assert manifest["seeds"]["4"]["state"] == "failed" and manifest["seeds"]["4"]["exit_code"] == 1
    assert "boom in seed 4" in (log / "seed_4" / "output.log").read_text()
    for name in ("report.json", "report.md", "report.png"):
        assert (log / name).is_file()

    # A second batch into the same directory adds to the record instead of replacing it.
    assert run_seeds([10, 11], log, [], workers=1, command=fake_trainer, quiet=True) == 0
    rep2 = json.loads((log / "report.json").read_text())
    assert rep2["n_seeds"] == 8 and rep2["counts"]["solved"] == 6


def test_rerun_into_a_dir_that_holds_the_seeds_runs(tmp_path: Path, fake_trainer: list[str]):
    """Same seeds again: refused before anything changes, unless --overwrite is passed on."""
    log = tmp_path / "ms"
    assert run_seeds([0, 1], log, [], workers=1, command=fake_trainer, quiet=True) == 0
    before = {p: p.read_bytes() for p in sorted(log.rglob("*")) if p.is_file()}
    with pytest.raises(ValueError, match=r"seed_1 in .* already holds a run;.*--overwrite") as info:
        run_seeds([1, 2], log, [], workers=1, command=fake_trainer, quiet=True)
    assert "seed_2" not in str(info.value) and "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in sorted(log.rglob("*")) if p.is_file()} == before
    assert not (log / "seed_2").exists()
    with pytest.raises(ValueError, match=r"^seed_0, seed_1 in .* already hold runs;"):
        run_seeds([0, 1], log, [], workers=1, command=fake_trainer, quiet=True)

    assert run_seeds([1, 2], log, ["--overwrite"], workers=1, command=fake_trainer, quiet=True) == 0
    probe = json.loads((log / "seed_1" / "probe.json").read_text())
    assert probe["argv"][-1] == "--overwrite"
    assert json.loads((log / "report.json").read_text())["counts"]["solved"] == 3


def test_run_seeds_rejects_bad_arguments(tmp_path: Path, fake_trainer: list[str]):
    with pytest.raises(ValueError, match="--seed"):
        run_seeds([0], tmp_path, ["--seed", "3"], command=fake_trainer)
    with pytest.raises(ValueError, match="--log-dir"):
        run_seeds([0], tmp_path, ["--log-dir=x"], command=fake_trainer)
    with pytest.raises(ValueError, match="workers"):
        run_seeds([0], tmp_path, [], workers=0, command=fake_trainer)
    with pytest.raises(ValueError, match="no seeds"):
        run_seeds([], tmp_path, [], command=fake_trainer)


def test_missing_executable_is_recorded(tmp_path: Path):
    rc = run_seeds([0], tmp_path, [], command=[str(tmp_path / "no-such-program")], quiet=True)
    assert rc == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["counts"]["crashed"] == 1 and "cannot start" in rep["failures"][0]["note"]


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_ctrl_c_stops_children_and_writes_partial_report(tmp_path: Path, fake_trainer: list[str]):
    log = tmp_path / "ms"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f'''
        import signal, sys
        # A shell may start us with SIGINT ignored; the test needs Python's normal Ctrl-C.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from experiments import multiseed
        multiseed.GRACE_SIGINT_S = 5.0
        try:
            multiseed.run_seeds([0, 1, 2], {str(log)!r}, ["--sleep", "60"], workers=2,
                                command={fake_trainer!r}, quiet=True)
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(0)
    '''))
    runner = subprocess.Popen([sys.executable, str(driver)])
    try:
        markers = [log / f"seed_{s}" / "started.json" for s in (0, 1)]
        deadline = time.monotonic() + 20
        while not all(m.is_file() for m in markers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(m.is_file() for m in markers), "children did not start"
        time.sleep(0.2)  # let both children settle into their sleep
        pids = [json.loads(m.read_text())["pid"] for m in markers]
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=15) == 130
    finally:
        if runner.poll() is None:
            runner.kill()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    rep = json.loads((log / "report.json").read_text())
    assert rep["interrupted"] is True
    assert rep["counts"]["missing"] == 3
    notes = {f["seed"]: f["note"] for f in rep["failures"]}
    assert "interrupted" in notes[0] and "not started" in notes[2]
    assert "Interrupted" in (log / "report.md").read_text()
    # The children took the clean-stop path (their own handler wrote a summary).
    assert json.loads((log / "seed_0" / "summary.json").read_text())["stop_reason"] == "interrupted"
