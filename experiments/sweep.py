"""Hyperparameter and seed sweeps of the CartPole trainer on Ray Tune.

Entry point: `run_sweep(spec_path, log_dir)`, reached as `python cartpole.py --sweep SPEC.yaml
--log-dir DIR [--ray-address ADDR] [--storage PATH_OR_URI]`. Ray is imported only here, and only
when a sweep runs. The trainer (`trainer.train`) is imported only inside trial processes.

Design
------
* **We expand the trial list ourselves; Tune schedules it.** The YAML spec is parsed into
  dimensions, and every trial (grid point x random draw x seed) is built up front with a seeded
  `random.Random`, turned into a `TrainConfig` and checked with `validate()` *before* Ray starts.
  A typo in the 12th grid value therefore costs milliseconds and one line, not a cluster start
  and a failed trial. Tune receives only a `grid_search` over trial indices, and still owns
  concurrency, resources, the ASHA scheduler and fault isolation. The price is that Tune's own
  search algorithms (Optuna, HyperOpt, ...) are not used; for a problem that solves in seconds,
  grid and random search are what we want anyway.
* **Seeds are the innermost grid dimension.** Every sampled configuration runs once per seed
  with identical hyperparameters (a random draw is shared by its seeds, unlike Tune's native
  sampling, which would redraw per grid point). That is what makes per-configuration statistics
  (success rate, median and IQM time-to-solve) meaningful.
* **One trial = one fresh Ray worker process** (`reuse_actors=False`). TensorFlow's graphs, thread
  pools and memory cannot leak between trials. Each trial calls `train_fn(cfg, on_eval=...)`
  with `quiet=True`, `profile=False`, `graphics=False`, and reports every evaluation round to
  Tune (so ASHA can cut poor trials), then one final row carrying the run's summary. Whether a
  round counts towards "solved" is decided by rules.py, the trainer's own rule.
* **Every trial's files come home** to the sweep's storage (`--storage`, default the log dir):
  `STORAGE/trials/<trial name>/`. A trial on the launching machine writes there directly; a
  trial on another machine of a cluster trains into a temporary directory there and, when it
  ends (solved, failed, stopped by the scheduler, or out of budget), sends its files home
  (`TrialHome`, sweep_storage.py). Tune's records go to `STORAGE/ray_tune/` through Tune's own
  storage.
* **A trial stopped by the scheduler ends itself.** Tune would end its process at once, before
  the trainer wrote its summary and before the files went home (on a cluster, every stopped
  trial's files stayed on its worker). ASHA's stops are relayed to the trial instead
  (`sweep_cluster.relayed_asha`, `StopRelay`): the trainer ends after that round as at a budget,
  the files go home, then the trial's process ends.
* **A sweep never waits in silence.** It starts only if some node of the cluster can run a
  trial; while it runs, `sweep_cluster.Watch` says when trials wait for resources, and ends the
  sweep (reports written, exit 1) once no live node can run a trial, e.g. after the only worker
  node died.
* **A failing trial never stops the sweep.** Exceptions from the trainer (ConfigError,
  TrainingFault on a NaN loss, anything else) are caught inside the trainable and reported as a
  final row with `status="failed"` and a one-line error; faults that kill the worker process are
  caught by Tune (`FailureConfig(max_failures=0, fail_fast=False)`) and read back from the result
  grid. `SystemExit`, which Tune raises inside `tune.report` to stop a trial, is deliberately not
  caught.
* **Results are the driver's job.** `DIR/sweep.csv` is rewritten (atomically, via run_log) each
  time a trial ends, so an interrupted sweep still leaves its finished rows; `sweep.md` and
  `sweep.png` are written at the end, and copied to the storage when that is elsewhere.

Modules: `sweep_spec` (the YAML spec, its validation and the trial list) and `sweep_report`
(rows, ranking, statistics, sweep.csv/md/png) hold no Ray code; `sweep_cluster` what the sweep
must know of the cluster (fit, waiting, lost nodes, the stop relay, joining quietly); this module
is the Ray side: starting or joining Ray, the trainable (`run_trial`), the callback that reports
each trial's end (`TrialEndReporter`) and `run_sweep`, in phases: plan, tuner, fit, collect, report.

Exit code of `run_sweep`: 0 if at least one trial solved, 3 if trials ran but none solved (the
trainer's "unsolved" code), 1 if every trial failed or the cluster lost what the remaining
trials needed. Bad specs, a missing Ray, a cluster that refuses us or that no trial fits raise
`SweepError` (a `ValueError` with a one-line message; the CLI prints it and exits 2). The spec
format is documented in sweep_spec.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.config import TrainConfig
from common import rules
from common import run_log
from experiments import sweep_cluster
from experiments import sweep_storage
from experiments.sweep_report import (SWEEP_CSV, SWEEP_MD, SWEEP_PNG, TRIALS_DIR, TUNE_DIR, fmt_metric,
                          fmt_num, result_row, summarize_configs, write_csv, write_reports)
from experiments.sweep_spec import SweepError, Trial, config_from_overrides, display_value, expand_trials, load_spec

__all__ = ["SweepError", "TrialHome", "run_sweep", "run_trial"]

TrainFn = Callable[..., dict]

RAY_MISSING = ("Ray is not installed: pip install -r requirements/sweep.txt "
               "(or ./run_cartpole_training.sh --sweep ... after that)")
SPEC_COPY, TRIALS_JSON = "sweep_spec.yaml", "sweep_trials.json"


# ------------------------------------------------------------------------------------------------
# Inside a trial (runs in a Ray worker process)
# ------------------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def _ray_error_line(e: BaseException) -> str:
    """One line from an error Tune caught. A trial's own exception arrives wrapped (its `cause`
    is the original); a dead worker process arrives as a multi-line notice whose first line
    says what happened."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return _one_line(cause)
    return _one_line(e)


