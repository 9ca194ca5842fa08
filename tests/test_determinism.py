"""Same seed on the CPU -> identical learning curves; a different seed -> different ones."""
from __future__ import annotations

import csv

import pytest

from conftest import run_cli
from common.metrics import TIMING_COLUMNS

SHORT = ["--max-env-steps", "12288", "--eval-every", "32", "--no-profile", "--quiet"]


def learning_columns(path):
    """Every column except the ones that time the machine (wall clock, steps/s, RSS)."""
    rows = list(csv.DictReader(open(path)))
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


@pytest.mark.slow
def test_same_seed_same_metrics_and_evals(tmp_path):
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        proc = run_cli("--log-dir", str(tmp_path / name), "--seed", seed, *SHORT)
        assert proc.returncode in (0, 3), proc.stderr[-2000:]
        runs[name] = (learning_columns(tmp_path / name / "metrics.csv"),
                      learning_columns(tmp_path / name / "eval.csv"))
    metrics_a, evals_a = runs["a"]
    assert len(metrics_a) >= 10 and evals_a
    assert runs["a"] == runs["b"], "same seed gave different learning curves"
    assert runs["a"][0] != runs["c"][0], "a different seed gave the same curve: seeding is ignored"
