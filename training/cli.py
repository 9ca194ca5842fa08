"""The command line of cartpole.py, generated from config.TrainConfig.

Every training flag is a field of the dataclass, so `--help`, `config.json` and the code cannot
disagree. Usage errors are one line and exit code 2 (argparse's default prints the whole usage
block first, which buries the actual message). Everything here runs before TensorFlow is
imported, so a bad flag costs milliseconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from common.config import ConfigError, TrainConfig, flag_name, parse_hidden

from common.errors import EXIT_USAGE  # noqa: E402

#: Settings `--resume` lets a command line change: the budgets, and output that does not touch
#: what is learned. Everything else is the run's own and must match it.
RESUME_MAY_CHANGE = ("max_env_steps", "max_seconds", "keep_training", "quiet", "graphics", "profile",
                     "profiler", "video_format")
#: The attribute of a parsed namespace holding the command line it was parsed from.
ARGV_ATTR = "command_line"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and exit code 2), not a usage dump.

    It also keeps the parsed tokens on the namespace (`ARGV_ATTR`), so that `resume_config`
    can tell a flag given on the command line from one left at its default.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"cartpole.py: error: {message} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        tokens = sys.argv[1:] if args is None else list(args)
        ns, extras = super().parse_known_args(tokens, namespace)
        setattr(ns, ARGV_ATTR, tokens)
        return ns, extras


def _literal(text: str) -> str:
    """A help text as printed: argparse %-formats help (for %(default)s), so a bare % in a text
    like "18% faster" made `--help` itself crash with a TypeError. Every help passes here."""
    return text.replace("%", "%%")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help only where it tells the reader something.

    Not when the text already names the default in its own words ("default: runs/<timestamp>",
    "random if omitted"): the None appended by argparse would contradict it. Not for a None
    default at all, which no user types. A tuple (--hidden) is shown as it is typed: 48,48.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is argparse.SUPPRESS or names_its_default(text):
            return text
        if isinstance(default, tuple):
            return text + " (default: " + _literal(",".join(map(str, default))) + ")"
        return super()._get_help_string(action)


def names_its_default(text: str) -> bool:
    """Whether a help text already says what happens when the flag is left out."""
    lowered = text.lower()
    return any(words in lowered for words in ("default:", "by default", "if omitted"))


def build_parser(only_given: bool = False) -> argparse.ArgumentParser:
    """cartpole.py's parser. With `only_given`, no defaults: a parsed namespace then holds just
    what the command line set (see `explicit_dests`)."""
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if only_given else value

    p = OneLineParser(
        prog="cartpole.py", allow_abbrev=False,
        description="Train a Double DQN on CartPole-v1 until the greedy policy scores 500 on every "
                    "evaluation episode in consecutive rounds. Exit codes: 0 solved, 2 usage error "
                    "or fault, 3 budget exhausted.",
        formatter_class=DefaultsHelpFormatter)
    modes = p.add_argument_group("other modes")
    modes.add_argument("--evaluate", metavar="PATH", default=default(None), help=_literal(
        "Play a saved model (.keras file or a run's log dir) greedily on standard CartPole-v1 "
        "and print the return statistics."))
    modes.add_argument("--episodes", type=int, default=default(100), help=_literal("Episodes for --evaluate."))
    modes.add_argument("--resume", metavar="DIR", default=default(None), help=_literal(
        "Continue the run in DIR from its latest checkpoint, with its own settings; only "
        + ", ".join(flag_name(n) for n in RESUME_MAY_CHANGE) + " may be given anew."))
    modes.add_argument("--seeds", metavar="SPEC", default=default(None), help=_literal(
        "Run several seeds (e.g. 0-19) in separate processes into LOG_DIR/seed_<n>/ and write "
        "report.md/json/png."))
    modes.add_argument("--workers", type=int, default=default(None), help=_literal(
        "Seeds run at a time with --seeds (default: CPU cores)."))
    modes.add_argument("--sweep", metavar="SPEC_YAML", default=default(None), help=_literal(
        "Hyperparameter/seed sweep on Ray Tune (needs requirements/sweep.txt)."))
    modes.add_argument("--ray-address", default=default(None), help=_literal(
        "Join this Ray cluster for --sweep instead of starting a local one."))
    modes.add_argument("--storage", metavar="PATH_OR_URI", default=default(None), help=_literal(
        "Where a --sweep's trial files and Tune's records end up: a path on this machine "
        "(default: --log-dir) or a URI such as s3://bucket/dir (docs/cluster.md)."))

    train = p.add_argument_group("training (every field of config.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = flag_name(f.name)
        help_text = _literal(f.metadata.get("help", ""))
        if f.type in ("bool", bool):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=default(f.default),
                               help=help_text)
            continue
        kind: Callable[[str], Any]
        if f.name == "hidden":
            kind = _arg_type(parse_hidden, "comma-separated widths like 64,64")
        elif "float" in str(f.type):
            kind = finite_float
        elif "int" in str(f.type):
            kind = int
        else:
            kind = str
        train.add_argument(flag, type=kind, default=default(f.default), choices=f.metadata.get("choices"),
                           help=help_text)
    return p


def finite_float(text: str) -> float:
    """argparse type for float flags: NaN and +-inf are refused here, at parse time, since every
    later range check is a comparison and comparisons with NaN are all False."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


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


