"""Sweeps on a real Ray cluster: `ray start` processes on this one machine, as docs/cluster.md says.

One head on 127.0.0.2 with no CPUs, and later one worker on 127.0.0.3, each with its own
`--temp-dir` and its own ports (never Ray's defaults, so nobody else's Ray on this machine can
meet them), its own HOME (no ~/.ray/auth_token is read or written) and, for the worker, its own
TMPDIR: the worker's disk stands in for another machine's. In order:

1. head only: a sweep cannot run any trial there, and ends at once with one line (exit 2);
2. with the worker: a sweep whose ASHA scheduler stops trials early; every trial (solved, failed,
   stopped by the scheduler, cut by its budget) has its files at the storage, with a config.json
   naming where they are, and nothing is left on the worker;
3. the worker is stopped mid-sweep: the sweep ends by itself, reports written, exit 1.

Stand-in trainers (below, imported by name in the trial processes) keep it fast; the real trainer's
end-on-request is tested in test_training.py. Only the processes this module started are stopped,
by PID (never `ray stop`, which would stop every Ray on the machine).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from common import run_log
from common.config import TrainConfig
from common.run_log import CONFIG_JSON, EVAL_CSV, FIGURE_PNG, METRICS_CSV, SUMMARY_JSON
from experiments.sweep_report import SWEEP_CSV, SWEEP_MD, TRIALS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("yaml") is None,
    reason="Ray Tune and PyYAML not installed (pip install -r requirements/sweep.txt)")]

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
SOLVE_LR, CUT_LR, FAIL_LR, BUDGET_LR, SLOW_LR = 0.001, 0.002, 0.003, 0.004, 0.005


# ------------------------------------------------------------------------------------------------
# Stand-in trainers (run in the trial processes on the worker node)
# ------------------------------------------------------------------------------------------------
def stand_in(cfg: TrainConfig, on_eval: Any) -> dict[str, Any]:
    """Writes the trainer's files and, like it, ends after a round for which on_eval returns a
    stop reason. By learning rate: SOLVE solves in its first round; CUT reports poor rounds until
    stopped (ASHA stops it at max_t); FAIL raises after its first round; BUDGET ends unsolved
    after one round, as a spent budget does; SLOW reports a round every half second for a minute."""
    d = Path(cfg.log_dir)
    run_log.atomic_write_json(d / CONFIG_JSON, {"config": cfg.to_dict(), "pid": os.getpid()})
    rows: list[dict[str, Any]] = []
    solve = math.isclose(cfg.lr, SOLVE_LR)
    last = {SOLVE_LR: 1, FAIL_LR: 1, BUDGET_LR: 1, SLOW_LR: 120}.get(round(cfg.lr, 3), 6)
    reason = "solved" if solve else "max_env_steps"
    for r in range(1, last + 1):
        time.sleep(0.5 if math.isclose(cfg.lr, SLOW_LR) else 0.1)
        rows.append({"round": r, "wall_s": 0.5 * r, "env_steps": 1024 * r,
                     "mean": 500.0 if solve else 20.0, "passed": solve, "consecutive": 3 if solve else 0})
        run_log.atomic_write_text(d / EVAL_CSV, "round,mean\n" + "".join(
            f"{x['round']},{x['mean']}\n" for x in rows))
        stop = on_eval(dict(rows[-1]))
        if math.isclose(cfg.lr, FAIL_LR):
            raise RuntimeError("non-finite loss at learning step 12")
        if stop:
            reason = stop
            break
    run_log.atomic_write_text(d / METRICS_CSV, "wall_s,loss\n0.5,0.1\n")
    run_log.atomic_write_bytes(d / FIGURE_PNG, b"\x89PNG\r\n\x1a\nstand-in")
    summary = {"solved": solve, "solve_wall_s": 0.5 if solve else None,
               "solve_env_steps": 1024 if solve else None, "stop_reason": reason,
               "best_eval_mean": rows[-1]["mean"], "eval_rounds": len(rows),
               "total_env_steps": 1024 * len(rows), "exit_code": 0 if solve else 3}
    run_log.atomic_write_json(d / SUMMARY_JSON, summary)
    return summary


# ------------------------------------------------------------------------------------------------
# Real Ray nodes
# ------------------------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    """n consecutive ports free on every interface (Ray binds some of its servers to all)."""
    for _ in range(200):
        base = random.randrange(30000, 60000 - n)
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("", port))
        except OSError:
            continue
        return list(range(base, base + n))
    raise RuntimeError("no free ports")


@dataclass
class Node:
    proc: subprocess.Popen
    tmp: str
    address: str


def _node_env(home: str, tmpdir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=home, TMPDIR=tmpdir, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def start_node(ip: str, home: str, cpus: int, head: Node | None = None, **env: str) -> Node:
    """`ray start --block` (one process to stop: it stops the node's own processes on SIGTERM)."""
    tmp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must stay short
    gcs, nm, om, env_agent, agent_grpc, agent_http, metrics, client, *workers = _free_ports(8 + 24)
    cmd = [str(RAY), "start", "--block", "--node-ip-address", ip, "--temp-dir", tmp,
           "--num-cpus", str(cpus), "--node-manager-port", str(nm), "--object-manager-port", str(om),
           "--runtime-env-agent-port", str(env_agent), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--dashboard-agent-listen-port", str(agent_http), "--metrics-export-port", str(metrics),
           "--min-worker-port", str(workers[0]), "--max-worker-port", str(workers[-1]),
           "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    if head is None:
        cmd += ["--head", "--port", str(gcs), "--ray-client-server-port", str(client),
                "--include-dashboard=false"]
    else:
        cmd += ["--address", head.address]
    with open(Path(tmp) / "ray-start.log", "w") as log:
        # No drain on SIGTERM (Ray's default waits up to 30 s for running work): the worker stopped
        # mid-sweep goes at once, as a machine that dies does.
        env = _node_env(home, tmp, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **env)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    return Node(proc, tmp, f"{ip}:{gcs}" if head is None else head.address)


def _wait_for(what: str, ready: Any, node: Node, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if node.proc.poll() is not None or time.monotonic() > deadline:
            log = (Path(node.tmp) / "ray-start.log").read_text()[-2000:]
            raise AssertionError(f"{what} did not come up (rc {node.proc.poll()}):\n{log}")
        time.sleep(0.3)


def wait_head(head: Node) -> None:
    host, port = head.address.rsplit(":", 1)

    def answers() -> bool:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return True
        except OSError:
            return False
    _wait_for("the head", answers, head)


def wait_joined(head: Node, worker: Node, ip: str) -> None:
    """Until the head's GCS has registered the worker node (its log says so)."""
    log = Path(head.tmp) / "session_latest" / "logs" / "gcs_server.out"

    def registered() -> bool:
        try:
            return any("Registering new node" in line and f"node_name={ip}" in line
                       for line in log.read_text().splitlines())
        except OSError:
            return False
    _wait_for("the worker", registered, worker)


def _pids_using(tmp: str) -> list[int]:
    """Processes whose command line names this node's temp dir: the ones it started."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and tmp in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def stop_node(node: Node, timeout: float = 30.0) -> None:
    """SIGTERM to our `ray start --block`, which stops its node's processes; then SIGKILL, by PID,
    whatever of ours is left (its process group, and processes naming its temp dir)."""
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for kill in (lambda: os.killpg(node.proc.pid, signal.SIGKILL),
                 *[(lambda p=p: os.kill(p, signal.SIGKILL)) for p in _pids_using(node.tmp)]):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    node.proc.wait()


# ------------------------------------------------------------------------------------------------
# Running sweeps against the cluster (each in a process of its own, like a user's)
# ------------------------------------------------------------------------------------------------
DRIVER = ("import sys, test_cluster; from experiments import sweep; "
          "sys.exit(sweep.run_sweep(sys.argv[1], sys.argv[2], ray_address=sys.argv[3], "
          "storage=sys.argv[4], train_fn=test_cluster.stand_in))")


def sweep_process(spec: Path, out: Path, cluster: dict[str, Any]) -> subprocess.Popen:
    # The stand-in trainer is this module: the driver imports it by name, from tests/.
    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(spec), str(out / "log"),
                             cluster["head"].address, str(out / "store")], cwd=ROOT,
                            env=_node_env(cluster["home"], str(out), PYTHONPATH=pythonpath), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    cluster["drivers"].append(proc)
    return proc


def write_spec(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = str(tmp_path / "home")
    os.makedirs(home)
    nodes: dict[str, Any] = {"home": home, "drivers": []}
    head = nodes["head"] = start_node(HEAD_IP, home, cpus=0)
    try:
        wait_head(head)
        yield nodes
    finally:
        for proc in nodes["drivers"]:  # a sweep that hung (the test failed): ours, by PID
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for key in ("worker", "head"):
            if key in nodes:
                stop_node(nodes[key])
        tmps = [nodes[key].tmp for key in ("worker", "head") if key in nodes]
        for _ in range(50):  # SIGKILLed processes take a moment to go
            leftovers = [p for tmp in tmps for p in _pids_using(tmp)]
            if not leftovers:
                break
            time.sleep(0.1)
        for key in ("worker", "head"):
            if key in nodes:
                subprocess.run(["rm", "-rf", nodes[key].tmp], check=False)
        assert not leftovers, f"processes left running: {leftovers}"


def test_sweeps_on_a_real_two_node_cluster(tmp_path: Path, cluster: dict[str, Any]) -> None:
    head, home = cluster["head"], cluster["home"]
    shared = Path("/tmp/ray/ray_current_cluster")  # what ray.init() on this machine would join
    assert not shared.exists() or head.address not in shared.read_text()

    # 1. Head only (0 CPUs): the sweep cannot run a trial, and says so in one line.
    spec = write_spec(tmp_path / "one.yaml", "search_space:\n  lr: 0.001\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "cartpole.py"), "--sweep", str(spec),
                           "--log-dir", str(tmp_path / "none"), "--ray-address", head.address],
                          cwd=ROOT, env=_node_env(home, str(tmp_path)), capture_output=True,
                          text=True, timeout=120)
    assert (proc.returncode, proc.stderr.splitlines()) == (2, [
        f"cartpole.py: error: no node of the Ray cluster at {head.address} can run a trial: each "
        "trial needs 1 CPU, and the cluster offers at most 0 CPU on one node (1 node alive)"]), \
        proc.stderr
    print(f"head-only sweep ended in {time.monotonic() - t0:.1f} s")

    # 2. With a worker: every trial's files come home, whatever ended it.
    # 4 CPUs (Ray's count; the machine may have fewer cores): the 4 trials start at once.
    worker = cluster["worker"] = start_node(WORKER_IP, home, cpus=4, head=head)
    wait_joined(head, worker, WORKER_IP)
    spec = write_spec(tmp_path / "asha.yaml", f"""
        name: cluster-asha
        search_space:
          lr: {{grid: [{SOLVE_LR}, {CUT_LR}, {FAIL_LR}, {BUDGET_LR}]}}
        seeds: [0]
        resources_per_trial: {{cpu: 1}}
        scheduler: asha
        grace_period: 2
        max_t: 2
    """)
    out = tmp_path / "asha"
    t0 = time.monotonic()
    proc = sweep_process(spec, out, cluster)
    _, err = proc.communicate(timeout=300)  # about a minute on 2 busy cores
    print(f"two-node sweep: {time.monotonic() - t0:.1f} s\n{err}")
    assert proc.returncode == 0, err
    rows = {float(r["lr"]): r for r in run_log.read_csv(out / "log" / SWEEP_CSV)}
    expected = {SOLVE_LR: ("ok", "True", "solved"), CUT_LR: ("stopped-early", "False", "asha"),
                FAIL_LR: ("failed", "False", ""), BUDGET_LR: ("ok", "False", "max_env_steps")}
    assert {lr: (r["status"], r["solved"], r["stop_reason"]) for lr, r in rows.items()} == expected
    assert rows[FAIL_LR]["error"] == "RuntimeError: non-finite loss at learning step 12"
    store = out / "store"
    for lr, row in rows.items():
        home_dir = store / TRIALS_DIR / row["trial"]
        assert row["log_dir"] == str(home_dir)
        files = [EVAL_CSV, CONFIG_JSON]
        files += [] if lr == FAIL_LR else [SUMMARY_JSON, METRICS_CSV, FIGURE_PNG]
        missing = [f for f in files if not (home_dir / f).is_file()]
        assert not missing, f"{row['trial']}: {missing} not at {home_dir}"
        # config.json names the storage; it trained on the worker, in a temporary directory there.
        record = json.loads((home_dir / CONFIG_JSON).read_text())
        assert record["config"]["log_dir"] == str(home_dir)
        assert record["trained_in"].split(":", 1)[1].startswith(worker.tmp + "/cartpole-")
    # The stopped trial ended itself: its own summary says why.
    cut = json.loads((store / TRIALS_DIR / rows[CUT_LR]["trial"] / SUMMARY_JSON).read_text())
    assert (cut["stop_reason"], cut["eval_rounds"]) == ("asha", 2)
    assert not list(Path(worker.tmp).glob("cartpole-*")), "staged trial files left on the worker"
    assert "stopped early by the scheduler after 2 eval rounds" in err
    assert "waiting" not in err  # trials that are merely starting (slowly) are not "waiting"

    # 3. The worker stops mid-sweep: the sweep ends by itself, with its reports.
    spec = write_spec(tmp_path / "slow.yaml", f"""
        name: cluster-loss
        search_space:
          lr: {SLOW_LR}
        seeds: [0, 1, 2]
        resources_per_trial: {{cpu: 2}}
    """)  # two trials run on the worker, the third waits for it
    out = tmp_path / "loss"
    proc = sweep_process(spec, out, cluster)
    deadline = time.monotonic() + 120
    while not list(Path(worker.tmp).glob("cartpole-*/eval.csv")):  # a trial is running there
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    t0 = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)  # the node stops, at once (see start_node)
    _, err = proc.communicate(timeout=120)
    print(f"sweep after the worker was told to stop: ended {time.monotonic() - t0:.1f} s later\n{err}")
    stop_node(worker)
    assert proc.returncode == 1, err
    ending = [line for line in err.splitlines() if line.startswith("sweep: no node left")]
    assert ending == [f"sweep: no node left that can run a trial (each trial needs 2 CPU, and the "
                      f"cluster offers at most 0 CPU on one node (1 node alive); lost: {WORKER_IP}); "
                      "ending the sweep"], err
    # The trial(s) running on the worker failed with it; the rest never ran.
    rows = run_log.read_csv(out / "log" / SWEEP_CSV)
    died = f"its node {WORKER_IP} died; the files it had not sent home died with it"
    assert len(rows) == 3 and sum(r["status"] == "failed" for r in rows) >= 1
    assert all((r["status"], r["error"]) in (("failed", died), ("not-run", "")) for r in rows), rows
    assert (out / "log" / SWEEP_MD).is_file() and (out / "store" / SWEEP_MD).is_file()
