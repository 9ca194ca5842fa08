"""The training figure: a valid PNG for real, empty and partial data; LivePlot throttles."""
from __future__ import annotations

import math
import sys

from PIL import Image

import plots


def rows(n: int) -> tuple[list[dict], list[dict]]:
    metrics = [{"wall_s": 3 + 0.05 * i, "env_steps": 1024 * (i + 1), "learn_steps": 16 * i,
                "epsilon": max(0.01, 1 - i / 20), "lr": 5e-3, "beta": 0.5 + i / 400,
                "loss": 0.02 + 0.01 * math.sin(i) if i else None, "mean_q": i * 0.5,
                "episodes": 10 * i, "train_return_mean": min(500, 10 + 5 * i),
                "train_return_max": min(500, 20 + 8 * i), "steps_per_s": 20000 + 10 * i,
                "rss_mb": 900 + i * 0.1} for i in range(n)]
    evals = [{"round": r + 1, "wall_s": 3 + r, "env_steps": 2048 * (r + 1), "mean": min(500, 50 * r),
              "min": min(500, 40 * r), "max": min(500, 60 * r), "at_500": 64 if r > 8 else 0,
              "episodes": 64, "passed": int(r > 8), "consecutive": max(0, r - 8)} for r in range(12)]
    return metrics, evals


def assert_png(path, size=(int(plots.FIGSIZE[0] * plots.DPI), int(plots.FIGSIZE[1] * plots.DPI))):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.size == size


def test_realistic_rows(tmp_path):
    m, e = rows(80)
    plots.plot_training(m, e, tmp_path / "f.png", title="seed 0")
    assert_png(tmp_path / "f.png")


def test_empty_and_single_row(tmp_path):
    plots.plot_training([], [], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")
    m, _ = rows(1)
    plots.plot_training(m, [], tmp_path / "one.png")
    assert_png(tmp_path / "one.png")


def test_missing_and_nan_values(tmp_path):
    m, e = rows(10)
    for r in m[::2]:
        r["loss"], r["mean_q"], r["rss_mb"] = float("nan"), None, None
        del r["steps_per_s"]
    e[0]["mean"] = None
    plots.plot_training(m, e, tmp_path / "nan.png")
    assert_png(tmp_path / "nan.png")


def test_importing_plots_does_not_import_matplotlib():
    # plots is on the trainer's start-up path; matplotlib costs ~0.3 s to import.
    import subprocess
    code = "import sys, plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=plots.__file__.rsplit("/", 1)[0])
    assert out.stdout.strip() == "False", out.stderr


def test_liveplot_throttles_and_works_headless(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    m, e = rows(20)
    live = plots.LivePlot(tmp_path / "live.png", min_interval_s=60)
    assert live.update(m, e) is True
    first = (tmp_path / "live.png").stat().st_mtime_ns
    assert live.update(m, e) is False, "second update within the interval must not re-render"
    assert (tmp_path / "live.png").stat().st_mtime_ns == first
    assert live.update(m, e, force=True) is True
    assert live.renders == 2 and not live.live
    live.close()
    assert_png(tmp_path / "live.png")
    assert [p.name for p in tmp_path.iterdir()] == ["live.png"], "temp file left behind"


def test_liveplot_close_flushes_a_throttled_update(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    m, e = rows(20)
    # Asking for a window where there is no display falls back to the PNG instead of raising.
    live = plots.LivePlot(tmp_path / "live.png", live=True, min_interval_s=60)
    assert live.live is False
    live.update(m[:5], e[:1])
    live.update(m, e)  # throttled: only remembered
    assert live.renders == 1
    live.close()
    assert live.renders == 2
    assert_png(tmp_path / "live.png")


def test_unreachable_display_falls_back_to_png(tmp_path):
    # DISPLAY set but no X server: picking a GUI backend fails; it must not raise. A separate
    # process keeps pyplot's global backend switch out of this one.
    import os
    import subprocess
    code = ("import plots; lp = plots.LivePlot('live.png', min_interval_s=0); "
            "lp.update([{'env_steps': 1, 'train_return_mean': 9}], []); lp.close(); print(lp.live)")
    env = {**os.environ, "DISPLAY": ":97", "PYTHONPATH": os.path.dirname(plots.__file__)}
    env.pop("WAYLAND_DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert_png(tmp_path / "live.png")


def test_rows_read_back_from_csv(tmp_path):
    # Re-plotting a finished run reads the CSVs, where every value is a string ("" if missing).
    import run_log
    m, e = rows(30)
    m[3]["loss"] = None
    (tmp_path / "m.csv").write_text(run_log.csv_text(run_log.METRICS_COLUMNS, m))
    (tmp_path / "e.csv").write_text(run_log.csv_text(run_log.EVAL_COLUMNS, e))
    plots.plot_training(run_log.read_csv(tmp_path / "m.csv"), run_log.read_csv(tmp_path / "e.csv"),
                        tmp_path / "f.png")
    assert_png(tmp_path / "f.png")