MODE_ONLY_FLAGS = {"--seeds", "--workers", "--log-dir", "--sweep", "--ray-address", "--storage"}


def passthrough_args(argv: list[str]) -> list[str]:
    """The training flags of argv, without the multi-seed runner's own (for its children).

    `--resume` is refused: every child would get the same DIR and a --seed of its own, which is
    no resume of anything; each seed_<n> directory is resumed by its own command instead.
    """
    if any(tok.split("=", 1)[0] == "--resume" for tok in argv):
        raise ConfigError("--resume cannot be combined with --seeds; resume each "
                          "LOG_DIR/seed_<n> with its own --resume")
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


def explicit_dests(argv: list[str]) -> set[str]:
    """The destinations (TrainConfig field names, mode names) that argv sets explicitly.

    Parsed, not inferred from "differs from the default": `--lr 0.005` given by hand is
    explicit even though it equals the default. Every default is suppressed, so only what the
    command line sets appears in the namespace.
    """
    return set(vars(build_parser(only_given=True).parse_args(argv))) - {ARGV_ATTR}


def resume_config(run_dir: str, args: argparse.Namespace) -> TrainConfig:
    """The stored config of the run in `run_dir`, with what this command line may change.

    Budgets and output-only flags given explicitly win (`RESUME_MAY_CHANGE`); any other
    training flag given explicitly must equal the run's value, or this is a one-line
    `ConfigError` naming it, since silently ignoring it would train something else than asked.
    """
    from training.checkpoints import latest_checkpoint, read_state
    from common.errors import CheckpointError
    latest = latest_checkpoint(run_dir)  # CheckpointError if there is none
    try:
        stored = read_state(latest)["config"]
        cfg = TrainConfig.from_dict(stored).replace(log_dir=str(run_dir), overwrite=False)
        cfg.validate()
    except (KeyError, TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"checkpoint {latest} holds no usable config "
                              f"({type(e).__name__}: {e}); was it written by another version?") from None
    tokens = getattr(args, ARGV_ATTR, None)
    if tokens is None:  # a hand-made Namespace cannot say which flags were given
        raise TypeError("resume_config needs the args of cli.build_parser().parse_args()")
    given = explicit_dests(tokens)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in sorted(given & fields):
        _check_resume_flag(name, getattr(args, name), cfg, run_dir)
    cfg = cfg.replace(**{n: getattr(args, n) for n in RESUME_MAY_CHANGE if n in given})
    return cfg.validate()


def _check_resume_flag(name: str, value: Any, cfg: TrainConfig, run_dir: str) -> None:
    """Refuse a flag given with --resume that would change the run (one line)."""
    if name in RESUME_MAY_CHANGE:
        return
    if name == "overwrite":
        if value:
            raise ConfigError(f"--resume continues the run in {run_dir} and --overwrite would "
                              "empty it; give one of them")
        return
    if name == "log_dir":
        if Path(value).resolve() != Path(run_dir).resolve():
            raise ConfigError(f"--resume writes into the run's own dir {run_dir}; "
                              f"--log-dir {value} differs (leave --log-dir out)")
        return
    stored = getattr(cfg, name)
    if value != stored:
        allowed = ", ".join(flag_name(n) for n in RESUME_MAY_CHANGE)
        raise ConfigError(f"--resume keeps the run's settings; {_shown(name, value)} differs "
                          f"from the run's {_shown(name, stored, flag=False)} (only {allowed} "
                          "may change)")


def _shown(name: str, value: Any, flag: bool = True) -> str:
    """A setting as a user would type it: --lr 0.01, --no-xla-cache, --hidden 12,12."""
    if isinstance(value, bool):
        return flag_name(name) if value else "--no-" + flag_name(name)[2:]
    if isinstance(value, tuple):
        text = ",".join(map(str, value))
    else:
        text = "unset" if value is None else str(value)
    return f"{flag_name(name)} {text}" if flag else text
