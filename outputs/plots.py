"""Training-progress figure: one PNG (or live window) summarising metrics.csv and eval.csv.

`plot_training` draws six panels: returns with evaluation rounds, loss, Q values with the
collapse diagnostics, the schedules (epsilon, beta, learning rate), throughput and memory;
`draw_training` draws them onto any figure, which is how the figure's own process
(live_view.py) shows them live and renders the final PNG.

This module sits on the trainer's start-up path, so matplotlib is imported lazily inside the
functions that need it; `import plots` stays cheap.
"""
from __future__ import annotations

import io
import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from common.run_log import atomic_write_bytes

if TYPE_CHECKING:  # only for annotations; never imported at run time here
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Figure size in inches and resolution; the PNG is FIGSIZE * DPI pixels, always.
FIGSIZE = (12.0, 7.0)
DPI = 110
#: The PNG's panel margins and gaps (figure fractions), room for the twin axes' labels.
PNG_MARGINS = {"left": 0.055, "right": 0.955, "bottom": 0.075, "top": 0.885, "wspace": 0.4,
               "hspace": 0.38}
#: CartPole-v1 episodes are truncated at this return, so it is the ceiling worth showing.
MAX_RETURN = 500.0


_C_TRAIN, _C_EVAL, _C_PASS = "tab:blue", "tab:orange", "tab:green"
_NO_DATA = "no data yet"


# --------------------------------------------------------------------------------------------
# Turning loosely typed rows into float arrays
# --------------------------------------------------------------------------------------------