def _progress_metrics(row: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What Tune sees for an evaluation round. The same keys appear in every report (final ones
    included), because ASHA and Tune's loggers read a metric from every result."""
    solve = state.get("solve")
    return {
        "eval_round": row.get("round"), "eval_mean": float(row.get("mean") or 0.0),
        "eval_min": row.get("min"), "eval_max": row.get("max"), "at_500": row.get("at_500"),
        "passed": bool(row.get("passed")), "consecutive": row.get("consecutive"),
        "env_steps": row.get("env_steps"), "learn_steps": row.get("learn_steps"),
        "wall_s": row.get("wall_s"), "best_eval_mean": state.get("best"),
        # Solved-so-far travels with every round: if the scheduler stops the trial right after
        # its solving round (ASHA's max_t can), the final summary never arrives, and the sweep
        # must still know that, and when, it solved.
        "solved": solve is not None,
        "solve_wall_s": solve[0] if solve else None, "solve_env_steps": solve[1] if solve else None,
        "final": False, "status": "running", "error": "",
    }


@dataclass
class TrialHome:
    """How a trial's files reach the sweep's storage; it travels to every trial process.

    `collector` is a Ray actor (sweep_storage.Collector) pinned to the launching machine, or None
    when no trial can run anywhere else (a local sweep) or the storage is a URI that every trial
    writes itself. See sweep_storage.py for why Tune cannot do this part for us.
    """
    storage: str
    driver_node: str | None = None
    collector: Any = None

    def log_dir(self, name: str, node_id: str | None) -> tuple[str, bool]:
        """The trial's log dir, and whether it is a staging dir to be brought home afterwards."""
        if not sweep_storage.is_uri(self.storage) and (self.collector is None
                                                       or node_id == self.driver_node):
            return sweep_storage.join(self.storage, TRIALS_DIR, name), False
        return tempfile.mkdtemp(prefix=f"cartpole-{name}-"), True

    def bring_home(self, local_dir: str, name: str) -> str:
        """Send a staged trial's files to the storage and remove them here. Returns "" or, if
        that failed, one line saying where the files were left (they are kept, never lost)."""
        dest = sweep_storage.join(self.storage, TRIALS_DIR, name)
        try:
            sweep_storage.relocate_config(local_dir, dest, f"{socket.gethostname()}:{local_dir}")
            if sweep_storage.is_uri(self.storage):
                sweep_storage.upload_tree(local_dir, dest)
            else:
                import ray
                ray.get(self.collector.receive.remote(f"{TRIALS_DIR}/{name}",
                                                      sweep_storage.read_tree(local_dir)))
        except Exception as e:  # noqa: BLE001 - a failed copy is reported, never fatal
            return (f"files not brought home ({_one_line(e)}); they are in {local_dir} "
                    f"on {socket.gethostname()}")
        shutil.rmtree(local_dir, ignore_errors=True)
        return ""


@dataclass
class StopRelay:
    """The scheduler's stop decisions, as a trial reads them (see sweep_cluster.StopBoard).

    `board` is the StopBoard actor. Asking never fails a trial: if the board cannot be reached,
    the trial goes on, and Tune's own stop still applies.
    """
    board: Any

    def asked(self, name: str) -> str | None:
        try:
            import ray
            return ray.get(self.board.ask.remote(name), timeout=60)
        except Exception:  # noqa: BLE001
            return None


def after_eval_round(state: rules.SolveState, row: dict[str, Any], solve_rounds: int) -> rules.SolveState:
    """rules.after_round (and rules.after_certificate) for one evaluation row of the trainer.
    The row's `consecutive` is the trainer's own streak, which survives a resume while this
    trial's history does not; the state is set to the streak before this round, then the rule
    decides. A row whose certificate failed completed a streak and then lost it."""
    passed = bool(row.get("passed"))
    cert = row.get("certificate_episodes")
    cert_failed = cert not in (None, "") and int(row.get("certificate_at_500") or 0) < int(cert)
    if cert_failed and not state.solved:
        before = solve_rounds - 1
    else:
        before = max(0, int(row.get("consecutive") or 0) - int(passed))
    state = rules.after_round(dataclasses.replace(state, consecutive=before), passed, solve_rounds)
    if cert_failed and state.solved_at_round == state.rounds:
        state = rules.after_certificate(state, False)
    return state


def _default_train_fn() -> TrainFn:
    from training.trainer import train  # here, not at module level: only trial processes need TensorFlow
    return train


def run_trial(trial: dict[str, Any], train_fn: TrainFn | None, trials_root: str,
              cpus: float, report: Callable[[dict[str, Any]], None],
              home: TrialHome | None = None, node_id: str | None = None,
              stop_asked: Callable[[], str | None] | None = None) -> dict[str, Any]:
    """Run one trial and report its evaluation rounds and final row; return the final row.

    `report` is `tune.report` in a sweep; it is a parameter so this function can be tested
    without Ray. After each round's report, `stop_asked()` says whether the scheduler stopped
    the trial (and why, e.g. "asha"); the trainer is then asked to end after that round, and
    wraps up as at a budget: the trial ends itself, files home, final row reported (see
    sweep_cluster for why Tune must not end it). Should Tune stop the trial anyway, `report`
    raises SystemExit inside the trainer's callback; that is not an Exception, so it passes
    through and ends the trial as Tune intends (the files are still sent home, if the process
    lives long enough). Without `home` the trial writes into `trials_root/<name>`; with it,
    where `home.log_dir` says for the node `node_id`.
    """
    # One TensorFlow thread pool per granted CPU: with two trials on two cores, TF's default
    # (a pool the size of the machine per process) oversubscribes, and 1/1 was measured fastest.
    threads = str(max(1, int(cpus)))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    state: dict[str, Any] = {"best": None, "last": None, "rounds": 0, "solve": None,
                             "rule": rules.SolveState(), "solve_rounds": TrainConfig.solve_rounds,
                             "stopped_by": None}

    def on_eval(row: dict[str, Any]) -> str | None:
        mean = row.get("mean")
        if mean is not None and (state["best"] is None or mean > state["best"]):
            state["best"] = float(mean)
        state["rule"] = after_eval_round(state["rule"], row, state["solve_rounds"])
        if state["solve"] is None and state["rule"].solved:
            state["solve"] = (row.get("wall_s"), row.get("env_steps"))
        state["last"], state["rounds"] = row, state["rounds"] + 1
        report(_progress_metrics(row, state))
        if stop_asked is not None and state["stopped_by"] is None:
            state["stopped_by"] = stop_asked()
        return state["stopped_by"]  # the trainer ends after this round when set

    summary: dict[str, Any] = {}
    error, not_home, staged = "", "", None
    try:
        try:
            train_fn = train_fn or _default_train_fn()
            cfg = config_from_overrides(trial["overrides"]).validate()
            if home is None:
                log_dir = os.path.join(trials_root, trial["name"])
            else:
                log_dir, is_staged = home.log_dir(trial["name"], node_id)
                staged = log_dir if is_staged else None
            cfg = cfg.replace(log_dir=log_dir, quiet=True, profile=False, graphics=False)
            state["solve_rounds"] = cfg.solve_rounds
            summary = dict(train_fn(cfg, on_eval=on_eval) or {})
        except Exception as e:  # noqa: BLE001 - any trainer failure becomes a failed row, never a crash
            error = _one_line(e)
    finally:
        if staged is not None and home is not None:
            not_home = home.bring_home(staged, trial["name"])
    final = _progress_metrics(state["last"] or {}, state)
    best = summary.get("best_eval_mean", state["best"])
    if summary:
        final.update({"solved": bool(summary.get("solved", False)),
                      "solve_wall_s": summary.get("solve_wall_s"),
                      "solve_env_steps": summary.get("solve_env_steps")})
    stopped = state["stopped_by"]
    # Stopped by the scheduler, unless the run reached a stop of its own first.
    cut = bool(stopped) and summary.get("stop_reason", stopped) == stopped
    final.update({
        "final": True, "status": "failed" if error else ("stopped-early" if cut else "ok"),
        "error": "; ".join(e for e in (error, not_home) if e),
        "best_eval_mean": None if best is None else float(best),
        "confirm_mean_return": summary.get("confirm_mean_return"),
        "total_env_steps": summary.get("total_env_steps"), "total_wall_s": summary.get("total_wall_s"),
        "eval_rounds": summary.get("eval_rounds", state["rounds"]),
        "stop_reason": summary.get("stop_reason", stopped if cut else ""),
        "exit_code": summary.get("exit_code"),
    })
    report(final)
    return final


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
        import ray.tune  # noqa: F401 - the [tune] extra is what we need
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def _worker_pythonpath(train_fn: TrainFn | None) -> str:
    """PYTHONPATH for trial processes: the project (so `sweep`, `config`, `trainer` import) and
    the directory of an injected train_fn's module (Ray pickles module-level functions by name).
    Ray adds only the driver's script directory and working directory on its own, which misses
    both under pytest or when started from elsewhere."""
    paths = [str(Path(__file__).resolve().parent.parent)]
    module = sys.modules.get(getattr(train_fn, "__module__", "") or "")
    module_file = getattr(module, "__file__", None)
    if module_file:
        paths.append(str(Path(module_file).resolve().parent))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(paths))


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when a host:port cluster address does not answer.

    ray.init() retries an unreachable address for many minutes (measured: still waiting after
    400 s), which looks like a hang. "auto" needs no check: Ray answers at once when there is no
    local cluster to find.
    """
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or something Ray itself will judge
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
                         "(is `ray start --head` running there, and the port open?)") from None


def _start_ray(ray: Any, ray_address: str | None, train_fn: TrainFn | None) -> bool:
    """Start or join Ray; return True if we started it (and so must shut it down)."""
    if ray.is_initialized():
        return False  # an embedding program (or a test) already owns a Ray session
    common = dict(
        include_dashboard=False, log_to_driver=False,
        # Ray's start-up warnings (token auth, dashboard, ...) are not actionable for a sweep.
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": _worker_pythonpath(train_fn),
                                  "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}})
    if ray_address:
        _check_reachable(ray_address)
    try:
        if ray_address:
            # num_cpus and include_dashboard belong to whoever started the cluster.
            common.pop("include_dashboard")
            with sweep_cluster.quiet_join():
                ray.init(address=ray_address, **common)
        else:
            # address="local" so a RAY_ADDRESS left in the environment cannot silently redirect
            # a local sweep to some cluster. The object store only carries small results.
            ray.init(address="local", num_cpus=os.cpu_count() or 1,
                     object_store_memory=256 * 2**20, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray instance"
        causes = f"{e} {e.__cause__ or ''}"
        if ray_address and ("AuthenticationError" in type(e.__cause__).__name__
                            or "InvalidAuthToken" in causes):
            # `ray start` turns token authentication on when ~/.ray/auth_token exists (which a
            # local sweep's Ray creates), and Ray sends a token to an explicitly named address
            # only when told to (never implicitly).
            raise SweepError(sweep_cluster.auth_hint(where)) from None
        raise SweepError(f"cannot start or join {where}: {_one_line(e)}") from None
    return True


def _outcome(m: dict[str, Any], ray_error: str | None) -> str:
    """The few words a progress line says about a finished trial, from its last result."""
    if ray_error:
        return f"failed: {ray_error}"
    if m.get("final") and m.get("status") == "failed":
        return f"failed: {m.get('error')}"
    if m.get("final") and m.get("status") != "stopped-early":
        if m.get("solved"):
            return (f"solved in {fmt_num(m.get('solve_wall_s'))} s, "
                    f"{int(m.get('solve_env_steps') or 0):,} env steps")
        return (f"not solved ({m.get('stop_reason') or 'ended'}), best eval mean "
                f"{fmt_num(m.get('best_eval_mean'))}")
    rounds = m.get("eval_rounds") if m.get("final") else m.get("eval_round")
    what = f"stopped early by the scheduler after {rounds or 0} eval rounds"
    return f"solved in {fmt_num(m.get('solve_wall_s'))} s, then {what}" if m.get("solved") else what


def _trial_end_reporter(tune: Any, trials: list[Trial], varying: list[str],
                        record: Callable[[int, dict[str, Any], str | None], None],
                        say: Callable[[str], None],
                        lost_node: Callable[[dict[str, Any]], str | None]) -> Any:
    """A Tune callback (driver side) that records each finished trial's last result via
    `record` and prints one line about it. `lost_node(last_result)` is the error of a trial
    whose node died under it, or None."""

    class TrialEndReporter(tune.Callback):
        def __init__(self) -> None:
            self.done = 0

        def _finish(self, trial: Any, ray_error: str | None) -> None:
            t = trials[trial.config["trial_index"]]
            m = dict(trial.last_result or {})
            record(t.index, m, ray_error)
            self.done += 1
            shown = "".join(f" {k}={display_value(t.params[k])}" for k in varying)
            outcome = _outcome(m, ray_error)
            say(f"[{self.done}/{len(trials)}] {t.name}{shown} seed={t.seed}: {outcome}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            last = dict(trial.last_result or {})
            # Ended without its final row: the scheduler's stop, or the sweep's end on a lost node.
            self._finish(trial, None if last.get("final") else lost_node(last))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, lost_node(dict(trial.last_result or {}))
                         or "the trial process died (see ray_tune/ for Ray's record)")

    return TrialEndReporter()


def _prepare_storage(out: Path, storage: str | None) -> str:
    """Resolve and check the storage before Ray starts; return it (a local path or a URI)."""
    root = sweep_storage.resolve_storage(storage, out)
    if sweep_storage.is_uri(root):
        sweep_storage.check_uri(root)
    else:
        try:
            Path(root, TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"--storage {root} is not writable: {e.strerror or e}") from None
    return root


def _pinned_actor(ray: Any, node_id: str, cls: type, *args: Any) -> Any:
    """An actor of `cls` on the node `node_id` (this, the launching machine). num_cpus=0: it must
    never take a trial's slot (a head node may offer no CPUs at all)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return ray.remote(cls).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    ).remote(*args)


