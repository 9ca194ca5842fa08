"""The live training window (`--graphics` with a display), drawn by a child process.

A render of the six-panel figure costs a good part of a second of CPU, all of it training lost
when drawn in the trainer's process. Here a child process (`python -m outputs.live_view
--child`), started before the trainer imports TensorFlow, owns the matplotlib window: it shows
the empty panels while the import runs on the other core, then redraws them in place (the same
axes, new contents) at most every REFRESH_S, spaced so that redraws take at most
MAX_DRAW_SHARE of a core; the trainer only appends each new row to a byte buffer and hands it
to a non-blocking pipe a few times a second.

- Only rows added since the last send cross the pipe (one JSON line each).
- The trainer never waits for the window: when the pipe is full (the child is busy drawing) the
  rows stay in the buffer and go with the next send, merged into one larger write. A child that
  falls `MAX_BEHIND_BYTES` behind, dies, or whose window the user closes simply ends the live
  view; training goes on, and the PNG is written by the trainer either way.
- At the end (`on_end`) the child draws the final figure. With a person at a terminal
  (`interactive_session`) the window then stays until the user closes it; otherwise (CI,
  --quiet, no tty) it closes at once and never holds the run up.
- No display (no DISPLAY/WAYLAND_DISPLAY on Linux): no window. The trainer still starts the
  child off-screen (`backend="agg"`, `live=False`: no redraws) for one job, the last one:
- The final PNG. `on_loop_end()` (called when the loop stops) hands the child the last rows and the
  PNG's path; the child renders the figure (plots.render_png, byte for byte what the trainer
  would write) on the second core while the trainer confirms, checkpoints and exports, and
  `on_end` waits for it. Its matplotlib import happened at start-up, on the core TensorFlow's
  import left idle. So the figure costs the time after the solve almost nothing. If the child
  cannot deliver, `figure_written` stays False and the trainer renders the PNG itself.

The child's loop (`run_child`) talks to its window through four methods (draw, pump, is_open,
close), so tests drive it with a fake window and no display.
"""
from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from common.launch import child_env
from common.observer import Observer
from outputs.plots import display_available  # cheap: plots imports matplotlib only when drawing

#: The child redraws at most this often (seconds), and only when new rows arrived.
REFRESH_S = 1.5
#: Share of one core the child's live redraws may use: after a redraw that took d CPU seconds
#: the next waits at least d / MAX_DRAW_SHARE. The child runs at normal priority (at nice 19 it
#: got no CPU at all while the trainer, its evaluation worker and any other work kept both
#: cores busy, so the window only appeared once training had ended); this cap is what keeps it
#: from taking the second core from the evaluation worker instead.
MAX_DRAW_SHARE = 0.35
#: The trainer writes to the pipe at most this often; rows in between are batched.
SEND_EVERY_S = 0.25
#: Give up the live view if this much is waiting for a child that does not read.
MAX_BEHIND_BYTES = 8 << 20
#: How long a non-interactive end waits for the child to take the last rows and close
#: before stopping it (a run without a person at the terminal must never wait on a window).
CLOSE_TIMEOUT_S = 2.0
#: How long `on_end` waits for the child's final PNG before giving up (the trainer then renders
#: it itself). A render takes well under this; the margin is for a heavily loaded machine.
PNG_TIMEOUT_S = 60.0
#: GUI toolkits tried by the child, in order.
_BACKENDS = ("tkagg", "qtagg", "gtk4agg", "gtk3agg", "macosx", "wxagg")


def interactive_session(quiet: bool) -> bool:
    """Whether a person is there to close the final window: a terminal on both ends, not CI,
    not --quiet. Anything else must never wait for a window."""
    if quiet or os.environ.get("CI"):
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _json_default(value: Any) -> Any:
    return float(value)  # NumPy scalars in rows


