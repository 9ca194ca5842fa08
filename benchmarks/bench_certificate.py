"""What a certificate of N episodes costs, against the failure-rate bound it gives.

    benchmarks/run.sh bench_certificate RUN_DIR/model/best.keras   (a solved run's model)

Plays N never-seen episodes of a saved solved network with the NumPy policy in one vector env
at most 1,000 wide (as the trainer's certificate does), one BLAS thread (as the evaluation
worker), three times per N; prints the lowest CPU and wall seconds and the exact one-sided 95%
Clopper-Pearson bound on the per-episode failure rate that N episodes all at 500 give.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from acting.evaluation import evaluate, load_saved_network  # noqa: E402
from common.config import ConfigError  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: benchmarks/run.sh bench_certificate RUN_DIR/model/best.keras", file=sys.stderr)
        return 2
    try:
        net, _ = load_saved_network(argv[0])
    except ConfigError as e:
        print(f"bench_certificate: {e}", file=sys.stderr)
        return 2
    for n in (500, 1000, 2000, 5000):
        runs = []
        for rep in range(3):
            c0, t0 = time.process_time(), time.perf_counter()
            r = evaluate(net.greedy, n, seed=10_000 + rep, num_envs=min(n, 1000))
            runs.append((time.process_time() - c0, time.perf_counter() - t0,
                         int(np.sum(r.returns >= 500))))
        print(f"N={n}: CPU {min(x[0] for x in runs):.3f} s, wall {min(x[1] for x in runs):.3f} s "
              f"(min of 3), bound {100 * (1 - 0.05 ** (1 / n)):.2f}%, "
              f"at 500: {[x[2] for x in runs]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