def _trial_home(ray: Any, storage: str, joined: bool) -> TrialHome:
    """Where trials put their files. A collector actor on this (the launching) machine is started
    only when trials may run on other machines and the storage is a local path."""
    driver_node = ray.get_runtime_context().get_node_id()
    several_nodes = sum(1 for n in ray.nodes() if n.get("Alive")) > 1
    if sweep_storage.is_uri(storage) or not (joined or several_nodes):
        return TrialHome(storage, driver_node)
    collector = _pinned_actor(ray, driver_node, sweep_storage.Collector, storage)
    try:
        ray.get(collector.receive.remote(".", {}), timeout=120)  # up and able to import us
    except Exception as e:  # noqa: BLE001
        raise SweepError(f"cannot start the file collector on this machine: {_one_line(e)}") from None
    return TrialHome(storage, driver_node, collector)


def _stop_relay(ray: Any, driver_node: str) -> StopRelay:
    board = _pinned_actor(ray, driver_node, sweep_cluster.StopBoard)
    try:
        ray.get(board.ask.remote(""), timeout=120)
    except Exception as e:  # noqa: BLE001
        raise SweepError("cannot start the scheduler's stop board on this machine: "
                         f"{_one_line(e)}") from None
    return StopRelay(board)


def _check_fit(ray: Any, spec: Any, ray_address: str | None) -> dict[str, float]:
    """Fail in one line when no node can ever run a trial (Tune would wait forever, in silence);
    return a trial's request in Ray's resource names."""
    request = sweep_cluster.ray_request(spec.resources)
    why = sweep_cluster.no_fit_line(ray.nodes(), request)
    if why is not None:
        where = f"the Ray cluster at {ray_address}" if ray_address else "this machine's Ray"
        raise SweepError(f"no node of {where} can run a trial: {why}")
    return request


