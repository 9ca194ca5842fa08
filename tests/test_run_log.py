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
