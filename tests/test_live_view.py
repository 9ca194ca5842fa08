"""The live window: refresh and hand-over logic, tested without a display.

The child's loop runs against a fake window and a fake clock; the trainer side writes to a pipe
nobody reads (it must never block and never lose or repeat a row); and the whole path runs with
a real child process drawing off-screen (matplotlib's Agg backend).
"""
from __future__ import annotations

import json
import math
import os
import queue
import signal
import time

import numpy as np

from outputs import live_view


def row(i: int) -> dict:
    return {"wall_s": 0.1 * i, "env_steps": 1024 * i, "epsilon": max(0.01, 1 - i / 50),
            "loss": 1.0 / (i + 1), "train_return_mean": float(i), "steps_per_s": 9000.0,
            "rss_mb": 700.0}


class FakeWindow:
    """Records draws; each pump advances the fake clock. `close_after` pumps, the user closes."""

    def __init__(self, clock: list[float], close_after: int | None = None) -> None:
        self.clock, self.close_after = clock, close_after
        self.draws: list[tuple[int, int, str]] = []
        self.can_hold = True
        self.pumps, self.closed = 0, False

    def draw(self, metrics_rows, eval_rows, title):
        self.draws.append((len(metrics_rows), len(eval_rows), title))

    def pump(self, seconds):
        self.pumps += 1
        self.clock[0] += seconds

    def is_open(self):
        return not self.closed and (self.close_after is None or self.pumps < self.close_after)

    def close(self):
        self.closed = True


def messages(*items) -> "queue.Queue":
    q: queue.Queue = queue.Queue()
    for item in items:
        q.put(None if item is None else json.dumps(item).encode())
    return q


class Trickle(queue.Queue):
    """An inbox that receives one more metrics row on each poll, like a running trainer."""

    def __init__(self, n_rows: int, end: dict | None) -> None:
        super().__init__()
        self.pending = [{"m": row(i)} for i in range(n_rows)] + ([{"end": end}] if end else [None])

        self.gave = False

    def get_nowait(self):
        if self.gave or not self.pending:  # one message per drain, then "nothing yet"
            self.gave = False
            raise queue.Empty
        self.gave = True
        item = self.pending.pop(0)
        return None if item is None else json.dumps(item).encode()


def test_redraws_at_most_once_per_refresh_interval_while_rows_arrive():
    clock = [0.0]
    win = FakeWindow(clock)
    # One row per 0.05 s pump for 100 pumps = 5 s of run: ~5 refreshes, not 100.
    report = live_view.run_child(Trickle(100, {"status": "finished", "interactive": False}),
                                 win, "t", refresh_s=1.0, clock=lambda: clock[0], pump_s=0.05)
    live_draws = win.draws
    assert 4 <= len(live_draws) <= 6
    assert [n for n, _, _ in live_draws] == sorted(n for n, _, _ in live_draws)
    # The picture is never more than one refresh interval (~20 rows here) behind the rows.
    assert live_draws[-1][0] >= 100 - 21
    assert {k: report[k] for k in ("renders", "metrics_rows", "eval_rows", "ended")} == {
        "renders": len(win.draws), "metrics_rows": 100, "eval_rows": 0, "ended": "end"}
    assert win.closed, "non-interactive: nobody to show a final figure to; the window closes"


def test_no_redraw_without_new_rows():
    clock = [0.0]
    win = FakeWindow(clock, close_after=200)
    q = messages({"m": row(0)}, {"e": {"env_steps": 0, "mean": 9.0}})
    report = live_view.run_child(q, win, "t", refresh_s=1.0, clock=lambda: clock[0])
    assert win.draws == [(1, 1, "t")], "one draw for one batch of rows, then idle"
    assert report["ended"] == "closed" and report["renders"] == 1


def test_interactive_hand_over_keeps_the_final_figure_until_the_user_closes_it():
    clock = [0.0]
    win = FakeWindow(clock, close_after=500)
    q = messages({"m": row(0)}, {"m": row(1)}, {"end": {"status": "finished: solved at 5.0 s",
                                                       "interactive": True}}, None)
    report = live_view.run_child(q, win, "t", clock=lambda: clock[0])
    assert win.draws[-1] == (2, 0, "t (finished: solved at 5.0 s)")
    assert win.pumps == 500, "the window stayed, handling events, until the user closed it"
    assert report["ended"] == "end"