class _Results:
    """What the driver knows of each trial, turned into sweep.csv rows at any time."""

    def __init__(self, out: Path, spec: Any, trials: list[Trial], trials_root: str) -> None:
        self.out, self.spec, self.trials, self.trials_root = out, spec, trials, trials_root
        self.metrics: dict[int, dict[str, Any]] = {}
        self.errors: dict[int, str] = {}

    def rows(self) -> list[dict[str, Any]]:
        return [result_row(t, self.metrics.get(t.index), self.errors.get(t.index),
                           self.trials_root, self.spec.scheduler) for t in self.trials]

    def record(self, index: int, metrics: dict[str, Any], ray_error: str | None) -> None:
        self.metrics[index] = metrics
        if ray_error:
            self.errors[index] = ray_error
        # Rewrite sweep.csv as each trial ends, so an interrupted sweep keeps what finished.
        try:
            write_csv(self.out, self.spec, self.rows())
        except OSError:
            pass  # the final write reports a persistent problem; one hiccup must not stop Tune

    def take_grid(self, grid: Any) -> None:
        for result in grid:
            cfg = result.config or {}
            if "trial_index" not in cfg:
                continue
            i = int(cfg["trial_index"])
            if result.metrics:
                self.metrics[i] = dict(result.metrics)
            if result.error is not None:
                self.errors.setdefault(i, _ray_error_line(result.error))

    def blame_lost_nodes(self, lost: set[str]) -> None:
        """A trial that was running on a node that died: failed, whatever Tune made of it."""
        for i, m in self.metrics.items():
            if not m.get("final") and m.get("node_ip") in lost:
                self.errors[i] = _node_died(m["node_ip"])


