"""The launcher's clock (setup_env.sh `_now`): the trainer's time origin, so it must keep a
fraction of a second on every bash, not only on bash >= 5 with EPOCHREALTIME."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT


def now_function() -> str:
    text = (ROOT / "setup_env.sh").read_text()
    match = re.search(r"^_now\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert match, "setup_env.sh has no _now function"
    return match.group(0)


def run_now(tmp_path, bsd_date: bool = False) -> float:
    """`_now` as an old bash sees it: no EPOCHREALTIME; with `bsd_date`, a `date` that, like
    macOS's, knows no %N and prints it as a literal N."""
    path = "/usr/bin:/bin"
    if bsd_date:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "date").write_text('#!/bin/sh\nexec /bin/date "$(echo "$1" | sed s/%N/N/)"\n')
        (fake / "date").chmod(0o755)
        path = f"{fake}:{path}"
    script = f"unset EPOCHREALTIME\n{now_function()}_now\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"PATH": path})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("bsd_date", [False, True], ids=["gnu date", "date without %N"])
def test_clock_keeps_a_fraction_without_epochrealtime(tmp_path, bsd_date):
    if bsd_date and shutil.which("perl") is None:
        pytest.skip("no perl here: whole seconds are all a date without %N can give")
    before = time.time()
    text = run_now(tmp_path, bsd_date)
    after = time.time()
    assert re.fullmatch(r"\d+\.\d{6,9}", text), text
    assert before - 0.01 <= float(text) <= after + 0.01
