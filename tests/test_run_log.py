"""The log directory's writer: atomic, and files get the usual mode."""
from __future__ import annotations


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    from common import run_log
    run_log.atomic_write_text(tmp_path / "x.txt", "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~mask


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    import json

    from common import run_log
    target = tmp_path / "f.json"
    run_log.atomic_write_json(target, {"a": 1, "long": "x" * 200})
    run_log.atomic_write_json(target, {"a": float("nan"), "b": [1, 2]})
    # The shorter second write leaves nothing of the first behind; NaN becomes JSON null.
    assert json.loads(target.read_text()) == {"a": None, "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_process_start_time_lies_between_spawning_and_the_first_line():
    """The child's start must be after the parent asked for it and before the child's first
    line ran. psutil's create_time() fails this: it is early by the boot's fractional second.

    Ordering, not durations: the bounds only widen when the machine is busy. The one tolerance
    is the kernel's start tick (1/CLK_TCK, 10 ms), which the start time is rounded down to.
    """
    import json
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    code = ("import time; first_line = time.time(); import json; from common import run_log; "
            "print(json.dumps([first_line, run_log.process_start_time()]))")
    before_spawn = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    first_line, start = json.loads(out.stdout)
    assert before_spawn - 2 * tick <= start <= first_line, (before_spawn, start, first_line)