def _node_died(ip: str) -> str:
    return f"its node {ip} died; the files it had not sent home died with it"


def _tune_scheduler(spec: Any, relay: StopRelay | None, trials: list[Trial]) -> Any:
    if spec.scheduler != "asha":
        return None
    asha = dict(time_attr="training_iteration", metric="eval_mean", mode="max",
                grace_period=spec.grace_period, max_t=spec.max_t,
                reduction_factor=spec.reduction_factor)
    if relay is None:
        from ray.tune.schedulers import ASHAScheduler
        return ASHAScheduler(**asha)

    def tell(trial: Any, reason: str) -> bool:
        import ray
        try:
            ray.get(relay.board.tell.remote(trials[trial.config["trial_index"]].name, reason),
                    timeout=60)
        except Exception:  # noqa: BLE001 - Tune's own stop then
            return False
        return True
    return sweep_cluster.relayed_asha(tell, **asha)


def _fit_quietly(tuner: Any, say: Callable[[str], None]) -> Any:
    """tuner.fit() with Tune's own console output off; None if Tune itself broke.

    Tune logs a full traceback for every failed trial; we already print one line per trial and
    sweep.md lists every error, so only Tune's critical messages get through. Tune's newer
    console output prints a header and per-error blocks even at verbose=0; its classic engine
    honours verbose=0 (our callback does the talking)."""
    tune_logger = logging.getLogger("ray.tune")
    old_level, old_output = tune_logger.level, os.environ.get("RAY_AIR_NEW_OUTPUT")
    tune_logger.setLevel(logging.CRITICAL)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        return tuner.fit()
    except Exception as e:  # noqa: BLE001 - Tune itself broke; keep what we have
        say(f"sweep: Ray Tune stopped: {_one_line(e)}")
        return None
    finally:
        tune_logger.setLevel(old_level)
        if old_output is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = old_output


