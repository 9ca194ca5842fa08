"""A sweep on a simulated two-node Ray cluster on this one machine brings every trial's files home.

`ray.cluster_utils.Cluster` starts a head node with no CPUs (so no trial can run on it) and a
worker node with its own temp dir and a custom resource, `worker_node`; the sweep's trials
require that resource, so all of them run on the worker node. The sweep joins the cluster by its
address, as `--ray-address` does, with a storage path that is not its log dir. Afterwards every
trial's files must be under STORAGE/trials/<trial>/, and the trials must have trained somewhere
else (a temporary directory on their node, removed once the files were home): on a real cluster
the worker's disk is another machine's.

Two stand-in trials (one solves, one fails after writing part of its files) keep this cheap; one
real tiny trial of the trainer checks the real file names end to end.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from common import run_log
from experiments import sweep
from experiments import sweep_spec
from common.config import TrainConfig
from common.run_log import (BEST_MODEL, EVAL_CSV, FIGURE_PNG, FINAL_MODEL, METRICS_CSV, MODEL_DIR,
                     SUMMARY_JSON)
from experiments.sweep_report import SWEEP_CSV, SWEEP_MD, TRIALS_DIR, TUNE_DIR

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("yaml") is None,
    reason="Ray Tune and PyYAML not installed (pip install -r requirements/sweep.txt)")

SOLVE_LR, FAIL_LR, REAL_LR = 0.001, 0.003, 0.004
WHERE_JSON = "where.json"


# ------------------------------------------------------------------------------------------------
# What runs inside the trials (imported by name on the worker node)
# ------------------------------------------------------------------------------------------------
def cluster_train(cfg: TrainConfig, on_eval: Any = None) -> dict[str, Any]:
    """The real trainer for REAL_LR; otherwise a stand-in writing the trainer's file names."""
    if math.isclose(cfg.lr, REAL_LR):
        from training.trainer import train
        summary = train(cfg, on_eval=on_eval)
        _record_where(cfg)
        return summary
    _record_where(cfg)
    d = Path(cfg.log_dir)
    rows = [{"round": r, "wall_s": 0.5 * r, "env_steps": 2048 * r, "learn_steps": 128 * r,
             "episodes": 4, "mean": 500.0, "min": 500, "max": 500, "at_500": 4, "passed": True,
             "consecutive": r} for r in (1, 2, 3)]
    run_log.atomic_write_text(d / EVAL_CSV, "round,mean\n" + "".join(f"{r['round']},500\n" for r in rows))
    if math.isclose(cfg.lr, FAIL_LR):
        raise RuntimeError("non-finite loss at learning step 12")  # after eval.csv: it must come home
    for row in rows:
        on_eval(row)
    run_log.atomic_write_text(d / METRICS_CSV, "wall_s,loss\n0.5,0.1\n")
    run_log.atomic_write_bytes(d / FIGURE_PNG, b"\x89PNG\r\n\x1a\nstand-in")
    (d / MODEL_DIR).mkdir(exist_ok=True)
    run_log.atomic_write_bytes(d / MODEL_DIR / BEST_MODEL, b"PK\x03\x04stand-in")
    summary = {"solved": True, "solve_wall_s": 1.5, "solve_env_steps": 6144, "exit_code": 0,
               "stop_reason": "solved", "best_eval_mean": 500.0, "eval_rounds": 3}
    run_log.atomic_write_json(d / SUMMARY_JSON, summary)
    return summary


def _record_where(cfg: TrainConfig) -> None:
    import ray
    run_log.atomic_write_json(Path(cfg.log_dir) / WHERE_JSON, {
        "node": ray.get_runtime_context().get_node_id(), "log_dir": cfg.log_dir, "pid": os.getpid()})


def load_spec_on_worker_nodes(path: str) -> sweep_spec.SweepSpec:
    """The spec, with every trial also requiring one unit of the worker node's custom resource."""
    spec = sweep_spec.load_spec(path)
    spec.resources = {**spec.resources, "worker_node": 1.0}
    return spec


# ------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------
#: How long the fixture waits for both nodes to register, and how often it starts them afresh
#: when Ray gives up on a node's start-up (see start_two_nodes).
NODE_START_TIMEOUT_S = 300
NODE_START_ATTEMPTS = 3


def start_two_nodes(cluster_class: Any, head_tmp: str, worker_tmp: str) -> tuple[Any, Any]:
    """A head without CPUs and a worker node, registered.

    Ray gives a starting node a fixed 30 s to register its raylet (`Node.__init__`, not
    configurable), and its test cluster waits another fixed 30 s per node. On a loaded 2-core
    machine a node's start took 48 s, and a first start on a fresh machine also compiles Ray's
    modules: "The current node timed out during startup" was this fixture's occasional error.
    So nodes are added without the cluster's wait, awaited with a bound of our own, and a start
    that Ray gave up on is retried from scratch.
    """
    for attempt in range(1, NODE_START_ATTEMPTS + 1):
        cluster = cluster_class(initialize_head=False)
        try:
            cluster.add_node(wait=False, num_cpus=0, include_dashboard=False, temp_dir=head_tmp)
            worker = cluster.add_node(wait=False, num_cpus=2, resources={"worker_node": 2},
                                      temp_dir=worker_tmp)
            cluster.wait_for_nodes(timeout=NODE_START_TIMEOUT_S)
            return cluster, worker
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            cluster.shutdown()
            if attempt == NODE_START_ATTEMPTS or "timed out during startup" not in str(e):
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster
    # Short temp dirs of their own: Ray's socket paths must stay under ~100 characters, and the
    # worker's temp dir differing from the head's is what a second machine looks like.
    head_tmp = tempfile.mkdtemp(prefix="rhead", dir="/tmp")
    worker_tmp = tempfile.mkdtemp(prefix="rwork", dir="/tmp")
    cluster = worker = None
    try:
        cluster, worker = start_two_nodes(Cluster, head_tmp, worker_tmp)
        yield cluster, worker
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


