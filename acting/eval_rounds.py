"""Evaluation rounds played in a worker process on the second core while learning goes on.

Rounds are always played out in full (every episode), so the statistics in eval.csv describe
the whole round: up to 500 vector steps of NumPy and gymnasium. On a thread of the trainer's
process a round would share the GIL with the trainer's own Python (acting, packing, logging), and
each would wait out the other's switch interval (docs/performance.md, "Where the time goes"). So a
round is played by a separate, long-lived process (`python -m acting.eval_rounds --worker`) that
imports only NumPy and gymnasium: the trainer sends it a snapshot of the weights (a few KB)
and reads back the returns.

Determinism: a round is started at an evaluation point and its verdict is collected at the next
evaluation point (or when the run must stop or checkpoint), never "when it happens to finish",
so the solve, and everything it changes (the learning rate once solved, best.keras, the stop),
happens at the same step on every run with the same seed. The solve is credited to the snapshot
that passed (its env steps); the time is when the verdict was known. The worker plays exactly
what `evaluation.evaluate` would play in this process, which is the fallback when the worker
cannot be started (or `background=False`).
"""
from __future__ import annotations

import base64
import os
import pickle
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from acting.evaluation import EvalResult, NumpyQNetwork, evaluate
from common.launch import child_env

_HEADER = struct.Struct("<Q")
ROUND_ENVS = 64  # a round's episodes run this many at a time; their start states depend on it


@dataclass
class Round:
    index: int                      # 0-based round number (its episode seeds derive from it)
    env_steps: int                  # training position of the snapshot
    learn_steps: int
    weights: list[np.ndarray]       # the snapshot that is judged (and exported if it solves)
    seed: int                       # the round's episode seeds start here
    passed: bool | None = None      # the verdict, known at the first failure or at the end
    result: EvalResult | None = None  # every episode's return, once all are played
    consecutive: int = 0            # the trainer's streak after this verdict
    verdict_wall_s: float = 0.0     # when the trainer learned the verdict
    certificate: EvalResult | None = None  # the certificate this snapshot played, if any
    certificate_seed: int | None = None     # its episode seeds start here
    applied: bool = False           # the trainer has applied the verdict (at an eval point)

    def to_json(self) -> dict[str, Any]:
        """A complete round whose verdict is not applied yet, as a checkpoint carries it."""
        return {"index": self.index, "env_steps": self.env_steps, "learn_steps": self.learn_steps,
                "seed": self.seed, "returns": [float(x) for x in self.result.returns],
                "weights": [{"shape": list(w.shape), "data": base64.b64encode(
                    np.ascontiguousarray(w, "<f4").tobytes()).decode()} for w in self.weights]}

    @classmethod
    def from_json(cls, d: dict[str, Any], episodes: int) -> "Round":
        """The round `to_json` saved (ValueError/TypeError/KeyError if it is not one)."""
        weights = [np.frombuffer(base64.b64decode(w["data"], validate=True), "<f4")
                   .reshape(w["shape"]).astype(np.float32) for w in d["weights"]]
        NumpyQNetwork(weights)  # ValueError unless these are a network's weights
        r = cls(int(d["index"]), int(d["env_steps"]), int(d["learn_steps"]), weights,
                int(d["seed"]))
        r.result = EvalResult(np.asarray(d["returns"], np.float64), episodes)
        r.passed = r.result.passed
        return r