# ============================================================================================
# Trainer side
# ============================================================================================
class LiveView(Observer):
    """The trainer's handle on the live window (an Observer: on_metrics, on_eval, on_loop_end,
    on_end, on_abort; `figure_written` once the child has written the PNG).

    `png_path` is the run's figure (written by the trainer); its directory names the window.
    `backend` forces a matplotlib backend in the child ("agg" draws without a window, for tests);
    by default a GUI backend is used and the view is off without a display.
    """

    def __init__(self, png_path: str | Path, interactive: bool, title: str = "",
                 backend: str | None = None, live: bool = True) -> None:
        self.png_path = Path(png_path)
        self.interactive = bool(interactive) and live
        self.active = False
        self.finished = False
        self.png_requested = False
        self.report: dict[str, Any] | None = None  # the child's last words (renders, rows)
        self.stopped_because = ""
        self._out = bytearray()
        self._early_output = bytearray()  # the child's output, read while waiting for its end
        self._last_send = -math.inf
        self._proc: subprocess.Popen | None = None
        if backend is None and not display_available():
            self.stopped_because = "no display"
            return
        title = title or f"cartpole: {self.png_path.parent.name or self.png_path.name}"
        cmd = [sys.executable, "-m", "outputs.live_view", "--child", "--title", title,
               "--refresh", str(REFRESH_S if live else math.inf)]
        if backend:
            cmd += ["--backend", backend]
        try:
            self._proc = self._start_child(cmd)
        except OSError as e:
            self.stopped_because = f"cannot start the window process ({e})"
            return
        os.set_blocking(self._proc.stdin.fileno(), False)
        self.active = True

    def _start_child(self, cmd: list[str]) -> subprocess.Popen:
        # A fresh interpreter (not a fork of this one, which holds TensorFlow's threads) that
        # imports only matplotlib and plots.py; one BLAS thread, the trainer has the other core.
        env = child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    # ------------------------------------------------------------------ Observer hooks
    def on_metrics(self, row: dict[str, Any]) -> None:
        self._queue({"m": row})

    def on_eval(self, row: dict[str, Any]) -> None:
        self._queue({"e": row})

    def on_loop_end(self, status: str) -> None:
        """The run's loop is over: send the last rows, the status and the PNG's path for the
        child to write; do not wait (see `on_end`)."""
        self._hand_over(status, png=True)

    def _hand_over(self, status: str, png: bool) -> None:
        if not self.active or self.finished:
            return
        self.finished, self.png_requested = True, png
        end = {"status": status, "interactive": self.interactive}
        if png:
            end["png"] = str(self.png_path)
        self._queue({"end": end})
        self._send(final=True)

    @property
    def figure_written(self) -> bool:
        return bool(self.report and self.report.get("png_written"))

    def on_end(self, summary: dict[str, Any]) -> None:
        """Hand over: the child draws the final figure; wait for the user only if interactive."""
        if not self.active:
            return
        solve = summary.get("solve_wall_s")
        solved = bool(summary.get("solved")) and solve is not None
        self._hand_over(f"finished: solved at {solve:.1f} s" if solved else "finished", png=False)
        proc = self._proc
        try:
            if self.active and self.interactive:
                print("live window: showing the final figure; close it to finish",
                      file=sys.stderr, flush=True)
                proc.wait()
            else:
                _wait_for_report(proc, PNG_TIMEOUT_S if self.png_requested else CLOSE_TIMEOUT_S,
                                 self._early_output)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        except KeyboardInterrupt:  # the run is over; Ctrl-C here only means "stop waiting"
            proc.terminate()
            proc.wait()
        self._read_report()
        self.active = False

    def on_abort(self) -> None:
        """Stop the child without a hand-over (the run failed); safe to call twice. Without it
        the child still closes its window once this process exits (its pipe reaches EOF)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait()
        self.active = False

    # ------------------------------------------------------------------ sending
    def _queue(self, message: dict[str, Any]) -> None:
        if not self.active:
            return
        self._out += json.dumps(message, default=_json_default).encode() + b"\n"
        if len(self._out) > MAX_BEHIND_BYTES:
            self._stop(f"the window fell {len(self._out) >> 20} MB behind")
            return
        if time.monotonic() - self._last_send >= SEND_EVERY_S:
            self._send()

    def _send(self, final: bool = False) -> None:
        """Write as much of the buffer as the pipe takes now. With `final` (the run is over),
        all of it, waiting up to CLOSE_TIMEOUT_S for a child that is slow to read."""
        if not self.active or self._proc is None:
            return
        import select
        fd = self._proc.stdin.fileno()
        self._last_send = now = time.monotonic()
        deadline = now + (CLOSE_TIMEOUT_S if final else 0.0)
        try:
            while self._out:
                try:
                    written = os.write(fd, self._out)
                except BlockingIOError:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    select.select([], [fd], [], wait)
                    continue
                del self._out[:written]
        except OSError:  # BrokenPipeError above all: the child is gone
            self._stop("the window was closed")
            return
        if final:
            if self._out:
                self._stop("the window did not take the last rows in time")
                return
            self._proc.stdin.close()

    def _stop(self, reason: str) -> None:
        self.stopped_because = reason
        self._out.clear()
        self.on_abort()
        self._read_report()

    def _read_report(self) -> None:
        if self._proc is None or self._proc.stdout is None or self._proc.stdout.closed:
            return
        try:
            raw = bytes(self._early_output) + self._proc.stdout.read()
            text = raw.decode(errors="replace").strip().splitlines()
            self.report = json.loads(text[-1]) if text else None
        except (OSError, ValueError):
            self.report = None
        finally:
            self._proc.stdout.close()
            if self._proc.stdin and not self._proc.stdin.closed:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass


def _wait_for_report(proc: subprocess.Popen, timeout: float, sink: bytearray) -> None:
    """Collect the child's output into `sink` until it closes it (it prints its report and
    exits), then reap it; woken by the pipe itself, not by `Popen.wait(timeout)`'s sleeps of
    up to 50 ms, which the run would spend after its figure was already written."""
    import select
    if proc.stdout is None or proc.stdout.closed:  # its output already read (or never piped)
        proc.wait(timeout=timeout)
        return
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        sink += chunk
    proc.wait(timeout=max(deadline - time.monotonic(), 0.1))


# ============================================================================================
# Child side
# ============================================================================================
class Window(Protocol):
    can_hold: bool  # a real window a person can look at and close (not an off-screen canvas)

    def draw(self, metrics_rows: list[dict], eval_rows: list[dict], title: str) -> None: ...
    def pump(self, seconds: float) -> None: ...   # handle GUI events for up to `seconds`
    def is_open(self) -> bool: ...
    def close(self) -> None: ...


class Feed:
    """Everything the child has received: the rows, whether they changed, and the hand-over."""

    def __init__(self) -> None:
        self.metrics: list[dict] = []
        self.evals: list[dict] = []
        self.dirty = False
        self.end: dict[str, Any] | None = None
        self.eof = False

    def drain(self, inbox: "queue.Queue[bytes | None]") -> None:
        """Take every message waiting in the inbox without blocking."""
        while not (self.eof or self.end):
            try:
                line = inbox.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self.eof = True
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a torn line can only come from a dying parent; ignore it
            if "m" in msg:
                self.metrics.append(msg["m"])
            elif "e" in msg:
                self.evals.append(msg["e"])
            elif "end" in msg:
                self.end = msg["end"]
            self.dirty = True


def run_child(inbox: "queue.Queue[bytes | None]", window: Window, title: str = "",
              refresh_s: float = REFRESH_S, clock: Callable[[], float] = time.monotonic,
              pump_s: float = 0.05) -> dict[str, Any]:
    """The child's loop: redraw at most every `refresh_s` while rows arrive, then hand over.

    Returns a report: renders, rows seen, and how it ended ("closed" by the user, "eof" when
    the trainer went away without a hand-over, "end" after the final figure).
    """
    feed = Feed()
    renders, last_draw, draws, wait_s = 0, -math.inf, DrawLog(), refresh_s
    while True:
        feed.drain(inbox)
        if not window.is_open():
            return _report(renders, feed, "closed", draws)
        if feed.end is not None or feed.eof:
            break
        # An infinite refresh (off-screen: only the final PNG) never redraws; without the
        # isfinite, inf - (-inf) >= inf made it draw once, early in training.
        if feed.dirty and math.isfinite(wait_s) and clock() - last_draw >= wait_s:
            t, cpu = time.perf_counter(), time.thread_time()
            window.draw(feed.metrics, feed.evals, title)
            cpu = time.thread_time() - cpu
            draws.add(time.perf_counter() - t, cpu)
            wait_s = max(refresh_s, cpu / MAX_DRAW_SHARE)
            renders, last_draw, feed.dirty = renders + 1, clock(), False
        window.pump(pump_s)
    if feed.eof:
        window.close()
        return _report(renders, feed, "eof", draws)
    png_written = write_final_png(feed)
    if feed.end.get("interactive"):
        # Hand-over: the final figure shows every row, however recent the last draw was, and
        # stays until the user closes the window. (Without a person there, nobody would see
        # it: the window just closes.)
        window.draw(feed.metrics, feed.evals, f"{title} ({feed.end.get('status', 'finished')})")
        renders += 1
        while window.can_hold and window.is_open():
            window.pump(0.1)
    window.close()
    return {**_report(renders, feed, "end", draws), "png_written": png_written}


def write_final_png(feed: Feed) -> bool:
    """Write the run's figure where the hand-over asks (atomically), as plots.plot_training
    would; False if it was not asked for or could not be written."""
    path = (feed.end or {}).get("png")
    if not path:
        return False
    from outputs.plots import plot_training
    try:
        plot_training(feed.metrics, feed.evals, path)
    except OSError:
        return False
    return True


class DrawLog:
    """The live redraws: their wall and CPU seconds, and when each was on screen (epoch
    seconds, so that a benchmark can put them on its own clock)."""

    def __init__(self) -> None:
        self.wall_s, self.cpu_s, self.done_at = 0.0, 0.0, []

    def add(self, wall_s: float, cpu_s: float) -> None:
        self.wall_s, self.cpu_s = self.wall_s + wall_s, self.cpu_s + cpu_s
        self.done_at.append(round(time.time(), 3))


def _report(renders: int, feed: Feed, how: str, draws: DrawLog) -> dict[str, Any]:
    """What the child did; `live_draw_s` and `live_draw_cpu_s` are the wall and CPU seconds
    its live redraws took (not the final one), `live_draw_done_at` when each was done."""
    return {"renders": renders, "metrics_rows": len(feed.metrics), "eval_rows": len(feed.evals),
            "ended": how, "live_draw_s": round(draws.wall_s, 3), "live_draw_cpu_s": round(draws.cpu_s, 3),
            "live_draw_done_at": draws.done_at}


class MatplotlibWindow:
    """The figure in a matplotlib window (or, with backend "agg", drawn off-screen)."""

    def __init__(self, title: str, backend: str | None = None) -> None:
        import matplotlib
        import matplotlib.pyplot as plt

        from outputs.plots import DPI, FIGSIZE
        self._plt = plt
        for name in ([backend] if backend else _BACKENDS):
            try:
                plt.switch_backend(name)
                break
            except (ImportError, RuntimeError, ValueError):
                continue
        else:
            raise RuntimeError(f"no GUI toolkit for matplotlib ({', '.join(_BACKENDS)})")
        # The PNG's fixed margins, not a layout engine: constrained layout's measuring passes
        # were about a third of a redraw's CPU, and the panels never change.
        self.fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
        manager = self.fig.canvas.manager
        if manager is not None:
            manager.set_window_title(title)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Agg: "non-interactive, cannot show"
            plt.show(block=False)
        self.fig.canvas.flush_events()
        self.shown_at = round(time.time(), 3)  # the window is on screen
        self.backend = matplotlib.get_backend()
        from matplotlib.backends import BackendFilter, backend_registry
        gui = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
        self.can_hold = self.backend.lower() in {name.lower() for name in gui}

    def draw(self, metrics_rows: list[dict], eval_rows: list[dict], title: str) -> None:
        from outputs.plots import PNG_MARGINS, draw_training
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            # In place: the same axes with new contents, about half the CPU of a fresh figure.
            draw_training(self.fig, metrics_rows, eval_rows, title, reuse=True)
        self.fig.subplots_adjust(**PNG_MARGINS)
        self.fig.canvas.draw_idle()
        self.fig.canvas.flush_events()

    def pump(self, seconds: float) -> None:
        self.fig.canvas.start_event_loop(seconds)

    def is_open(self) -> bool:
        return self._plt.fignum_exists(self.fig.number)

    def close(self) -> None:
        self._plt.close(self.fig)


def _read_lines(stream: Iterable[bytes], inbox: "queue.Queue[bytes | None]") -> None:
    for line in stream:
        inbox.put(line)
    inbox.put(None)  # EOF: the trainer closed the pipe or went away


def child_main(argv: list[str]) -> int:
    import argparse
    import signal
    p = argparse.ArgumentParser(prog="live_view.py --child")
    p.add_argument("--child", action="store_true")
    p.add_argument("--title", default="cartpole")
    p.add_argument("--refresh", type=float, default=REFRESH_S)
    p.add_argument("--backend", default=None)
    args = p.parse_args(argv)
    # Ctrl-C at the terminal reaches the whole process group: the trainer handles it (and
    # closes us); the window itself must not die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (the trainer's `abort`, or `timeout`/systemd signalling the whole group) ends the
    # window quietly: the trainer writes the figure itself if it still needs one.
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    # Normal priority, like the trainer: MAX_DRAW_SHARE in run_child bounds what the redraws
    # take, while a low priority let any other busy process starve the window entirely.
    try:
        window = MatplotlibWindow(args.title, args.backend)
    except Exception as e:  # noqa: BLE001 - no X server, no toolkit: the view is just off
        print(f"live window off: {type(e).__name__}: {' '.join(str(e).split())[:160]}",
              file=sys.stderr)
        return 3
    inbox: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(sys.stdin.buffer, inbox), daemon=True).start()
    if math.isfinite(args.refresh):
        # The six panels, still empty, while TensorFlow imports: they are on screen at once,
        # and the axes exist before training starts, so every redraw during training only
        # replaces their contents (plots.draw_training's `reuse`).
        window.draw([], [], args.title)
        window.shown_at = round(time.time(), 3)
    report = run_child(inbox, window, args.title, args.refresh)
    report["backend"], report["window_shown_at"] = window.backend, window.shown_at
    report["process_cpu_s"] = round(time.process_time(), 3)  # all of this process, start-up included
    try:
        print(json.dumps(report), flush=True)
    except OSError:  # BrokenPipeError: the trainer is gone and wants no report
        os._exit(0)  # not sys.exit: flushing the dead pipe at exit would print a traceback
    return 0


if __name__ == "__main__":
    code = child_main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The report is out and the window closed: skip the interpreter's teardown (matplotlib's
    # and the GUI toolkit's), which the trainer would otherwise wait through.
    os._exit(code)
