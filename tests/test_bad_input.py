"""Bad input and faults: each gives one line on stderr, exit code 2, and no traceback."""
from __future__ import annotations

import shutil

import pytest

from conftest import run_cli


def assert_one_line_error(proc, *fragments: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], err[-2000:])
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("cartpole.py: error:"), lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.mark.parametrize("args, fragment", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--batch-size", "-5"], "--batch-size must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--num-envs", "0"], "--num-envs must be positive"),
    (["--buffer-size", "-1"], "--buffer-size must be positive"),
    (["--batch-size", "abc"], "invalid int value"),
    (["--gamma", "1.0"], "--gamma must be in [0.0, 1.0)"),
    (["--gamma", "-0.1"], "--gamma must be in"),
    (["--tau", "0"], "--tau must be in (0.0, 1.0]"),
    (["--tau", "1.5"], "--tau must be in"),
    (["--alpha", "1.2"], "--alpha must be in [0.0, 1.0]"),
    (["--beta-start", "-0.5"], "--beta-start must be in"),
    (["--beta-final", "2"], "--beta-final must be in"),
    (["--eval-episodes", "1000000"], "--eval-episodes is limited"),
    (["--eval-episodes", "0"], "--eval-episodes must be positive"),
    (["--hidden", "64,x"], "--hidden"),
    (["--hidden", "0,4"], "--hidden needs"),
    (["--reward", "bogus"], "invalid choice"),
    (["--batch-size", "4096", "--buffer-size", "1024"], "must not exceed --buffer-size"),
    (["--seeds", "5-2", "--log-dir", "/tmp/x"], "5-2"),
    (["--episodes", "0", "--evaluate", "x.keras"], "--episodes"),
])
def test_bad_flags(args, fragment):
    assert_one_line_error(run_cli(*args, timeout=60), fragment)


def test_log_dir_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert_one_line_error(run_cli("--log-dir", str(f), "--max-env-steps", "1024"), "not a directory")


def test_log_dir_unwritable():
    # /proc refuses new directories even to root, so this is unwritable for everyone.
    assert_one_line_error(run_cli("--log-dir", "/proc/cartpole-test/run", "--max-env-steps", "1024"),
                          "not writable")


def test_resume_missing_dir(tmp_path):
    assert_one_line_error(run_cli("--resume", str(tmp_path / "nope")), "no run directory")


def test_resume_dir_without_checkpoint(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert_one_line_error(run_cli("--resume", str(tmp_path)), "no checkpoint")


def test_evaluate_missing_model(tmp_path):
    assert_one_line_error(run_cli("--evaluate", str(tmp_path / "none.keras")), "no model file")


def test_evaluate_dir_without_model(tmp_path):
    assert_one_line_error(run_cli("--evaluate", str(tmp_path)), "no model in")


def test_evaluate_corrupt_model(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"this is not a zip file")
    assert_one_line_error(run_cli("--evaluate", str(bad)), "cannot load model")


def test_evaluate_wrong_input_shape(tmp_path):
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "wrong.keras"
    model.save(path)
    assert_one_line_error(run_cli("--evaluate", str(path)), "CartPole needs (None, 4)")


# --- faults in a real run: corrupt checkpoint, NaN loss ----------------------------------------
SHORT = ["--max-env-steps", "4096", "--eval-every", "16", "--no-profile", "--quiet",
         "--checkpoint-every", "2048"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("short") / "run"
    proc = run_cli("--log-dir", str(run_dir), "--seed", "3", *SHORT)
    assert proc.returncode == 3, proc.stderr[-2000:]  # budget exhausted, unsolved, by design
    return run_dir


@pytest.mark.parametrize("damage", ["truncate_data", "garbage_index", "missing_state",
                                    "state_from_another_version"])
def test_resume_corrupt_checkpoint(short_run, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    ckpt = run_dir / "checkpoints"
    if damage == "truncate_data":
        for data in ckpt.glob("ckpt-*.data-*"):
            data.write_bytes(data.read_bytes()[:100])
    elif damage == "garbage_index":
        for index in ckpt.glob("ckpt-*.index"):
            index.write_bytes(b"\x00garbage" * 10)
    elif damage == "missing_state":
        for state in ckpt.glob("state-*.json"):
            state.unlink()
    else:
        import json
        for state in ckpt.glob("state-*.json"):
            data = json.loads(state.read_text())
            data["progress"]["field_from_the_future"] = 1
            state.write_text(json.dumps(data))
    proc = run_cli("--resume", str(run_dir))
    assert_one_line_error(proc, "checkpoint")


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    """A reward turns NaN mid-run (after a checkpoint exists): the NaN flows through the real
    graph into the loss; training must stop naming the step, leaving the checkpoint loadable."""
    import tensorflow as tf

    import cartpole
    import rewards
    from checkpoints import latest_checkpoint, read_state
    from config import TrainConfig

    poison = tf.Variable(False)
    clean = rewards.get_reward_fn("shaped")

    def poisoned(next_obs, terminated):
        r = clean(next_obs, terminated)
        return tf.where(poison, tf.fill(tf.shape(r), float("nan")), r)

    monkeypatch.setitem(rewards.REWARDS, "shaped", poisoned)
    cfg = TrainConfig(log_dir=str(tmp_path / "nan"), seed=0, quiet=True, profile=False,
                      max_env_steps=200_000, checkpoint_every=2048, eval_every=16)
    rounds = []

    def on_eval(row):
        rounds.append(row)
        if row["env_steps"] >= 4096:  # a checkpoint was written at 2048
            poison.assign(True)

    with pytest.raises(cartpole.TrainingFault, match=r"non-finite loss .* at learning step \d+"):
        cartpole.train(cfg, on_eval=on_eval)
    latest = latest_checkpoint(tmp_path / "nan")
    state = read_state(latest)
    assert 2048 <= state["progress"]["env_steps"] <= 4096 + 1024


def test_disk_full_while_logging_stops_cleanly_and_keeps_checkpoint(tmp_path, monkeypatch):
    """A write error (here ENOSPC, injected after the first checkpoint) stops training with one
    line, naming the log dir; the last complete checkpoint still restores."""
    import errno

    import cartpole
    import run_log
    from checkpoints import latest_checkpoint, read_state
    from config import TrainConfig

    real_write = run_log.atomic_write_bytes
    state = {"armed": False}

    def failing_write(path, data):
        if state["armed"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(run_log, "atomic_write_bytes", failing_write)

    def on_eval(row):
        if row["env_steps"] >= 4096:
            state["armed"] = True

    cfg = TrainConfig(log_dir=str(tmp_path / "full"), seed=0, quiet=True, profile=False,
                      max_env_steps=200_000, checkpoint_every=2048, eval_every=16,
                      checkpoint_seconds=1e6)
    with pytest.raises(cartpole.TrainingFault, match="No space left on device") as info:
        cartpole.train(cfg, on_eval=on_eval)
    assert "\n" not in str(info.value) and "last good checkpoint kept" in str(info.value)
    progress = read_state(latest_checkpoint(tmp_path / "full"))["progress"]
    assert 2048 <= progress["env_steps"] <= 4096
