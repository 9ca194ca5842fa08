"""The log directory's writer: atomic, and files get the usual mode."""
from __future__ import annotations


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    import run_log
    run_log.atomic_write_text(tmp_path / "x.txt", "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~mask


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    import run_log
    target = tmp_path / "f.json"
    run_log.atomic_write_json(target, {"a": 1})
    run_log.atomic_write_json(target, {"a": float("nan"), "b": [1, 2]})
    assert target.read_text().strip().startswith("{") and '"a": null' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_process_start_time_measures_from_exec():
    """A child that sleeps 0.3 s right after start must report ~0.3 s (+ its own start-up),
    not an extra boot-time rounding error of up to a second (psutil's create_time has one)."""
    import subprocess
    import sys

    from conftest import ROOT
    code = ("import time; time.sleep(0.3); import run_log; "
            "print(time.time() - run_log.process_start_time())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    elapsed = float(out.stdout)
    assert 0.28 <= elapsed <= 0.45, elapsed
