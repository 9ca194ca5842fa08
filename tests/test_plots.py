"""The training figure: every panel draws the rows it is given, and the PNG shows exactly that.

The figure is checked through its data, not its pixels: `plots.draw_training` draws onto a
matplotlib Figure, whose Line2D and error-bar artists are read back and compared with the input
rows. The PNG written by `plot_training` is decoded and compared pixel for pixel with the
figure of the rows it should show, drawn by the test on its own canvas (Agg is deterministic).
"""
from __future__ import annotations

import math
import sys

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from outputs import plots


def rows(n: int) -> tuple[list[dict], list[dict]]:
    metrics = [{"wall_s": 3 + 0.05 * i, "env_steps": 1024 * (i + 1), "learn_steps": 16 * i,
                "epsilon": max(0.01, 1 - i / 20), "lr": 5e-3, "beta": 0.5 + i / 400,
                "loss": 0.02 + 0.01 * math.sin(i) if i else None, "mean_q": i * 0.5,
                "doomed_max_q": 1 + 0.1 * i if i > 2 else None, "action_gap": 2.0 / (1 + i),
                "episodes": 10 * i, "train_return_mean": min(500, 10 + 5 * i),
                "train_return_max": min(500, 20 + 8 * i), "steps_per_s": 20000 + 10 * i,
                "rss_mb": 900 + i * 0.1} for i in range(n)]
    evals = [{"round": r + 1, "wall_s": 3 + r, "env_steps": 2048 * (r + 1), "mean": min(500, 50 * r),
              "min": min(500, 40 * r), "max": min(500, 60 * r), "at_500": 64 if r > 8 else 0,
              "episodes": 64, "passed": int(r > 8), "consecutive": max(0, r - 8)} for r in range(12)]
    return metrics, evals


# --- reading the drawn figure back -----------------------------------------------------------
def drawn(metrics: list[dict], evals: list[dict], title: str = "") -> Figure:
    fig = Figure(figsize=plots.FIGSIZE, dpi=plots.DPI)
    plots.draw_training(fig, metrics, evals, title)
    return fig


def panel(fig: Figure, title: str):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def line(ax, label: str) -> tuple[np.ndarray, np.ndarray]:
    (found,) = [ln for ln in ax.lines if ln.get_label() == label]
    return np.asarray(found.get_xdata(), float), np.asarray(found.get_ydata(), float)


def column(rows_: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) in (None, "") else float(r[key]) for r in rows_])


def eval_points(ax, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, bar bottom, bar top) of the evaluation error-bar series named `label`."""
    (container,) = [c for c in ax.containers if c.get_label() == label]
    data_line, _caps, (bars,) = container.lines
    segments = np.array([np.asarray(s) for s in bars.get_segments()])  # [n, 2 ends, (x, y)]
    return (np.asarray(data_line.get_xdata(), float), np.asarray(data_line.get_ydata(), float),
            segments[:, 0, 1], segments[:, 1, 1])


def no_data_panels(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if any(t.get_text() == "no data yet" for t in ax.texts)]


PNG_SIZE = (int(plots.FIGSIZE[0] * plots.DPI), int(plots.FIGSIZE[1] * plots.DPI))


def canvas_pixels(metrics: list[dict], evals: list[dict], title: str = "",
                  fig: Figure | None = None) -> np.ndarray:
    """The figure of these rows as RGB pixels, drawn here on an Agg canvas: not through
    render_png (which plot_training calls, so comparing with it would prove nothing). Given
    `fig`, a figure drawn before, it is drawn again in place (`reuse`, as the live window does)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    reuse = fig is not None
    fig = fig if reuse else Figure(figsize=plots.FIGSIZE, dpi=plots.DPI)
    canvas = fig.canvas if reuse else FigureCanvasAgg(fig)
    plots.draw_training(fig, metrics, evals, title, reuse=reuse)
    fig.subplots_adjust(**plots.PNG_MARGINS)  # the saved figure's fixed margins
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def assert_png_shows(path, metrics: list[dict], evals: list[dict], title: str = "") -> None:
    """The file is the full-size figure of exactly these rows: decoded, its pixels are those of
    the figure drawn independently from the same rows, and not those of one row fewer."""
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == PNG_SIZE
        shown = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(shown, canvas_pixels(metrics, evals, title), "PNG shows other rows")
    assert not np.array_equal(shown, canvas_pixels(metrics[:-1], evals, title))
    assert not np.array_equal(shown, canvas_pixels(metrics, evals[:-1], title))


