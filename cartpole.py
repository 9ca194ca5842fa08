"""cartpole — train a Double DQN on gymnasium's CartPole-v1 until it provably solves it.

The entry point. It parses the command line (cli.py, built from config.TrainConfig) before
TensorFlow is imported, so a bad flag costs milliseconds and prints one line, then does one of:
- train a new run, or `--resume DIR` one            -> trainer.Trainer (the loop and its phases)
- `--evaluate PATH`: play a saved model              -> evaluation.py
- `--seeds SPEC`: many seeds in separate processes    -> multiseed.py
- `--sweep SPEC.yaml`: a Ray Tune sweep               -> sweep.py

Exit codes: 0 solved · 2 usage error, bad input or a fault that stopped training (one line on
stderr) · 3 budget exhausted without solving · 130 Ctrl-C, 143 SIGTERM (during training both
save a checkpoint first; interrupts.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Before NumPy loads: the loop is sequential, and a second BLAS thread only spins against the
# environment step (the 4->64->64->2 forward on 1024 rows took 204 us with two, 110 with one).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from training.cli import build_parser, config_from_args, passthrough_args, resume_config  # noqa: E402
from common.config import ConfigError, TrainConfig  # noqa: E402
from common.errors import EXIT_SOLVED, EXIT_UNSOLVED, EXIT_USAGE, USER_ERRORS, TrainingFault  # noqa: E402
from common.run_log import PROFILE_FOLDED, PROFILE_PROF, PROFILE_TXT, process_start_time  # noqa: E402

__all__ = ["main", "TrainingFault"]


def main(argv: list[str] | None = None) -> int:
    t0 = process_start_time()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from common import interrupts
    interrupts.install()
    try:
        modes = [f"--{m}" for m in ("evaluate", "resume", "seeds", "sweep") if getattr(args, m)]
        if len(modes) > 1:
            raise ConfigError(f"{' and '.join(modes)} are different modes; give one of them")
        if args.evaluate:
            return evaluate_saved(args.evaluate, args.episodes, args.graphics, args.seed,
                                  args.video_format)
        if args.seeds:
            return run_many_seeds(args, argv)
        if args.sweep:
            return run_sweep(args)
        if args.resume:
            cfg, resume = resume_config(args.resume, args), True
            finished = finished_run(cfg)
            if finished is not None:
                print(f"cartpole.py: {finished[1]}", file=sys.stderr)
                return finished[0]
        else:
            cfg, resume = config_from_args(args), False
        return int(train_with_profile(cfg, resume, t0)["exit_code"])
    except USER_ERRORS as e:
        print(f"cartpole.py: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (interrupts.Terminated)
        what = str(e) or (f"stopped by {interrupts.signal_name(e)} before training or after it; "
                          "no checkpoint was saved by this stop")
        print(f"cartpole.py: {what}", file=sys.stderr)
        return interrupts.exit_code(e)


def finished_run(cfg: TrainConfig) -> tuple[int, str] | None:
    """For --resume of a run whose stop rule already holds at its latest checkpoint (solved, or
    its budget spent): its exit code and a line saying so, so that nothing is trained or
    rewritten. None if the run has something left to do."""
    from common import rules
    from training.checkpoints import latest_checkpoint, read_state
    from training.trainer import Progress
    latest = latest_checkpoint(cfg.log_dir)
    prog = Progress.from_checkpoint(read_state(latest), Path(latest).parent)  # one-line errors
    steps, solve_steps, wall = prog.env_steps, prog.solve_env_steps, prog.wall_before
    reason = rules.stop_reason(steps, wall, solve_steps, cfg.keep_training, cfg.max_env_steps,
                               cfg.max_seconds, next_chunk=cfg.train_every * cfg.num_envs)
    if reason is None:
        return None
    d = cfg.log_dir
    if reason == rules.STOP_SOLVED:
        return EXIT_SOLVED, (f"the run in {d} is finished: solved at {solve_steps:,} env steps "
                             f"and trained to {steps:,}; nothing to do, nothing changed (give a "
                             "larger --keep-training to train on after the solve)")
    budget = (f"--max-seconds {cfg.max_seconds:g} ({wall:.0f} s used)"
              if reason == rules.STOP_MAX_SECONDS else f"--max-env-steps {cfg.max_env_steps:,}")
    return EXIT_UNSOLVED, (f"the run in {d} is at {steps:,} env steps and {budget} leaves no room "
                           "for another chunk; nothing to do, nothing changed (give a larger "
                           "budget to train on)")


def evaluate_saved(path: str, episodes: int, graphics: bool, seed: int | None,
                   video_format: str = "gif") -> int:
    """--evaluate: play a saved model greedily on standard CartPole-v1 and print its returns."""
    import numpy as np

    from acting import evaluation
    if not 1 <= episodes <= 100_000:
        raise ConfigError(f"--episodes must be in [1, 100000], got {episodes}")
    from common import seeds
    seed = seeds.EVALUATE_DEFAULT_SEED if seed is None else seed
    if not 0 <= seed < seeds.SEED_LIMIT:
        raise ConfigError(f"--seed must be in [0, 2^31), got {seed}")
    act, model_path = evaluation.load_saved_policy(path)
    # Its own stream: --evaluate --seed N never replays run N's training start states.
    res = evaluation.evaluate(act, episodes, seed=seeds.episode_seed(seed, seeds.EVALUATE, 0))
    s = res.stats()
    print(f"{model_path}: {s['episodes']} episodes of CartPole-v1: mean {s['mean']:.1f}, "
          f"min {s['min']:.0f}, max {s['max']:.0f}, {s['at_500']}/{s['episodes']} at 500 "
          f"(std {float(np.std(res.returns)):.1f})")
    if graphics:
        from training.trainer import check_video_format
        from outputs.video import record_demo
        check_video_format(video_format)
        try:
            info = record_demo(act, model_path.parent / "cartpole_demo",
                               seed=seeds.episode_seed(seed, seeds.DEMO, 0), fmt=video_format)
        except RuntimeError as e:
            raise ConfigError(f"demo not written: {e}") from None
        print(f"demo: {info['path']} ({info['frames']} frames, return {info['return']:.0f})")
    return EXIT_SOLVED


def run_many_seeds(args: Any, argv: list[str]) -> int:
    from experiments import multiseed
    if not args.log_dir:
        raise ConfigError("--seeds needs --log-dir")
    try:
        seeds = multiseed.parse_seeds(args.seeds)
    except ValueError as e:
        raise ConfigError(f"--seeds: {e}") from None
    if args.workers is not None and args.workers <= 0:
        raise ConfigError(f"--workers must be positive, got {args.workers}")
    config_from_args(args)  # validate once here rather than in every child
    try:
        return multiseed.run_seeds(seeds, args.log_dir, passthrough_args(argv),
                                   workers=args.workers, quiet=args.quiet)
    except ValueError as e:  # the runner's own checks of the flags it passes on
        raise ConfigError(f"--seeds: {e}") from None


def run_sweep(args: Any) -> int:
    if not args.log_dir:
        raise ConfigError("--sweep needs --log-dir")
    from experiments import sweep
    from experiments.sweep_spec import SweepError
    try:
        return sweep.run_sweep(args.sweep, args.log_dir, ray_address=args.ray_address,
                               quiet=args.quiet, storage=args.storage)
    except SweepError as e:
        raise ConfigError(str(e)) from None


def train_with_profile(cfg: TrainConfig, resume: bool, t0: float) -> dict[str, Any]:
    """Train under `cfg.profiler` when `cfg.profile` (enabled by the trainer after its first
    call), then write the profile into the run directory."""
    from training.trainer import train
    if not cfg.profile:
        return train(cfg, resume=resume, t0=t0)
    if cfg.profiler == "cprofile":
        import cProfile
        profiler: Any = cProfile.Profile()
        write: Any = write_cprofile
    else:
        from common.sampling_profiler import SamplingProfiler
        profiler, write = SamplingProfiler(), write_sampled_profile
    try:
        summary = train(cfg, resume=resume, t0=t0, profiler=profiler)
    finally:
        profiler.disable()
    run_dir = Path(cfg.log_dir or ".")
    if run_dir.is_dir():
        write(profiler, run_dir)
    return summary


def write_sampled_profile(profiler: Any, run_dir: Path) -> None:
    from common.run_log import atomic_write_text
    atomic_write_text(run_dir / PROFILE_TXT, profiler.report())
    atomic_write_text(run_dir / PROFILE_FOLDED, profiler.folded())


def write_cprofile(profiler: Any, run_dir: Path) -> None:
    import io
    import marshal
    import pstats

    from common.run_log import atomic_write_bytes, atomic_write_text
    profiler.create_stats()  # what dump_stats writes, but through our atomic writer
    atomic_write_bytes(run_dir / PROFILE_PROF, marshal.dumps(profiler.stats))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    atomic_write_text(run_dir / PROFILE_TXT, text.getvalue())


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown. Every output file is written atomically and
    closed (and the live window's process joined) before `main` returns, so nothing is lost;
    what is skipped is TensorFlow's own teardown, which would keep the user waiting after the
    run's last line (docs/performance.md)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
