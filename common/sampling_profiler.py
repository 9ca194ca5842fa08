"""A sampling profiler: one thread's Python stack, read every few milliseconds by another.

Why not cProfile by default: it traces every Python call, and the training loop makes a great
many of them before the solve, which slowed the run it measured (docs/performance.md, sixth
sitting). Reading the stack 200 times a second costs the sampled thread only the moments the
sampler holds the GIL. What it gives up: call counts, and exactness for functions shorter than
the interval; the share of samples estimates where the wall time went, the question a run's
profile answers. `--profiler cprofile` keeps the exact, slower one.

Time spent in C (TensorFlow's call, a NumPy kernel, a pipe read) counts for the Python
function that called it, as in cProfile's cumulative column.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter

Frame = tuple[str, int, str]  # (file, first line, function): one function, as pstats names it

INTERVAL_S = 0.005
SWITCH_INTERVAL_S = 0.00002
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SamplingProfiler:
    """`enable()` from the thread to sample; `disable()` from any thread; then `report()`."""

    def __init__(self, interval_s: float = INTERVAL_S):
        self.interval_s = interval_s
        self.stacks: Counter[tuple[Frame, ...]] = Counter()  # outermost frame first
        self.sampled_s = 0.0
        self._target: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._switch_interval = sys.getswitchinterval()

    def enable(self) -> None:
        if self._thread is not None:
            return
        self._target = threading.get_ident()
        # The sampler waits for the GIL, which a busy thread hands over only at a release
        # point (a NumPy kernel, a TensorFlow call, I/O) or after the switch interval (5 ms by
        # default). With the default, samples would bunch up at release points (a function
        # that releases the GIL often took the samples of the Python code around it; a test
        # holds this). A short interval keeps each sample near its time.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._stop.clear()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="sampling-profiler", daemon=True)
        self._thread.start()

    def disable(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        sys.setswitchinterval(self._switch_interval)
        self.sampled_s += time.perf_counter() - self._started

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            frame = sys._current_frames().get(self._target)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append((code.co_filename, code.co_firstlineno, code.co_name))
                frame = frame.f_back
            if stack:
                self.stacks[tuple(reversed(stack))] += 1

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def function_seconds(self) -> tuple[Counter[Frame], Counter[Frame]]:
        """(inclusive, self) seconds per function, estimated from the shares of samples."""
        per_sample = self.sampled_s / max(self.samples, 1)
        inclusive: Counter[Frame] = Counter()
        own: Counter[Frame] = Counter()
        for stack, n in self.stacks.items():
            for f in set(stack):  # a recursive function counts once per sample
                inclusive[f] += n * per_sample
            own[stack[-1]] += n * per_sample
        return inclusive, own

    def report(self, top: int = 40) -> str:
        """The text of profile.txt: the `top` functions by inclusive seconds."""
        inclusive, own = self.function_seconds()
        lines = [f"Sampled profile: the Python stack every {1000 * self.interval_s:g} ms, "
                 f"{self.samples:,} samples over {self.sampled_s:.3f} s of wall time.",
                 "Seconds are estimated from each function's share of the samples; time in C "
                 "code counts for the Python function that called it.",
                 "", f"{'inclusive s':>12} {'self s':>9}  function"]
        for f, s in inclusive.most_common(top):
            lines.append(f"{s:12.3f} {own.get(f, 0.0):9.3f}  {frame_name(f)}")
        return "\n".join(lines) + "\n"

    def folded(self) -> str:
        """Collapsed stacks ('outer;...;inner count' per line), the input format of flame-graph
        tools (speedscope, flamegraph.pl)."""
        return "".join(f"{';'.join(frame_name(f) for f in stack)} {n}\n"
                       for stack, n in sorted(self.stacks.items(), key=lambda kv: -kv[1]))


def frame_name(f: Frame) -> str:
    path, line, name = f
    return f"{shorten(path)}:{line}({name})"


def shorten(path: str) -> str:
    """A path as the reader knows it: from site-packages or the project's root on."""
    marker = f"site-packages{os.sep}"
    if marker in path:
        return path.split(marker, 1)[1]
    if path.startswith(PROJECT_DIR + os.sep):
        return path[len(PROJECT_DIR) + 1:]
    return path
