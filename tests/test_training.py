"""End to end: the default configuration trains from scratch and solves; the log dir is complete."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def solved_run(tmp_path_factory):
    """One run with the default configuration (seed fixed for a reproducible CI), graphics on."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    proc = run_cli("--log-dir", str(run_dir), "--seed", "0", "--graphics", timeout=600)
    return run_dir, proc


def test_default_config_solves(solved_run):
    run_dir, proc = solved_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] is True and summary["exit_code"] == 0
    assert summary["solve_wall_s"] > 0 and summary["solve_env_steps"] > 0
    assert summary["confirm_episodes"] == 100
    # The solve rule: the last `solve_rounds` evaluation rounds all passed with every episode at 500.
    rows = list(csv.DictReader(open(run_dir / "eval.csv")))
    last = rows[-3:]
    assert all(r["passed"] == "1" and r["at_500"] == r["episodes"] == "64" for r in last), last
    assert summary["store_and_learn_traces"] == 1, "the fused function must trace exactly once"


def test_best_model_scores_500_in_plain_keras(solved_run):
    """best.keras, loaded by a process that imports nothing from this project, scores 500 on
    100 standard CartPole-v1 episodes (gymnasium's own reward, no shaping)."""
    run_dir, proc = solved_run
    assert proc.returncode == 0
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        import gymnasium as gym, keras, numpy as np
        model = keras.models.load_model({str(run_dir / "model" / "best.keras")!r})
        predict = keras.function if False else None
        returns = []
        envs = gym.make_vec("CartPole-v1", num_envs=50, vectorization_mode="vector_entry_point")
        for batch in range(2):
            obs, _ = envs.reset(seed=777 + batch * 50)
            ret = np.zeros(50); running = np.ones(50, bool)
            while running.any():
                q = model(obs.astype(np.float32), training=False).numpy()
                obs, r, term, trunc, _ = envs.step(q.argmax(axis=1))
                ret += r * running
                running &= ~(term | trunc)
            returns.extend(ret.tolist())
        assert not any(m in sys.modules for m in ("agent", "cartpole", "evaluation")), "project imported"
        print(len(returns), min(returns), sum(returns) / len(returns))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    n, low, mean = out.stdout.split()
    assert (int(n), float(low), float(mean)) == (100, 500.0, 500.0)


def test_log_dir_complete_and_well_formed(solved_run):
    run_dir, proc = solved_run
    assert proc.returncode == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["seed"] == 0 and config["resolved"]["device"] in ("/CPU:0", "/GPU:0")
    assert set(config["versions"]) >= {"tensorflow", "gymnasium", "numpy", "keras", "python"}
    from metrics import EVAL_COLUMNS, METRICS_COLUMNS
    metrics = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert metrics and tuple(metrics[0].keys()) == METRICS_COLUMNS
    assert [int(r["env_steps"]) for r in metrics] == sorted(int(r["env_steps"]) for r in metrics)
    evals = list(csv.DictReader(open(run_dir / "eval.csv")))
    assert evals and tuple(evals[0].keys()) == EVAL_COLUMNS
    # Every round is played out: its statistics cover all 64 episodes, failed rounds included.
    assert all(r["episodes"] == "64" for r in evals), [r["episodes"] for r in evals]
    failed = [r for r in evals if r["passed"] == "0"]
    assert failed and all(int(r["at_500"]) < 64 for r in failed)
    assert any(0 < int(r["at_500"]) < 64 for r in failed), "no partly perfect round: rounds cut short?"
    timings = json.loads((run_dir / "timings.json").read_text())["seconds"]
    assert {"import", "env_step", "store_and_learn", "eval_wait", "eval_rounds_played"} <= set(timings)
    for name in ("training_metrics.png", "cartpole_demo.gif"):
        data = (run_dir / name).read_bytes()
        assert len(data) > 1000, name
    assert (run_dir / "training_metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "cartpole_demo.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert (run_dir / "profile.prof").stat().st_size > 0
    assert "function calls" in (run_dir / "profile.txt").read_text()
    assert (run_dir / "scripts" / "cartpole.py").is_file()
    assert (run_dir / "scripts" / "run_cartpole_training.sh").is_file()
    assert list((run_dir / "checkpoints").glob("ckpt-*.index"))
    assert (run_dir / "model" / "best.keras").is_file() and (run_dir / "model" / "final.keras").is_file()
    leftovers = [p.name for p in run_dir.rglob("*.tmp*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_evaluate_command_on_run_dir(solved_run):
    run_dir, proc = solved_run
    assert proc.returncode == 0
    out = run_cli("--evaluate", str(run_dir), "--episodes", "20", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "20 episodes of CartPole-v1: mean 500.0" in out.stdout, out.stdout
    assert "20/20 at 500" in out.stdout


def test_on_eval_can_end_the_run_which_then_wraps_up_as_at_a_budget(tmp_path):
    """What a sweep does when its scheduler stops a trial: on_eval returns a reason after a round,
    and the run ends there with every file a finished run has, that reason as its stop reason."""
    import trainer
    from config import TrainConfig
    rounds = []

    def on_eval(row):
        rounds.append(row["round"])
        return "asha" if len(rounds) >= 2 else None

    cfg = TrainConfig(log_dir=str(tmp_path / "run"), seed=0, quiet=True, profile=False,
                      max_env_steps=500_000, max_seconds=240, eval_every=16, eval_episodes=4,
                      confirm_episodes=4)  # max_seconds: a trainer that ignored the request ends too
    summary = trainer.train(cfg, on_eval=on_eval)
    assert summary["stop_reason"] == "asha" and summary["exit_code"] in (0, 3)
    # It stopped after the asked round; rounds already in flight still count (at most two more).
    assert 2 <= summary["eval_rounds"] == len(rounds) <= 4
    assert summary["total_env_steps"] < cfg.max_env_steps
    for name in ("summary.json", "eval.csv", "metrics.csv", "training_metrics.png", "config.json",
                 "model/final.keras"):
        assert (tmp_path / "run" / name).is_file(), name
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop_reason"] == "asha"
