"""Faults a user or the machine can cause: two runs in one directory, signals, damaged
checkpoints, a full disk, bad state files. Each must end in one line on stderr, never in lost
or mixed work. Every training run here has a small budget of its own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

SMALL = ("--quiet", "--no-profile", "--max-env-steps", "4096", "--checkpoint-every", "2048",
         "--eval-episodes", "8", "--confirm-episodes", "0")


def start_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, str(ROOT / "cartpole.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    errs = [p.communicate(timeout=300)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errs)]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- one run per directory ---------------------------------------------------------------------
def test_two_runs_started_at_once_into_one_dir_one_is_refused(tmp_path):
    run = tmp_path / "run"
    procs = [start_cli("--log-dir", str(run), "--seed", str(seed), *SMALL) for seed in (1, 2)]
    results = sorted(finish(procs))
    (refused_code, refused_err), (ok_code, _) = results
    assert ok_code == 3, results  # the budget ends the run that got the directory
    assert refused_code == 2, results
    assert error_lines(refused_err) == [error_lines(refused_err)[0]], refused_err
    assert "in use by another run" in refused_err
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # TensorBoard saw one run

    # Two --resume of that run at once: the same.
    procs = [start_cli("--resume", str(run), "--max-env-steps", "6144") for _ in range(2)]
    results = sorted(finish(procs))
    assert [code for code, _ in results] == [2, 3], results
    assert "in use by another run" in results[0][1] and len(error_lines(results[0][1])) == 1


def test_lock_is_released_when_the_holder_dies_and_by_release(tmp_path):
    from common import run_log
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from common import run_log; held = run_log.lock_dir(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(run_log.LogDirError, match=f"in use by another run \\(pid {holder.pid}\\)"):
        run_log.RunDir.prepare(str(tmp_path), "new")
    holder.kill()
    holder.wait()
    rd = run_log.RunDir.prepare(str(tmp_path), "new")  # the kernel released it
    with pytest.raises(run_log.LogDirError, match="in use"):
        run_log.RunDir.prepare(str(tmp_path), "overwrite")
    rd.release()
    run_log.RunDir.prepare(str(tmp_path), "overwrite").release()


def test_seeds_runner_locks_its_dir(tmp_path):
    from experiments import multiseed
    from common import run_log
    lock = run_log.lock_dir(tmp_path)
    try:
        with pytest.raises(run_log.LogDirError, match="in use"):
            multiseed.run_seeds([0], tmp_path, ["--max-env-steps", "1024"],
                                command=[sys.executable, "-c", "pass"])
    finally:
        lock.close()


# --- signals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code, name", [(15, 143, "SIGTERM"), (2, 130, "SIGINT")])
def test_signal_to_the_process_group_saves_a_checkpoint_and_prints_one_line(tmp_path, sig, code,
                                                                             name):
    """As `timeout`, Slurm or Ctrl-C at a terminal do: the signal reaches the trainer and its
    children (evaluation worker, figure process) at once."""
    import signal
    import time

    from training.checkpoints import latest_checkpoint, read_state
    run = tmp_path / "run"

    def default_signals() -> None:  # a shell may have started the tests with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cartpole.py"), "--log-dir", str(run),
                             "--seed", "3", "--quiet", "--no-profile", "--max-env-steps", "400000",
                             "--checkpoint-every", "2048", "--eval-episodes", "8"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=default_signals)
    index = run / "checkpoints" / "checkpoint"
    deadline = time.time() + 240
    while not index.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)  # until every child has closed stderr too
    assert proc.returncode == code, err
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "stopped by " in lines[0] and name in lines[0], err
    steps = int(lines[0].split(" at ", 1)[1].split(" env steps")[0].replace(",", ""))
    assert read_state(latest_checkpoint(run))["progress"]["env_steps"] == steps > 0
    assert f"--resume {run}" in lines[0]


def _orphaned(cmd: list[str], feed: bytes) -> subprocess.CompletedProcess:
    """Run a child process whose parent is gone: nobody reads its stdout any more."""
    child = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reading end, as when the trainer dies
    child.stdin.write(feed)
    child.stdin.close()
    err = child.stderr.read().decode()
    child.wait(timeout=120)
    return subprocess.CompletedProcess(cmd, child.returncode, "", err)


def test_eval_worker_is_silent_when_its_trainer_is_gone():
    import io

    import numpy as np

    from acting import eval_rounds
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=s).astype(np.float32) for s in ((4, 8), (8,), (8, 2), (2,))]
    job = io.BytesIO()
    eval_rounds.send(job, (weights, 4, 123))
    out = _orphaned([sys.executable, "-m", "acting.eval_rounds", "--worker"], job.getvalue())
    assert out.stderr == "" and out.returncode == 0, out.stderr


def test_figure_process_is_silent_when_its_trainer_is_gone():
    row = b'{"m": {"env_steps": 1024, "wall_s": 1.0}}\n'
    out = _orphaned([sys.executable, "-m", "outputs.live_view", "--child", "--backend", "agg",
                     "--refresh", "inf"], row)
    assert out.stderr == "" and out.returncode == 0, out.stderr


# --- damaged checkpoints -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory):
    """A short run keeping checkpoints at 2048, 3072 and 4096 env steps."""
    run = tmp_path_factory.mktemp("ckpts") / "run"
    proc = run_cli("--log-dir", str(run), "--seed", "0", "--quiet", "--no-profile",
                   "--max-env-steps", "4096", "--checkpoint-every", "1024", "--eval-episodes", "8",
                   "--confirm-episodes", "0")
    assert proc.returncode == 3, proc.stderr[-2000:]
    return run


def _damage(ckpt: Path, how: str) -> None:
    if how == "truncated_data":
        data = ckpt / "ckpt-4096.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:100_000])
    elif how == "deleted_index":
        (ckpt / "ckpt-4096.index").unlink()
    elif how == "garbage_state":
        (ckpt / "state-4096.json").write_text('{"progress": {"env_')
    elif how == "deleted_checkpoint_file":
        (ckpt / "checkpoint").unlink()
    elif how == "empty_checkpoint_file":
        (ckpt / "checkpoint").write_text("")


@pytest.mark.parametrize("how, resumed_from, notice", [
    ("truncated_data", 3072, "ckpt-4096 cannot be read (truncated or damaged data file"),
    ("deleted_index", 3072, "ckpt-4096.index is missing"),
    ("garbage_state", 3072, "state-4096.json is not valid JSON"),
    ("deleted_checkpoint_file", 4096, None),
    ("empty_checkpoint_file", 4096, None)])
def test_resume_falls_back_to_the_newest_intact_checkpoint(three_checkpoints, tmp_path, capfd,
                                                          how, resumed_from, notice):
    import json
    import shutil

    import cartpole
    run = tmp_path / "run"
    shutil.copytree(three_checkpoints, run)
    _damage(run / "checkpoints", how)
    code = cartpole.main(["--resume", str(run), "--max-env-steps", "5120", "--quiet"])
    err = capfd.readouterr().err
    assert code == 3, err
    lines = error_lines(err)
    if notice is None:
        assert lines == [], err
    else:
        assert len(lines) == 1 and notice in lines[0], err
        assert lines[0].endswith("resuming from ckpt-3072"), err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_env_steps"] == resumed_from
    assert summary["total_env_steps"] == 5120
    # The index lists what is kept again, so the oldest checkpoints are pruned as usual.
    kept = sorted(p.name for p in (run / "checkpoints").glob("state-*.json"))
    assert kept == ["state-3072.json", "state-4096.json", "state-5120.json"]


@pytest.mark.parametrize("how, message", [
    ("every_index_deleted", "no intact checkpoint in"),
    ("every_checkpoint_deleted", "no checkpoint in"),
    ("env_steps_a_string", "env_steps should be int, got '8192'"),
    ("act_rng_state_garbled", "act_rng_state"),
    ("act_rng_state_a_number", "act_rng_state is int"),
])
def test_resume_of_unusable_checkpoints_is_one_line(three_checkpoints, tmp_path, capfd, how,
                                                    message):
    import json
    import shutil

    import cartpole
    run = tmp_path / "run"
    shutil.copytree(three_checkpoints, run)
    ckpt = run / "checkpoints"
    if how == "every_index_deleted":
        for f in ckpt.glob("ckpt-*.index"):
            f.unlink()
    elif how == "every_checkpoint_deleted":
        for f in ckpt.iterdir():
            f.unlink()
    else:
        for path in ckpt.glob("state-*.json"):
            state = json.loads(path.read_text())
            prog = state["progress"]
            if how == "env_steps_a_string":
                prog["env_steps"] = str(prog["env_steps"] * 2)
                if path.name != "state-4096.json":
                    continue
            elif how == "act_rng_state_garbled":
                prog["act_rng_state"]["state"] = {"state": "x"}
            else:
                prog["act_rng_state"] = 7
            path.write_text(json.dumps(state))
    code = cartpole.main(["--resume", str(run), "--max-env-steps", "5120", "--quiet"])
    err = capfd.readouterr().err
    assert code == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("cartpole.py: error:") and message in lines[0], err
    assert not (run / "summary.json").exists() or json.loads((run / "summary.json").read_text())[
        "total_env_steps"] == 4096


# --- sizes and inputs that cannot work: one line, exit 2, before anything is allocated ----------
@pytest.mark.parametrize("args, message", [
    (["--hidden", "100000000"], "GiB of memory"),
    (["--hidden", "100000,100000"], "GiB of memory"),
    (["--buffer-size", "1", "--batch-size", "1"], "--buffer-size (1) must hold at least one chunk"),
    (["--max-env-steps", "1"], "--max-env-steps (1) is less than one chunk"),
])
def test_sizes_that_cannot_train_are_one_line(tmp_path, capsys, args, message):
    import cartpole
    code = cartpole.main(["--log-dir", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(error_lines(err)) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_memory_estimate_accepts_the_defaults():
    from common.config import TrainConfig, available_memory, memory_needed
    need = memory_needed(TrainConfig())
    assert 0 < need < 256 * 2**20  # the default network and replay buffer: a few MB
    assert available_memory() is None or available_memory() > need


def test_sweep_spec_that_is_not_utf8_is_one_line(tmp_path, capsys):
    pytest.importorskip("yaml")
    import cartpole
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"search_space:\n  lr: {grid: [0.001]}\n# caf\xe9\n")  # Latin-1
    code = cartpole.main(["--sweep", str(spec), "--log-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(error_lines(err)) == 1 and "is not UTF-8" in err, err


# --- runs that do what was asked, no more ---------------------------------------------------------
PASSING_EVALUATION = '''
import numpy as np
from acting import evaluation


def _every_episode_at_500(act, episodes, seed, num_envs=64, env_id="CartPole-v1",
                          on_first_failure=None):
    return evaluation.EvalResult(np.full(episodes, 500.0), episodes)


evaluation.evaluate = _every_episode_at_500
'''


@pytest.fixture
def rounds_always_pass(tmp_path, monkeypatch):
    """Every evaluation round passes (in the worker process too, through sitecustomize), so a
    short run solves, and when each verdict is applied shows in lr, epsilon and the stop."""
    from acting import eval_rounds
    from acting import evaluation
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PASSING_EVALUATION)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    namespace: dict = {}
    exec(PASSING_EVALUATION, namespace)
    monkeypatch.setattr(eval_rounds, "evaluate", namespace["_every_episode_at_500"])
    monkeypatch.setattr(evaluation, "evaluate", namespace["_every_episode_at_500"])


def _train(log_dir: Path, resume: bool = False, **settings):
    from training import trainer
    from common.config import TrainConfig
    cfg = TrainConfig(log_dir=str(log_dir), seed=0, quiet=True, profile=False,
                      max_env_steps=16384, checkpoint_every=100_000, eval_episodes=4,
                      confirm_episodes=0, **settings)
    return trainer.train(cfg, resume=resume)


def _learning_record(run: Path) -> dict[str, list[dict[str, str]]]:
    """metrics.csv and eval.csv without the columns that measure the machine."""
    from common.metrics import TIMING_COLUMNS
    from common.run_log import read_csv
    return {name: [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
                   for row in read_csv(run / name)] for name in ("metrics.csv", "eval.csv")}


def test_checkpoints_do_not_change_the_training_path(tmp_path, rounds_always_pass):
    """A checkpoint every chunk (tiny --checkpoint-seconds), and a SIGTERM stop and resume with
    a round in flight, give the run that never checkpointed: the same rows, the same solve."""
    import signal

    from common import interrupts
    plain = _train(tmp_path / "plain")
    assert plain["solved"], plain
    often = _train(tmp_path / "often", checkpoint_seconds=1e-6)
    assert often["solve_env_steps"] == plain["solve_env_steps"]
    assert _learning_record(tmp_path / "often") == _learning_record(tmp_path / "plain")

    from training import trainer
    real_evaluate = trainer.Trainer.evaluate

    def evaluate_then_signal(self):  # SIGTERM arrives in the chunk of the 2nd round's start
        real_evaluate(self)
        if self.prog.rounds == 1:
            interrupts._pending = signal.SIGTERM
    trainer.Trainer.evaluate = evaluate_then_signal
    try:
        with pytest.raises(interrupts.Terminated):
            _train(tmp_path / "stopped")
    finally:
        trainer.Trainer.evaluate = real_evaluate
    from training.checkpoints import latest_checkpoint, read_state
    state = read_state(latest_checkpoint(tmp_path / "stopped"))["progress"]
    assert len(state["rounds_in_flight"]) == 1  # the round started at the stop, unapplied
    resumed = _train(tmp_path / "stopped", resume=True)
    # Its verdict is applied where the uninterrupted run applied it: the same rounds, the same
    # solve. (Training rows differ after a resume: episodes in flight start afresh.)
    assert resumed["solve_env_steps"] == plain["solve_env_steps"]
    assert (_learning_record(tmp_path / "stopped")["eval.csv"]
            == _learning_record(tmp_path / "plain")["eval.csv"])


def _snapshot(run: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file()}


def test_resume_of_a_solved_run_says_so_and_changes_nothing(tmp_path, rounds_always_pass, capfd):
    import cartpole
    run = tmp_path / "run"
    assert _train(run)["solved"]
    before = _snapshot(run)
    code = cartpole.main(["--resume", str(run)])
    err = capfd.readouterr().err
    assert code == 0 and len(error_lines(err)) == 1 and "is finished: solved at" in err, err
    assert _snapshot(run) == before


@pytest.mark.parametrize("budget", ["4500", "3000", "1024"])
def test_resume_with_no_budget_left_changes_nothing(three_checkpoints, tmp_path, capfd, budget):
    import shutil

    import cartpole
    run = tmp_path / "run"
    shutil.copytree(three_checkpoints, run)
    before = _snapshot(run)
    code = cartpole.main(["--resume", str(run), "--max-env-steps", budget])
    err = capfd.readouterr().err
    assert code == 3 and len(error_lines(err)) == 1 and "nothing to do" in err, err
    assert f"--max-env-steps {int(budget):,}" in err
    assert _snapshot(run) == before


def test_budget_is_never_overshot_by_a_chunk(tmp_path):
    from training import trainer
    from common.config import TrainConfig
    cfg = TrainConfig(log_dir=str(tmp_path / "run"), seed=0, quiet=True, profile=False,
                      max_env_steps=2500, eval_episodes=4, confirm_episodes=0)
    summary = trainer.train(cfg)
    assert summary["total_env_steps"] == 2048 and summary["stop_reason"] == "max_env_steps"


# --- faults during training: say what is on disk ----------------------------------------------------
def test_nan_before_the_first_checkpoint_says_there_is_none(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("--log-dir", str(run), "--lr", "1e308", *SMALL)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "non-finite loss" in lines[0] and "last good checkpoint" not in lines[0]
    assert f"no checkpoint was written, so {run} cannot be resumed" in lines[0]
    assert "--overwrite" in lines[0]
    assert not list((run / "checkpoints").iterdir())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB file system: room for the run's small files, not for a checkpoint (~4.5 MB)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
    except OSError as e:
        pytest.skip(f"cannot run mount: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_at_the_first_checkpoint_names_the_cause_and_cleans_up(tiny_disk):
    run = tiny_disk / "run"
    proc = run_cli("--log-dir", str(run), "--seed", "0", *SMALL)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "checkpoint write failed: No space left on device" in lines[0]
    assert "function_node" not in lines[0] and "[Op:" not in lines[0]
    assert "no checkpoint was written" in lines[0] and "last good checkpoint" not in lines[0]
    assert list((run / "checkpoints").iterdir()) == []  # no ckpt-N_temp/, no orphan state


def test_round_played_in_place_gets_its_verdict_applied_and_survives_a_checkpoint():
    """--no-eval-process plays a round at its start; its verdict must still be handed to the
    trainer once (it was skipped, so such runs could never solve), and a round whose verdict is
    pending goes through a checkpoint's JSON unchanged."""
    import json

    import numpy as np

    from acting import eval_rounds
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=s).astype(np.float32) for s in ((4, 8), (8,), (8, 2), (2,))]
    runner = eval_rounds.RoundRunner(4, background=False)
    runner.start(weights, seed=5, index=0, env_steps=2048, learn_steps=16)
    assert runner.unapplied() and runner.completed(wait=True) == []  # no row before the verdict
    saved = json.loads(json.dumps([r.to_json() for r in runner.unapplied()]))
    r = runner.verdict()
    assert r is not None and r.applied and runner.verdict() is None
    assert [done for done, _ in runner.completed()] == [r]

    again = eval_rounds.RoundRunner(4, background=False)
    again.restore([eval_rounds.Round.from_json(d, 4) for d in saved])
    back = again.verdict()
    assert (back.index, back.env_steps, back.learn_steps, back.seed, back.passed) == (
        r.index, r.env_steps, r.learn_steps, r.seed, r.passed)
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, weights))
    assert np.array_equal(back.result.returns, r.result.returns)
