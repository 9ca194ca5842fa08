"""Tests of sweep.py, sweep_spec.py and sweep_report.py: spec parsing and validation, trial
expansion, ranking and statistics, the report files, and one small real Ray Tune sweep with a
fast stand-in for the trainer.

The stand-in (`fake_train`) lives at module level so Ray's workers can import it by name (the
sweep puts this directory on their PYTHONPATH). Its behaviour is keyed on the trial's learning
rate and seed, so every outcome a sweep must survive (solve, unsolved-and-cut by ASHA, an
exception, a worker process that dies) happens deterministically.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from common import rules
from common import run_log
from experiments import sweep
from experiments import sweep_report
from experiments import sweep_spec
from experiments import sweep_cluster
from experiments import sweep_storage
from common.config import TrainConfig

#: Spec files need PyYAML, which comes with requirements/sweep.txt (not the trainer's own).
needs_yaml = pytest.mark.skipif(importlib.util.find_spec("yaml") is None,
                                reason="PyYAML not installed (pip install -r requirements/sweep.txt)")

# ------------------------------------------------------------------------------------------------
# Stand-in trainer (runs inside Ray workers in the integration test)
# ------------------------------------------------------------------------------------------------
FAIL_LR, SLOW_LR = 0.003, 0.002


def fake_train(cfg: TrainConfig, on_eval: Any = None) -> dict[str, Any]:
    """Pretend to train: report a few evaluation rounds and return a trainer-shaped summary.

    lr 0.001: passes every round; solved (3 passing rounds in a row, the trainer's rule) after
      3 rounds with an even seed, after 2 with an odd one (its streak starts at 1 + 1); the
      solving round's wall_s is 0.5 * rounds + seed.
    lr 0.002: reports 6 poor rounds (ASHA cuts it).
    lr 0.003: raises a NaN-style fault before any evaluation.
    Like the trainer, it ends after a round for which on_eval returns a reason (a stop request).
    """
    os.makedirs(cfg.log_dir, exist_ok=True)
    run_log.atomic_write_json(Path(cfg.log_dir) / "fake_config.json",
                              {**cfg.to_dict(), "pid": os.getpid()})
    if math.isclose(cfg.lr, FAIL_LR):
        raise RuntimeError("non-finite loss at learning step 12\n(second line never shown)")
    slow = math.isclose(cfg.lr, SLOW_LR)
    head_start = cfg.seed % 2
    last = 6 if slow else cfg.solve_rounds - head_start
    stopped = None
    for rounds in range(1, last + 1):
        time.sleep(0.05)
        mean = 20.0 * rounds if slow else 500.0
        stopped = on_eval({"round": rounds, "wall_s": 0.5 * rounds + cfg.seed,
                           "env_steps": 2048 * rounds, "learn_steps": 128 * rounds, "episodes": 64,
                           "mean": mean, "min": mean, "max": mean, "at_500": 0 if slow else 64,
                           "passed": not slow, "consecutive": 0 if slow else rounds + head_start})
        if stopped:
            break  # asked to stop after this round, as the trainer honours it
    solved = not slow and rounds == cfg.solve_rounds - head_start
    return {"solved": solved, "solve_wall_s": 0.5 * rounds + cfg.seed if solved else None,
            "solve_env_steps": 2048 * rounds if solved else None,
            "confirm_mean_return": 500.0 if solved else None, "total_env_steps": 2048 * rounds,
            "total_wall_s": 0.5 * rounds + cfg.seed, "exit_code": 0 if solved else 3,
            "stop_reason": stopped or ("solved" if solved else "max_env_steps"),
            "best_eval_mean": 20.0 * rounds if slow else 500.0, "eval_rounds": rounds}


def write_spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


# ------------------------------------------------------------------------------------------------
# Spec parsing
# ------------------------------------------------------------------------------------------------
@needs_yaml
def test_parse_full_spec_and_expand(tmp_path: Path) -> None:
    spec = sweep_spec.load_spec(write_spec(tmp_path, """
        name: demo
        search_space:
          lr: {grid: [1e-3, 3.0e-3]}        # 1e-3 is a string to PyYAML; still accepted
          hidden: {grid: ["12,12", [64, 64]]}
          batch_size: 512
          reward: shaped
        seeds: 3
        metric: env_steps_to_solve
        max_concurrent: 2
        resources_per_trial: {cpu: 1}
        scheduler: asha
        grace_period: 4
        max_t: 50
        budget: {max_env_steps: 100000, max_seconds: 90}
    """))
    assert spec.name == "demo" and spec.seeds == [0, 1, 2] and spec.metric_key == "solve_env_steps"
    assert spec.fields == ["lr", "hidden", "batch_size", "reward"]
    assert [d.name for d in spec.varying] == ["lr", "hidden"]
    assert spec.scheduler == "asha" and (spec.grace_period, spec.max_t) == (4, 50)
    trials = sweep_spec.expand_trials(spec)
    assert len(trials) == 2 * 2 * 3
    # Seeds are innermost: a configuration's seeds are consecutive and share every value.
    first = trials[:3]
    assert [t.seed for t in first] == [0, 1, 2] and {t.config_index for t in first} == {0}
    assert first[0].params == {"lr": 0.001, "hidden": (12, 12), "batch_size": 512, "reward": "shaped"}
    assert trials[3].params["hidden"] == (64, 64)
    assert trials[0].overrides == {"lr": 0.001, "hidden": [12, 12], "batch_size": 512,
                                   "reward": "shaped", "max_env_steps": 100000,
                                   "max_seconds": 90.0, "seed": 0}
    assert len({t.name for t in trials}) == len(trials)
    cfg = sweep_spec.config_from_overrides(trials[-1].overrides).validate()
    assert cfg.hidden == (64, 64) and cfg.lr == 0.003 and cfg.seed == 2 and cfg.max_seconds == 90.0


def test_random_sampling_is_reproducible_and_shared_across_seeds() -> None:
    raw = {"search_space": {"lr": {"loguniform": [5e-4, 5e-3]}, "lr_final": 1e-4,
                            "batch_size": {"choice": [256, 1024]},
                            "learning_starts": {"uniform": [500, 2000]}, "gamma": {"grid": [0.99, 0.998]}},
           "num_samples": 3, "seeds": [7, 8], "sample_seed": 11}
    a = sweep_spec.expand_trials(sweep_spec.parse_spec(raw))
    b = sweep_spec.expand_trials(sweep_spec.parse_spec(raw))
    assert [t.params for t in a] == [t.params for t in b]
    assert len(a) == 3 * 2 * 2
    for t0, t1 in zip(a[::2], a[1::2]):  # the two seeds of each configuration
        assert t0.params == t1.params and (t0.seed, t1.seed) == (7, 8)
    for t in a:
        assert 5e-4 <= t.params["lr"] <= 5e-3
        assert t.params["batch_size"] in (256, 1024)
        assert isinstance(t.params["learning_starts"], int)  # int field: draws are rounded
    other = sweep_spec.expand_trials(sweep_spec.parse_spec({**raw, "sample_seed": 12}))
    assert [t.params for t in other] != [t.params for t in a]


@pytest.mark.parametrize("raw, fragment", [
    ([1, 2], "mapping at the top level"),
    ({"search_space": {"lr": 0.001}, "seed": [0]}, "seed: unknown key (did you mean 'seeds'?)"),
    ({"search_spaces": {"lr": 0.001}}, "did you mean 'search_space'"),
    ({"search_space": {}}, "search_space: expected a non-empty mapping"),
    ({"search_space": {"learning_rate": 0.001}}, "not a TrainConfig field"),
    ({"search_space": {"seed": {"grid": [0, 1]}}}, "use the top-level 'seeds:' key"),
    ({"search_space": {"log_dir": "x"}}, "cannot be swept"),
    ({"search_space": {"lr": [0.001, 0.002]}}, "a bare list is ambiguous"),
    ({"search_space": {"lr": {"grid": []}}}, "non-empty list"),
    ({"search_space": {"lr": {"grid": [0.001, 0.001]}}}, "duplicate values"),
    ({"search_space": {"lr": {"range": [0.001, 0.002]}}}, "expected one of"),
    ({"search_space": {"lr": {"uniform": [0.003, 0.001]}}}, "low must be below high"),
    ({"search_space": {"lr": {"loguniform": [0, 0.001]}}}, "low must be positive"),
    ({"search_space": {"lr": {"uniform": [0.001]}}}, "expected [low, high]"),
    ({"search_space": {"reward": {"uniform": [0, 1]}}}, "needs a numeric field"),
    ({"search_space": {"batch_size": "big"}}, "expected a number"),
    ({"search_space": {"batch_size": 100.5}}, "expected an integer"),
    ({"search_space": {"reward": "sparse"}}, "must be one of shaped, standard"),
    ({"search_space": {"hidden": "a,b"}}, "expected widths"),
    ({"search_space": {"gamma": {"grid": [0.99, 1.5]}}}, "configuration 1 (gamma=1.5) is invalid: --gamma"),
    ({"search_space": {"batch_size": 4096, "buffer_size": 1024}}, "must not exceed --buffer-size"),
    ({"search_space": {"lr": 0.001}, "seeds": -1}, "seeds: a count must be"),
    ({"search_space": {"lr": 0.001}, "seeds": [0, 0]}, "seeds: has duplicates"),
    ({"search_space": {"lr": 0.001}, "seeds": [1.5]}, "seeds[0]"),
    ({"search_space": {"lr": 0.001}, "num_samples": 0}, "num_samples: expected an integer >= 1"),
    ({"search_space": {"lr": 0.001}, "num_samples": 2}, "needs a choice/uniform/loguniform"),
    ({"search_space": {"lr": 0.001}, "metric": "reward"}, "metric: must be one of"),
    ({"search_space": {"lr": 0.001}, "max_concurrent": 0}, "max_concurrent"),
    ({"search_space": {"lr": 0.001}, "resources_per_trial": {"cpu": 0}}, "positive number"),
    ({"search_space": {"lr": 0.001}, "resources_per_trial": {"tpu": 1}}, "unknown resource"),
    ({"search_space": {"lr": 0.001}, "scheduler": "hyperband"}, "must be asha or none"),
    ({"search_space": {"lr": 0.001}, "grace_period": 4}, "only applies with scheduler: asha"),
    ({"search_space": {"lr": 0.001}, "scheduler": "asha", "grace_period": 8, "max_t": 4},
     "must be >= grace_period"),
    ({"search_space": {"lr": 0.001}, "scheduler": "asha", "reduction_factor": 1}, "expected a number > 1"),
    ({"search_space": {"lr": 0.001}, "budget": {"gamma": 0.9}}, "not a budget field"),
    ({"search_space": {"max_seconds": 10}, "budget": {"max_seconds": 20}}, "set it in one place"),
    ({"search_space": {"lr": 0.001}, "budget": {"max_seconds": 0}}, "--max-seconds must be positive"),
    ({"search_space": {"gamma": {"grid": [0.9, 0.95, 0.99]}, "lr": {"grid": [1e-3, 2e-3, 3e-3]},
                       "tau": {"grid": [0.1, 0.2, 0.3]}, "batch_size": {"grid": [32, 64, 128, 256]}},
      "seeds": 1000}, "the limit is"),
])
def test_bad_specs_give_one_line_value_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        sweep_spec.expand_trials(sweep_spec.parse_spec(raw))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, sweep.SweepError)


@needs_yaml
def test_yaml_and_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(sweep.SweepError, match=r"invalid YAML at line 2, column 12: mapping values"):
        sweep_spec.load_spec(write_spec(tmp_path, "search_space:\n  lr: 0.001: 2\n"))
    with pytest.raises(sweep.SweepError, match="cannot read sweep spec"):
        sweep_spec.load_spec(str(tmp_path / "missing.yaml"))


@needs_yaml
def test_run_sweep_rejects_bad_spec_before_touching_ray_or_log_dir(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "search_space:\n  lr: {grid: [0.001, -1]}\n")
    with pytest.raises(ValueError, match="--lr must be positive"):
        sweep.run_sweep(spec, str(tmp_path / "out"), train_fn=fake_train, quiet=True)
    assert not (tmp_path / "out").exists()


@needs_yaml
def test_missing_ray_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    spec = write_spec(tmp_path, "search_space:\n  lr: 0.001\n")
    with pytest.raises(sweep.SweepError) as info:
        sweep.run_sweep(spec, str(tmp_path / "out"), train_fn=fake_train, quiet=True)
    assert str(info.value) == sweep.RAY_MISSING
    assert "pip install -r requirements/sweep.txt" in str(info.value)


def test_missing_yaml_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    (tmp_path / "spec.yaml").write_text("search_space: {lr: 0.001}\n")
    with pytest.raises(sweep.SweepError, match="PyYAML is not installed: pip install -r requirements/sweep.txt"):
        sweep_spec.load_spec(tmp_path / "spec.yaml")


def test_unreachable_cluster_fails_in_one_line() -> None:
    with pytest.raises(sweep.SweepError, match=r"cannot reach the Ray cluster at 127.0.0.1:1: "):
        sweep._check_reachable("127.0.0.1:1", timeout_s=2)
    sweep._check_reachable("auto")  # left to Ray, which answers at once


@needs_yaml
def test_cli_reports_a_bad_spec_in_one_line_with_exit_2(tmp_path: Path) -> None:
    from conftest import run_cli
    spec = write_spec(tmp_path, "search_space:\n  lr: {grid: [0.001]}\n  hiden: 12,12\n")
    proc = run_cli("--sweep", spec, "--log-dir", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "search_space.hiden: not a TrainConfig field (did you mean 'hidden'?)" in lines[0]


@needs_yaml
def test_example_specs_parse() -> None:
    root = Path(sweep.__file__).resolve().parent / "examples"
    small = sweep_spec.expand_trials(sweep_spec.load_spec(root / "sweep_small.yaml"))
    grid16 = sweep_spec.expand_trials(sweep_spec.load_spec(root / "sweep_grid16.yaml"))
    assert len(small) == 4 and len(grid16) == 16


# ------------------------------------------------------------------------------------------------
# Inside a trial, without Ray
# ------------------------------------------------------------------------------------------------
def test_run_trial_reports_every_round_then_a_final_row(tmp_path: Path) -> None:
    reports: list[dict] = []
    trial = {"name": "t000_c00_s4", "overrides": {"lr": 0.001, "seed": 4}}
    final = sweep.run_trial(trial, fake_train, str(tmp_path), 1, reports.append)
    assert [r["final"] for r in reports] == [False, False, False, True]
    assert all("eval_mean" in r for r in reports)  # ASHA's metric is in every result
    assert reports[0]["eval_round"] == 1 and reports[0]["env_steps"] == 2048
    # The solving round already says so (in case the scheduler stops the trial right there).
    assert [r["solved"] for r in reports[:3]] == [False, False, True]
    assert reports[2]["solve_wall_s"] == 5.5 and reports[2]["solve_env_steps"] == 6144
    assert final["status"] == "ok" and final["solved"] and final["solve_wall_s"] == 5.5
    assert final["confirm_mean_return"] == 500.0 and final["eval_rounds"] == 3
    written = json.loads((tmp_path / "t000_c00_s4" / "fake_config.json").read_text())
    assert written["quiet"] is True and written["profile"] is False and written["seed"] == 4
    assert written["log_dir"] == str(tmp_path / "t000_c00_s4")


def test_run_trial_turns_an_exception_into_a_failed_row(tmp_path: Path) -> None:
    reports: list[dict] = []
    final = sweep.run_trial({"name": "t", "overrides": {"lr": FAIL_LR}}, fake_train,
                            str(tmp_path), 1, reports.append)
    assert len(reports) == 1 and final["final"] and final["status"] == "failed"
    assert final["error"] == "RuntimeError: non-finite loss at learning step 12"
    assert final["solved"] is False and final["eval_mean"] == 0.0


def test_a_stop_asked_after_a_round_ends_the_trial_by_itself(tmp_path: Path) -> None:
    """The scheduler's stop, relayed: the trainer is asked to end after that round (on_eval's
    return value), ends as at a budget, and the trial's final row says it was stopped early."""
    reports: list[dict] = []
    asked: list[int] = []

    def stop_asked() -> str | None:
        asked.append(len(reports))
        return "asha" if len(reports) == 2 else None
    final = sweep.run_trial({"name": "t", "overrides": {"lr": SLOW_LR, "seed": 0}}, fake_train,
                            str(tmp_path), 1, reports.append, stop_asked=stop_asked)
    assert asked == [1, 2]  # after each report, until it said stop
    assert [r["final"] for r in reports] == [False, False, True]
    assert (final["status"], final["stop_reason"], final["eval_rounds"]) == ("stopped-early", "asha", 2)
    # A stop that comes too late (the run ended on its own budget first) is not a scheduler's cut.
    late = sweep.run_trial({"name": "u", "overrides": {"lr": 0.001, "seed": 1}}, fake_train,
                           str(tmp_path), 1, [].append, stop_asked=lambda: None)
    assert (late["status"], late["stop_reason"]) == ("ok", "solved")