@pytest.mark.slow
def test_sweep_on_two_nodes_brings_every_trial_home(tmp_path: Path, two_node_cluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, worker = two_node_cluster
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: cluster-test
        search_space:
          lr: {{grid: [{SOLVE_LR}, {FAIL_LR}, {REAL_LR}]}}
          eval_every: 16
          eval_episodes: 4
          confirm_episodes: 4
        seeds: [1]
        max_concurrent: 2
        resources_per_trial: {{cpu: 1}}
        budget: {{max_env_steps: 4096}}
    """))
    monkeypatch.setattr(sweep, "load_spec", load_spec_on_worker_nodes)
    log_dir, storage = tmp_path / "sweep", tmp_path / "storage"
    rc = sweep.run_sweep(str(spec), str(log_dir), ray_address=cluster.address,
                         train_fn=cluster_train, quiet=True, storage=str(storage))
    assert rc == 0  # the stand-in solved

    rows = {r["trial"]: r for r in run_log.read_csv(log_dir / SWEEP_CSV)}
    assert len(rows) == 3
    by_lr = {float(r["lr"]): r for r in rows.values()}
    solved, failed, real = by_lr[SOLVE_LR], by_lr[FAIL_LR], by_lr[REAL_LR]
    assert (solved["status"], solved["solved"], solved["error"]) == ("ok", "True", "")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: non-finite loss at learning step 12"
    assert real["status"] == "ok" and real["error"] == "", real["error"]

    expected = {
        solved["trial"]: [SUMMARY_JSON, EVAL_CSV, METRICS_CSV, FIGURE_PNG, f"{MODEL_DIR}/{BEST_MODEL}"],
        failed["trial"]: [EVAL_CSV],  # what it wrote before it failed
        real["trial"]: [SUMMARY_JSON, EVAL_CSV, METRICS_CSV, FIGURE_PNG, f"{MODEL_DIR}/{FINAL_MODEL}",
                        "config.json", "checkpoints/checkpoint"],
    }
    for name, files in expected.items():
        home = storage / TRIALS_DIR / name
        missing = [f for f in files if not (home / f).is_file()]
        assert not missing, f"{name}: {missing} not at {home}"
        assert rows[name]["log_dir"] == str(home)
        # Trained on the worker node, in a directory of its own there, since removed.
        where = json.loads((home / WHERE_JSON).read_text())
        assert where["node"] == worker.node_id
        assert not Path(where["log_dir"]).is_relative_to(storage) and not Path(where["log_dir"]).exists()
    real_summary = json.loads((storage / TRIALS_DIR / real["trial"] / SUMMARY_JSON).read_text())
    if real_summary.get("solved"):
        assert (storage / TRIALS_DIR / real["trial"] / MODEL_DIR / BEST_MODEL).is_file()
    assert (storage / TRIALS_DIR / solved["trial"] / FIGURE_PNG).read_bytes().startswith(b"\x89PNG")
    # Nothing of the trials in the log dir itself; Tune's records and the reports in the storage.
    assert not (log_dir / TRIALS_DIR).exists()
    assert (storage / TUNE_DIR).is_dir() and (storage / SWEEP_MD).is_file() and (storage / SWEEP_CSV).is_file()


class FlakyCluster:
    """A stand-in for ray.cluster_utils.Cluster whose first `fails` starts time out like Ray's."""
    started: list["FlakyCluster"] = []

    def __init__(self, initialize_head: bool, fails: int = 1) -> None:
        assert initialize_head is False
        self.nodes, self.down = [], False
        FlakyCluster.started.append(self)

    def add_node(self, wait: bool = True, **args: Any) -> str:
        assert wait is False, "the cluster's own fixed 30 s wait must not be used"
        if len(FlakyCluster.started) == 1:
            raise Exception("The current node timed out during startup. This could happen ...")
        self.nodes.append(args)
        return f"node{len(self.nodes)}"

    def wait_for_nodes(self, timeout: float) -> None:
        assert timeout >= NODE_START_TIMEOUT_S

    def shutdown(self) -> None:
        self.down = True


def test_a_node_start_that_ray_gave_up_on_is_retried() -> None:
    FlakyCluster.started = []
    cluster, worker = start_two_nodes(FlakyCluster, "/tmp/h", "/tmp/w")
    first, second = FlakyCluster.started
    assert first.down and not second.down and cluster is second and worker == "node2"
    assert cluster.nodes[1]["resources"] == {"worker_node": 2}
