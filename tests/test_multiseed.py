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
              rounds: int = 6, post_solve: tuple[int, int] | None = None,
              post_means: list[float] | None = None, champion_passed: int | None = None) -> None:
    """A seed dir as the trainer leaves it.

    Like the trainer: the solve round is the eval.csv row whose env_steps equals
    solve_env_steps, and `post_solve` = (rounds passed, rounds) adds that many rows after it
    (their means `post_means`, else 500 for a pass and 480 for a fail), with the summary's
    post-solve fields counted from those rows. `champion_passed` is how many of them the
    delivered model passed on replay. Without `post_solve` the summary says what a plain run
    now says: 0 post-solve rounds, no shares.
    """
    d = log_dir / f"seed_{seed}"
    d.mkdir(parents=True)
    total_steps = solve_env_steps or 200_000
    passed_after, n_after = post_solve if post_solve is not None and solved else (0, 0)
    step = total_steps // rounds
    rows = []
    for i in range(rounds):
        frac = (i + 1) / rounds
        mean = 500.0 if solved and i >= rounds - 3 else 20 + 400 * frac * (0.5 if not solved else 1)
        rows.append({"env_steps": total_steps if i == rounds - 1 else step * (i + 1), "mean": mean,
                     "passed": int(mean == 500)})
    means = post_means or [500.0] * passed_after + [480.0] * (n_after - passed_after)
    for j, mean in enumerate(means):
        rows.append({"env_steps": total_steps + (j + 1) * step, "mean": mean,
                     "passed": int(j < passed_after)})
    consecutive = 0
    for i, r in enumerate(rows):
        consecutive = consecutive + 1 if r["passed"] else 0
        r.update(round=i + 1, wall_s=1.0 + i, learn_steps=r["env_steps"] // 64, episodes=64,
                 min=min(r["mean"], 500.0 if r["passed"] else 10.0), max=500.0,
                 at_500=64 if r["passed"] else 50, consecutive=consecutive)
    post = n_after > 0
    summary = {
        "solved": solved, "solve_wall_s": solve_wall_s if solved else None,
        "solve_env_steps": solve_env_steps if solved else None,
        "solve_learn_steps": (solve_env_steps // 64 if solved else None),
        "confirm_mean_return": 500.0 if solved else None, "confirm_episodes": 100 if solved else 0,
        "confirm_at_500": 100 if solved else 0, "total_wall_s": (solve_wall_s or 90.0) + 5.0,
        "total_env_steps": rows[-1]["env_steps"], "total_learn_steps": rows[-1]["env_steps"] // 64,
        "eval_rounds": len(rows), "stop_reason": "solved" if solved else "max_env_steps",
        "exit_code": (0 if solved else 3) if exit_code is None else exit_code,
        "seed": seed, "peak_rss_mb": 700.0,
        "post_solve_rounds": n_after, "post_solve_passed": passed_after,
        "post_solve_pass_fraction": passed_after / n_after if post else None,
        "champion_post_solve_pass_fraction": (
            (n_after if champion_passed is None else champion_passed) / n_after if post else None),
        "best_model_env_steps": solve_env_steps if solved else None,
    }
    run_log.atomic_write_json(d / run_log.SUMMARY_JSON, summary)
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
    """Every staying-solved figure the README quotes, from the seeds' summaries and eval.csv."""
    log = tmp_path / "keep"
    post = {0: (40, 40), 1: (30, 40), 2: (9, 12), 3: (0, 20), 4: (100, 101), 7: (99, 100)}
    lows = {0: 500.0, 1: 480.0, 2: 480.0, 3: 480.0, 4: 120.5, 7: 455.0}
    for seed, ps in post.items():
        passed, n = ps
        means = [500.0] * passed + [lows[seed]] * (n - passed) if seed in (4, 7) else None
        make_seed(log, seed, True, 30.0 + seed, 50_000 + 1024 * seed, post_solve=ps, post_means=means,
                  champion_passed=n - (seed == 3))
    make_seed(log, 5, False, post_solve=(3, 4))  # never solved: not part of staying solved
    make_seed(log, 6, True, 40.0, 60_000)        # a plain run: 0 post-solve rounds
    rep = write_report(log)
    st = rep["staying_solved"]
    fractions = [1.0, 0.75, 0.75, 0.0, 100 / 101, 0.99]
    assert (st["solved"], st["measured"], st["all_rounds_passed"]) == (7, 6, 1)
    assert st["at_threshold"] == 3  # seeds 0, 4 (100/101) and 7 (exactly 0.99 counts)
    assert st["pass_fraction"] == {"n": 6, "min": 0.0, "median": pytest.approx(np.median(fractions)),
                                   "mean": pytest.approx(np.mean(fractions)), "max": 1.0}
    assert (st["lowest_round_mean"], st["lowest_round_mean_seed"]) == (120.5, 4)
    assert st["round_mean_at_or_above"] == 5  # all but seed 4: a failed round can still mean >= 450
    assert st["champion_pass_fraction"]["min"] == pytest.approx(19 / 20)
    assert st["champion_at_threshold"] == 5
    by_seed = {r["seed"]: r for r in rep["seeds"]}
    assert by_seed[2]["post_solve_pass_fraction"] == 0.75 and by_seed[2]["post_solve_passed"] == 9
    assert by_seed[2]["post_solve_min_mean"] == 480.0 and by_seed[6]["post_solve_min_mean"] is None
    md = (log / "report.md").read_text()
    assert "## Staying solved" in md and "6 of the 7 solved seeds" in md
    assert "**Learner: 3/6 seeds passed >= 99% of their post-solve rounds** (1/6 passed every one)" in md
    assert "**Lowest post-solve round mean: 120.5 (seed 4; known for 6 of 6 seeds)**" in md
    assert "| 2 | 12 | 9 | 75.00% | 480.0 | 100.00% |" in md and "| 5 | 4 |" not in md and "| 6 | 0 |" not in md
    assert "| 3 | 20 | 0 | 0.00% | 480.0 | 95.00% |" in md
    assert "| 4 | 101 | 100 | 99.01% | 120.5 | 100.00% |" in md  # just above 99%, and shown so


def test_lowest_post_solve_mean_reads_only_rows_after_the_solve(tmp_path: Path):
    """The solve round and the rounds before it do not count, and a partial eval.csv gives no
    figure rather than a wrong one."""
    log = tmp_path / "keep"
    make_seed(log, 0, True, 30.0, 50_000, post_solve=(3, 3), rounds=6)  # pre-solve means go down to ~87
    make_seed(log, 1, True, 30.0, 50_000, post_solve=(2, 3), post_means=[500.0, 500.0, 470.0])
    path = log / "seed_1" / run_log.EVAL_CSV
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))  # last row lost
    rep = write_report(log)
    by_seed = {r["seed"]: r for r in rep["seeds"]}
    assert by_seed[0]["post_solve_min_mean"] == 500.0
    assert by_seed[1]["post_solve_min_mean"] is None
    assert rep["staying_solved"]["lowest_round_mean_known"] == 1


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
             "seed": a.seed, "peak_rss_mb": 1.0,
             # what a plain run (no --keep-training) writes: no round after the solve
             "post_solve_rounds": 0, "post_solve_passed": 0, "post_solve_pass_fraction": None,
             "champion_post_solve_pass_fraction": None,
             "best_model_env_steps": 10000 * (a.seed + 1) if solved else None}
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
    # Plain runs (no --keep-training) had no round after the solve: nothing to say about it.
    assert "Staying solved" not in (log / "report.md").read_text()

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