def test_a_staged_config_json_names_the_storage(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    run_log.atomic_write_json(staged / "config.json", {"config": {"log_dir": str(staged), "lr": 0.001},
                                                       "argv": ["x"]})
    sweep_storage.relocate_config(staged, "/store/trials/t1", f"worker-7:{staged}")
    record = json.loads((staged / "config.json").read_text())
    assert record == {"config": {"log_dir": "/store/trials/t1", "lr": 0.001}, "argv": ["x"],
                      "trained_in": f"worker-7:{staged}"}
    (staged / "config.json").write_text("not json")  # not the trainer's: left alone
    sweep_storage.relocate_config(staged, "/store/trials/t1", "w")
    assert (staged / "config.json").read_text() == "not json"


# ------------------------------------------------------------------------------------------------
# The cluster's resources (sweep_cluster), without Ray
# ------------------------------------------------------------------------------------------------
def _node(ip: str, cpus: float, alive: bool = True, **other: float) -> dict[str, Any]:
    return {"NodeID": f"id-{ip}", "NodeManagerAddress": ip, "Alive": alive,
            "Resources": {"CPU": cpus, **other}}


def test_start_up_check_names_what_no_node_offers() -> None:
    need = sweep_cluster.ray_request({"cpu": 1.0, "gpu": 0.0})
    assert need == {"CPU": 1.0}
    assert sweep_cluster.no_fit_line([_node("10.0.0.1", 0), _node("10.0.0.2", 1)], need) is None
    assert sweep_cluster.no_fit_line([_node("10.0.0.1", 0), _node("10.0.0.2", 4, alive=False)], need) == (
        "each trial needs 1 CPU, and the cluster offers at most 0 CPU on one node (1 node alive)")
    gpu = sweep_cluster.ray_request({"cpu": 1.0, "gpu": 0.25})
    assert sweep_cluster.no_fit_line([_node("a", 8), _node("b", 8)], gpu) == (
        "each trial needs 1 CPU and 0.25 GPU, and the cluster offers at most 8 CPU and 0 GPU on one "
        "node (2 nodes alive)")
    assert sweep_cluster.no_fit_line([_node("a", 8, GPU=1.0)], gpu) is None


class _FakeCluster:
    def __init__(self) -> None:
        self.nodes = [_node("10.0.0.1", 0), _node("10.0.0.2", 2)]
        self.free = {"CPU": 2.0}
        self.groups = [{"state": "PENDING"}]
        self.now = 0.0
        self.said: list[str] = []

    def watch(self) -> sweep_cluster.Watch:
        return sweep_cluster.Watch({"CPU": 1.0}, lambda: self.nodes, lambda: self.free,
                                   lambda: self.groups, self.said.append, clock=lambda: self.now)


def test_watch_says_when_trials_wait_with_nothing_running() -> None:
    c = _FakeCluster()
    w = c.watch()
    for t, pending, running, group in [(0, 2, 0, "CREATED"),  # granted: the trials are starting
                                       (40, 2, 0, "CREATED"),  # ... slowly: still no word
                                       (43, 2, 0, "PENDING"),  # not granted from here on
                                       (60, 2, 0, "PENDING"), (74, 2, 0, "PENDING"),  # 31 s
                                       (80, 2, 0, "PENDING"), (134, 2, 0, "PENDING"),  # 60 s on
                                       (140, 1, 1, "PENDING"), (180, 1, 0, "PENDING")]:  # reset
        c.now, c.groups, c.free = float(t), [{"state": "CREATED"}, {"state": group}], {"CPU": 0.0}
        w.check(pending, running)
    expected = ("sweep: 2 trials waiting {} s for resources, none running (each needs 1 CPU; the "
                "cluster has 2 CPU in all, 0 CPU free now)")
    assert c.said == [expected.format(31), expected.format(91)]
    assert w.ended is None


def test_watch_ends_the_sweep_when_no_live_node_can_run_a_trial() -> None:
    c = _FakeCluster()
    w = c.watch()
    w.refresh()
    c.now = 5.0
    w.check(pending=1, running=2)
    assert w.ended is None
    c.nodes[1]["Alive"] = False  # the only worker node died
    c.now = 6.0
    w.check(pending=1, running=2)
    assert w.ended is None  # checked at most every 2 s
    c.now = 7.5
    w.check(pending=1, running=2)
    assert c.said == [w.ended] == [
        "sweep: no node left that can run a trial (each trial needs 1 CPU, and the cluster offers "
        "at most 0 CPU on one node (1 node alive); lost: 10.0.0.2); ending the sweep"]
    assert w.lost == {"id-10.0.0.2": "10.0.0.2"}


def test_joining_keeps_native_noise_off_the_terminal(capfd: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's C++ client writes its retry warnings straight to file descriptor 2 while it joins."""
    monkeypatch.delenv(sweep_cluster.GCS_TRIES_ENV, raising=False)
    with sweep_cluster.quiet_join():
        os.write(2, b"[W gcs_client.cc:210] Failed to get cluster ID from GCS server\n")
        assert os.environ[sweep_cluster.GCS_TRIES_ENV] == sweep_cluster.GCS_TRIES
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert sweep_cluster.GCS_TRIES_ENV not in os.environ
    monkeypatch.setenv(sweep_cluster.GCS_TRIES_ENV, "60")  # the user's own setting is kept
    with sweep_cluster.quiet_join():
        assert os.environ[sweep_cluster.GCS_TRIES_ENV] == "60"
    assert os.environ[sweep_cluster.GCS_TRIES_ENV] == "60"


def test_token_refusals_are_one_actionable_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    where = "the Ray cluster at 10.0.0.1:6379"
    assert sweep_cluster.auth_hint(where) == (
        f"{where} requires token authentication: copy the head's ~/.ray/auth_token to this machine "
        "(or set RAY_AUTH_TOKEN) and set RAY_AUTH_MODE=token")
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 32)
    assert sweep_cluster.auth_hint(where) == (
        f"{where} requires token authentication: set RAY_AUTH_MODE=token to send this machine's "
        f"token ({tmp_path}/.ray/auth_token; it must be the head's)")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert sweep_cluster.auth_hint(where).startswith(f"{where} refused this machine's Ray token")


def _row_of(r: int, passed: bool, consecutive: int) -> dict[str, Any]:
    return {"round": r, "passed": passed, "consecutive": consecutive}


def test_solve_rule_is_the_trainers_streak_through_rules() -> None:
    def solved_at(rows: list[dict[str, Any]], solve_rounds: int = 3) -> int | None:
        state = rules.SolveState()
        for i, row in enumerate(rows, 1):
            state = sweep.after_eval_round(state, row, solve_rounds)
            if state.solved:
                return i
        return None
    fresh = [_row_of(1, True, 1), _row_of(2, True, 2), _row_of(3, True, 3)]
    assert solved_at(fresh) == 3 == rules.replay([True] * 3, 3).solved_at_round
    # A failing round resets the streak.
    assert solved_at([_row_of(1, True, 1), _row_of(2, False, 0), _row_of(3, True, 1)]) is None
    # A resumed run: the trainer's streak carries on from before this trial's first row.
    assert solved_at([_row_of(7, True, 3)]) == 1
    assert solved_at([_row_of(7, True, 2), _row_of(8, True, 3)], solve_rounds=3) == 2
    # Solved stays solved through later failing rounds (--keep-training).
    state = rules.SolveState()
    for row in fresh + [_row_of(4, False, 0)]:
        state = sweep.after_eval_round(state, row, 3)
    assert state.solved and state.solved_at_round == 3 and state.post_solve_rounds == 1


def test_a_failed_certificate_in_a_row_unsolves_the_sweeps_view_too() -> None:
    def cert(row: dict[str, Any], at_500: int) -> dict[str, Any]:
        return {**row, "certificate_episodes": 1000, "certificate_at_500": at_500}
    rows = [_row_of(1, True, 1), _row_of(2, True, 2), cert(_row_of(3, True, 0), 997),
            _row_of(4, True, 1), _row_of(5, True, 2), cert(_row_of(6, True, 3), 1000)]
    state, solved_at = rules.SolveState(), []
    for row in rows:
        state = sweep.after_eval_round(state, row, 3)
        solved_at.append(state.solved_at_round)
    assert solved_at == [None, None, None, None, None, 6]
    assert state.consecutive == 3


# ------------------------------------------------------------------------------------------------
# Storage: where the trials' files end up
# ------------------------------------------------------------------------------------------------
def test_storage_resolution_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sweep_storage.resolve_storage(None, "out") == str(tmp_path / "out")
    assert sweep_storage.resolve_storage("shared/sweeps", "out") == str(tmp_path / "shared" / "sweeps")
    assert sweep_storage.resolve_storage("file:///mnt/nfs/x", "out") == "/mnt/nfs/x"
    assert sweep_storage.resolve_storage("s3://bucket/sweeps/", "out") == "s3://bucket/sweeps"
    assert sweep_storage.join("s3://bucket/sweeps", "trials", "t0") == "s3://bucket/sweeps/trials/t0"
    assert sweep_storage.join("/mnt/x", "trials", "t0") == "/mnt/x/trials/t0"


def test_files_travel_as_a_tree_without_temporaries_and_never_outside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "eval.csv").write_text("round\n1\n")
    (src / "model" / "best.keras").write_bytes(b"PK\x03\x04")
    (src / ".metrics.csv.abc123.tmp").write_text("half a file")  # run_log's writer in flight
    files = sweep_storage.read_tree(src)
    assert files == {"eval.csv": b"round\n1\n", "model/best.keras": b"PK\x03\x04"}
    assert sweep_storage.write_tree(tmp_path / "dest", files) == 2
    assert sweep_storage.read_tree(tmp_path / "dest") == files
    for bad in ("../escape.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises(sweep_storage.StorageError, match="refusing to write"):
            sweep_storage.write_tree(tmp_path / "dest", {bad: b"x"})
    assert not (tmp_path / "escape.txt").exists()


def test_trial_home_decides_where_a_trial_writes(tmp_path: Path) -> None:
    local = str(tmp_path / "store")
    here = sweep.TrialHome(local, driver_node="head", collector=object())
    assert here.log_dir("t0", "head") == (str(tmp_path / "store" / "trials" / "t0"), False)
    staged, is_staged = here.log_dir("t0", "worker-1")
    try:
        assert is_staged and Path(staged).is_dir() and not Path(staged).is_relative_to(tmp_path)
    finally:
        os.rmdir(staged)
    # A local sweep has no collector: every trial is on this machine.
    assert sweep.TrialHome(local, "head").log_dir("t0", "head")[1] is False
    # A URI is written by every trial itself, from wherever it ran.
    staged, is_staged = sweep.TrialHome("s3://bucket/x", "head").log_dir("t0", "head")
    os.rmdir(staged)
    assert is_staged


def _local_filesystem_for(root: Path):
    """sweep_storage._filesystem, mapping URIs like mem://bucket/path to root/bucket/path."""
    import pyarrow.fs

    def filesystem(uri: str):
        return pyarrow.fs.LocalFileSystem(), str(root / uri.split("://", 1)[1])
    return filesystem


def fake_train_writes_then_fails(cfg: TrainConfig, on_eval: Any = None) -> dict[str, Any]:
    run_log.atomic_write_text(Path(cfg.log_dir) / "eval.csv", "round,mean\n1,20\n")
    on_eval({"round": 1, "mean": 20.0, "passed": False, "consecutive": 0})
    raise RuntimeError("non-finite loss at learning step 40")


def test_a_failed_trial_elsewhere_still_brings_its_files_home(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_storage, "_filesystem", _local_filesystem_for(tmp_path / "remote"))
    home = sweep.TrialHome("mem://bucket/sweep", driver_node="head")
    reports: list[dict] = []
    final = sweep.run_trial({"name": "t7", "overrides": {"lr": 0.001}}, fake_train_writes_then_fails,
                            "unused", 1, reports.append, home=home, node_id="worker-1")
    assert final["status"] == "failed" and final["error"] == "RuntimeError: non-finite loss at learning step 40"
    landed = tmp_path / "remote" / "bucket" / "sweep" / "trials" / "t7" / "eval.csv"
    assert landed.read_text() == "round,mean\n1,20\n"
    assert len(reports) == 2 and reports[-1]["final"]


def test_files_that_cannot_go_home_stay_and_the_row_says_where(tmp_path: Path) -> None:
    home = sweep.TrialHome(str(tmp_path / "store"), driver_node="head", collector=None)
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "eval.csv").write_text("round\n")
    message = home.bring_home(str(staged), "t3")  # no collector to send to
    assert message.startswith("files not brought home (") and str(staged) in message
    assert "\n" not in message and (staged / "eval.csv").is_file()


