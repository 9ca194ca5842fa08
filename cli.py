"""The command line of cartpole.py, generated from config.TrainConfig.

Every training flag is a field of the dataclass, so `--help`, `config.json` and the code cannot
disagree. Usage errors are one line and exit code 2 (argparse's default prints the whole usage
block first, which buries the actual message).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from config import ConfigError, TrainConfig, parse_hidden

EXIT_SOLVED, EXIT_USAGE, EXIT_UNSOLVED = 0, 2, 3


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"cartpole.py: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="cartpole.py", allow_abbrev=False,
        description="Train a Double DQN on CartPole-v1 until the greedy policy scores 500 on every "
                    "evaluation episode in consecutive rounds. Exit codes: 0 solved, 2 usage error "
                    "or fault, 3 budget exhausted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    modes = p.add_argument_group("other modes")
    modes.add_argument("--evaluate", metavar="PATH",
                       help="Play a saved model (.keras file or a run's log dir) greedily on "
                            "standard CartPole-v1 and print the return statistics.")
    modes.add_argument("--episodes", type=int, default=100, help="Episodes for --evaluate.")
    modes.add_argument("--resume", metavar="DIR",
                       help="Continue the run in DIR from its latest checkpoint.")
    modes.add_argument("--seeds", metavar="SPEC",
                       help="Run several seeds (e.g. 0-19) in separate processes into "
                            "LOG_DIR/seed_<n>/ and write report.md/json/png.")
    modes.add_argument("--workers", type=int, default=None,
                       help="Seeds run at a time with --seeds (default: CPU cores).")
    modes.add_argument("--sweep", metavar="SPEC_YAML",
                       help="Hyperparameter/seed sweep on Ray Tune (needs requirements-sweep.txt).")
    modes.add_argument("--ray-address", default=None,
                       help="Join this Ray cluster for --sweep instead of starting a local one.")

    train = p.add_argument_group("training (every field of config.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                               help=help_text)
            continue
        kind: Callable[[str], Any]
        if f.name == "hidden":
            kind = _arg_type(parse_hidden, "comma-separated widths like 64,64")
        elif "float" in str(f.type):
            kind = float
        elif "int" in str(f.type):
            kind = int
        else:
            kind = str
        train.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                           help=help_text)
    return p


def _arg_type(fn: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return fn(text)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    convert.__name__ = what
    return convert


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if not values["log_dir"]:
        values["log_dir"] = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    return TrainConfig(**values).validate()



MODE_ONLY_FLAGS = {"--seeds", "--workers", "--log-dir", "--sweep", "--ray-address"}


def passthrough_args(argv: list[str]) -> list[str]:
    """The training flags of argv, without the multi-seed runner's own (for its children)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in MODE_ONLY_FLAGS:
            skip = "=" not in tok
            continue
        out.append(tok)
    return out


def resume_config(run_dir: str, args: argparse.Namespace) -> TrainConfig:
    """The stored config of a run, with its log dir; budgets given on this command line win."""
    from checkpoints import CheckpointError, latest_checkpoint, read_state
    latest = latest_checkpoint(run_dir)  # CheckpointError if there is none
    try:
        stored = read_state(latest)["config"]
        cfg = TrainConfig.from_dict(stored).replace(log_dir=str(run_dir), quiet=args.quiet)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {latest} holds no usable config "
                              f"({type(e).__name__}: {e}); was it written by another version?") from None
    defaults = build_parser().parse_args([])
    for name in ("max_env_steps", "max_seconds", "keep_training"):
        if getattr(args, name) != getattr(defaults, name):
            cfg = cfg.replace(**{name: getattr(args, name)})
    return cfg.validate()