def test_trainer_gone_without_hand_over_closes_the_window():
    clock = [0.0]
    win = FakeWindow(clock)
    report = live_view.run_child(messages({"m": row(0)}, None), win, "t", clock=lambda: clock[0])
    assert report["ended"] == "eof" and win.closed


class _PipeProc:
    """A stand-in child: a pipe whose read end nobody reads until the test does."""

    def __init__(self) -> None:
        self.r, w = os.pipe()
        self.stdin = os.fdopen(w, "wb", buffering=0)
        self.stdout = None

        self.terminated = False

    def poll(self):
        return 0 if self.terminated else None

    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return 0


class PipeOnlyView(live_view.LiveView):
    def _start_child(self, cmd):
        self.cmd = cmd
        return _PipeProc()


def test_trainer_side_never_blocks_and_sends_each_row_once_in_order(monkeypatch):
    view = PipeOnlyView("run/training.png", interactive=False, backend="agg")
    assert view.active and "--child" in view.cmd
    monkeypatch.setattr(live_view, "SEND_EVERY_S", 0.0)  # try to send on every row
    n = 3000  # ~0.5 MB: far more than a pipe holds (64 KB), and nobody reads it yet
    for i in range(n):
        view.on_metrics({**row(i), "pad": "x" * 100})
    assert view.active and len(view._out) > 0, "the rest waits in the buffer; nothing blocked"
    r = view._proc.r
    os.set_blocking(r, False)
    received = b""
    while True:  # the child catches up...
        try:
            chunk = os.read(r, 1 << 16)
        except BlockingIOError:
            chunk = b""
        received += chunk
        if not view._out and not chunk:
            break
        view._send()  # ...and the next sends hand over what had piled up
    steps = [json.loads(line)["m"]["env_steps"] for line in received.splitlines()]
    assert steps == [1024 * i for i in range(n)]
    os.close(r)


def test_no_display_means_no_window(monkeypatch):
    monkeypatch.setattr(live_view, "display_available", lambda: False)
    view = live_view.LiveView("run/training.png", interactive=True)
    assert not view.active and view.stopped_because == "no display"
    view.on_metrics(row(1))
    view.on_end({"solved": True, "solve_wall_s": 1.0})  # no-ops, never waits


def test_interactive_only_with_a_person_at_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert live_view.interactive_session(quiet=False)
    assert not live_view.interactive_session(quiet=True)
    monkeypatch.setenv("CI", "true")
    assert not live_view.interactive_session(quiet=False)
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    assert not live_view.interactive_session(quiet=False)


def test_real_child_process_draws_off_screen_and_hands_over(monkeypatch):
    # The real child, with matplotlib's Agg backend instead of a window: the full protocol,
    # draw_training included, without a display. Interactive, so it draws the final figure;
    # an off-screen canvas has no window to hold open, so the child then ends.
    monkeypatch.setattr(live_view, "CLOSE_TIMEOUT_S", 300.0)  # a loaded CI machine is slow
    view = live_view.LiveView("run/training.png", interactive=True, backend="agg")
    assert view.active
    for i in range(200):
        view.on_metrics(row(i))
        if i % 10 == 9:
            view.on_eval({"env_steps": 1024 * i, "mean": float(i), "min": 1.0, "max": 500.0,
                          "passed": 0})
    view.on_end({"solved": True, "solve_wall_s": 4.2})
    assert not view.active
    assert view.report is not None, view.stopped_because
    assert view.report["metrics_rows"] == 200 and view.report["eval_rows"] == 20
    assert view.report["ended"] == "end" and view.report["renders"] >= 1
    assert view.report["backend"].lower() == "agg"