@dataclass
class _Plan:
    """What a sweep settled before Ray starts: the spec, its trials, and where things go."""
    spec_path: str
    spec: Any
    trials: list[Trial]
    out: Path
    storage_root: str
    trials_root: str


def _plan(spec_path: str, spec: Any, trials: list[Trial], log_dir: str,
          storage: str | None) -> _Plan:
    """Write the spec and the trial list into the log dir and check the storage."""
    out = Path(log_dir).resolve()  # absolute: Tune runs each trial in its own working directory
    try:
        out.mkdir(parents=True, exist_ok=True)
        run_log.atomic_write_text(out / SPEC_COPY, Path(spec_path).read_text())
        run_log.atomic_write_json(out / TRIALS_JSON, [t.to_json() for t in trials])
    except OSError as e:
        raise SweepError(f"log dir {out} is not writable: {e.strerror or e}") from None
    storage_root = _prepare_storage(out, storage)
    return _Plan(spec_path, spec, trials, out, storage_root,
                 sweep_storage.join(storage_root, TRIALS_DIR))


def _say_unless(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return say


def _announce(ray: Any, plan: _Plan, ray_address: str | None,
              say: Callable[[str], None]) -> dict[str, Any]:
    """Say what is about to run, and where; return the run facts sweep.md records."""
    spec, trials = plan.spec, plan.trials
    cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
    need = spec.resources.get("cpu", 1.0)
    slots = int(cluster_cpus // need) if need else 1
    concurrency = min(x for x in (spec.max_concurrent, max(1, slots), len(trials)) if x)
    n_configs = len({t.config_index for t in trials})
    say(f"sweep {spec.name}: {len(trials)} trials ({n_configs} configurations x "
        f"{len(spec.seeds)} seeds), up to {concurrency} at a time on "
        f"{'Ray at ' + ray_address if ray_address else 'local Ray'} ({cluster_cpus:g} CPUs); "
        f"scheduler {spec.scheduler}; results in {plan.out}"
        + (f", trial files in {plan.trials_root}" if plan.storage_root != str(plan.out) else ""))
    return {"spec_path": plan.spec_path, "concurrency": concurrency,
            "ray": f"{ray.__version__}, " + (f"cluster at {ray_address}" if ray_address
                                              else f"local, {cluster_cpus:g} CPUs")}


def _trainable(tune: Any, plan: _Plan, train_fn: TrainFn | None, home: TrialHome,
               relay: StopRelay | None) -> Any:
    """The function Tune runs in each trial process, with the resources one trial asks for."""
    trial_table = {t.index: {"name": t.name, "overrides": t.overrides} for t in plan.trials}
    cpus = plan.spec.resources.get("cpu", 1.0)
    trials_root = plan.trials_root

    def sweep_trial(config: dict[str, Any]) -> None:
        import ray as ray_in_trial
        node_id = ray_in_trial.get_runtime_context().get_node_id()
        trial = trial_table[config["trial_index"]]
        stop_asked = (lambda: relay.asked(trial["name"])) if relay is not None else None
        run_trial(trial, train_fn, trials_root, cpus, tune.report, home=home, node_id=node_id,
                  stop_asked=stop_asked)

    return tune.with_resources(sweep_trial, {k: v for k, v in plan.spec.resources.items() if v})


def _tuner(tune: Any, plan: _Plan, trainable: Any, relay: StopRelay | None,
           results: _Results, watch: Any, say: Callable[[str], None]) -> Any:
    """The Tune run: one grid point per trial index, our scheduler, callbacks and stop."""
    trials = plan.trials

    def lost_node(last: dict[str, Any]) -> str | None:
        watch.refresh()
        ip = last.get("node_ip")
        return _node_died(ip) if ip in set(watch.lost.values()) else None

    def trial_name(trial: Any) -> str:
        return trials[trial.config["trial_index"]].name

    callback = _trial_end_reporter(tune, trials, [d.name for d in plan.spec.varying],
                                   results.record, say, lost_node)
    watcher, stopper = sweep_cluster.watch_hooks(tune, watch)
    return tune.Tuner(
        trainable,
        param_space={"trial_index": tune.grid_search([t.index for t in trials])},
        tune_config=tune.TuneConfig(
            num_samples=1, scheduler=_tune_scheduler(plan.spec, relay, trials),
            max_concurrent_trials=plan.spec.max_concurrent, reuse_actors=False,
            trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=plan.storage_root, verbose=0, stop=stopper,
            callbacks=[callback, watcher],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))


def _collect(results: _Results, grid: Any, watch: Any) -> list[dict[str, Any]]:
    """Every trial's row: what the callback saw, what Tune's result grid adds, lost nodes blamed."""
    if grid is not None:
        results.take_grid(grid)
    watch.refresh()
    results.blame_lost_nodes(set(watch.lost.values()))
    return results.rows()


def _write_reports(plan: _Plan, rows: list[dict[str, Any]], info: dict[str, Any],
                   say: Callable[[str], None]) -> None:
    """sweep.csv/md/png in the log dir, copied to the storage when that is elsewhere."""
    write_reports(plan.out, plan.spec, rows, info)
    try:
        sweep_storage.publish(plan.out, [SPEC_COPY, TRIALS_JSON, SWEEP_CSV, SWEEP_MD, SWEEP_PNG],
                              plan.storage_root)
    except (OSError, SweepError) as e:
        say(f"sweep: could not copy the reports to {plan.storage_root}: {_one_line(e)}")


def _release(ray: Any, home: TrialHome | None, relay: StopRelay | None, started_ray: bool) -> None:
    for actor in (getattr(home, "collector", None), getattr(relay, "board", None)):
        if actor is not None:
            ray.kill(actor)
    if started_ray:
        ray.shutdown()


def _verdict(plan: _Plan, rows: list[dict[str, Any]], cluster_ended: bool, t_start: float,
             say: Callable[[str], None]) -> int:
    """Say how the sweep went and which configuration did best; return the exit code."""
    spec = plan.spec
    n_solved = sum(r["solved"] is True for r in rows)
    n_failed = sum(r["status"] == "failed" for r in rows)
    n_not_run = sum(r["status"] == "not-run" for r in rows)
    best = summarize_configs(rows, spec)[0] if rows else None
    say(f"sweep done in {time.time() - t_start:.1f} s: {n_solved}/{len(rows)} trials solved, "
        f"{n_failed} failed" + (f", {n_not_run} not run" if n_not_run else "")
        + f"; see {plan.out / SWEEP_MD}")
    if best is not None and best["solved"]:
        say(f"best configuration {best['config']}: "
            + ", ".join(f"{k}={v}" for k, v in best["params"].items())
            + f" ({best['solved']}/{best['ran']} solved, median {fmt_metric(best['median'], spec.metric)})")
    if cluster_ended:
        return 1  # the cluster could not finish the sweep; the line above and sweep.md say what ran
    if n_solved:
        return 0
    return 1 if rows and n_failed == len(rows) else 3


def run_sweep(spec_path: str, log_dir: str, ray_address: str | None = None,
              train_fn: TrainFn | None = None, quiet: bool = False,
              storage: str | None = None) -> int:
    """Run the sweep described by the YAML file `spec_path`, writing results into `log_dir`.

    `train_fn(cfg, on_eval=...) -> summary` defaults to `trainer.train` (imported inside each
    trial process); tests inject a fast stand-in. `storage` (a path on this machine or a URI;
    default `log_dir`) is where every trial's files and Tune's records end up. Returns 0 if some
    trial solved, 3 if none did, 1 if every trial failed or the cluster lost every node that
    could run the remaining trials. Raises SweepError (one line) when the sweep cannot start,
    including when no node of the cluster can ever run a trial.

    The phases: plan (spec, trials, directories; before Ray) -> Ray and the cluster's checks ->
    tuner -> fit -> collect -> report.
    """
    t_start = time.time()
    spec = load_spec(spec_path)
    trials = expand_trials(spec)
    ray = _import_ray()
    from ray import tune
    plan = _plan(spec_path, spec, trials, log_dir, storage)
    say = _say_unless(quiet)

    started_ray = _start_ray(ray, ray_address, train_fn)
    home = relay = None
    try:
        request = _check_fit(ray, spec, ray_address)
        home = _trial_home(ray, plan.storage_root, joined=bool(ray_address))
        relay = _stop_relay(ray, home.driver_node) if spec.scheduler == "asha" else None
        watch = sweep_cluster.Watch(request, ray.nodes, ray.available_resources,
                                    lambda: ray.util.placement_group_table().values(), say)
        watch.refresh()
        info = _announce(ray, plan, ray_address, say)
        results = _Results(plan.out, spec, trials, plan.trials_root)
        tuner = _tuner(tune, plan, _trainable(tune, plan, train_fn, home, relay), relay,
                       results, watch, say)
        rows = _collect(results, _fit_quietly(tuner, say), watch)
        info["wall_s"] = time.time() - t_start
        _write_reports(plan, rows, info, say)
    finally:
        _release(ray, home, relay, started_ray)
    return _verdict(plan, rows, watch.ended, t_start, say)