def test_redrawing_a_figure_in_place_gives_the_pixels_of_a_fresh_one():
    """The live window redraws its figure in place (`reuse`: same axes, new contents). Through
    a run's stages (no rows, one, a few, smoothing, evaluation bars, the loss going from a log
    axis to a linear one, the learning rate from a linear axis to a log one and back, fewer
    rows again) every redraw must show exactly what a fresh figure of the same rows shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    metrics, evals = rows(60)
    metrics[40]["loss"] = 0.0  # from here on the loss panel cannot be logarithmic
    for r in metrics[45:]:
        r["lr"] = 1e-5  # a decay past 20x: the learning-rate axis turns logarithmic
    live = Figure(figsize=plots.FIGSIZE, dpi=plots.DPI)
    FigureCanvasAgg(live)
    for n, m in ((0, 0), (1, 0), (3, 1), (35, 6), (41, 8), (50, 12), (20, 3)):
        fresh = canvas_pixels(metrics[:n], evals[:m], "t")
        again = canvas_pixels(metrics[:n], evals[:m], "t", fig=live)
        assert np.array_equal(again, fresh), f"the redraw of {n} rows differs from a fresh figure"
    assert len(live.axes) == len(drawn(metrics[:20], evals[:3]).axes)


# --- the panels --------------------------------------------------------------------------------
def test_returns_panel_draws_training_rows_and_eval_means_with_min_max_bars():
    m, e = rows(80)
    ax = panel(drawn(m, e), "Episode return")
    steps = column(m, "env_steps")
    for label, key in (("train mean", "train_return_mean"), ("train max", "train_return_max")):
        x, y = line(ax, label)
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_array_equal(y, column(m, key))
    passed = np.array([r["passed"] == 1 for r in e])
    for label, rows_ in (("eval mean, min..max", passed == 0), ("eval passed", passed)):
        x, y, bottom, top = eval_points(ax, label)
        chosen = [r for r, keep in zip(e, rows_) if keep]
        np.testing.assert_array_equal(x, column(chosen, "env_steps"))
        np.testing.assert_array_equal(y, column(chosen, "mean"))
        np.testing.assert_allclose(bottom, column(chosen, "min"))
        np.testing.assert_allclose(top, column(chosen, "max"))


def test_loss_and_q_panels_draw_the_raw_rows_and_a_trend_inside_their_range():
    m, _ = rows(80)
    fig = drawn(m, [])
    steps = column(m, "env_steps")
    for title, label, key in (("TD loss", "loss", "loss"), ("Q values and collapse warnings", "mean Q", "mean_q")):
        ax = panel(fig, title)
        want = column(m, key)
        ok = np.isfinite(want)  # the first row has no loss yet
        x, y = line(ax, f"{label} (raw)")
        np.testing.assert_array_equal(x, steps[ok])
        np.testing.assert_allclose(y, want[ok])
        xs, ys = line(ax, f"{label} (smoothed)")
        np.testing.assert_array_equal(xs, steps[ok])
        assert np.all((ys >= want[ok].min() - 1e-12) & (ys <= want[ok].max() + 1e-12))
        assert np.std(ys) < np.std(want[ok])  # a moving average is smoother than the raw series
    # Loss is positive, so it gets a log axis; mean Q starts at 0 and stays linear.
    assert panel(fig, "TD loss").get_yscale() == "log"
    assert panel(fig, "Q values and collapse warnings").get_yscale() == "linear"


def test_schedule_and_wall_time_panels_draw_their_columns():
    m, _ = rows(80)
    m[40:] = [{**r, "lr": 1e-3} for r in m[40:]]
    fig = drawn(m, [])
    steps = column(m, "env_steps")
    schedules = panel(fig, "Schedules")
    for label, key in (("epsilon", "epsilon"), ("PER beta", "beta")):
        x, y = line(schedules, label)
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_allclose(y, column(m, key))
    # The learning rate has its own (twin) axis.
    (twin,) = [ax for ax in fig.axes if any(ln.get_label() == "learning rate" for ln in ax.lines)]
    assert twin is not schedules
    x, y = line(twin, "learning rate")
    np.testing.assert_array_equal(x, steps)
    np.testing.assert_allclose(y, column(m, "lr"))
    # Wall time under 3 minutes is shown in seconds.
    for title, key in (("Throughput", "steps_per_s"), ("Memory (RSS)", "rss_mb")):
        ax = panel(fig, title)
        (ln,) = ax.lines
        np.testing.assert_allclose(ln.get_xdata(), column(m, "wall_s"))
        np.testing.assert_allclose(ln.get_ydata(), column(m, key))
        assert ax.get_xlabel() == "wall time (s)"


def test_long_runs_switch_the_wall_axis_to_minutes():
    m, _ = rows(30)
    for r in m:
        r["wall_s"] *= 100  # up to ~1,750 s
    ax = panel(drawn(m, []), "Throughput")
    np.testing.assert_allclose(ax.lines[0].get_xdata(), column(m, "wall_s") / 60)
    assert ax.get_xlabel() == "wall time (min)"


def test_headline_reports_progress_best_eval_and_pass():
    m, e = rows(80)
    head = drawn(m, e, title="seed 0")._suptitle.get_text()
    assert head.startswith("seed 0\n")
    assert "env steps 81,920" in head and "episodes 790" in head and "wall 7 s" in head
    assert "best eval mean 500.0" in head and "PASSED" in head
    e_failing = [{**r, "passed": 0} for r in e[:5]]
    head = drawn(m, e_failing)._suptitle.get_text()
    assert "best eval mean 200.0" in head and "PASSED" not in head


# --- odd inputs --------------------------------------------------------------------------------
def test_q_panel_draws_the_collapse_diagnostics_from_the_rows():
    m, e = rows(30)
    ax = panel(drawn(m, e), "Q values and collapse warnings")
    x, y = line(ax, "max Q, doomed states")
    kept = [r for r in m if r["doomed_max_q"] is not None]  # a run has none until a failure
    np.testing.assert_array_equal(x, [r["env_steps"] for r in kept])
    np.testing.assert_allclose(y, [r["doomed_max_q"] for r in kept])
    (gap_ax,) = [a for a in ax.figure.axes if any(ln.get_label() == "action gap" for ln in a.lines)]
    assert gap_ax is not ax, "the action gap has its own axis (its scale is far below Q's)"
    x, y = line(gap_ax, "action gap")
    np.testing.assert_allclose(y, [r["action_gap"] for r in m])


def test_empty_rows_give_six_no_data_panels():
    fig = drawn([], [])
    assert sorted(no_data_panels(fig)) == sorted(["Episode return", "TD loss", "Q values and collapse warnings",
                                                  "Schedules", "Throughput", "Memory (RSS)"])
    assert not any(ax.containers for ax in fig.axes)


def test_single_row_is_drawn_as_a_marked_point():
    m, _ = rows(1)
    fig = drawn(m, [])
    ax = panel(fig, "Episode return")
    (mean_line,) = [ln for ln in ax.lines if ln.get_label() == "train mean"]
    assert mean_line.get_marker() == "o"  # a lone point would be invisible as a bare line
    np.testing.assert_array_equal(mean_line.get_xydata(), [[1024.0, 10.0]])
    # The first row has no loss yet: that panel alone says so.
    assert no_data_panels(fig) == ["TD loss"]


def test_missing_and_nan_values_are_left_out_point_by_point():
    m, e = rows(10)
    for r in m[::2]:
        r["loss"], r["mean_q"], r["rss_mb"] = float("nan"), None, None
        del r["steps_per_s"]
    e[0]["mean"] = None
    fig = drawn(m, e)
    steps = column(m, "env_steps")
    x, y = line(panel(fig, "TD loss"), "loss")
    np.testing.assert_array_equal(x, steps[1::2])
    np.testing.assert_allclose(y, column(m, "loss")[1::2])
    x, _ = line(panel(fig, "Q values and collapse warnings"), "mean Q")
    np.testing.assert_array_equal(x, steps[1::2])
    (ln,) = panel(fig, "Throughput").lines
    np.testing.assert_allclose(ln.get_ydata(), column(m, "steps_per_s")[1::2])
    # An evaluation without a mean is not drawn; the others are.
    x, y, _, _ = eval_points(panel(fig, "Episode return"), "eval mean, min..max")
    np.testing.assert_array_equal(x, column(e[1:9], "env_steps"))
    np.testing.assert_array_equal(y, column(e[1:9], "mean"))


def test_rows_read_back_from_csv_draw_the_same_data(tmp_path):
    # Re-plotting a finished run reads the CSVs, where every value is a string ("" if missing).
    from common import metrics
    from common import run_log
    m, e = rows(30)
    m[3]["loss"] = None
    (tmp_path / "m.csv").write_text(run_log.csv_text(metrics.METRICS_COLUMNS, m))
    (tmp_path / "e.csv").write_text(run_log.csv_text(metrics.EVAL_COLUMNS, e))
    m_csv, e_csv = run_log.read_csv(tmp_path / "m.csv"), run_log.read_csv(tmp_path / "e.csv")
    assert isinstance(e_csv[0]["passed"], str)
    from_dicts, from_csv = drawn(m, e), drawn(m_csv, e_csv)
    for title in ("Episode return", "TD loss", "Q values and collapse warnings", "Schedules", "Throughput"):
        a, b = panel(from_dicts, title), panel(from_csv, title)
        assert [ln.get_label() for ln in a.lines] == [ln.get_label() for ln in b.lines], title
        for la, lb in zip(a.lines, b.lines):
            # The CSV keeps 6 significant digits.
            np.testing.assert_allclose(lb.get_xydata(), la.get_xydata(), rtol=1e-5, err_msg=title)
    ret = panel(from_csv, "Episode return")
    x, y, _, _ = eval_points(ret, "eval passed")  # "1"/"0" strings are read as flags
    np.testing.assert_array_equal(x, column(e[9:], "env_steps"))


# --- files ---------------------------------------------------------------------------------------
def test_plot_training_writes_the_figure_of_its_rows(tmp_path):
    m, e = rows(80)
    plots.plot_training(m, e, tmp_path / "f.png", title="seed 0")
    assert_png_shows(tmp_path / "f.png", m, e, "seed 0")
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"], "temp file left behind"


def test_importing_plots_does_not_import_matplotlib():
    # plots is on the trainer's start-up path; matplotlib costs ~0.3 s to import.
    import subprocess
    code = "import sys; from outputs import plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=plots.__file__.rsplit("/", 2)[0])
    assert out.stdout.strip() == "False", out.stderr