def test_off_screen_child_writes_the_final_png_the_trainer_would_write(tmp_path):
    # Without a window the child exists for one job: at the hand-over it renders the run's PNG
    # (on the second core, while the trainer wraps up). It must be the very figure the trainer
    # would have written from the same rows, JSON round trip included.
    from outputs import plots
    png = tmp_path / "training_metrics.png"
    view = live_view.LiveView(png, interactive=False, backend="agg", live=False)
    assert view.active
    metrics = [row(i) for i in range(60)]
    evals = [{"env_steps": 1024 * i, "mean": float(i), "min": 1.0, "max": 500.0, "passed": 0,
              "at_500": 0, "episodes": 64} for i in range(9, 60, 10)]
    for m in metrics:
        view.on_metrics(m)
    for e in evals:
        view.on_eval(e)
    view.on_loop_end("finished: solved at 4.2 s")
    view.on_end({"solved": True, "solve_wall_s": 4.2})
    assert view.figure_written, (view.report, view.stopped_because)
    assert view.report["renders"] == 0, "no live redraws off-screen"
    assert png.read_bytes() == plots.render_png(metrics, evals)


def test_child_without_a_gui_ends_the_view_quietly(monkeypatch):
    # DISPLAY names no X server: the child cannot open a window and exits; the trainer side
    # notices at its next write and carries on without a window.
    monkeypatch.setenv("DISPLAY", ":97")
    monkeypatch.setattr(live_view, "display_available", lambda: True)
    view = live_view.LiveView("run/training.png", interactive=True)
    assert view.active
    view._proc.wait(timeout=120)  # the child gave up on the display
    monkeypatch.setattr(live_view, "SEND_EVERY_S", 0.0)
    view.on_metrics(row(0))
    view.on_end({})  # must return at once: interactive, but there is no window to wait for
    assert not view.active
    assert view.stopped_because == "the window was closed"


def test_display_check_follows_the_environment(monkeypatch):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert live_view.display_available() is False
    monkeypatch.setenv("DISPLAY", ":0")
    assert live_view.display_available() is True


def test_hand_over_to_a_child_that_never_reads_gives_up_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(live_view, "CLOSE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(live_view, "SEND_EVERY_S", 0.0)
    view = PipeOnlyView("run/training.png", interactive=False, backend="agg")
    for i in range(3000):  # far more than the pipe holds; nobody reads
        view.on_metrics({**row(i), "pad": "x" * 100})
    view.on_end({})
    assert not view.active
    assert view.stopped_because == "the window did not take the last rows in time"
    os.close(view._proc.r)


class CostlyWindow(FakeWindow):
    """A window whose every draw burns `cost` CPU seconds, like a real render."""

    def __init__(self, clock: list[float], cost: float) -> None:
        super().__init__(clock)
        self.cost, self.drawn_at = cost, []

    def draw(self, metrics_rows, eval_rows, title):
        super().draw(metrics_rows, eval_rows, title)
        self.drawn_at.append(self.clock[0])
        start = time.thread_time()
        while time.thread_time() - start < self.cost:
            pass


def test_redraws_take_at_most_their_share_of_a_core():
    """The child runs at normal priority (a niced one got no CPU on a busy machine), so its
    redraws are spaced by their own cost: at most MAX_DRAW_SHARE of one core."""
    clock = [0.0]
    win = CostlyWindow(clock, cost=0.05)
    live_view.run_child(Trickle(200, {"status": "finished", "interactive": False}), win, "t",
                        refresh_s=0.01, clock=lambda: clock[0], pump_s=0.01)
    gaps = np.diff(win.drawn_at)
    assert len(gaps) >= 3
    assert gaps.min() >= 0.05 / live_view.MAX_DRAW_SHARE - 1e-9, gaps


def test_the_live_window_process_is_not_niced(monkeypatch):
    niced = []
    monkeypatch.setattr(os, "nice", lambda inc: niced.append(inc) or 0)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # leave pytest's SIGINT alone

    def no_window(*args, **kw):
        raise RuntimeError("no display in this test")
    monkeypatch.setattr(live_view, "MatplotlibWindow", no_window)
    assert live_view.child_main(["--child", "--refresh", "1.0"]) == 3
    assert niced == [], "a niced window starves behind any busy process"


def test_off_screen_child_never_redraws_live():
    """Without a display the child is started with an infinite refresh, only for the final PNG:
    no live redraw at all (each would take ~0.4 s of the core the evaluation worker needs)."""
    clock = [0.0]
    win = FakeWindow(clock)
    report = live_view.run_child(Trickle(50, {"status": "finished", "interactive": False}),
                                 win, "t", refresh_s=math.inf, clock=lambda: clock[0], pump_s=0.05)
    assert win.draws == [] and report["renders"] == 0 and report["metrics_rows"] == 50
