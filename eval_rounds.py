"""Evaluation rounds played on the second core while learning goes on.

The compiled learning call releases the GIL for most of its ~15 ms, and evaluation is NumPy and
gymnasium on a fresh vector env, so a round started on a snapshot of the weights runs on a
second thread in the time the trainer spends inside TensorFlow. Rounds are always played out in
full (every episode), so the statistics in eval.csv describe the whole round.

Determinism: a round is started at an evaluation point and its verdict is collected at the next
evaluation point (or when the run must stop or checkpoint), never "when it happens to finish",
so the solve, and everything it changes (the learning rate once solved, best.keras, the stop),
happens at the same step on every run with the same seed. The solve is credited to the snapshot
that passed (its env steps); the time is when the verdict was known.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from evaluation import EvalResult, NumpyQNetwork, evaluate


@dataclass
class Round:
    index: int                      # 0-based round number (its episode seeds derive from it)
    env_steps: int                  # training position of the snapshot
    learn_steps: int
    weights: list[np.ndarray]       # the snapshot that is judged (and exported if it solves)
    future: "Future[tuple[EvalResult, float]]"


class RoundRunner:
    """At most one round in flight; `background=False` plays it on the caller's thread."""

    def __init__(self, episodes: int, background: bool = True):
        self.episodes = episodes
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="eval") if background else None
        self.pending: Round | None = None
        self.busy_s = 0.0           # seconds spent playing rounds (on whichever thread)

    def start(self, weights: list[np.ndarray], seed: int, index: int, env_steps: int,
              learn_steps: int) -> None:
        if self.pending is not None:
            raise RuntimeError("finish() the pending round before starting another")
        snapshot = [np.array(w, np.float32, copy=True) for w in weights]
        net = NumpyQNetwork(snapshot)
        if self.pool is not None:
            future = self.pool.submit(self._play, net, seed)
        else:
            future = Future()
            future.set_result(self._play(net, seed))
        self.pending = Round(index, env_steps, learn_steps, snapshot, future)

    def _play(self, net: NumpyQNetwork, seed: int) -> tuple[EvalResult, float]:
        t = time.perf_counter()
        res = evaluate(net.greedy, self.episodes, seed=seed, num_envs=min(self.episodes, 64))
        dt = time.perf_counter() - t
        self.busy_s += dt
        return res, dt

    def finish(self) -> tuple[Round, EvalResult] | None:
        """Wait for the pending round (if any) and hand back it and its result."""
        r, self.pending = self.pending, None
        if r is None:
            return None
        res, _ = r.future.result()
        return r, res

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
