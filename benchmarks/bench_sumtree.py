"""Time sum-tree sampling and priority updates, 1024 items per call.

Usage (from the project root):
    .venv/bin/python benchmarks/bench_sumtree.py [--repeats N] [--cold]

Compares, at capacities 2^14, 2^17 and 2^20:
  * sumtree_tf.SumTree in a tf.function (graph) and with jit_compile=True (XLA),
    one Python call per sample+update, plus XLA with 16 sample+update rounds
    per call (how the trainer amortises the call overhead);
  * a NumPy tree (flat heap array, whole batch descends level by level);
  * a pure-Python tree (list heap, one item at a time);
  * np.cumsum + np.searchsorted over a flat priority array.
Each case is compiled and warmed up first; then the cases at one capacity take
turns in a few blocks of back-to-back calls (default, "hot") or call by call
(--cold), so that load from other processes on this shared machine hits them
alike. Reported numbers are medians in microseconds per call (per round for the
amortised row), with ratios to the single-call XLA tree measured in this run.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from sumtree_tf import SumTree  # noqa: E402

BATCH = 1024
CAPACITIES = [2**14, 2**17, 2**20]
ROUNDS_PER_CALL = 16
BLOCKS = 5  # turns per case in the default ("hot") timing
PY_STRIDE = 20  # the pure-Python tree gets 1/20 of the timed calls


# --------------------------------------------------------------------------
# Reference implementations (benchmark-only)
# --------------------------------------------------------------------------
class NumpyTree:
    """Same heap layout as SumTree, with the batch moving through NumPy arrays."""

    def __init__(self, leaves: np.ndarray) -> None:
        self.capacity = len(leaves)
        self.p = 1 << (self.capacity - 1).bit_length()
        self.depth = self.p.bit_length() - 1
        self.nodes = np.zeros(2 * self.p)
        self.nodes[self.p : self.p + self.capacity] = leaves
        width = self.p
        while width > 1:
            self.nodes[width // 2 : width] = self.nodes[width : 2 * width : 2] + self.nodes[width + 1 : 2 * width : 2]
            width //= 2

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        remaining = (np.arange(batch) + rng.random(batch)) * (self.nodes[1] / batch)
        node = np.ones(batch, np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * node]
            right = self.nodes[2 * node + 1]
            go_right = (right > 0) & ((remaining >= left) | (left <= 0))
            remaining = np.where(go_right, remaining - left, remaining)
            node = 2 * node + go_right
        idx = np.minimum(node - self.p, self.capacity - 1)
        return idx, self.nodes[idx + self.p]

    def update(self, idx: np.ndarray, values: np.ndarray) -> None:
        # Fancy assignment keeps the last of repeated indices; parents are
        # recomputed from children, so repeated parents need no np.unique.
        node = idx + self.p
        self.nodes[node] = values
        for _ in range(self.depth):
            node = node // 2
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]


class PythonTree:
    """Textbook sum tree: Python list heap, one item at a time."""

    def __init__(self, leaves: np.ndarray) -> None:
        built = NumpyTree(leaves)  # bulk construction is not what is timed
        self.capacity, self.p = built.capacity, built.p
        self.nodes: list[float] = built.nodes.tolist()

    def sample(self, batch: int, rng: random.Random) -> tuple[list[int], list[float]]:
        nodes, p = self.nodes, self.p
        segment = nodes[1] / batch
        out_idx, out_pri = [], []
        for j in range(batch):
            v = (j + rng.random()) * segment
            i = 1
            while i < p:
                left, right = nodes[2 * i], nodes[2 * i + 1]
                if right > 0 and (v >= left or left <= 0):
                    v -= left
                    i = 2 * i + 1
                else:
                    i = 2 * i
            k = min(i - p, self.capacity - 1)
            out_idx.append(k)
            out_pri.append(nodes[k + p])
        return out_idx, out_pri

    def update(self, idx: list[int], values: list[float]) -> None:
        nodes = self.nodes
        for k, v in zip(idx, values):
            i = k + self.p
            nodes[i] = v
            i //= 2
            while i >= 1:
                nodes[i] = nodes[2 * i] + nodes[2 * i + 1]
                i //= 2


class CumsumSampler:
    """No tree: a prefix sum per sampling call, O(capacity) each time."""

    def __init__(self, leaves: np.ndarray) -> None:
        self.p = leaves.copy()

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cumsum = np.cumsum(self.p)
        values = (np.arange(batch) + rng.random(batch)) * (cumsum[-1] / batch)
        idx = np.minimum(np.searchsorted(cumsum, values, side="right"), len(self.p) - 1)
        return idx, self.p[idx]

    def update(self, idx: np.ndarray, values: np.ndarray) -> None:
        self.p[idx] = values


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------
def first_call_s(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def blockwise_medians_us(
    cases: dict[str, tuple[Callable[[], object], int]], repeats: int, cold: bool
) -> dict[str, float]:
    """Median µs per call over `repeats` timed calls per case.

    Cases take turns in BLOCKS blocks, so that load from other processes on
    this shared machine is spread over all of them. Within a block a case runs
    back to back after one untimed call ("hot": its data in cache, TF's
    threads awake). With `cold`, cases take turns on every single call instead,
    which is closer to a trainer that does other work between replay calls.
    A case with stride k gets 1/k of the calls (the slow pure-Python tree).
    """
    rounds = repeats if cold else min(BLOCKS, repeats)
    per_round = 1 if cold else -(-repeats // rounds)
    times: dict[str, list[float]] = {label: [] for label in cases}
    for fn, _ in cases.values():
        fn()
    for r in range(rounds):
        for label, (fn, stride) in cases.items():
            if cold:
                if r % stride:
                    continue
                n = 1
            else:
                n = max(1, per_round // stride)
                fn()  # re-warm: the other cases just ran
            for _ in range(n):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
    return {label: float(np.median(t)) * 1e6 for label, t in times.items()}


def bench_capacity(capacity: int, repeats: int, cold: bool) -> tuple[dict, dict, dict]:
    leaves = np.random.default_rng(capacity).exponential(size=capacity)
    compile_s: dict[str, float] = {}
    both: dict[str, tuple[Callable[[], object], int]] = {}
    only: dict[str, tuple[Callable[[], object], int]] = {}

    # Each TF variant gets its own tree so that no variable is shared between
    # graph and XLA functions.
    for label, jit in (("TF tree, graph", False), ("TF tree, XLA", True)):
        tree = SumTree(capacity)
        tree.rebuild_from_numpy(leaves)
        gen = tf.random.Generator.from_seed(0)

        def tf_round(tree=tree, gen=gen):
            idx, _ = tree.sample(BATCH, gen)
            tree.set(idx, gen.uniform([BATCH], dtype=tf.float64))
            return idx

        def tf_sample(tree=tree, gen=gen):
            return tree.sample(BATCH, gen)

        step = tf.function(tf_round, jit_compile=jit)
        compile_s[label] = first_call_s(step)
        both[label] = (step, 1)
        sample = tf.function(tf_sample, jit_compile=jit)
        first_call_s(sample)
        only[label] = (sample, 1)

        if jit:
            def tf_rounds(tf_round=tf_round):
                def body(i):
                    tf_round()
                    return (i + 1,)

                return tf.while_loop(lambda i: i < ROUNDS_PER_CALL, body, (tf.constant(0),))

            multi_label = f"TF tree, XLA, {ROUNDS_PER_CALL}/call"
            multi = tf.function(tf_rounds, jit_compile=True)
            compile_s[multi_label] = first_call_s(multi)
            both[multi_label] = (multi, ROUNDS_PER_CALL)

    np_rng = np.random.default_rng(0)
    py_rng = random.Random(0)
    for label, impl, stride in (
        ("NumPy tree", NumpyTree(leaves), 1),
        ("pure-Python tree", PythonTree(leaves), PY_STRIDE),
        ("cumsum+searchsorted", CumsumSampler(leaves), 1),
    ):
        if isinstance(impl, PythonTree):

            def round_(impl=impl):
                idx, _ = impl.sample(BATCH, py_rng)
                impl.update(idx, [py_rng.random() for _ in range(BATCH)])

            def sample_(impl=impl):
                return impl.sample(BATCH, py_rng)
        else:

            def round_(impl=impl):
                idx, _ = impl.sample(BATCH, np_rng)
                impl.update(idx, np_rng.random(BATCH))

            def sample_(impl=impl):
                return impl.sample(BATCH, np_rng)

        both[label] = (round_, stride)
        only[label] = (sample_, stride)

    all_cases = {("both", k): v for k, v in both.items()} | {("only", k): v for k, v in only.items()}
    medians = blockwise_medians_us({f"{a}|{b}": v for (a, b), v in all_cases.items()}, repeats, cold)
    both_us = {k: medians[f"both|{k}"] for k in both}
    only_us = {k: medians[f"only|{k}"] for k in only}
    both_us[f"TF tree, XLA, {ROUNDS_PER_CALL}/call"] /= ROUNDS_PER_CALL  # per round
    return both_us, only_us, compile_s


def print_table(title: str, results: dict[int, dict[str, float]], baseline: str) -> None:
    labels = list(next(iter(results.values())))
    caps = list(results)
    head = f"{'':28s}" + "".join(f"{'2^' + str(c.bit_length() - 1) + ' µs':>12s}{'ratio':>7s}" for c in caps)
    print(f"\n{title}")
    print(head)
    print("-" * len(head))
    for label in labels:
        cells = ""
        for c in caps:
            us = results[c][label]
            cells += f"{us:12,.0f}{us / results[c][baseline]:7.2f}"
        print(f"{label:28s}{cells}")
    print(f"(ratio = time / time of '{baseline}' at the same capacity, this run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per case (default 200)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="alternate cases on every call (caches and TF threads cold) instead of hot blocks",
    )
    args = parser.parse_args()
    repeats = max(PY_STRIDE, args.repeats)

    print(
        f"batch {BATCH}; tensorflow {tf.__version__}, numpy {np.__version__}; "
        f"{'cold (alternating every call)' if args.cold else f'hot ({BLOCKS} alternating blocks)'}; "
        f"{repeats} timed calls per case (pure Python 1/{PY_STRIDE}, {ROUNDS_PER_CALL}/call row "
        f"1/{ROUNDS_PER_CALL}); {os.cpu_count()} CPUs"
    )
    both, only, compile_s = {}, {}, {}
    t0 = time.perf_counter()
    for capacity in CAPACITIES:
        both[capacity], only[capacity], compile_s[capacity] = bench_capacity(capacity, repeats, args.cold)
        print(f"  capacity 2^{capacity.bit_length() - 1} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    print_table("sample + update, µs per 1024-item round", both, "TF tree, XLA")
    print_table("sampling only, µs per 1024-item call", only, "TF tree, XLA")
    print("\nfirst call (trace + compile), s")
    for label in next(iter(compile_s.values())):
        print(f"{label:28s}" + "".join(f"{compile_s[c][label]:12.2f}{'':7s}" for c in CAPACITIES))
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
