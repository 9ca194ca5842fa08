"""The newcomer's path: `--help`, a mistyped flag, and every command line the README shows."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli


def test_help_exits_zero_and_lists_the_flags():
    proc = run_cli("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for flag in ("--log-dir", "--overwrite", "--resume", "--evaluate", "--seeds", "--hidden"):
        assert flag in proc.stdout, flag


def test_a_percent_sign_in_a_help_text_is_printed_as_written():
    """argparse %-formats help; every text passes through cli._literal, so a bare % (once in
    the --threads text) neither crashes --help nor vanishes."""
    import argparse

    from training import cli
    p = argparse.ArgumentParser(formatter_class=cli.DefaultsHelpFormatter)
    p.add_argument("--x", type=int, default=1, help=cli._literal("one thread was 18% faster"))
    assert "one thread was 18% faster (default: 1)" in " ".join(p.format_help().split())


def test_every_help_text_is_printed_literally(monkeypatch):
    """Each TrainConfig help text appears in --help word for word: argparse %-formats help, so an
    unescaped % would crash it or eat characters."""
    import dataclasses

    from training import cli
    from common.config import TrainConfig
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping, which may break at a hyphen
    text = cli.build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"] in text, f.name


def test_mistyped_flag_is_one_line_exit_2():
    proc = run_cli("--lerning-rate", "0.01", timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartpole.py: error:"), proc.stderr
    assert "--lerning-rate" in lines[0]


def test_run_cartpole_training_sh_help():
    proc = subprocess.run([str(ROOT / "run_cartpole_training.sh"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--log-dir" in proc.stdout and "Traceback" not in proc.stderr


# --- every command line in the README -----------------------------------------------------------
def readme_commands() -> list[list[str]]:
    """The arguments of every cartpole command in the README's bash blocks."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("./run_cartpole_training.sh", "python") and (
                    words[0] != "python" or words[1] == "cartpole.py"):
                commands.append(words[1:] if words[0] != "python" else words[2:])
    return commands


def test_readme_shows_the_main_commands():
    flags = {w for c in readme_commands() for w in c if w.startswith("--")}
    assert {"--log-dir", "--evaluate", "--resume", "--seeds", "--sweep"} <= flags, flags


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a) or "(no flags)")
def test_readme_command_parses_and_validates(args):
    """Each README command's flags exist and its values pass validation, in-process (no
    TensorFlow): a renamed flag or a tightened range breaks the README, and this test."""
    from training import cli
    args_ns = cli.build_parser().parse_args(args)  # SystemExit(2) on an unknown flag
    cfg = cli.config_from_args(args_ns)
    if "--log-dir" in args:
        assert cfg.log_dir == args[args.index("--log-dir") + 1]
    else:  # the documented default: runs/<timestamp>
        assert re.fullmatch(r"runs/\d{8}-\d{6}", cfg.log_dir), cfg.log_dir
    if args_ns.seeds:
        from experiments import multiseed
        assert multiseed.parse_seeds(args_ns.seeds)
        cli.passthrough_args(args)
    if args_ns.sweep:
        pytest.importorskip("yaml")
        from experiments.sweep_spec import expand_trials, load_spec
        assert expand_trials(load_spec(ROOT / args_ns.sweep))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 4 -> 2 Keras model saved as .keras, and a log dir holding it as model/best.keras."""
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    root = tmp_path_factory.mktemp("tiny")
    (root / "run" / "model").mkdir(parents=True)
    model.save(root / "tiny.keras")
    model.save(root / "run" / "model" / "best.keras")
    return root


@pytest.mark.parametrize("target", ["tiny.keras", "run"])
def test_evaluate_a_saved_model(tiny_model, target):
    """README: `--evaluate runs/exp1 --episodes 100`, with a .keras file or a run's log dir."""
    proc = run_cli("--evaluate", str(tiny_model / target), "--episodes", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r".*\.keras: 2 episodes of CartPole-v1: mean ([\d.]+), min (\d+), max (\d+), "
                     r"(\d)/2 at 500 \(std [\d.]+\)", line)
    assert m, line
    mean, lo, hi = float(m[1]), int(m[2]), int(m[3])
    assert 1 <= lo <= mean <= hi <= 500  # every CartPole episode lasts at least one step


def test_cli_module_imports_no_tensorflow():
    code = "import sys; from training import cli; from common import config; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
