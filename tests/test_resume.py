"""Kill -9 a run after its first checkpoint, resume it, and finish solving with nothing lost."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # whole trainings, killed and resumed

#: Both tests need a solve. The defaults solve in a median of ~85,000 env steps
#: (docs/performance.md); this budget leaves several times that for another CPU's trajectory,
#: while a run that does not solve stops in minutes instead of at the 1,000,000-step default.
SOLVE_BUDGET = ["--max-env-steps", "400000"]


def test_kill_9_then_resume_finishes_and_keeps_history(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, str(ROOT / "cartpole.py"), "--log-dir", str(run_dir), "--seed", "1",
            "--quiet", "--no-profile", "--checkpoint-every", "8192", *SOLVE_BUDGET]
    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    index = run_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + 240
    while not index.exists():
        assert child.poll() is None, f"run ended before its first checkpoint: {child.stderr.read()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    from training.checkpoints import latest_checkpoint, read_state
    state = read_state(latest_checkpoint(run_dir))["progress"]
    ckpt_steps = state["env_steps"]
    assert ckpt_steps >= 8192
    rows_at_ckpt = state["metrics_rows"]

    resumed = subprocess.run([sys.executable, str(ROOT / "cartpole.py"), "--resume", str(run_dir),
                              "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["resumed_from_env_steps"] == ckpt_steps
    # Its times add up two sessions, and say so.
    assert "summed over the run's sessions" in summary["clock_origin"]
    assert summary["total_env_steps"] > ckpt_steps
    # Nothing before the checkpoint is lost: its metric rows are the first rows of the final CSV,
    # and the counters carry on from it.
    metrics = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(metrics) > len(rows_at_ckpt)
    for before, after in zip(rows_at_ckpt, metrics):
        assert int(after["env_steps"]) == before["env_steps"]
        assert int(after["learn_steps"]) == before["learn_steps"]
    steps = [int(r["env_steps"]) for r in metrics]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), "counters restarted"
    assert int(metrics[len(rows_at_ckpt)]["env_steps"]) == ckpt_steps + 1024
    evals = list(csv.DictReader(open(run_dir / "eval.csv")))
    assert [int(r["round"]) for r in evals] == list(range(1, len(evals) + 1))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resolved"]["resumed"] is True


def test_resume_a_solved_run_to_keep_training(tmp_path):
    """A run that solved and stopped can be resumed with more --keep-training: it starts solved,
    trains the extra steps past its solve, and keeps its solve record."""
    run_dir = tmp_path / "solved"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = [sys.executable, str(ROOT / "cartpole.py"), "--quiet", "--no-profile"]
    first = subprocess.run(base + ["--log-dir", str(run_dir), "--seed", "3", *SOLVE_BUDGET], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    solved = json.loads((run_dir / "summary.json").read_text())
    assert solved["post_solve_rounds"] == 0, "a round was played after the solve"
    again = subprocess.run(base + ["--resume", str(run_dir), "--keep-training", "8192"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["solved"] and after["solve_env_steps"] == solved["solve_env_steps"]
    assert after["total_env_steps"] >= solved["solve_env_steps"] + 8192
    assert after["post_solve_rounds"] > 0
    # Post-solve rounds judge weights trained after the solve was known: the solving snapshot
    # is at solve_env_steps, its verdict one evaluation point (2,048 env steps) later, and the
    # first post-solve round one point after that.
    rows = list(csv.DictReader(open(run_dir / "eval.csv")))
    post = [int(r["env_steps"]) for r in rows if int(r["env_steps"]) > solved["solve_env_steps"]]
    assert len(post) == after["post_solve_rounds"], (post, after["post_solve_rounds"])
    assert min(post) == solved["solve_env_steps"] + 2 * 2048, (post, solved["solve_env_steps"])
    # The learner's post-solve share and the delivered model's are reported apart; the model
    # (read back from best.keras by the resumed process) was replayed on the same rounds.
    assert 0 <= after["champion_post_solve_pass_fraction"] <= 1
    if after["promotions"] == 0:
        assert after["best_model_env_steps"] == solved["solve_env_steps"]
    else:
        assert after["best_model_env_steps"] > solved["solve_env_steps"]


def test_anchor_holds_the_delivered_model_at_the_solve_and_after_a_resume(tmp_path, monkeypatch):
    """--anchor-solved pulls the learner towards best.keras: the agent's anchor gets exactly
    best.keras's weights when the solve writes it, and again when a resumed run reads it back
    (the anchor is not in the checkpoint). The resume also ends the episodes that were in
    flight in the replay ring (once, one row per env), and a fresh run does not."""
    import numpy as np

    import cartpole
    from agent import DoubleDQNAgent
    from acting.evaluation import load_saved_network
    from sumtree_tf import PrioritizedReplayBuffer
    end_episodes = PrioritizedReplayBuffer.end_episodes
    calls: list[list] = []
    set_anchor = DoubleDQNAgent.set_anchor

    def recording(self, weights):
        calls.append([np.array(w) for w in weights])
        set_anchor(self, weights)
    monkeypatch.setattr(DoubleDQNAgent, "set_anchor", recording)
    ended: list[int] = []
    monkeypatch.setattr(PrioritizedReplayBuffer, "end_episodes",
                        lambda self, n: ended.append(n) or end_episodes(self, n))
    run_dir = tmp_path / "anchored"
    flags = ["--quiet", "--no-profile"]
    assert cartpole.main(["--log-dir", str(run_dir), "--seed", "3", "--anchor-solved", "1",
                          *flags, *SOLVE_BUDGET]) == 0
    best = load_saved_network(run_dir / "model" / "best.keras")[0]
    best_weights = [w for layer in best.layers for w in layer]

    def is_best(weights):
        return len(weights) == len(best_weights) and all(
            np.array_equal(a, b) for a, b in zip(weights, best_weights))
    assert len(calls) == 1 and is_best(calls[0]) and ended == []
    calls.clear()
    assert cartpole.main(["--resume", str(run_dir), "--keep-training", "8192", *flags]) == 0
    assert calls and is_best(calls[0])
    assert ended == [64], "a resume must end the old episodes in the ring (n-step returns)"