def _num(value: Any) -> float:
    """A float, or NaN for anything missing or unparsable (rows may come straight from CSV)."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flag(value: Any) -> bool:
    """Truthiness that also understands the strings csv.DictReader hands back."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "1.0")
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _col(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([_num(r.get(key)) for r in rows], dtype=float)


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _smooth(y: np.ndarray) -> np.ndarray | None:
    """A centred moving average for noisy series, or None when there are too few points."""
    n = len(y)
    if n < 20:
        return None
    w = max(3, n // 25)
    kernel = np.ones(w) / w
    # Edge-pad so the average does not sag toward zero at both ends.
    padded = np.pad(y, (w // 2, w - 1 - w // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


# --------------------------------------------------------------------------------------------
# Axis helpers
# --------------------------------------------------------------------------------------------

def _fmt_count(v: float, _pos: Any = None) -> str:
    """Compact tick labels for step counts: 0, 500, 20k, 1.5M."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _time_unit(seconds: np.ndarray) -> tuple[float, str]:
    """Pick s/min/h so wall-time tick labels stay short and meaningful."""
    finite = seconds[np.isfinite(seconds)]
    top = float(finite.max()) if finite.size else 0.0
    if top >= 3 * 3600:
        return 3600.0, "h"
    if top >= 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _line_style(n: int) -> dict[str, Any]:
    # A lone point (or a handful) is invisible as a bare line, so mark the vertices.
    return {"marker": "o", "markersize": 3} if n <= 30 else {}


def _no_data(ax: "Axes") -> None:
    ax.text(0.5, 0.5, _NO_DATA, transform=ax.transAxes, ha="center", va="center",
            color="0.55", fontsize=11, style="italic")


def _steps_axis(ax: "Axes") -> None:
    from matplotlib.ticker import FuncFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_count))
    ax.set_xlabel("env steps")


def _series_panel(ax: "Axes", x: np.ndarray, y: np.ndarray, color: str, label: str,
                  log_if_positive: bool = False) -> bool:
    """Raw series (faint when a smoothed trend is drawn over it). Returns False if empty."""
    x, y = _finite(x, y)
    if not x.size:
        _no_data(ax)
        return False
    use_log = log_if_positive and bool(np.all(y > 0))
    trend = _smooth(np.log(y) if use_log else y)
    if trend is None:
        ax.plot(x, y, color=color, lw=1.4, label=label, **_line_style(len(x)))
    else:
        ax.plot(x, y, color=color, lw=0.8, alpha=0.3, label=f"{label} (raw)")
        # Average in log space on a log axis so a few spikes do not dominate the trend.
        ax.plot(x, np.exp(trend) if use_log else trend, color=color, lw=1.8,
                label=f"{label} (smoothed)")
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    if use_log:
        ax.set_yscale("log")
    return True


# --------------------------------------------------------------------------------------------
# The six panels
# --------------------------------------------------------------------------------------------

def _panel_returns(ax: "Axes", m: Sequence[dict], e: Sequence[dict]) -> None:
    ax.set_title("Episode return")
    steps = _col(m, "env_steps")
    drawn = False
    x, y = _finite(steps, _col(m, "train_return_max"))
    if x.size:
        ax.plot(x, y, color=_C_TRAIN, lw=0.9, alpha=0.35, label="train max",
                **_line_style(len(x)))
        drawn = True
    x, y = _finite(steps, _col(m, "train_return_mean"))
    if x.size:
        ax.plot(x, y, color=_C_TRAIN, lw=1.6, label="train mean", **_line_style(len(x)))
        drawn = True

    ex, emean = _col(e, "env_steps"), _col(e, "mean")
    emin, emax = _col(e, "min"), _col(e, "max")
    passed = np.array([_flag(r.get("passed")) for r in e], dtype=bool)
    ok = np.isfinite(ex) & np.isfinite(emean)
    if ok.any():
        # Bars span the worst..best evaluation episode; a missing min/max collapses to the mean.
        lo = np.where(np.isfinite(emin), emean - emin, 0.0).clip(min=0)
        hi = np.where(np.isfinite(emax), emax - emean, 0.0).clip(min=0)
        fail = ok & ~passed
        if fail.any():
            ax.errorbar(ex[fail], emean[fail], yerr=[lo[fail], hi[fail]], fmt="o",
                        color=_C_EVAL, ms=5, capsize=2.5, elinewidth=1, zorder=3,
                        label="eval mean, min..max")
        win = ok & passed
        if win.any():
            ax.errorbar(ex[win], emean[win], yerr=[lo[win], hi[win]], fmt="*",
                        color=_C_PASS, ms=11, capsize=2.5, elinewidth=1, zorder=4,
                        markeredgecolor="black", markeredgewidth=0.5, label="eval passed")
        drawn = True

    ax.axhline(MAX_RETURN, color="0.3", ls="--", lw=1)
    # Returns never exceed the 500 cap, so the band above it is always free: the legend goes
    # there and never hides a curve, however the run goes.
    ax.set_ylim(0, MAX_RETURN * 1.25)
    ax.set_yticks(np.arange(0, MAX_RETURN + 1, 100))
    ax.set_ylabel("return (cap 500, dashed)")
    _steps_axis(ax)
    if drawn:
        ax.legend(loc="upper center", ncol=2, fontsize=7.5, framealpha=0.9, handlelength=1.5,
                  columnspacing=1.2, borderaxespad=0.3)
    else:
        _no_data(ax)


def _panel_loss(ax: "Axes", m: Sequence[dict]) -> None:
    ax.set_title("TD loss")
    _series_panel(ax, _col(m, "env_steps"), _col(m, "loss"), "tab:red", "loss",
                  log_if_positive=True)
    ax.set_ylabel("loss")
    _steps_axis(ax)


def _panel_q(ax: "Axes", m: Sequence[dict]) -> None:
    """Mean Q, and the two early warnings of collapse (diagnostics.py): max Q on doomed states
    (true value ~0; drifting up means failures are being forgotten) and, on the right axis,
    the action gap (shrinking means the actions are no longer told apart)."""
    ax.set_title("Q values and collapse warnings")
    steps = _col(m, "env_steps")
    if not _series_panel(ax, steps, _col(m, "mean_q"), "tab:purple", "mean Q"):
        return
    x, y = _finite(steps, _col(m, "doomed_max_q"))
    if x.size:
        ax.plot(x, y, color="tab:brown", lw=1.2, label="max Q, doomed states")
    ax.set_ylabel("Q")
    x, y = _finite(steps, _col(m, "action_gap"))
    if x.size:
        gap = ax.twinx()
        gap.plot(x, y, color="tab:gray", lw=0.9, alpha=0.8, label="action gap")
        gap.set_ylabel("action gap", color="tab:gray")
        gap.tick_params(axis="y", colors="tab:gray")
        lines = ax.get_legend_handles_labels()
        more = gap.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=7, framealpha=0.8)
    elif len(ax.lines) > 1:
        ax.legend(loc="best", fontsize=7, framealpha=0.8)
    _steps_axis(ax)


def _panel_schedules(ax: "Axes", m: Sequence[dict]) -> None:
    from matplotlib.ticker import LogFormatterSciNotation, ScalarFormatter
    ax.set_title("Schedules")
    steps = _col(m, "env_steps")
    handles = []
    for key, color, label in (("epsilon", "tab:cyan", "epsilon"), ("beta", "tab:olive", "PER beta")):
        x, y = _finite(steps, _col(m, key))
        if x.size:
            handles += ax.plot(x, y, color=color, lw=1.6, label=label, **_line_style(len(x)))
    # Headroom above 1 keeps a band free for the legend, as in the returns panel.
    ax.set_ylim(-0.03, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("epsilon, beta")
    _steps_axis(ax)

    x, y = _finite(steps, _col(m, "lr"))
    if x.size:
        # Learning rate lives on its own scale (1e-4-ish), so it gets the right-hand axis.
        tw = ax.twinx()
        handles += tw.plot(x, y, color="tab:brown", lw=1.6, ls="-.", label="learning rate",
                           **_line_style(len(x)))
        tw.set_ylabel("learning rate", color="tab:brown")
        tw.tick_params(axis="y", colors="tab:brown", labelsize=8)
        if np.all(y > 0) and y.max() / y.min() > 20:
            tw.set_yscale("log")
            tw.set_ylim(y.min() / 1.5, y.max() * (y.max() / y.min()) ** 0.3)
            tw.yaxis.set_major_formatter(LogFormatterSciNotation())
        else:
            # Linear from zero: a decay from 1e-3 to 1e-4 reads as a decay, not as noise.
            if y.max() > 0:
                tw.set_ylim(0, float(y.max()) * 1.3)
            fmt = ScalarFormatter(useMathText=True)
            fmt.set_powerlimits((-2, 3))
            tw.yaxis.set_major_formatter(fmt)
    if handles:
        ax.legend(handles=handles, loc="upper center", ncol=3, fontsize=7.5, framealpha=0.9,
                  handlelength=1.8, columnspacing=1.2, borderaxespad=0.3)
    else:
        _no_data(ax)


def _panel_wall(ax: "Axes", m: Sequence[dict], key: str, title: str, ylabel: str,
                color: str, min_span: float | None = None) -> None:
    ax.set_title(title)
    wall = _col(m, "wall_s")
    div, unit = _time_unit(wall)
    x, y = _finite(wall / div, _col(m, key))
    if x.size:
        ax.plot(x, y, color=color, lw=1.4, **_line_style(len(x)))
        lo, hi = float(y.min()), float(y.max())
        if min_span is None:
            ax.set_ylim(bottom=0, top=max(hi * 1.15, 1e-9))
        else:
            # Zoomed in enough to show a slow leak, but never so far that jitter looks like one.
            pad = max(min_span - (hi - lo), 0.0) / 2 + 0.05 * (hi - lo)
            ax.set_ylim(max(0.0, lo - pad), hi + pad)
    else:
        _no_data(ax)
    ax.set_xlabel(f"wall time ({unit})")
    ax.set_ylabel(ylabel)


def _fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _headline(m: Sequence[dict], e: Sequence[dict], title: str) -> str:
    """Title plus the few numbers a person looks for first."""
    bits = []
    if m:
        last = m[-1]
        steps, episodes = _num(last.get("env_steps")), _num(last.get("episodes"))
        if math.isfinite(steps):
            bits.append(f"env steps {int(steps):,}")
        if math.isfinite(episodes):
            bits.append(f"episodes {int(episodes):,}")
        wall = _num(last.get("wall_s"))
        if math.isfinite(wall):
            bits.append(f"wall {_fmt_duration(wall)}")
    means = _col(e, "mean")
    if np.isfinite(means).any():
        bits.append(f"best eval mean {np.nanmax(means):.1f}")
    if any(_flag(r.get("passed")) for r in e):
        bits.append("PASSED")
    head = title or "CartPole-v1 Double DQN"
    return head + ("\n" + "  ·  ".join(bits) if bits else "")


def draw_training(fig: "Figure", metrics_rows: Sequence[dict], eval_rows: Sequence[dict],
                  title: str = "", reuse: bool = False) -> None:
    """Draw the six panels onto a figure; shared by PNG and live window.

    With `reuse` (the live window's redraws), a figure this function drew before keeps its six
    axes and only their contents are replaced (`_empty_axes`): creating fresh axes and their
    ticks was most of a redraw's CPU. The picture is the same as on a fresh figure."""
    metrics_rows, eval_rows = list(metrics_rows or []), list(eval_rows or [])
    grid = getattr(fig, "_training_axes", None) if reuse else None
    if grid is None or any(ax.figure is not fig for ax in grid.flat):
        fig.clear()
        grid = fig.subplots(2, 3)
        fig._training_axes = grid
    else:
        _empty_axes(fig, grid)
    _panel_returns(grid[0, 0], metrics_rows, eval_rows)
    _panel_loss(grid[0, 1], metrics_rows)
    _panel_q(grid[0, 2], metrics_rows)
    _panel_schedules(grid[1, 0], metrics_rows)
    _panel_wall(grid[1, 1], metrics_rows, "steps_per_s", "Throughput", "env steps / s",
                "tab:gray")
    _panel_wall(grid[1, 2], metrics_rows, "rss_mb", "Memory (RSS)", "MB", "tab:pink",
                min_span=100.0)
    for ax in grid.flat:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.suptitle(_headline(metrics_rows, eval_rows, title), fontsize=11)


def _empty_axes(fig: "Figure", grid: np.ndarray) -> None:
    """Back to what `fig.subplots` gives, keeping the axes and their tick objects: the twin
    axes go, and each panel loses its artists, legend, limits, scale and formatter."""
    from matplotlib.ticker import ScalarFormatter
    keep = set(grid.flat)
    for ax in list(fig.axes):
        if ax not in keep:
            fig.delaxes(ax)
    for ax in grid.flat:
        for artist in [*ax.lines, *ax.collections, *ax.texts, *ax.patches, *ax.images]:
            artist.remove()
        ax.containers.clear()
        if ax.legend_ is not None:
            ax.legend_.remove()
        ax.set_yscale("linear")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.ignore_existing_data_limits = True
        ax.set_autoscale_on(True)


def render_png(metrics_rows: Sequence[dict], eval_rows: Sequence[dict], title: str = "") -> bytes:
    """The figure as PNG bytes, drawn with Agg directly so pyplot's global state is untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        # Odd data (a constant series, all-NaN columns) can trigger harmless axis warnings.
        warnings.simplefilter("ignore", UserWarning)
        draw_training(fig, metrics_rows, eval_rows, title)
        # Fixed margins, not constrained layout: the size and the panels never change, and the
        # layout engine's measuring passes were about 40% of the render's CPU, on the path
        # between the solve and the end of the process.
        fig.subplots_adjust(**PNG_MARGINS)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def plot_training(metrics_rows: list[dict], eval_rows: list[dict], path: str | Path,
                  title: str = "") -> None:
    """Write the training figure to `path` as a PNG, atomically."""
    atomic_write_bytes(path, render_png(metrics_rows, eval_rows, title))


# --------------------------------------------------------------------------------------------
# Where a window can be shown
# --------------------------------------------------------------------------------------------

def display_available() -> bool:
    """Whether a window can be shown at all (no X/Wayland display: no live window)."""
    if sys.platform in ("darwin", "win32"):
        return True  # these have a window system without DISPLAY-style variables
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
