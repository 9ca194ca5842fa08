"""TensorBoard event files: every scalar read back equals its CSV value, at its env step.

Events are read with TensorBoard's own event-file loader, file by file in name order, as
TensorBoard does for a run directory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="tensorboard is in requirements.txt")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.plugins.hparams import metadata as hp_metadata  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from common import metrics  # noqa: E402
from outputs import tb_log  # noqa: E402

CONFIG = {"log_dir": "/somewhere", "seed": 3, "hidden": [48, 48], "lr": 5e-3, "xla": "auto",
          "graphics": False, "lr_solved": None, "buffer_size": 65536, "quiet": True}


def event_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("events.out.tfevents.*"))


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] in file order, from every event file of the directory."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(log_dir):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag.startswith("_hparams_"):
                    continue
                value = float(tensor_util.make_ndarray(v.tensor))
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def wall_times(log_dir: Path) -> dict[int, float]:
    """step -> wall time of the scalar event written for that step."""
    out: dict[int, float] = {}
    for path in event_files(log_dir):
        for event in EventFileLoader(str(path)).Load():
            if any(not v.tag.startswith("_hparams_") for v in event.summary.value):
                assert event.step not in out, f"step {event.step} written twice"
                out[event.step] = event.wall_time
    return out


def session_starts(log_dir: Path) -> list:
    """The hparams plugin's session-start records written into the directory."""
    infos = []
    for path in event_files(log_dir):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag == hp_metadata.SESSION_START_INFO_TAG:
                    infos.append(hp_metadata.parse_session_start_info_plugin_data(
                        v.metadata.plugin_data.content))
    return infos


def read_hparams(log_dir: Path) -> list[dict]:
    """The session-start hparams written into the directory, one dict per write."""
    return [{k: getattr(x, x.WhichOneof("kind")) for k, x in info.hparams.items()}
            for info in session_starts(log_dir)]


def made_up_rows(start_step: int, n: int) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(start_step)
    rows, evals = [], []
    for i in range(n):
        step = start_step + 1024 * (i + 1)
        row = {c: float(rng.uniform(0.1, 100)) for c in metrics.METRICS_COLUMNS}
        row["env_steps"] = step
        if i % 3 == 0:
            row["train_return_mean"] = row["train_return_max"] = None  # no episode finished
        if i == 0:
            row["loss"] = row["mean_q"] = None  # learning had not started
        rows.append(row)
        if i % 2 == 1:
            ev = {c: float(rng.integers(0, 64)) for c in metrics.EVAL_COLUMNS}
            ev["env_steps"] = step
            evals.append(ev)
    return rows, evals


def expected(rows: list[dict], tags: dict[str, str]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for column, tag in tags.items():
            if row.get(column) not in (None, ""):
                out.setdefault(tag, []).append((int(row["env_steps"]), float(row[column])))
    return out


def feed(obs: tb_log.TensorBoardObserver, rows: list[dict], evals: list[dict]) -> None:
    by_step = {e["env_steps"]: e for e in evals}
    for row in rows:
        obs.on_metrics(row)
        obs.on_episodes(row["env_steps"], np.array([10.0, 30.0]), np.array([10, 30]))
        if row["env_steps"] in by_step:
            obs.on_eval(by_step[row["env_steps"]])


def assert_close(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [s for s, _ in got] == [s for s, _ in want]
    # Values are stored as float32, as tf.summary.scalar stores them.
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_made_up_rows_read_back_with_tags_steps_and_values(tmp_path):
    rows, evals = made_up_rows(0, 12)
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=False)
    feed(obs, rows, evals)
    obs.on_solve({"solve_wall_s": 5.5, "solve_env_steps": rows[-1]["env_steps"],
                  "solve_learn_steps": 700})
    obs.on_end({"solved": True})
    assert len(event_files(tmp_path)) == 1
    got = read_scalars(tmp_path)

    want = {**expected(rows, tb_log.TRAIN_TAGS), **expected(evals, tb_log.EVAL_TAGS)}
    want[metrics.EPISODIC_LENGTH_TAG] = [(r["env_steps"], 20.0) for r in rows]
    want[metrics.SOLVE_TAGS["solve_wall_s"]] = [(rows[-1]["env_steps"], 5.5)]
    want[metrics.SOLVE_TAGS["solve_env_steps"]] = [(rows[-1]["env_steps"],
                                                   float(rows[-1]["env_steps"]))]
    want[metrics.SOLVE_TAGS["solve_learn_steps"]] = [(rows[-1]["env_steps"], 700.0)]
    assert set(got) == set(want)
    for tag in want:
        assert_close(got[tag], want[tag])
    assert obs.values_written == sum(len(v) for v in want.values())

    # The settings, through the hparams plugin: unset and output-only settings left out.
    assert read_hparams(tmp_path) == [{"seed": 3, "hidden": "48,48", "lr": 5e-3, "xla": "auto",
                                       "buffer_size": 65536}]
    # The trial is named after its run directory (seed_3, a sweep trial), not a hash.
    assert [info.group_name for info in session_starts(tmp_path)] == [tmp_path.name]


def test_events_carry_the_time_their_values_were_logged_not_written(tmp_path):
    rows, evals = made_up_rows(0, 8)
    ticks = iter(range(1_700_000_000, 1_700_001_000))
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=False,
                                     clock=lambda: float(next(ticks)))
    feed(obs, rows[:5], evals)
    obs.on_checkpoint()
    feed(obs, rows[5:], evals)
    obs.on_end({})
    # One clock reading per new step, when its first value was logged.
    assert wall_times(tmp_path) == {r["env_steps"]: 1_700_000_000.0 + i for i, r in enumerate(rows)}