def send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    """One framed object, or None at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def play(weights: list[np.ndarray], episodes: int, seed: int,
         on_first_failure=None) -> tuple[np.ndarray, float]:
    """The round itself, wherever it runs: returns of every episode, and seconds spent."""
    t = time.perf_counter()
    res = evaluate(NumpyQNetwork(weights).greedy, episodes, seed=seed,
                   num_envs=min(episodes, ROUND_ENVS), on_first_failure=on_first_failure)
    return res.returns, time.perf_counter() - t


class RoundRunner:
    """Rounds in order, played by the worker process (or here, if there is none).

    The trainer asks for a round's *verdict* at the next evaluation point (`verdict`), and for
    its full statistics (`completed`) whenever they have come: the worker reports a failing
    round's verdict at its first failure, then plays the rest for the statistics while the
    trainer goes on. Messages come in round order, so which rounds are complete at a given
    point depends only on the order of events, never on timing: runs stay deterministic.
    """

    def __init__(self, episodes: int, background: bool = True):
        self.episodes = episodes
        self.rounds: list[Round] = []   # started, not yet handed back complete
        self.busy_s = 0.0               # seconds spent playing rounds (in whichever process)
        self.worker: subprocess.Popen | None = None
        if background:
            self.worker = self._start_worker()

    @staticmethod
    def _start_worker() -> subprocess.Popen | None:
        # A fresh interpreter, not a fork of this one (which may hold TensorFlow's threads).
        # -O: gymnasium's step asserts on every call that the action is in the action space, a
        # check that shows in a round's profile; the worker's actions are argmax indices, valid
        # by construction. The environment's dynamics and rewards are the same code either way.
        env = child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        try:
            return subprocess.Popen([sys.executable, "-O", "-m", "acting.eval_rounds", "--worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError:
            return None  # rounds are then played in this process

    def start(self, weights: list[np.ndarray], seed: int, index: int, env_steps: int,
              learn_steps: int) -> None:
        snapshot = [np.array(w, np.float32, copy=True) for w in weights]
        r = Round(index, env_steps, learn_steps, snapshot, seed)
        self.rounds.append(r)
        if self.worker is not None:
            try:
                send(self.worker.stdin, (snapshot, self.episodes, seed))
                return
            except OSError:
                self._drop_worker()
        self._play_here(r)

    def _play_here(self, r: Round) -> None:
        returns, dt = play(r.weights, self.episodes, r.seed)
        self.busy_s += dt
        r.result = EvalResult(returns, self.episodes)
        r.passed = r.result.passed

    def verdict(self) -> Round | None:
        """The oldest round whose verdict is not applied, once it has one (waits for it), now
        marked applied; None if there is none."""
        r = next((r for r in self.rounds if not r.applied), None)
        while r is not None and r.passed is None:
            self._read_one()
        if r is not None:
            r.applied = True
        return r

    def completed(self, wait: bool = False) -> list[tuple[Round, EvalResult]]:
        """Rounds with their verdict applied and every episode played, oldest first (with
        `wait`, every round is first played out)."""
        while wait and self.rounds and self.rounds[-1].result is None:
            self._read_one()
        done = []
        while self.rounds and self.rounds[0].result is not None and self.rounds[0].applied:
            r = self.rounds.pop(0)
            done.append((r, r.result))
        return done

    def unapplied(self) -> list[Round]:
        """Rounds played out whose verdict waits for the next evaluation point (after
        `completed(wait=True)`, every round left): what a checkpoint must carry."""
        return [r for r in self.rounds if not r.applied]

    def restore(self, rounds: list[Round]) -> None:
        """Rounds a checkpoint carried: their verdicts are applied at the next evaluation point,
        as they would have been had the run not stopped."""
        self.rounds.extend(rounds)

    def _read_one(self) -> None:
        """Take the worker's next message; if it is gone, replay the unfinished rounds here."""
        msg = receive(self.worker.stdout) if self.worker is not None else None
        if msg is None:
            self._drop_worker()
            for r in self.rounds:
                if r.result is None:
                    self._play_here(r)
            return
        kind, *body = msg
        if kind == "verdict":
            next(r for r in self.rounds if r.passed is None).passed = bool(body[0])
        else:  # "done"
            r = next(r for r in self.rounds if r.result is None)
            returns, dt = body
            self.busy_s += dt
            r.result = EvalResult(np.asarray(returns), self.episodes)
            if r.passed is None:
                r.passed = r.result.passed

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait()
            self.worker = None

    def close(self) -> None:
        if self.worker is not None:
            try:
                self.worker.stdin.close()
                self.worker.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.worker.kill()
                self.worker.wait()
            self.worker = None


def worker_main() -> int:
    """Play rounds sent on stdin until it closes. For each: ("verdict", passed) as soon as it
    is known (at the first failure, or at the end), then ("done", returns, seconds)."""
    import signal
    # Ctrl-C and SIGTERM (from `timeout`, Slurm, systemd: often sent to the whole process group)
    # are the trainer's to handle: its final checkpoint may still need this round's verdict. It
    # ends us by closing our stdin, or by SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return _serve(sys.stdin.buffer, sys.stdout.buffer)
    except OSError:  # BrokenPipeError above all: the trainer is gone, nobody to tell anything
        os._exit(0)  # not sys.exit: flushing the dead pipe at exit would print a traceback


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    while True:
        job = receive(stdin)
        if job is None:
            return 0
        weights, episodes, seed = job
        failed = []

        def report_failure() -> None:
            failed.append(True)
            send(stdout, ("verdict", False))
        returns, dt = play(weights, episodes, seed, on_first_failure=report_failure)
        if not failed:
            send(stdout, ("verdict", EvalResult(returns, episodes).passed))
        send(stdout, ("done", returns, dt))


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:  # the trainer's child, never a user's command
        print("usage: python -m acting.eval_rounds --worker (started by the trainer, which "
              "sends the rounds on stdin)", file=sys.stderr)
        sys.exit(2)
    sys.exit(worker_main())
