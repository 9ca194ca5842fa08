"""Bad input and faults: each gives one line on stderr, exit code 2, and no traceback."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from common.config import ConfigError, TrainConfig, flag_name, float_fields
from conftest import ROOT, run_cli


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
    (["--n-step", "0"], "--n-step must be in [1, 16]"),
    (["--n-step", "17"], "--n-step must be in [1, 16]"),
    (["--n-step", "3", "--train-every", "2", "--num-envs", "64", "--buffer-size", "128",
      "--batch-size", "64"],
     "--n-step x --num-envs must be at most half of --buffer-size"),
    (["--n-step-solved", "0"], "--n-step-solved must be in [1, 16]"),
    (["--margin-solved", "-1"], "--margin-solved must be in [0, 1e6]"),
    (["--challenge-episodes", "-1"], "--challenge-episodes must be >= 0"),
    (["--challenge-episodes", "100001"], "--challenge-episodes and --confirm-episodes to 100000"),
    (["--n-step-solved", "17"], "--n-step-solved must be in [1, 16]"),
    (["--n-step", "1", "--n-step-solved", "2", "--train-every", "2", "--num-envs", "64",
      "--buffer-size", "128", "--batch-size", "64"],
     "--n-step-solved x --num-envs must be at most half of --buffer-size"),
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
@pytest.mark.slow
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


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    """A reward turns NaN mid-run (after a checkpoint exists): the NaN flows through the real
    graph into the loss; training must stop naming the step, leaving the checkpoint loadable."""
    import tensorflow as tf

    import rewards
    from training import trainer
    from training.checkpoints import latest_checkpoint, read_state
    from common.errors import TrainingFault

    poison = tf.Variable(False)
    clean = rewards.get_reward_fn("shaped")

    def poisoned(next_obs, terminated):
        r = clean(next_obs, terminated)
        return tf.where(poison, tf.fill(tf.shape(r), float("nan")), r)

    monkeypatch.setitem(rewards.REWARDS, "shaped", poisoned)
    # xla_cache off: the poisoned reward is code swapped in at run time, which a graph stored
    # by an earlier run of this configuration (training/graph_cache.py) would not contain.
    cfg = TrainConfig(log_dir=str(tmp_path / "nan"), seed=0, quiet=True, profile=False,
                      max_env_steps=200_000, checkpoint_every=2048, eval_every=16,
                      xla_cache=False)
    rounds = []

    def on_eval(row):
        rounds.append(row)
        if row["env_steps"] >= 4096:  # a checkpoint was written at 2048
            poison.assign(True)

    with pytest.raises(TrainingFault, match=r"non-finite loss .* at learning step \d+"):
        trainer.train(cfg, on_eval=on_eval)
    latest = latest_checkpoint(tmp_path / "nan")
    state = read_state(latest)
    assert 2048 <= state["progress"]["env_steps"] <= 4096 + 1024


@pytest.mark.slow
def test_disk_full_while_logging_stops_cleanly_and_keeps_checkpoint(tmp_path, monkeypatch):
    """A write error (here ENOSPC, injected after the first checkpoint) stops training with one
    line, naming the log dir; the last complete checkpoint still restores."""
    import errno

    from common import run_log
    from training import trainer
    from training.checkpoints import latest_checkpoint, read_state
    from common.errors import TrainingFault

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
    with pytest.raises(TrainingFault, match="No space left on device") as info:
        trainer.train(cfg, on_eval=on_eval)
    assert "\n" not in str(info.value) and "last good checkpoint kept" in str(info.value)
    progress = read_state(latest_checkpoint(tmp_path / "full"))["progress"]
    assert 2048 <= progress["env_steps"] <= 4096


# --- NaN and infinity in float settings ----------------------------------------------------------
# Every range check is a comparison, and every comparison with NaN is False, so without a check of
# its own `--lr nan` passed them all. Each float flag is refused by the parser and by validate().
NON_FINITE = ("nan", "inf", "-inf")


def assert_one_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartpole.py: error:"), err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.mark.parametrize("text", NON_FINITE)
@pytest.mark.parametrize("name", float_fields())
def test_non_finite_float_flag_refused(name, text, capsys):
    import cartpole
    with pytest.raises(SystemExit) as info:  # argparse exits while parsing, before anything runs
        cartpole.main([f"{flag_name(name)}={text}"])
    assert info.value.code == 2
    assert_one_line(capsys.readouterr().err, flag_name(name), "finite", text)


@pytest.mark.parametrize("text", NON_FINITE)
@pytest.mark.parametrize("name", float_fields())
def test_non_finite_float_setting_refused_by_validate(name, text):
    """The same through the API the sweep and config files use (no parser in between)."""
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: float(text)}).validate()
    assert f"{flag_name(name)} must be a finite number" in str(info.value)
    assert "\n" not in str(info.value)


def choice_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("choices")]


@pytest.mark.parametrize("name", choice_fields())
def test_a_value_outside_choices_is_refused_by_validate(name):
    """Every field with choices, through the API sweeps and config.json use: `xla: "yes"` read
    back from a resumed run must be refused, not taken as on."""
    assert {"xla", "mixed_precision", "video_format", "reward", "device"} <= set(choice_fields())
    TrainConfig().validate()  # every default is one of its choices
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: "yes"}).validate()
    assert f"{flag_name(name)} must be one of" in str(info.value) and "'yes'" in str(info.value)
    assert "\n" not in str(info.value)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})


def test_bad_numbers_are_refused_before_tensorflow_is_imported():
    out = run_python(
        "import sys, cartpole\nfrom training import trainer\n"
        "from common.config import ConfigError, TrainConfig\n"
        "try:\n    cartpole.main(['--gamma=nan'])\n"
        "except SystemExit as e:\n    print('cli', e.code, 'tensorflow' in sys.modules)\n"
        "try:\n    trainer.train(TrainConfig(lr=float('inf'), log_dir='unused'))\n"
        "except ConfigError as e:\n    print('api', 'tensorflow' in sys.modules)\n")
    assert out.stdout.split("\n")[:2] == ["cli 2 False", "api False"], out.stdout + out.stderr[-2000:]
    assert_one_line(out.stderr, "--gamma")


# --- reusing a log directory (run_log.RunDir.prepare) --------------------------------------------
def make_run_files(d):
    """Every kind of file a run writes, as names (contents do not matter to prepare)."""
    names = ["config.json", "metrics.csv", "eval.csv", "summary.json", "timings.json",
             "training_metrics.png", "profile.prof", "profile.txt", "cartpole_demo.gif",
             "events.out.tfevents.1700000000.host.1.v2", "checkpoints/checkpoint",
             "checkpoints/ckpt-5.index", "checkpoints/ckpt-5.data-00000-of-00001",
             "checkpoints/state-5.json", "model/best.keras", "model/final.keras",
             "scripts/cartpole.py", "scripts/run_cartpole_training.sh", "scripts/requirements.txt"]
    for n in names:
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        (d / n).write_text("run")
    return names


def make_user_files(d):
    """Files a user might keep beside a run; no mode of prepare may touch them."""
    names = ["notes.txt", "output.log", "data.tmp", "checkpoints/README", "model/mine.keras",
             "mine/config.json", "mine/profile.txt"]
    for n in names:
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        (d / n).write_text("mine")
    return names


@pytest.mark.parametrize("marker", ["config.json", "summary.json", "metrics.csv", "eval.csv",
                                    "checkpoints/checkpoint", "model/best.keras",
                                    "model/final.keras"])
def test_new_run_into_a_used_dir_is_refused(tmp_path, marker):
    from common.run_log import LogDirError, RunDir
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / marker).write_text("run")
    with pytest.raises(LogDirError) as info:
        RunDir.prepare(tmp_path, "new")
    msg = str(info.value)
    assert "\n" not in msg and marker in msg
    assert f"--resume {tmp_path}" in msg and "--overwrite" in msg
    assert (tmp_path / marker).read_text() == "run"


def test_new_run_into_a_dir_of_user_files_is_fine(tmp_path):
    from common.run_log import RunDir
    user = make_user_files(tmp_path)
    RunDir.prepare(tmp_path, "new")
    assert all((tmp_path / n).read_text() == "mine" for n in user)


def test_overwrite_removes_the_run_files_and_keeps_everything_else(tmp_path):
    from common.run_log import RunDir
    run = make_run_files(tmp_path)
    user = make_user_files(tmp_path)
    RunDir.prepare(tmp_path, "overwrite")
    assert [n for n in run if (tmp_path / n).exists()] == []
    assert all((tmp_path / n).read_text() == "mine" for n in user)
    assert not (tmp_path / "scripts").exists()  # emptied, so removed
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "model").is_dir()
    RunDir.prepare(tmp_path, "new")  # no longer a run


@pytest.mark.parametrize("mode", ["new", "overwrite", "resume"])
def test_leftover_temporaries_are_removed_in_every_mode(tmp_path, mode):
    from common.run_log import RunDir, atomic_write_text
    if mode == "resume":
        atomic_write_text(tmp_path / "config.json", "{}")
    user = make_user_files(tmp_path)
    temps = [".config.json.k2j3h4.tmp", "checkpoints/.state-5.json.a1b2c3.tmp",
             "model/best.keras.tmp.keras", "scripts/.cli.py.zz9.tmp"]
    for n in temps:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_text("half")
    RunDir.prepare(tmp_path, mode)
    assert [n for n in temps if (tmp_path / n).exists()] == []
    assert all((tmp_path / n).read_text() == "mine" for n in user)


def test_resume_needs_a_run(tmp_path):
    from common.run_log import LogDirError, RunDir
    with pytest.raises(LogDirError, match="no run to resume in"):
        RunDir.prepare(tmp_path, "resume")
    with pytest.raises(LogDirError, match="no run directory at"):
        RunDir.prepare(tmp_path / "missing", "resume")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "checkpoints").exists()
    with pytest.raises(ValueError, match="mode"):
        RunDir.prepare(tmp_path, "append")


@pytest.mark.slow
def test_training_into_a_used_log_dir_is_one_line_before_tensorflow(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    before = (run_dir / "config.json").read_bytes()
    out = run_python("import sys, cartpole\n"
                     f"code = cartpole.main(['--log-dir', {str(run_dir)!r}, '--no-profile'])\n"
                     "print(code, 'tensorflow' in sys.modules)\n")
    assert out.stdout.strip() == "2 False", out.stdout + out.stderr[-2000:]
    assert_one_line(out.stderr, "already holds a run", f"--resume {run_dir}", "--overwrite")
    assert (run_dir / "config.json").read_bytes() == before


@pytest.mark.slow
def test_overwrite_replaces_a_run(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    (run_dir / "notes.txt").write_text("mine")
    proc = run_cli("--log-dir", str(run_dir), "--overwrite", "--seed", "5", "--max-env-steps",
                   "1024", "--num-envs", "16", "--eval-every", "1000000", "--no-profile", "--quiet")
    assert proc.returncode == 3, proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_env_steps"] == 1024 and summary["resumed_from_env_steps"] is None
    assert summary["seed"] == 5
    assert max(int(r["env_steps"]) for r in _csv(run_dir / "metrics.csv")) == 1024
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("state-*.json")) == ["state-1024.json"]
    assert (run_dir / "notes.txt").read_text() == "mine"


def _csv(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- --resume keeps the run's settings -----------------------------------------------------------
def resume_cfg(run_dir, *flags):
    from training import cli
    args = cli.build_parser().parse_args(["--resume", str(run_dir), *flags])
    return cli.resume_config(str(run_dir), args)


@pytest.mark.parametrize("flags, fragment", [
    (["--lr", "0.01"], "--lr 0.01 differs from the run's 0.005"),
    (["--hidden", "12,12"], "--hidden 12,12 differs from the run's 48,48"),
    (["--no-xla-cache"], "--no-xla-cache differs from the run's --xla-cache"),
    # The run used --eval-every 16; 32 is the default, and given explicitly it still differs.
    (["--eval-every", "32"], "--eval-every 32 differs from the run's 16"),
    (["--seed", "4"], "--seed 4 differs from the run's 3"),
    (["--overwrite"], "--overwrite would empty it"),
    (["--log-dir", "/tmp/elsewhere"], "--log-dir /tmp/elsewhere differs"),
])
@pytest.mark.slow
def test_resume_refuses_a_changed_training_flag(short_run, flags, fragment):
    with pytest.raises(ConfigError) as info:
        resume_cfg(short_run, *flags)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_resume_takes_flags_equal_to_the_run(short_run):
    stored = TrainConfig.from_dict(json.loads((short_run / "config.json").read_text())["config"])
    cfg = resume_cfg(short_run, "--lr", "0.005", "--eval-every", "16", "--seed", "3",
                     "--log-dir", str(short_run), "--no-overwrite")
    assert cfg == stored.replace(log_dir=str(short_run))


@pytest.mark.slow
def test_resume_applies_budgets_and_output_flags_given(short_run):
    cfg = resume_cfg(short_run)  # nothing given: the run's own values
    assert (cfg.max_env_steps, cfg.quiet, cfg.profile, cfg.graphics) == (4096, True, False, False)
    # 1,000,000 is the default: "differs from the default" would have ignored it.
    cfg = resume_cfg(short_run, "--max-env-steps", "1000000", "--max-seconds", "60",
                     "--keep-training", "5", "--no-quiet", "--profile", "--graphics")
    assert (cfg.max_env_steps, cfg.max_seconds, cfg.keep_training) == (1_000_000, 60.0, 5)
    assert (cfg.quiet, cfg.profile, cfg.graphics) == (False, True, True)


@pytest.mark.slow
def test_resume_with_a_changed_flag_is_one_line(short_run):
    proc = run_cli("--resume", str(short_run), "--gamma", "0.99")
    assert_one_line_error(proc, "--resume keeps the run's settings; --gamma 0.99 differs from the "
                                "run's 0.998 (only --max-env-steps, --max-seconds, --keep-training, "
                                "--quiet, --graphics, --profile, --profiler, --video-format may change)")


def test_seeds_with_resume_is_refused(tmp_path, capsys):
    import cartpole
    code = cartpole.main(["--seeds", "0-1", "--log-dir", str(tmp_path), "--resume", str(tmp_path)])
    assert code == 2
    assert_one_line(capsys.readouterr().err, "--resume and --seeds are different modes")
    assert not (tmp_path / "seed_0").exists()


def _damage_config(state: dict, damage: str) -> None:
    cfg = state["config"]
    if damage == "config_missing":
        del state["config"]
    elif damage == "config_not_an_object":
        state["config"] = [1, 2]
    elif damage == "lr_a_string":
        cfg["lr"] = "fast"
    elif damage == "lr_nan":
        cfg["lr"] = float("nan")  # json.dumps writes NaN, and json.loads reads it back
    elif damage == "hidden_a_number":
        cfg["hidden"] = 48
    elif damage == "batch_size_a_float":
        cfg["batch_size"] = 1024.5
    elif damage == "gamma_out_of_range":
        cfg["gamma"] = 1.5
    elif damage == "xla_cache_a_string":
        cfg["xla_cache"] = "no"  # truthy: read as is, it would turn the cache on
    elif damage == "xla_not_a_choice":
        cfg["xla"] = "yes"  # not auto/on/off: read as is, it would mean on


@pytest.mark.parametrize("damage", ["config_missing", "config_not_an_object", "lr_a_string",
                                    "lr_nan", "hidden_a_number", "batch_size_a_float",
                                    "gamma_out_of_range", "xla_cache_a_string",
                                    "xla_not_a_choice"])
@pytest.mark.slow
def test_resume_state_with_a_bad_config(short_run, tmp_path, damage):
    from common.errors import CheckpointError
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    for path in (run_dir / "checkpoints").glob("state-*.json"):
        state = json.loads(path.read_text())
        _damage_config(state, damage)
        path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError) as info:
        resume_cfg(run_dir)
    assert "holds no usable config" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_resume_state_with_a_bad_config_is_one_line(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    for path in (run_dir / "checkpoints").glob("state-*.json"):
        state = json.loads(path.read_text())
        _damage_config(state, "lr_a_string")
        path.write_text(json.dumps(state))
    assert_one_line_error(run_cli("--resume", str(run_dir)), "holds no usable config", "lr")


def test_eval_worker_started_without_worker_flag_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "acting.eval_rounds"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("usage: python -m acting.eval_rounds --worker"), proc.stderr


@pytest.mark.parametrize("value", ["-0.1", "1", "2.5"])
def test_weight_decay_outside_zero_one_refused(value, capsys):
    """A negative decay would grow the weights; 1 or more would wipe a kernel in one step at lr 1."""
    import cartpole
    assert cartpole.main([f"--weight-decay={value}"]) == 2
    assert_one_line(capsys.readouterr().err, "--weight-decay must be in [0, 1)")


@pytest.mark.parametrize("value", ["-0.1", "1"])
def test_gap_solved_outside_zero_one_refused(value, capsys):
    """A negative share would raise the targets of the actions not taken; 1 or more would
    lower them by the whole gap or more at every step."""
    import cartpole
    assert cartpole.main([f"--gap-solved={value}"]) == 2
    assert_one_line(capsys.readouterr().err, "--gap-solved must be in [0, 1)")


@pytest.mark.parametrize("value", ["-1", "1e7"])
def test_anchor_solved_out_of_range_refused(value, capsys):
    """A negative weight would push the learner away from the delivered model."""
    import cartpole
    assert cartpole.main([f"--anchor-solved={value}"]) == 2
    assert_one_line(capsys.readouterr().err, "--anchor-solved must be in [0, 1e6]")
