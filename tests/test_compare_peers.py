"""Tests for benchmarks/compare_peers.py: the parts that need neither torch nor Stable-Baselines3.

The benchmark itself takes minutes and the peers' extra dependencies; what can silently break a
comparison is the bookkeeping around it (the solve rule, the evaluation cadence, medians with
unsolved runs, the ratio to ours, the interleaved order, the command line), so that is what is
pinned here. The one check that needs SB3 skips itself when SB3 is not installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "compare_peers.py"


def _load_module():
    # benchmarks/ is a folder of scripts, not a package: load the file directly.
    spec = importlib.util.spec_from_file_location("compare_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compare_peers"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


cp = _load_module()


# --- solve rule -----------------------------------------------------------------------------
def test_solve_needs_consecutive_passes_and_freezes_the_solve_point():
    t = cp.SolveTracker(3)
    outcomes = [True, True, False, True, True, True, True]
    solved_at = [t.record(p, steps, steps / 100) for steps, p in
                 zip(range(1000, 8000, 1000), outcomes)]
    assert solved_at == [False, False, False, False, False, True, False]
    assert t.solved and t.solve_env_steps == 6000 and t.solve_wall_s == 60.0
    assert t.rounds == 7 and t.passed_rounds == 6 and t.consecutive == 4


def test_single_round_rule_solves_on_first_pass():
    t = cp.SolveTracker(1)
    assert not t.record(False, 10, 1.0)
    assert t.record(True, 20, 2.0)
    assert (t.solve_env_steps, t.solve_wall_s) == (20, 2.0)


def test_never_passing_stays_unsolved():
    t = cp.SolveTracker(2)
    for s in range(5):
        t.record(s % 2 == 0, s, s)  # alternating passes never make two in a row
    assert not t.solved and t.solve_env_steps is None and t.solve_wall_s is None


def test_failed_certificate_resets_the_streak_and_a_passed_one_solves_at_its_end():
    t = cp.SolveTracker(2)
    verdicts = iter([(False, 11.0), (True, 25.0)])
    certify = lambda: next(verdicts)  # noqa: E731
    assert not t.record(True, 1000, 10.0, certify)
    assert not t.record(True, 2000, 10.5, certify)  # streak complete, certificate fails
    assert not t.solved and t.consecutive == 0 and t.certificates_failed == 1
    assert not t.record(True, 3000, 20.0, certify)  # a new streak from zero
    assert t.record(True, 4000, 21.0, certify)      # completes it, certificate passes
    assert t.solved and (t.solve_env_steps, t.solve_wall_s) == (4000, 25.0)
    assert t.certificates == 2
    assert not t.record(True, 5000, 30.0, certify)  # no certificate after the solve


def test_solve_rounds_must_be_positive():
    with pytest.raises(ValueError):
        cp.SolveTracker(0)


# --- evaluation cadence ---------------------------------------------------------------------
def test_schedule_fires_once_per_crossing_with_uneven_jumps():
    sch = cp.EvalSchedule(1024)
    fired = [s for s in range(0, 5000, 8) if sch.due(s)]  # PPO-like: 8 envs per step
    assert fired == [1024, 2048, 3072, 4096]


def test_schedule_big_jump_gives_one_round_not_a_burst():
    sch = cp.EvalSchedule(1000)
    assert sch.due(3500)
    assert not sch.due(3900)
    assert sch.due(4000)


def test_schedule_rejects_nonpositive_interval():
    with pytest.raises(ValueError):
        cp.EvalSchedule(0)


def test_peers_play_the_trainers_episode_seeds():
    # The same function and indices as the trainer's rounds, certificates and confirmation.
    from training import trainer, wrap_up
    assert cp.eval_seed is trainer.eval_seed
    assert (cp.certificate_seed, cp.CERTIFY_ENVS) == (trainer.certificate_seed, trainer.CERTIFY_ENVS)
    assert (cp.confirmation_seed, cp.CONFIRM_ENVS) == (wrap_up.confirmation_seed, wrap_up.CONFIRM_ENVS)
    a = cp.parse_args([])
    cfg = trainer.TrainConfig()
    assert (a.eval_episodes, a.solve_rounds, a.certify_episodes) == \
        (cfg.eval_episodes, cfg.solve_rounds, cfg.certify_episodes)


# --- scheduling of runs ---------------------------------------------------------------------
def test_runs_are_interleaved_by_seed():
    order = cp.interleaved_schedule(["ours", "sb3_dqn", "sb3_ppo"], range(2))
    assert order == [("ours", 0), ("sb3_dqn", 0), ("sb3_ppo", 0),
                     ("ours", 1), ("sb3_dqn", 1), ("sb3_ppo", 1)]


# --- medians and ratios (the medians themselves are stats.py's, tested in test_stats.py) -----
def test_ratio_and_its_formatting():
    assert cp.fmt_ratio(cp.ratio(53.0, 10.0)) == "5.3x"
    assert cp.fmt_ratio(cp.ratio(math.inf, 10.0)) == "inf"
    assert cp.fmt_ratio(cp.ratio(10.0, math.inf)) == "n/a"
    assert cp.fmt_ratio(cp.ratio(None, 10.0)) == "n/a"
    assert cp.fmt_ratio(cp.ratio(10.0, 0.0)) == "n/a"


def test_number_formatting():
    assert cp.fmt_num(None) == "–"  # the reports' mark for "none" (sweep_report.fmt_num)
    assert cp.fmt_num(math.inf) == "inf"
    assert cp.fmt_num(28000, 0) == "28,000"
    assert cp.fmt_num(28000.0, 0) == "28,000"
    assert cp.fmt_num(7.26) == "7.3"


def _runs():
    R = cp.RunResult
    return [R("ours", 0, True, 6.0, 40_000, 500.0, 100, 100),
            R("sb3_dqn", 0, True, 30.0, 28_000, 480.0, 90, 100),
            R("sb3_ppo", 0, True, 8.0, 14_000, 500.0, 100, 100),
            R("ours", 1, True, 8.0, 50_000, 500.0, 100, 100),
            R("sb3_dqn", 1, False, note="unsolved in 50,000 steps"),
            R("sb3_ppo", 1, True, 12.0, 20_000, 499.0, 99, 100),
            R("ours", 2, True, 7.0, 45_000, 500.0, 100, 100),
            R("sb3_dqn", 2, True, 40.0, 30_000, 500.0, 100, 100),
            R("sb3_ppo", 2, False, note="timeout")]


def test_summary_counts_medians_and_ratio_to_ours():
    summary = {s["contender"]: s for s in cp.summarize(_runs(), cp.CONTENDERS)}
    ours, dqn, ppo = summary["ours"], summary["sb3_dqn"], summary["sb3_ppo"]
    assert (ours["solved"], ours["runs"]) == (3, 3)
    assert ours["median_s_inf"] == ours["median_s_solved"] == 7.0
    assert ours["median_env_steps"] == 45_000
    assert dqn["solved"] == 2 and dqn["median_s_solved"] == 35.0 and dqn["median_s_inf"] == 40.0
    assert dqn["ratio_vs_baseline"] == pytest.approx(40.0 / 7.0)
    assert ppo["median_s_inf"] == 12.0 and ppo["median_env_steps"] == 17_000
    assert ours["ratio_vs_baseline"] == 1.0


def test_ratio_lines_read_like_the_report():
    lines = cp.ratio_lines(cp.summarize(_runs(), cp.CONTENDERS))
    assert lines[0].startswith("sb3_dqn / ours = 5.7x")
    assert lines[1].startswith("sb3_ppo / ours = 1.7x")
    assert "95% bootstrap interval [" in lines[0]


def test_ratio_interval_counts_unsolved_runs_as_never():
    summary = {s["contender"]: s for s in cp.summarize(_runs(), cp.CONTENDERS)}
    ci = summary["sb3_dqn"]["ratio_vs_baseline_ci"]
    assert ci["value"] == pytest.approx(40.0 / 7.0)
    # With 3 runs a side every resampled median is one of the runs: the interval's ends are
    # ratios of a dqn run (30, 40 or never) to one of ours (6, 7, 8).
    assert ci["ci_low"] == pytest.approx(30.0 / 8.0) and ci["ci_high"] == math.inf
    assert cp.fmt_interval(ci) == "[3.8x, inf]"
    few = cp.summarize(_runs()[:6], cp.CONTENDERS)  # two runs a side: no interval
    assert few[1]["ratio_vs_baseline_ci"]["ci_low"] is None
    assert "none" in cp.fmt_interval(few[1]["ratio_vs_baseline_ci"])


def test_ratio_lines_without_ours_or_with_ours_unsolved():
    runs = [r for r in _runs() if r.contender != "ours"]
    assert "not among" in cp.ratio_lines(cp.summarize(runs, cp.CONTENDERS))[0]
    unsolved = [cp.RunResult("ours", s, False) for s in range(3)] + runs
    assert all("n/a" in line for line in cp.ratio_lines(cp.summarize(unsolved, cp.CONTENDERS)))


def test_summary_skips_contenders_without_runs():
    runs = [r for r in _runs() if r.contender == "sb3_ppo"]
    summary = cp.summarize(runs, cp.CONTENDERS)
    assert [s["contender"] for s in summary] == ["sb3_ppo"]
    assert summary[0]["ratio_vs_baseline"] is None


# --- tables ---------------------------------------------------------------------------------
def test_text_table_is_aligned():
    text = cp.format_table(["name", "value"], [["a", "1"], ["longer", "12345"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert lines[2].startswith("a ") and lines[2].endswith("    1")


def test_run_and_summary_tables_render():
    runs = _runs()
    text = cp.format_table(cp.RUN_HEADERS, cp.run_rows(runs))
    assert "unsolved in 50,000 steps" in text and "100/100" in text and "40,000" in text
    summ = cp.format_table(cp.SUMMARY_HEADERS, cp.summary_rows(cp.summarize(runs, cp.CONTENDERS)))
    assert "3/3" in summ and "2/3" in summ and "5.7x" in summ


def test_markdown_report_has_both_tables():
    runs = _runs()
    meta = {"started": "now", "command": "x", "eval_episodes": 64, "solve_rounds": 3, "cpus": 2,
            "load_start": "1.00 1.00 1.00", "load_end": "1.00 1.00 1.00"}
    md = cp.render_markdown(runs, cp.summarize(runs, cp.CONTENDERS), meta)
    assert md.count("| contender |") == 2
    assert "64 greedy episodes all 500, 3 round(s) in a row" in md
    assert "certificate" not in md
    md = cp.render_markdown(runs, cp.summarize(runs, cp.CONTENDERS), {**meta, "certify_episodes": 1000})
    assert "then a certificate of 1,000 never-seen episodes all 500" in md
    assert "- sb3_dqn / ours = 5.7x" in md


# --- command line ---------------------------------------------------------------------------
def test_defaults_are_the_strict_rule_and_all_contenders():
    a = cp.parse_args([])
    assert (a.seeds, a.eval_episodes, a.solve_rounds, a.certify_episodes) == (5, 64, 3, 1000)
    assert a.contenders == ["ours", "sb3_dqn", "sb3_ppo"]
    assert a.out.startswith("/tmp/compare_peers-") and a.worker is None


def test_loose_rule_and_contender_list():
    a = cp.parse_args(["--seeds", "1", "--contenders", "sb3_ppo,ours,sb3_ppo",
                       "--eval-episodes", "20", "--solve-rounds", "1", "--our-args", "--lr 3e-3"])
    assert a.contenders == ["sb3_ppo", "ours"]
    assert (a.seeds, a.eval_episodes, a.solve_rounds, a.our_args) == (1, 20, 1, "--lr 3e-3")


@pytest.mark.parametrize("argv", [["--contenders", "cleanrl"], ["--contenders", ""],
                                  ["--seeds", "0"], ["--solve-rounds", "0"],
                                  ["--eval-episodes", "20000"], ["--worker", "sb3_dqn"]])
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cp.parse_args(argv)
    assert e.value.code == 2


def test_parse_contenders_error_message():
    with pytest.raises(argparse.ArgumentTypeError, match="ours,sb3_dqn,sb3_ppo"):
        cp.parse_contenders("dqn")


def test_missing_peer_deps_print_the_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cp, "peer_deps_missing", lambda: True)
    code = cp.main(["--contenders", "sb3_ppo", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "install with: benchmarks/run.sh compare_peers (installs benchmarks/requirements.txt)" in err


def test_linear_schedule_is_the_zoos_lin():
    f = cp.linear_schedule(1e-3)
    assert f(1.0) == pytest.approx(1e-3) and f(0.5) == pytest.approx(5e-4) and f(0.0) == 0.0
    clip = cp.zoo_value(cp.PPO_ZOO["clip_range"])
    assert clip(1.0) == pytest.approx(0.2) and clip(0.25) == pytest.approx(0.05)
    assert cp.zoo_value(0.98) == 0.98


def test_zoo_hyperparameters_are_the_cited_ones():
    d, p = cp.DQN_ZOO, cp.PPO_ZOO
    assert (d["n_timesteps"], d["learning_rate"], d["train_freq"], d["gradient_steps"],
            d["net_arch"]) == (50_000, 2.3e-3, 256, 128, [256, 256])
    assert (p["n_timesteps"], p["n_envs"], p["n_steps"], p["batch_size"], p["n_epochs"],
            p["gamma"], p["gae_lambda"]) == (100_000, 8, 32, 256, 20, 0.98, 0.8)
    # Cadence: DQN every 4th training phase, PPO every 4th rollout.
    assert cp.EVAL_EVERY_STEPS["sb3_dqn"] == 4 * d["train_freq"]
    assert cp.EVAL_EVERY_STEPS["sb3_ppo"] == 4 * p["n_envs"] * p["n_steps"]


def test_importing_the_benchmark_does_not_import_torch():
    code = ("import importlib.util, sys; "
            f"s = importlib.util.spec_from_file_location('cp', {str(SCRIPT)!r}); "
            "m = importlib.util.module_from_spec(s); sys.modules['cp'] = m; s.loader.exec_module(m); "
            "sys.exit(1 if {'torch', 'stable_baselines3', 'tensorflow'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- needs SB3 (skipped without it) ---------------------------------------------------------
def test_greedy_act_matches_sb3_predict():
    pytest.importorskip("torch")
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    models = [sb3.DQN("MlpPolicy", make_vec_env("CartPole-v1", 1), seed=0, device="cpu",
                      policy_kwargs={"net_arch": [32, 32]}),
              sb3.PPO("MlpPolicy", make_vec_env("CartPole-v1", 2), seed=0, device="cpu")]
    for model in models:
        expected = model.predict(obs, deterministic=True)[0]
        got = cp.greedy_act(model)(obs)
        assert got.shape == (64,) and np.array_equal(got, expected)


def test_a_peer_leaves_no_log_directory_behind(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("stable_baselines3")
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    _torch, sb3, _evaluation = cp._import_peer()
    for kind in ("sb3_dqn", "sb3_ppo"):
        model, env, _ = cp.zoo_model(sb3, kind, seed=0)
        model.learn(total_timesteps=64)
        env.close()
    assert list(tmp_path.glob("SB3-*")) == []  # torch may keep its own cache there
