"""cartpole — train a Double DQN on gymnasium's CartPole-v1 until it provably solves it.

The story of a run:
1. Parse and validate every setting (config.TrainConfig) before TensorFlow is imported, so a
   bad flag costs milliseconds and prints one line.
2. Build 64 vectorized CartPole envs (vec_env_tf), a prioritized replay buffer with an in-graph
   sum tree (sumtree_tf) and a Double-DQN agent (agent).
3. Loop: collect `train_every` vector steps acting epsilon-greedily with a NumPy copy of the
   online network; hand the packed transitions to ONE TensorFlow call that stores them (with the
   shaped reward from rewards.py) and runs the learning steps; copy the new weights back.
4. Every `eval_every` vector steps, play a greedy round of `eval_episodes` episodes of the
   standard, unshaped CartPole-v1 (evaluation.py). Solved = every episode scores 500 in
   `solve_rounds` consecutive rounds; then `confirm_episodes` fresh episodes are played and
   reported. The score is never the shaped reward.
5. Write the log directory (run_log.py): config, metrics, evaluations, plots, profile, timings,
   checkpoints, models and a copy of the scripts.

Exit codes: 0 solved · 2 usage error, bad input or a fault that stopped training (one line on
stderr) · 3 budget exhausted without solving.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Before NumPy loads: the loop is sequential, and a second BLAS thread only spins against the
# environment step (the 4->64->64->2 forward on 1024 rows took 204 us with two, 110 with one).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
from cli import (EXIT_SOLVED, EXIT_UNSOLVED, EXIT_USAGE, build_parser, config_from_args,
                 passthrough_args, resume_config)
from config import ConfigError, TrainConfig, linear_schedule
from run_log import (BEST_MODEL, CONFIG_JSON, DEMO_GIF, EVAL_COLUMNS, EVAL_CSV, FIGURE_PNG,
                     FINAL_MODEL, METRICS_COLUMNS, METRICS_CSV, MODEL_DIR, PROFILE_PROF,
                     PROFILE_TXT, SUMMARY_JSON, TIMINGS_JSON, LogDirError, RunDir,
                     process_start_time)

PROJECT_DIR = Path(__file__).resolve().parent
CSV_FLUSH_SECONDS = 10.0  # rewrite metrics/eval CSVs at most this often (plus at checkpoints/end)


class TrainingFault(RuntimeError):
    """Training had to stop (non-finite loss, unwritable log files); one line for the user."""


# ------------------------------------------------------------------------------------------------
# The training run
# ------------------------------------------------------------------------------------------------
@dataclass
class Progress:
    """Everything about a run's position that a checkpoint must carry (besides TF variables)."""
    env_steps: int = 0
    vector_steps: int = 0
    learn_steps: int = 0
    episodes: int = 0
    eval_round: int = 0
    consecutive: int = 0
    solved: bool = False
    solve_wall_s: float | None = None
    solve_env_steps: int | None = None
    solve_learn_steps: int | None = None
    post_solve_rounds: int = 0
    post_solve_passed: int = 0
    best_eval_mean: float = 0.0
    wall_before: float = 0.0          # seconds spent in earlier sessions of a resumed run
    resumed_from_env_steps: int | None = None
    metrics_rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    act_rng_state: dict[str, Any] | None = None