@needs_yaml
def test_unusable_storage_is_one_line_before_any_trial(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    spec = write_spec(tmp_path, "search_space:\n  lr: 0.001\n")
    with pytest.raises(sweep.SweepError) as info:
        sweep.run_sweep(spec, str(tmp_path / "out"), train_fn=fake_train, quiet=True,
                        storage="nosuchscheme://bucket/x")
    assert str(info.value) == "--storage nosuchscheme://bucket/x: Unrecognized filesystem type in URI: nosuchscheme://bucket/x"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(sweep.SweepError, match=r"--storage .*a-file/sub is not writable: "):
        sweep.run_sweep(spec, str(tmp_path / "out"), train_fn=fake_train, quiet=True,
                        storage=str(tmp_path / "a-file" / "sub"))


@needs_yaml
def test_cli_storage_flag_reaches_the_sweep(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from conftest import run_cli
    spec = write_spec(tmp_path, "search_space:\n  lr: 0.001\n")
    proc = run_cli("--sweep", spec, "--log-dir", str(tmp_path / "out"),
                   "--storage", "nosuchscheme://bucket/x", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "cartpole.py: error: --storage nosuchscheme://bucket/x: Unrecognized filesystem type in "
        "URI: nosuchscheme://bucket/x"]


# ------------------------------------------------------------------------------------------------
# Ranking and statistics
# ------------------------------------------------------------------------------------------------
def _row(name: str, config: int, status: str = "ok", solved: bool = False,
         t: float | None = None, best: float | None = None) -> dict[str, Any]:
    return {"trial": name, "config": config, "seed": 0, "status": status, "solved": solved,
            "solve_wall_s": t, "solve_env_steps": None if t is None else int(t * 1000),
            "best_eval_mean": best, "lr": "0.001", "stop_reason": "", "error": ""}


def test_ranking_solved_by_time_then_unsolved_by_best_eval_then_failed() -> None:
    rows = [_row("slow", 0, solved=True, t=9.0, best=500), _row("fast", 1, solved=True, t=4.0, best=500),
            _row("weak", 2, best=80.0), _row("failed", 3, status="failed", best=450.0),
            _row("strong", 4, status="stopped-early", best=300.0), _row("empty", 5, best=None)]
    assert [r["trial"] for r in sweep_report.rank_trials(rows)] == ["fast", "slow", "strong", "weak",
                                                            "empty", "failed"]


def test_config_statistics_rank_success_rate_first() -> None:
    spec = sweep_spec.parse_spec({"search_space": {"lr": {"grid": [0.001, 0.002]}}, "seeds": 4})
    rows = ([_row(f"a{i}", 0, solved=True, t=t, best=500) for i, t in enumerate([10, 12, 14, 30])]
            + [_row("b0", 1, solved=True, t=2.0, best=500), _row("b1", 1, solved=True, t=3.0, best=500),
               _row("b2", 1, best=200), _row("b3", 1, status="failed")])
    a, b = sweep_report.summarize_configs(rows, spec)
    assert a["config"] == 0 and a["success_rate"] == 1.0 and a["median"] == 13.0
    assert a["iqm"] == pytest.approx(13.0)  # 25% trimmed from each end of [10, 12, 14, 30]
    assert b["solved"] == 2 and b["ran"] == 4 and b["failed"] == 1
    assert b["median"] == 2.5 and b["median_all"] == math.inf  # half unsolved: never, honestly


def test_reports_render_from_rows(tmp_path: Path) -> None:
    spec = sweep_spec.parse_spec({"search_space": {"lr": {"grid": [0.001, 0.002]}, "hidden": "64,64"},
                             "seeds": 2})
    trials = sweep_spec.expand_trials(spec)
    metrics = [{"final": True, "status": "ok", "solved": True, "solve_wall_s": 5.0,
                "solve_env_steps": 9000, "best_eval_mean": 500.0},
               {"final": True, "status": "failed", "error": "TrainingFault: NaN", "best_eval_mean": None},
               {"eval_round": 3, "eval_mean": 40.0, "best_eval_mean": 41.0, "final": False},
               None]
    rows = [sweep_report.result_row(t, m, None, str(tmp_path), "asha") for t, m in zip(trials, metrics)]
    assert [r["status"] for r in rows] == ["ok", "failed", "stopped-early", "not-run"]
    assert rows[2]["stop_reason"] == "asha"
    sweep_report.write_reports(tmp_path, spec, rows, {"spec_path": "spec.yaml", "wall_s": 1.0})
    csv_rows = run_log.read_csv(tmp_path / sweep_report.SWEEP_CSV)
    assert list(csv_rows[0]) == ["trial", "config", "seed", "lr", "hidden", *sweep_report.CSV_RESULT_COLUMNS]
    assert csv_rows[0]["hidden"] == "64,64" and csv_rows[1]["error"] == "TrainingFault: NaN"
    md = (tmp_path / sweep_report.SWEEP_MD).read_text()
    assert "## Best configuration" in md and "Configuration 0" in md and "1/2 seeds" in md
    assert (tmp_path / sweep_report.SWEEP_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------
# A real Ray Tune sweep
# ------------------------------------------------------------------------------------------------
@needs_yaml
@pytest.mark.slow
def test_real_ray_sweep_survives_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    # 4 trials, 2 at a time (see fake_train and _seeded_fake):
    #   lr 0.001 seed 0: solves on its 3rd round = ASHA's max_t; ASHA's stop is relayed to the
    #                    trial, which ends itself and still reports its summary;
    #   lr 0.001 seed 1: solves on its 2nd round and finishes normally;
    #   lr 0.003 seed 0: raises inside the trainer -> failed, the sweep goes on;
    #   lr 0.003 seed 1: (slow) poor rounds -> cut by ASHA.
    spec = write_spec(tmp_path, f"""
        name: ray-test
        search_space:
          lr: {{grid: [0.001, {FAIL_LR}]}}
        seeds: [0, 1]
        max_concurrent: 2
        resources_per_trial: {{cpu: 1}}
        scheduler: asha
        grace_period: 1
        max_t: 3
        budget: {{max_seconds: 30}}
    """)
    out, store = tmp_path / "sweep", tmp_path / "store"
    rc = sweep.run_sweep(spec, str(out), train_fn=_seeded_fake, quiet=False, storage=str(store))
    assert rc == 0
    rows = {r["trial"]: r for r in run_log.read_csv(out / sweep_report.SWEEP_CSV)}
    assert len(rows) == 4
    cut_after_solving, finished, failed, cut = (rows[n] for n in sorted(rows))
    assert (cut_after_solving["status"], cut_after_solving["solved"]) == ("stopped-early", "True")
    assert cut_after_solving["solve_wall_s"] == "1.5" and cut_after_solving["stop_reason"] == "asha"
    assert cut_after_solving["confirm_mean_return"] == "500"  # only in its summary: it ended itself
    assert (finished["status"], finished["solved"], finished["solve_wall_s"]) == ("ok", "True", "2")
    assert finished["confirm_mean_return"] == "500" and finished["stop_reason"] == "solved"
    assert failed["status"] == "failed" and failed["solved"] == "False"
    assert failed["error"] == "RuntimeError: non-finite loss at learning step 12"
    assert (cut["status"], cut["solved"], cut["stop_reason"]) == ("stopped-early", "False", "asha")
    # Every trial wrote into its own log dir in the storage (directly: one machine), with the
    # sweep's forced settings; Tune's records and copies of the reports are there too.
    for name in rows:
        cfg = json.loads((store / "trials" / name / "fake_config.json").read_text())
        assert cfg["quiet"] is True and cfg["profile"] is False and cfg["graphics"] is False
        assert cfg["log_dir"] == str(store / "trials" / name) == rows[name]["log_dir"]
    assert not (out / "trials").exists() and (store / sweep_report.TUNE_DIR).is_dir()
    assert (store / sweep_report.SWEEP_MD).read_text() == (out / sweep_report.SWEEP_MD).read_text()
    # One fresh worker process per trial (reuse_actors=False).
    pids = {json.loads((store / "trials" / n / "fake_config.json").read_text())["pid"] for n in rows}
    assert len(pids) == 4
    md = (out / sweep_report.SWEEP_MD).read_text()
    assert "## Best configuration" in md and "2/2 seeds (100%)" in md and "RuntimeError" in md
    assert (out / sweep_report.SWEEP_PNG).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / sweep.TRIALS_JSON).read_text())[3]["name"] == "t003_c01_s1"
    err = capsys.readouterr().err
    assert "[4/4]" in err and "failed: RuntimeError" in err and "stopped early" in err


def _seeded_fake(cfg: TrainConfig, on_eval: Any = None) -> dict[str, Any]:
    """fake_train, except that seed 1 of the failing learning rate runs slowly instead (so the
    4-trial sweep covers solve, raise and ASHA-stop)."""
    if math.isclose(cfg.lr, FAIL_LR) and cfg.seed == 1:
        cfg = cfg.replace(lr=SLOW_LR)
    return fake_train(cfg, on_eval)