def test_nothing_is_written_before_a_checkpoint_and_all_of_it_after(tmp_path):
    rows, evals = made_up_rows(0, 6)
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=False)
    feed(obs, rows[:4], evals)
    assert event_files(tmp_path) == []
    obs.on_checkpoint()
    got = read_scalars(tmp_path)
    assert [s for s, _ in got["charts/epsilon"]] == [r["env_steps"] for r in rows[:4]]
    feed(obs, rows[4:], [])
    # Rows after the checkpoint wait for the next one (or the end).
    assert [s for s, _ in read_scalars(tmp_path)["charts/epsilon"]] == [r["env_steps"] for r in rows[:4]]
    obs.on_end({})
    assert [s for s, _ in read_scalars(tmp_path)["charts/epsilon"]] == [r["env_steps"] for r in rows]


def test_resumed_run_continues_the_same_curves(tmp_path):
    first, _ = made_up_rows(0, 5)
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=False)
    feed(obs, first[:3], [])
    obs.on_checkpoint()
    feed(obs, first[3:], [])  # logged after the last checkpoint, then the process dies
    del obs

    # The resumed session restarts from the checkpoint and recomputes those rows.
    second, _ = made_up_rows(first[2]["env_steps"], 4)
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=True)
    feed(obs, second, [])
    obs.on_end({})
    assert len(event_files(tmp_path)) == 2
    got = read_scalars(tmp_path)["losses/td_loss"]
    want = expected(first[:3] + second, tb_log.TRAIN_TAGS)["losses/td_loss"]
    assert_close(got, want)  # every step once, in order, across both files
    assert len(read_hparams(tmp_path)) == 1, "a resumed run must not register its hparams twice"


def test_unwritable_log_dir_is_a_one_line_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    obs = tb_log.TensorBoardObserver(blocker / "run", CONFIG, resumed=False)
    obs.on_metrics({"env_steps": 64, "epsilon": 0.5})
    with pytest.raises(OSError) as err:
        obs.on_checkpoint()
    assert "TensorBoard" in str(err.value) and "\n" not in str(err.value)


def test_hparam_values_are_plugin_types():
    values = tb_log.hparam_values({"hidden": (12, 12), "gamma": 0.998, "xla": "on",
                                   "xla_cache": True, "max_seconds": None, "nested": {"a": 1}})
    assert values == {"hidden": "12,12", "gamma": 0.998, "xla": "on"}


# --- a real (tiny) run, then resumed: the event files against metrics.csv and eval.csv -------

TINY = ("--seed", "0", "--num-envs", "16", "--hidden", "8", "--batch-size", "64",
        "--buffer-size", "4096", "--learning-starts", "256", "--train-every", "4",
        "--eval-every", "8", "--eval-episodes", "4", "--confirm-episodes", "0",
        "--checkpoint-every", "1024", "--xla", "off", "--no-profile", "--quiet")


def csv_scalars(path: Path, tags: dict[str, str]) -> dict[str, list[tuple[int, float]]]:
    from common import run_log
    return expected(run_log.read_csv(path), tags)


@pytest.mark.slow
def test_real_run_and_its_resume_match_the_csvs(tmp_path):
    from conftest import run_cli
    run = tmp_path / "run"
    first = run_cli("--log-dir", str(run), "--max-env-steps", "2048", *TINY, timeout=600)
    assert first.returncode == 3, first.stderr  # a budget this small does not solve
    assert len(event_files(run)) == 1
    resumed = run_cli("--resume", str(run), "--max-env-steps", "3072", "--quiet", timeout=600)
    assert resumed.returncode == 3, resumed.stderr
    assert len(event_files(run)) == 2, "the resumed session writes its own event file"

    got = read_scalars(run)
    want = {**csv_scalars(run / "metrics.csv", tb_log.TRAIN_TAGS),
            **csv_scalars(run / "eval.csv", tb_log.EVAL_TAGS)}
    assert want["charts/epsilon"][-1][0] == 3072 and len(want["eval/mean_return"]) >= 4
    assert metrics.EPISODIC_LENGTH_TAG in got
    for tag, series in want.items():
        steps = [s for s, _ in got[tag]]
        assert steps == [s for s, _ in series], tag  # each step once, in order, across files
        # The CSV holds 6 significant digits; the event file the float32 value.
        np.testing.assert_allclose([v for _, v in got[tag]], [v for _, v in series],
                                   rtol=1e-5, err_msg=tag)
    # The hparams are the run's settings as it started (the resume raised only the budget).
    config = json.loads((run / "config.json").read_text())["config"]
    assert read_hparams(run) == [tb_log.hparam_values({**config, "max_env_steps": 2048})]


def test_without_the_tensorboard_package_the_run_goes_on_with_one_line(tmp_path, monkeypatch,
                                                                       capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    obs = tb_log.TensorBoardObserver(tmp_path, CONFIG, resumed=False)
    rows, evals = made_up_rows(0, 3)
    feed(obs, rows, evals)
    obs.on_checkpoint()
    obs.on_end({})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard package is not installed" in err[0]
    assert event_files(tmp_path) == []