class Timer:
    """Wall seconds by component, for timings.json; perf_counter costs ~0.1 µs a call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt


def resolve_device_and_precision(cfg: TrainConfig) -> tuple[str, bool, bool]:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    device = "/GPU:0" if gpus else "/CPU:0"
    mixed = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and bool(gpus))
    xla = cfg.xla != "off"
    return device, mixed, xla


def train(cfg: TrainConfig, on_eval: Callable[[dict[str, Any]], None] | None = None,
          resume: bool = False, t0: float | None = None, profiler: Any = None) -> dict[str, Any]:
    """Run one training run into `cfg.log_dir` and return its summary (also in summary.json).

    `t0` is the clock origin for reported times (the CLI passes the process start); `on_eval`
    receives every evaluation row as it happens (the sweep reports them to Ray Tune).
    Raises ConfigError, LogDirError, CheckpointError or TrainingFault with one-line messages.
    """
    t0 = time.time() if t0 is None else t0
    timer = Timer()
    cfg = cfg.validate()
    if cfg.seed is None:
        cfg = cfg.replace(seed=int(np.random.SeedSequence().entropy % (2**31)))
    run = RunDir.prepare(cfg.log_dir)
    cfg = cfg.replace(log_dir=str(run.path))

    t = time.time()
    from tf_import import benign_native_stderr_hidden, enable_xla_cache, import_tensorflow
    xla_cache_dir = enable_xla_cache() if cfg.xla_cache and cfg.xla != "off" else None
    tf = import_tensorflow()
    import keras

    import evaluation
    from agent import DoubleDQNAgent, make_store_and_learn
    from collection import ChunkLayout, EpsilonSchedule, collect_chunk
    from checkpoints import Checkpointer
    from rewards import get_reward_fn
    from sumtree_tf import PrioritizedReplayBuffer
    from vec_env_tf import TFWrappedVecEnv
    timer.add("import", time.time() - t)

    t = time.time()
    keras.utils.set_random_seed(cfg.seed)
    if cfg.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
        except RuntimeError:
            pass  # TensorFlow already ran in this process (tests, Ray workers): keep its setting
    # No tf.config.experimental.enable_op_determinism(): it doubled the XLA step time here, and
    # is not needed on the CPU because every scatter we issue is order-independent (unique ring
    # slots; duplicate tree indices carry identical values). tests/test_determinism.py checks it.
    device, mixed, xla = resolve_device_and_precision(cfg)
    env = TFWrappedVecEnv(num_envs=cfg.num_envs, seed=cfg.seed)
    with tf.device(device):
        buffer = PrioritizedReplayBuffer(cfg.buffer_size, env.observation_size, alpha=cfg.alpha,
                                         seed=cfg.seed + 1)
        agent = DoubleDQNAgent(env.observation_size, env.num_actions, cfg.hidden, gamma=cfg.gamma,
                               tau=cfg.tau, lr=cfg.lr, huber_delta=cfg.huber_delta,
                               clip_norm=cfg.clip_norm, mixed_precision=mixed)
        store_and_learn = make_store_and_learn(agent, buffer, get_reward_fn(cfg.reward),
                                               cfg.batch_size, jit_compile=xla)
    checkpointer = Checkpointer(run.path, {**agent.checkpoint_variables(), "buffer": buffer})
    qnet = evaluation.NumpyQNetwork(agent.numpy_weights())
    act_rng = np.random.default_rng([cfg.seed, 7])
    prog = Progress()
    if resume:
        state = checkpointer.restore_latest()
        try:
            prog = Progress(**state["progress"])
        except (KeyError, TypeError) as e:
            from checkpoints import CheckpointError
            raise CheckpointError(f"checkpoint state in {run / 'checkpoints'} does not fit this "
                                  f"version ({type(e).__name__}: {e})") from None
        act_rng.bit_generator.state = prog.act_rng_state
        qnet.set_weights(agent.numpy_weights())
        prog.resumed_from_env_steps = prog.env_steps
    layout = ChunkLayout(env.observation_size)
    epsilon = EpsilonSchedule(cfg.eps_start, cfg.eps_final, cfg.eps_decay_steps)
    K, N = cfg.train_every, cfg.num_envs
    chunk = np.zeros((K, N, layout.width), np.float32)
    # Episodes in flight are not in the checkpoint; a resumed run starts fresh ones.
    obs = env.reset_numpy(seed=cfg.seed + 1000 * (prog.env_steps // max(N, 1)))
    record = config_record(cfg, device, mixed, xla, resume)
    record["resolved"]["xla_cache_dir"] = xla_cache_dir
    record["resolved"]["tf_threads"] = [tf.config.threading.get_intra_op_parallelism_threads(),
                                        tf.config.threading.get_inter_op_parallelism_threads()]
    run.write_json(CONFIG_JSON, record)
    run.copy_scripts(PROJECT_DIR)
    live_plot = None
    if cfg.graphics:
        from plots import LivePlot
        # A render costs ~0.5 s of the one busy core; every 15 s keeps it under 4% of a run.
        live_plot = LivePlot(run / FIGURE_PNG, min_interval_s=15.0)
    timer.add("setup", time.time() - t)

    import psutil
    proc = psutil.Process()
    peak_rss = proc.memory_info().rss
    bar = progress_bar(cfg)
    session_start = time.time()
    last_csv_flush = last_ckpt_time = session_start
    last_ckpt_steps = prog.env_steps
    first_call = True
    current_lr = None
    stop_reason = ""

    def wall() -> float:
        """Seconds since the clock origin, across resumed sessions."""
        return prog.wall_before + (time.time() - t0)

    def save_checkpoint() -> None:
        nonlocal last_ckpt_time, last_ckpt_steps
        ts = time.time()
        flush_csvs()
        prog.act_rng_state = act_rng.bit_generator.state
        snapshot = dataclasses.asdict(prog)
        snapshot["wall_before"] = wall()
        try:
            checkpointer.save(prog.env_steps, {"progress": snapshot, "config": cfg.to_dict()})
        except tf.errors.OpError as e:  # TensorFlow reports disk-full and permissions this way
            raise OSError(f"checkpoint write failed: {e.message.splitlines()[0][:160]}") from None
        last_ckpt_time, last_ckpt_steps = time.time(), prog.env_steps
        timer.add("checkpoint", time.time() - ts)

    def flush_csvs() -> None:
        run.write_csv(METRICS_CSV, METRICS_COLUMNS, prog.metrics_rows)
        run.write_csv(EVAL_CSV, EVAL_COLUMNS, prog.eval_rows)

    try:
        while True:
            # --- collect train_every vector steps with the NumPy policy -------------------
            ts = time.perf_counter()
            obs, eps, t_env = collect_chunk(env, qnet, act_rng, obs, chunk, layout, epsilon,
                                            prog.vector_steps)
            prog.vector_steps += K
            prog.env_steps += K * N
            timer.add("env_step", t_env)
            timer.add("act_and_pack", time.perf_counter() - ts - t_env)

            # --- one TensorFlow call: store the chunk, then learn ---------------------------
            ts = time.perf_counter()
            n_learn = cfg.learn_steps_per_call if prog.env_steps >= cfg.learning_starts else 0
            beta = linear_schedule(cfg.beta_start, cfg.beta_final, cfg.beta_steps, prog.learn_steps)
            lr = cfg.learning_rate(prog.learn_steps, prog.solved)
            if lr != current_lr:
                agent.set_learning_rate(lr)
                current_lr = lr
            args = (tf.convert_to_tensor(chunk.reshape(-1, layout.width)),
                    tf.constant(n_learn, tf.int32), tf.constant(beta, tf.float32))
            if first_call:  # XLA compiles (or loads from its cache) here, with native log lines
                with benign_native_stderr_hidden():
                    stats = store_and_learn(*args)
            else:
                stats = store_and_learn(*args)
            loss = float(stats.loss)
            qnet.set_weights([w.numpy() for w in stats.weights])
            prog.learn_steps += n_learn
            dt = time.perf_counter() - ts
            if first_call:
                timer.add("first_call_trace_compile", dt)
                first_call = False
                if profiler is not None:
                    # Profile from here on: the training loop, evaluation and wrap-up, the parts
                    # a user can act on. Under cProfile TensorFlow's import and tracing (all
                    # Python) ran ~1.5 s slower; timings.json times them instead.
                    profiler.enable()
            else:
                timer.add("store_and_learn", dt)
            if not np.isfinite(loss):
                raise TrainingFault(
                    f"non-finite loss ({loss}) at learning step {prog.learn_steps} "
                    f"(env step {prog.env_steps}); stopped, last good checkpoint kept in "
                    f"{run / 'checkpoints'}")

            # --- log ----------------------------------------------------------------------
            ts = time.perf_counter()
            returns, _lengths = env.pop_finished_episodes()
            prog.episodes += len(returns)
            rss = proc.memory_info().rss
            peak_rss = max(peak_rss, rss)
            elapsed = time.time() - session_start
            prog.metrics_rows.append({
                "wall_s": wall(), "env_steps": prog.env_steps, "learn_steps": prog.learn_steps,
                "epsilon": eps, "lr": lr, "beta": beta,
                "loss": loss if n_learn else None, "mean_q": float(stats.mean_q) if n_learn else None,
                "episodes": prog.episodes,
                "train_return_mean": float(np.mean(returns)) if len(returns) else None,
                "train_return_max": float(np.max(returns)) if len(returns) else None,
                "steps_per_s": (prog.env_steps - (prog.resumed_from_env_steps or 0)) / max(elapsed, 1e-9),
                "rss_mb": rss / 2**20})
            if bar is not None:
                bar.update(K * N)
                last = prog.eval_rows[-1] if prog.eval_rows else None
                bar.set_postfix_str(
                    f"eps {eps:.2f} eval {last['mean'] if last else '-':>5} "
                    f"rounds {prog.consecutive}/{cfg.solve_rounds}", refresh=False)
            if live_plot is not None:
                live_plot.update(prog.metrics_rows, prog.eval_rows)
            timer.add("logging", time.perf_counter() - ts)

            # --- evaluate on standard CartPole-v1 ---------------------------------------------
            if prog.learn_steps > 0 and prog.vector_steps % cfg.eval_every < K:
                ts = time.perf_counter()
                res = evaluation.evaluate(qnet.greedy, cfg.eval_episodes,
                                          seed=eval_seed(cfg.seed, prog.eval_round),
                                          num_envs=min(cfg.eval_episodes, 64), stop_at_failure=True)
                prog.eval_round += 1
                prog.consecutive = prog.consecutive + 1 if res.passed else 0
                s = res.stats()
                prog.best_eval_mean = max(prog.best_eval_mean, s["mean"])
                row = {"round": prog.eval_round, "wall_s": wall(), "env_steps": prog.env_steps,
                       "learn_steps": prog.learn_steps, "episodes": s["episodes"],
                       "mean": s["mean"], "min": s["min"], "max": s["max"], "at_500": s["at_500"],
                       "passed": int(res.passed), "consecutive": prog.consecutive}
                prog.eval_rows.append(row)
                timer.add("eval", time.perf_counter() - ts)
                if prog.solved:
                    prog.post_solve_rounds += 1
                    prog.post_solve_passed += int(res.passed)
                if prog.consecutive >= cfg.solve_rounds:
                    if not prog.solved:
                        prog.solved = True
                        prog.solve_wall_s, prog.solve_env_steps = wall(), prog.env_steps
                        prog.solve_learn_steps = prog.learn_steps
                        log(cfg, bar, f"solved at {prog.solve_wall_s:.1f} s, {prog.env_steps:,} env "
                                      f"steps: {prog.consecutive} rounds of {cfg.eval_episodes} "
                                      "episodes all at 500")
                    ts = time.perf_counter()
                    # best.keras is the latest model that passed the solve rounds.
                    agent.export(str(run / MODEL_DIR / BEST_MODEL))
                    timer.add("export", time.perf_counter() - ts)
                if on_eval is not None:
                    on_eval(dict(row))

            # --- checkpoint, flush, stop? ------------------------------------------------------
            now = time.time()
            if (prog.env_steps - last_ckpt_steps >= cfg.checkpoint_every
                    or now - last_ckpt_time >= cfg.checkpoint_seconds):
                save_checkpoint()
            elif now - last_csv_flush >= CSV_FLUSH_SECONDS:
                ts = time.perf_counter()
                flush_csvs()
                last_csv_flush = now
                timer.add("logging", time.perf_counter() - ts)
            # Derived from checkpointed state, so a run resumed after its solve stops correctly.
            if prog.solved and prog.env_steps >= prog.solve_env_steps + cfg.keep_training:
                stop_reason = "solved"
                break
            if prog.env_steps >= cfg.max_env_steps:
                stop_reason = "max_env_steps"
                break
            if cfg.max_seconds is not None and wall() >= cfg.max_seconds:
                stop_reason = "max_seconds"
                break
    except OSError as e:
        raise TrainingFault(f"cannot write to {run.path}: {e.strerror or e}; stopped, last good "
                            f"checkpoint kept in {run / 'checkpoints'}") from None
    finally:
        if bar is not None:
            bar.close()

    # --- wrap up: checkpoint, confirm, models, plots, demo, summary ----------------------------
    end_wall = wall()

    def wrap_up() -> dict[str, Any]:
        save_checkpoint()
        ts = time.perf_counter()
        agent.export(str(run / MODEL_DIR / FINAL_MODEL))
        timer.add("export", time.perf_counter() - ts)
        confirm: dict[str, Any] = {}
        if prog.solved and cfg.confirm_episodes:
            ts = time.perf_counter()
            # Confirm the model that passed the solve rounds (best.keras), on episodes never seen.
            best = keras.models.load_model(run / MODEL_DIR / BEST_MODEL)
            best_net = evaluation.NumpyQNetwork([np.asarray(w) for w in best.get_weights()])
            res = evaluation.evaluate(best_net.greedy, cfg.confirm_episodes,
                                      seed=eval_seed(cfg.seed, 10**6), num_envs=64)
            confirm = res.stats()
            timer.add("confirm", time.perf_counter() - ts)
            log(cfg, None, f"confirmation: {confirm['at_500']}/{confirm['episodes']} episodes at 500, "
                           f"mean {confirm['mean']:.1f}, min {confirm['min']:.0f}")
        if cfg.graphics:
            from plots import plot_training
            from video import record_demo
            ts = time.perf_counter()
            plot_training(prog.metrics_rows, prog.eval_rows, run / FIGURE_PNG)
            try:
                record_demo(qnet.greedy, run / DEMO_GIF, seed=cfg.seed)
            except RuntimeError as e:
                log(cfg, None, f"demo video skipped: {e}")
            if live_plot is not None:
                live_plot.close()
            timer.add("graphics", time.perf_counter() - ts)
        else:
            from plots import plot_training
            ts = time.perf_counter()
            plot_training(prog.metrics_rows, prog.eval_rows, run / FIGURE_PNG)
            timer.add("plot", time.perf_counter() - ts)
        flush_csvs()
        exit_code = EXIT_SOLVED if prog.solved else EXIT_UNSOLVED
        summary = {
            "solved": prog.solved, "solve_wall_s": prog.solve_wall_s,
            "solve_env_steps": prog.solve_env_steps, "solve_learn_steps": prog.solve_learn_steps,
            "clock_origin": "process start" if t0 != session_start else "train() call",
            "confirm_mean_return": confirm.get("mean"), "confirm_min_return": confirm.get("min"),
            "confirm_episodes": confirm.get("episodes", 0), "confirm_at_500": confirm.get("at_500"),
            "total_wall_s": end_wall, "total_env_steps": prog.env_steps,
            "total_learn_steps": prog.learn_steps, "eval_rounds": prog.eval_round,
            "best_eval_mean": prog.best_eval_mean, "post_solve_rounds": prog.post_solve_rounds,
            "post_solve_passed": prog.post_solve_passed,
            "post_solve_pass_fraction": (prog.post_solve_passed / prog.post_solve_rounds
                                         if prog.post_solve_rounds else None),
            "stop_reason": stop_reason, "exit_code": exit_code, "seed": cfg.seed,
            "peak_rss_mb": peak_rss / 2**20, "resumed_from_env_steps": prog.resumed_from_env_steps,
            "store_and_learn_traces": store_and_learn.experimental_get_tracing_count(),
        }
        run.write_json(SUMMARY_JSON, summary)
        run.write_json(TIMINGS_JSON, {"seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
                                      "total_wall_s": end_wall,
                                      "note": "store_and_learn = replay add + learning steps, fused in "
                                              "one TensorFlow call; act_and_pack = NumPy acting and "
                                              "packing; wall from the clock origin"})
        env.close()
        return summary

    try:
        return wrap_up()
    except OSError as e:
        raise TrainingFault(f"cannot write to {run.path}: {e.strerror or e}; stopped, last good "
                            f"checkpoint kept in {run / 'checkpoints'}") from None


def eval_seed(seed: int, round_index: int) -> int:
    """Distinct, reproducible episode seeds for each evaluation round (and the confirmation)."""
    return (seed * 7919 + 1) * 100_003 + round_index * 10_007


def config_record(cfg: TrainConfig, device: str, mixed: bool, xla: bool, resume: bool) -> dict:
    import gymnasium
    import keras
    import tensorflow as tf
    return {"config": cfg.to_dict(), "resolved": {
        "device": device, "mixed_precision": mixed, "xla": xla, "resumed": resume,
        "learn_steps_per_call": cfg.learn_steps_per_call},
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                     "keras": keras.__version__, "gymnasium": gymnasium.__version__,
                     "numpy": np.__version__},
        "argv": sys.argv}


def progress_bar(cfg: TrainConfig):
    if cfg.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.max_env_steps, unit="step", unit_scale=True, dynamic_ncols=True,
                desc="training", mininterval=0.5)


def log(cfg: TrainConfig, bar, message: str) -> None:
    if cfg.quiet:
        return
    if bar is not None:
        bar.write(message)
    else:
        print(message, file=sys.stderr)


def evaluate_saved(path: str, episodes: int, graphics: bool, seed: int | None) -> int:
    """--evaluate: play a saved model greedily on standard CartPole-v1 and print its returns."""
    import evaluation
    if not 1 <= episodes <= 100_000:
        raise ConfigError(f"--episodes must be in [1, 100000], got {episodes}")
    act, model_path = evaluation.load_saved_policy(path)
    seed = 12345 if seed is None else seed
    res = evaluation.evaluate(act, episodes, seed=seed)
    s = res.stats()
    print(f"{model_path}: {s['episodes']} episodes of CartPole-v1: mean {s['mean']:.1f}, "
          f"min {s['min']:.0f}, max {s['max']:.0f}, {s['at_500']}/{s['episodes']} at 500 "
          f"(std {float(np.std(res.returns)):.1f})")
    if graphics:
        from video import record_demo
        info = record_demo(act, model_path.parent / DEMO_GIF, seed=seed)
        print(f"demo: {info['path']} ({info['frames']} frames, return {info['return']:.0f})")
    return EXIT_SOLVED


def main(argv: list[str] | None = None) -> int:
    t0 = process_start_time()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.evaluate:
            return evaluate_saved(args.evaluate, args.episodes, args.graphics, args.seed)
        if args.seeds:
            import multiseed
            if not args.log_dir:
                raise ConfigError("--seeds needs --log-dir")
            seeds = multiseed.parse_seeds(args.seeds)
            if args.workers is not None and args.workers <= 0:
                raise ConfigError(f"--workers must be positive, got {args.workers}")
            config_from_args(args)  # validate once here rather than in every child
            return multiseed.run_seeds(seeds, args.log_dir, passthrough_args(argv),
                                       workers=args.workers, quiet=args.quiet)
        if args.sweep:
            if not args.log_dir:
                raise ConfigError("--sweep needs --log-dir")
            import sweep
            return sweep.run_sweep(args.sweep, args.log_dir, ray_address=args.ray_address,
                                   quiet=args.quiet)
        if args.resume:
            cfg, resume = resume_config(args.resume, args), True
        else:
            cfg, resume = config_from_args(args), False
        summary = run_with_profile(cfg, resume, t0)
        return int(summary["exit_code"])
    except (ConfigError, LogDirError, TrainingFault, ValueError) as e:
        print(f"cartpole.py: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        from checkpoints import CheckpointError
        if isinstance(e, CheckpointError):
            print(f"cartpole.py: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("cartpole.py: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


def run_with_profile(cfg: TrainConfig, resume: bool, t0: float) -> dict[str, Any]:
    if not cfg.profile:
        return train(cfg, resume=resume, t0=t0)
    import cProfile
    import io
    import pstats
    profiler = cProfile.Profile()
    try:
        summary = train(cfg, resume=resume, t0=t0, profiler=profiler)  # enabled after 1st call
    finally:
        profiler.disable()
    run_dir = Path(cfg.log_dir or ".")
    if cfg.log_dir and run_dir.is_dir():
        import marshal

        from run_log import atomic_write_bytes, atomic_write_text
        profiler.create_stats()  # what dump_stats writes, but through our atomic writer
        atomic_write_bytes(run_dir / PROFILE_PROF, marshal.dumps(profiler.stats))
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        atomic_write_text(run_dir / PROFILE_TXT, text.getvalue())
    return summary


if __name__ == "__main__":
    sys.exit(main())
