"""The training run: a `Trainer` whose construction is the set-up and whose loop is named phases.

    Trainer(cfg)                       set-up: log dir, TensorFlow, env, replay, agent, restore
    .run()
      while not stop_reason():
        collect()                      train_every vector steps, epsilon-greedy, NumPy policy
        learn()                        ONE TensorFlow call: store the chunk, run the learning steps
        log_metrics()                  metrics row, diagnostics, progress bar, observers
        evaluate()        (when due)   collect the last round's verdict (solve rule, rules.py),
                                       start a greedy round on a snapshot (worker process)
        checkpoint()      (when due)   TF variables + Progress, CSVs flushed
      wrap_up()                        final checkpoint, confirmation, models, figure, summary

Everything about the run's position is in `Progress`, which every checkpoint carries, so a
resumed run continues exactly where the checkpoint left it. Evaluation, checkpointing and the
solve/stop decisions are outside the learning algorithm (`agent.py`), as in Stable-Baselines3.
Observers (TensorBoard, the live window) receive every row; they never steer the run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from common import rules, seeds
from common.config import TrainConfig, linear_schedule
from acting.eval_rounds import RoundRunner
from common.errors import CheckpointError, TrainingFault
from common.metrics import EVAL_COLUMNS, METRICS_COLUMNS
from common.observer import Observer, hook
from common.run_log import (BEST_MODEL, CONFIG_JSON, EVAL_CSV, FIGURE_PNG, METRICS_CSV, MODEL_DIR,
                            RunDir)
from training.wrap_up import wrap_up

PROJECT_DIR = Path(__file__).resolve().parent.parent
CSV_FLUSH_SECONDS = 10.0  # rewrite metrics/eval CSVs at most this often (plus at checkpoints/end)
CERTIFY_ENVS = 1000       # a certificate's episodes run this many at a time (one per env)
#: The clock of a resumed run: each session runs from its own process start, and a checkpoint
#: carries the time up to it, so time spent after a session's last checkpoint (lost to a kill)
#: is not counted, while each new session's start-up is.
RESUMED_CLOCK = ("{origin}, summed over the run's sessions (each up to its last checkpoint; "
                 "time lost after a kill not counted)")


@dataclass
class Progress:
    """Everything about a run's position that a checkpoint must carry (besides TF variables)."""
    env_steps: int = 0
    vector_steps: int = 0
    learn_steps: int = 0
    episodes: int = 0
    # The solve rule's state (rules.SolveState, flattened for JSON).
    rounds: int = 0
    consecutive: int = 0
    solved_at_round: int | None = None
    post_solve_rounds: int = 0
    post_solve_passed: int = 0
    solve_wall_s: float | None = None
    solve_env_steps: int | None = None
    solve_learn_steps: int | None = None
    # The certificates (rules.after_certificate) and the delivered model, best.keras.
    certificates: int = 0             # played so far (each on its own never-seen episodes)
    certificates_failed: int = 0      # before the solve: each reset the streak
    certificate_episodes: int | None = None  # the solve's certificate
    certificate_at_500: int | None = None
    certificate_seed: int | None = None      # its episodes: seeds from here, CERTIFY_ENVS wide
    best_model_env_steps: int | None = None  # the snapshot in best.keras (the champion)
    promotions: int = 0               # later snapshots that replaced it (--keep-training)
    challenges: int = 0               # wider tests played by challengers that were certified
    best_eval_mean: float = 0.0
    wall_before: float = 0.0          # seconds spent in earlier sessions of a resumed run
    resumed_from_env_steps: int | None = None
    metrics_rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    act_rng_state: dict[str, Any] | None = None
    # Evaluation rounds played but whose verdict was not yet applied (eval_rounds.Round.to_json):
    # a checkpoint applies no verdict early, so that when checkpoints happen changes nothing.
    rounds_in_flight: list[dict[str, Any]] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        return self.solved_at_round is not None

    @property
    def solve_state(self) -> rules.SolveState:
        return rules.SolveState(self.rounds, self.consecutive, self.solved_at_round,
                                self.post_solve_rounds, self.post_solve_passed)

    def set_solve_state(self, s: rules.SolveState) -> None:
        self.rounds, self.consecutive, self.solved_at_round = s.rounds, s.consecutive, s.solved_at_round
        self.post_solve_rounds, self.post_solve_passed = s.post_solve_rounds, s.post_solve_passed

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], where: Path) -> "Progress":
        """The Progress saved in a checkpoint's state, every field's type checked (a wrong one
        is a one-line CheckpointError here, not a TypeError deep in the loop)."""
        try:
            values = state["progress"]
            if not isinstance(values, dict):
                raise TypeError(f"progress is {type(values).__name__}, not an object")
            prog = cls(**values)
            for f in dataclasses.fields(cls):
                check_progress_field(f.name, str(f.type), getattr(prog, f.name))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"checkpoint state in {where} is damaged or from another "
                                  f"version ({type(e).__name__}: {e})") from None
        return prog


def restored_rounds(prog: Progress, episodes: int, run_dir: RunDir) -> list:
    """The rounds a checkpoint carried (Progress.rounds_in_flight), or a one-line error."""
    from acting.eval_rounds import Round
    try:
        return [Round.from_json(d, episodes) for d in prog.rounds_in_flight]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint state in {run_dir / 'checkpoints'} holds a damaged "
                              f"evaluation round ({type(e).__name__}: {e})") from None


def check_progress_field(name: str, kind: str, value: Any) -> None:
    """TypeError/ValueError unless `value` fits Progress field `name` of type `kind`."""
    if name == "act_rng_state":  # every checkpoint saves one the generator accepts
        if not isinstance(value, dict):
            raise TypeError(f"act_rng_state is {type(value).__name__}, not an object")
        try:
            np.random.PCG64().state = value
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"act_rng_state is not a generator state ({type(e).__name__}: "
                             f"{e})") from None
        return
    if value is None and "None" in kind:
        return
    if kind.startswith("list"):
        if not (isinstance(value, list) and all(isinstance(r, dict) for r in value)):
            raise TypeError(f"{name} should be a list of rows")
        return
    numbers = (int, float) if kind.startswith("float") else (int,)
    if isinstance(value, bool) or not isinstance(value, numbers):
        raise TypeError(f"{name} should be {kind}, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} should not be negative, got {value!r}")


class Timer:
    """Wall seconds by component, for timings.json; perf_counter costs ~0.1 µs a call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Add the block's wall seconds to `name` (also when it raises)."""
        ts = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - ts)


def eval_seed(seed: int, round_index: int) -> int:
    """The episode seeds of evaluation round `round_index` (0-based): a stream of their own,
    disjoint from training's, the certificates' and the confirmation's (common/seeds.py)."""
    return seeds.episode_seed(seed, seeds.ROUNDS, round_index)


def certificate_seed(seed: int, index: int) -> int:
    """The episode seeds of the run's `index`-th certificate (0-based), a stream of their own."""
    return seeds.episode_seed(seed, seeds.CERTIFICATES, index)


def challenge_seed(seed: int, index: int) -> int:
    """The episode seeds of the run's `index`-th challenge (0-based), a stream of their own."""
    return seeds.episode_seed(seed, seeds.CHALLENGES, index)


def play_all(act: Any, episodes: int, seed: int) -> Any:
    """A certificate's or a challenge's episodes from `seed` on, CERTIFY_ENVS at a time."""
    from acting import evaluation
    return evaluation.evaluate(act, episodes, seed=seed, num_envs=min(episodes, CERTIFY_ENVS))


def training_reset_seed(seed: int, env_steps: int, num_envs: int) -> int:
    """The training env's reset seed at `env_steps` (0 for a new run, a checkpoint's for a
    resumed one): each reset point its own block of the training stream."""
    return seeds.episode_seed(seed, seeds.TRAINING, env_steps // max(num_envs, 1))


def train(cfg: TrainConfig, on_eval: Callable[[dict[str, Any]], str | None] | None = None,
          resume: bool = False, t0: float | None = None, profiler: Any = None) -> dict[str, Any]:
    """Run one training run into `cfg.log_dir` and return its summary (also in summary.json).

    `t0` is the clock origin for reported times (the CLI passes the Python process's start);
    `on_eval` receives every evaluation row as it happens (the sweep reports them to Ray Tune);
    it may return a reason (a str) to end the run after that round, which then wraps up as it does
    at a budget (final model, summary.json with that `stop_reason`, figure).
    Raises ConfigError, LogDirError, CheckpointError or TrainingFault with one-line messages.
    """
    # Python's cyclic garbage collector off through the start-up: importing TensorFlow and
    # building the run allocate about a million objects that live as long as the process, and
    # each full collection on the way walks all of them (docs/performance.md). The first
    # learning call freezes what exists by then (`_start_collecting`) and turns it back on.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return Trainer(cfg, on_eval=on_eval, resume=resume, t0=t0, profiler=profiler,
                       collect_after_start=collecting).run()
    finally:
        gc.unfreeze()  # a later run in this process (tests, sweeps) may collect them again
        if collecting:
            gc.enable()


class Trainer:
    """One training run. Construct (set-up), then `run()` (the loop and the wrap-up)."""

    # --- set-up ------------------------------------------------------------------------------
    def __init__(self, cfg: TrainConfig, on_eval: Callable[[dict[str, Any]], str | None] | None = None,
                 resume: bool = False, t0: float | None = None, profiler: Any = None,
                 collect_after_start: bool = False):
        self.t0 = time.time() if t0 is None else t0
        self.collect_after_start = collect_after_start
        self.clock_origin = "python process start" if t0 is not None else "train() call"
        self.timer, self.profiler, self.on_eval, self.resume = Timer(), profiler, on_eval, resume
        self.stop_requested: str | None = None  # set by on_eval's return value
        cfg = cfg.validate()
        if cfg.seed is None:
            cfg = cfg.replace(seed=int(np.random.SeedSequence().entropy % (2**31)))
        mode = "resume" if resume else ("overwrite" if getattr(cfg, "overwrite", False) else "new")
        if cfg.graphics:
            check_video_format(cfg.video_format)  # before training, not after it
        self.run_dir = RunDir.prepare(cfg.log_dir, mode)  # locked until run() ends
        try:
            self._set_up(cfg.replace(log_dir=str(self.run_dir.path)), resume)
        except BaseException:
            self.abort_observers()
            self.run_dir.release()
            raise

    def _set_up(self, cfg: TrainConfig, resume: bool) -> None:
        self.cfg = cfg
        self.say(f"training into {self.run_dir.path} (seed {cfg.seed})"
                 + (", resuming from its latest checkpoint" if resume else ""))
        # The figure's process first: its interpreter, matplotlib and the window start on the
        # core that TensorFlow's single-threaded import leaves idle, not later, when the
        # learner and the evaluation worker need both cores.
        view = start_figure_process(cfg, self.run_dir)
        self.observers: list[Observer] = [view] if view.active else []
        with self.timer.section("import"):
            self._import_tensorflow()
        with self.timer.section("setup"):
            self._build()
            self.prog = self._restore() if resume else Progress()
            if self.prog.wall_before > 0:
                self.clock_origin = RESUMED_CLOCK.format(origin=self.clock_origin)
            self._prepare_loop()

    def _import_tensorflow(self) -> None:
        from common.tf_import import KEPT_OUT_OF_TRAINER, enable_xla_cache, import_tensorflow
        cfg = self.cfg
        self.xla_cache_dir = enable_xla_cache() if cfg.xla_cache and cfg.xla != "off" else None
        self.tf = import_tensorflow(keep_out=KEPT_OUT_OF_TRAINER)
        from training import devices
        # Before TensorFlow touches a device: memory growth (or a limit) on every GPU, the
        # device and the precision actually used (ConfigError for --device gpu without one).
        self.placement = devices.setup_device(self.tf, cfg)

    def _build(self) -> None:
        """Seed everything, then the env, the replay buffer, the agent and the fused call."""
        import keras

        from acting import evaluation
        from training.checkpoints import Checkpointer
        from acting.diagnostics import DoomedStates
        from vec_env_tf import TFWrappedVecEnv
        cfg, tf = self.cfg, self.tf
        keras.utils.set_random_seed(cfg.seed)
        set_tf_threads(tf, cfg.threads)
        # No tf.config.experimental.enable_op_determinism(): it doubled the XLA step time here, and
        # is not needed on the CPU because every scatter we issue is order-independent (unique ring
        # slots; duplicate tree indices carry identical values). tests/test_determinism.py checks it.
        self.device, self.mixed = self.placement["device"], self.placement["mixed_precision"]
        self.xla = cfg.xla != "off"
        self.env = TFWrappedVecEnv(num_envs=cfg.num_envs,
                                   seed=training_reset_seed(cfg.seed, 0, cfg.num_envs))
        failures = self._build_learner()
        kept = {"failures": failures} if failures is not None else {}
        self.checkpointer = Checkpointer(self.run_dir.path, {
            **self.agent.checkpoint_variables(), "buffer": self.buffer, **kept})
        self.qnet = evaluation.NumpyQNetwork(self.agent.numpy_weights())
        self.act_rng = np.random.default_rng([cfg.seed, 7])
        self.doomed = DoomedStates(self.env.observation_size)

    def _build_learner(self) -> Any:
        """The replay buffer, the agent, the failure reservoir (returned; None without
        --failure-rows) and the fused call, behind the graph cache (graph_cache.py)."""
        from agent import DoubleDQNAgent, LearnStats, make_store_and_learn
        from failure_replay import FailureReservoir
        from rewards import get_reward_fn
        from sumtree_tf import PrioritizedReplayBuffer
        from training.graph_cache import CachedCall, graph_cache_dir
        cfg, tf = self.cfg, self.tf
        obs_size, num_actions = self.env.observation_size, self.env.num_actions
        # Everything that shapes the fused call's graph (the seeds do not: see graph_cache.py).
        agent_args = dict(hidden=cfg.hidden, gamma=cfg.gamma, tau=cfg.tau, lr=cfg.lr,
                          huber_delta=cfg.huber_delta, clip_norm=cfg.clip_norm,
                          mixed_precision=self.mixed, layer_norm=cfg.layer_norm,
                          weight_decay=cfg.weight_decay, gap_solved=cfg.gap_solved,
                          anchor_solved=cfg.anchor_solved, margin_solved=cfg.margin_solved,
                          dueling=cfg.dueling)
        learn_args = dict(jit_compile=self.xla, failure_rows=cfg.failure_rows,
                          uniform_solved=cfg.uniform_solved, n_step=cfg.n_step,
                          num_envs=cfg.num_envs, n_step_solved=cfg.n_step_solved)
        with tf.device(self.device):
            self.buffer = PrioritizedReplayBuffer(cfg.buffer_size, obs_size,
                                                  alpha=cfg.alpha, seed=cfg.seed + 1)
            self.agent = DoubleDQNAgent(obs_size, num_actions, **agent_args)
            failures = (FailureReservoir(cfg.failure_capacity, 2 * obs_size + 3,
                                         seed=cfg.seed + 2) if cfg.failure_rows else None)
            traced = make_store_and_learn(self.agent, self.buffer, get_reward_fn(cfg.reward),
                                          cfg.batch_size, failures=failures, **learn_args)
        graph_args = {**agent_args, **learn_args, "obs_size": obs_size, "actions": num_actions,
                      "batch_size": cfg.batch_size, "buffer_size": cfg.buffer_size,
                      "alpha": cfg.alpha, "reward": cfg.reward, "device": self.device,
                      "failure_capacity": cfg.failure_capacity if failures else None}
        # tf.Module's `variables` does not reach into a tf.random.Generator: its state is added.
        variables = [*self.agent.graph_variables(), *self.buffer.variables, self.buffer.rng.state,
                     *((*failures.variables, failures.rng.state) if failures else ())]
        self.store_and_learn = CachedCall(traced, variables, graph_args,
                                          graph_cache_dir() if cfg.xla_cache else None,
                                          LearnStats.from_flat)
        return failures

    def _start_collecting(self) -> None:
        """The end of start-up (see `train`): its objects move to a generation no collection
        visits (gc.freeze), so the loop's collections walk only what the loop itself makes."""
        if self.collect_after_start:
            gc.freeze()
            gc.enable()

    def _restore(self) -> Progress:
        state = self.checkpointer.restore_latest()
        prog = Progress.from_checkpoint(state, self.run_dir / "checkpoints")
        self.act_rng.bit_generator.state = prog.act_rng_state
        self.qnet.set_weights(self.agent.numpy_weights())
        prog.resumed_from_env_steps = prog.env_steps
        self.buffer.end_episodes(self.cfg.num_envs)  # the episodes in flight were not saved
        if prog.solved and self.agent.anchor is not None:
            self.agent.set_anchor([w for layer in self.champion().layers for w in layer])
        return prog

    def _prepare_loop(self) -> None:
        from acting.collection import ChunkLayout, EpsilonSchedule
        cfg, tf = self.cfg, self.tf
        self.layout = ChunkLayout(self.env.observation_size)
        self.epsilon = EpsilonSchedule(cfg.eps_start, cfg.eps_final, cfg.eps_decay_steps)
        eps = cfg.eps_final if cfg.eps_solved is None else cfg.eps_solved
        self.epsilon_solved = EpsilonSchedule(eps, eps, 1)  # constant once solved
        self.chunk = np.zeros((cfg.train_every, cfg.num_envs, self.layout.width), np.float32)
        # Episodes in flight are not in the checkpoint; a resumed run starts fresh ones.
        self.obs = self.env.reset_numpy(seed=training_reset_seed(cfg.seed, self.prog.env_steps,
                                                                 cfg.num_envs))
        config_doc = config_json(cfg, self.placement, self.xla, self.resume)
        config_doc["resolved"]["xla_cache_dir"] = self.xla_cache_dir
        config_doc["resolved"]["tf_threads"] = [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads()]
        self.run_dir.write_json(CONFIG_JSON, config_doc)
        self.run_dir.copy_scripts(PROJECT_DIR)
        self.observers = make_observers(cfg, self.run_dir, config_doc, self.prog, self.observers)
        import psutil
        self.proc = psutil.Process()
        self.peak_rss = self.proc.memory_info().rss
        self.bar = progress_bar(cfg)
        self.session_start = time.time()
        self.last_csv_flush = self.last_ckpt_time = self.session_start
        self.last_ckpt_steps = self.prog.env_steps
        self.first_call, self.current_lr = True, None
        self.round_runner = RoundRunner(cfg.eval_episodes, background=cfg.eval_process)
        self.round_runner.restore(restored_rounds(self.prog, cfg.eval_episodes, self.run_dir))

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            reason = self.loop()
            return wrap_up(self, reason, lambda index: eval_seed(self.cfg.seed, index))
        except OSError as e:
            self.abort_observers()
            raise self._write_fault(e) from None
        except BaseException:
            self.abort_observers()
            raise
        finally:
            self.run_dir.release()

    def loop(self) -> str:
        """The phases, until a stop rule holds; returns why it stopped.

        The stop rules are checked before every chunk (a resumed run past its budget runs none).
        Ctrl-C and SIGTERM are taken between chunks: checkpoint, then the one-line exception.
        """
        from common import interrupts
        reason = self.stop_reason()
        if reason is not None:  # a round restored from the checkpoint still gets its verdict
            self.finish_round()
        interrupts.defer(True)
        try:
            while reason is None:
                eps = self.collect()
                stats, n_learn, lr, beta = self.learn()
                self.log_metrics(stats, n_learn, eps, lr, beta)
                if self.evaluation_due():
                    self.evaluate()
                self.checkpoint_if_due()
                if interrupts.pending() is not None:
                    self.stop_on_signal(interrupts.pending())
                reason = self.stop_reason()
                if reason is not None:  # the round in flight may still solve the run
                    self.finish_round()
                    reason = self.stop_reason()
        finally:
            interrupts.defer(False)
            self.round_runner.close()
            if self.bar is not None:
                self.bar.close()
        return reason

    def stop_on_signal(self, signum: int) -> None:
        """Ctrl-C or SIGTERM arrived during the last chunk: checkpoint here and stop."""
        from common import interrupts
        interrupts.defer(False)  # a second signal while checkpointing stops at once
        self.checkpoint()
        d = self.run_dir.path
        exc = interrupts.exception_for(signum)
        raise interrupts.exception_for(signum, (
            f"stopped by {interrupts.signal_name(exc)} at {self.prog.env_steps:,} env steps; "
            f"checkpoint saved in {d / 'checkpoints'} (continue with --resume {d})"))

    def abort_observers(self) -> None:
        """The run failed: stop what has a process of its own (the figure's), write nothing
        more (TensorBoard keeps only what its last checkpoint covered, so a resume adds no
        step twice)."""
        for observer in getattr(self, "observers", []):  # none yet if the set-up failed
            observer.on_abort()

    def wall(self) -> float:
        """Seconds since the clock origin, across resumed sessions."""
        return self.prog.wall_before + (time.time() - self.t0)

    def collect(self) -> float:
        """Fill the chunk with `train_every` vector steps; return the last epsilon."""
        from acting.collection import collect_chunk
        ts = time.perf_counter()
        prog, cfg = self.prog, self.cfg
        self.obs, eps, t_env = collect_chunk(self.env, self.qnet, self.act_rng, self.obs, self.chunk,
                                             self.layout, self.epsilon_solved if prog.solved
                                             else self.epsilon, prog.vector_steps)
        prog.vector_steps += cfg.train_every
        prog.env_steps += cfg.train_every * cfg.num_envs
        self.timer.add("env_step", t_env)
        self.timer.add("act_and_pack", time.perf_counter() - ts - t_env)
        return eps

    def learn(self) -> tuple[Any, int, float, float]:
        """The one TensorFlow call per chunk: store it, then run the learning steps."""
        from common.tf_import import benign_native_stderr_hidden
        ts = time.perf_counter()
        prog, cfg, tf = self.prog, self.cfg, self.tf
        n_learn = cfg.learn_steps_per_call if prog.env_steps >= cfg.learning_starts else 0
        beta = linear_schedule(cfg.beta_start, cfg.beta_final, cfg.beta_steps, prog.learn_steps)
        lr = cfg.learning_rate(prog.learn_steps, prog.solved)
        if lr != self.current_lr:
            self.agent.set_learning_rate(lr)
            self.current_lr = lr
        args = (tf.convert_to_tensor(self.chunk.reshape(-1, self.layout.width)),
                tf.constant(n_learn, tf.int32), tf.constant(beta, tf.float32),
                tf.constant(1.0 if prog.solved else 0.0, tf.float32))
        if self.first_call:  # XLA compiles (or loads from its cache) here, with native log lines
            with benign_native_stderr_hidden():
                stats = self.store_and_learn(*args)
        else:
            stats = self.store_and_learn(*args)
        self.qnet.set_weights([w.numpy() for w in stats.weights])
        prog.learn_steps += n_learn
        self._time_learning_call(time.perf_counter() - ts)
        loss = float(stats.loss)
        if not np.isfinite(loss):
            raise TrainingFault(
                f"non-finite loss ({loss}) at learning step {prog.learn_steps} "
                f"(env step {prog.env_steps}); stopped, {self._what_is_kept()}")
        return stats, n_learn, lr, beta

    def _time_learning_call(self, dt: float) -> None:
        if not self.first_call:
            self.timer.add("store_and_learn", dt)
            return
        self.timer.add("first_call_trace_compile", dt)
        self.first_call = False
        self._start_collecting()
        if self.profiler is not None:
            # Profile from here on: the training loop, evaluation and wrap-up, the parts a user
            # can act on. Under cProfile TensorFlow's import and tracing (all Python) ran ~1.5 s
            # slower; timings.json times them instead.
            self.profiler.enable()

    def log_metrics(self, stats: Any, n_learn: int, eps: float, lr: float, beta: float) -> None:
        """One metrics row (names from metrics.py), the progress bar and the observers."""
        from acting.diagnostics import action_gap
        ts = time.perf_counter()
        prog = self.prog
        returns, lengths = self.env.pop_finished_episodes()
        prog.episodes += len(returns)
        flat = self.chunk.reshape(-1, self.layout.width)
        self.doomed.add(flat[:, self.layout.obs], flat[:, self.layout.terminated])
        rss = self.proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        elapsed = time.time() - self.session_start
        learned = n_learn > 0
        row = {
            "wall_s": self.wall(), "env_steps": prog.env_steps, "learn_steps": prog.learn_steps,
            "epsilon": eps, "lr": lr, "beta": beta,
            "loss": float(stats.loss) if learned else None,
            "mean_q": float(stats.mean_q) if learned else None,
            "action_gap": action_gap(self.qnet, self.obs),
            "doomed_max_q": self.doomed.max_q(self.qnet),
            "episodes": prog.episodes,
            "train_return_mean": float(np.mean(returns)) if len(returns) else None,
            "train_return_max": float(np.max(returns)) if len(returns) else None,
            "steps_per_s": (prog.env_steps - (prog.resumed_from_env_steps or 0)) / max(elapsed, 1e-9),
            "rss_mb": rss / 2**20}
        prog.metrics_rows.append(row)
        self._update_bar(eps)
        self.notify("on_metrics", row)
        if len(returns):
            self.notify("on_episodes", prog.env_steps, returns, lengths)
        self.timer.add("logging", time.perf_counter() - ts)

    def _update_bar(self, eps: float) -> None:
        if self.bar is None:
            return
        self.bar.update(self.cfg.train_every * self.cfg.num_envs)
        self.bar.set_postfix_str(bar_postfix(self.prog, self.cfg.solve_rounds, eps), refresh=False)

    def notify(self, event: str, *args: Any) -> None:
        """Call hook `event` of every observer; a name not declared by `Observer` raises."""
        for observer in self.observers:
            hook(observer, event)(*args)

    def evaluation_due(self) -> bool:
        prog, cfg = self.prog, self.cfg
        return prog.learn_steps > 0 and prog.vector_steps % cfg.eval_every < cfg.train_every

    def evaluate(self) -> None:
        """Take the verdict of the round in flight and the rows of rounds played out since,
        then start a round on these weights."""
        was_solved = self.prog.solved
        self.apply_verdict()
        self.log_finished_rounds()
        prog, cfg = self.prog, self.cfg
        if self.stop_reason() == rules.STOP_SOLVED:
            return  # solved and nothing more asked: no round is started that nobody needs
        if prog.solved and not was_solved:
            # These weights learned until now under the settings from before the solve (its
            # verdict arrives one evaluation point late), so they are not yet the learner that
            # --keep-training measures: post-solve rounds start at the next point, on weights
            # trained with the solved settings (--lr-solved, --eps-solved, ...).
            return
        self.round_runner.start(self.qnet.weights(), eval_seed(cfg.seed, prog.rounds),
                                prog.rounds, prog.env_steps, prog.learn_steps)

    def finish_round(self) -> None:
        """Before a stop or a checkpoint: the verdict and the row of every round started."""
        self.apply_verdict()
        self.log_finished_rounds(wait=True)

    def apply_verdict(self) -> None:
        """Wait for the verdict of the oldest round without one; apply the solve rule to it."""
        with self.timer.section("eval_wait"):
            snap = self.round_runner.verdict()
        if snap is None:
            return
        prog, cfg = self.prog, self.cfg
        was_solved = prog.solved
        state = rules.after_round(prog.solve_state, snap.passed, cfg.solve_rounds)
        if state.solved and not was_solved and cfg.certify_episodes:
            passed = self.certify(snap).passed
            prog.certificates_failed += int(not passed)
            state = rules.after_certificate(state, passed)
        elif cfg.certify_episodes and rules.challenger_due(state, cfg.solve_rounds):
            self.challenge(snap)
        prog.set_solve_state(state)
        snap.consecutive, snap.verdict_wall_s = prog.consecutive, self.wall()
        if prog.solved and not was_solved:
            # best.keras is the snapshot whose round completed the streak (and passed its
            # certificate); it is on disk before the "solved" line is printed, so a run killed
            # after that line keeps it. Only a won challenge (`challenge`) replaces it.
            self.export_best(snap)
            self._on_solved(snap)

    def certify(self, snap: Any) -> Any:
        """`certify_episodes` never-seen episodes with the snapshot, one per env, all played."""
        from acting import evaluation
        ts = time.perf_counter()
        prog, n = self.prog, self.cfg.certify_episodes
        seed = certificate_seed(self.cfg.seed, prog.certificates)
        prog.certificates += 1
        res = play_all(evaluation.NumpyQNetwork(snap.weights).greedy, n, seed)
        snap.certificate, snap.certificate_seed = res, seed
        self.timer.add("certificate", time.perf_counter() - ts)
        if not res.passed:
            after = ("best.keras stays (a challenger)" if prog.solved
                     else "the streak starts again")
            self.say(f"certificate failed: {res.perfect}/{n} never-seen episodes at 500 with the "
                     f"snapshot of {snap.env_steps:,} env steps; {after}")
        return res

    def challenge(self, snap: Any) -> None:
        """Champion/challenger after the solve: a snapshot that completes a new streak replaces
        best.keras only if it passes a certificate, then plays `challenge_episodes` further
        never-seen episodes all to 500, on which the certified model fails at least one. A tie
        keeps the model already delivered.

        Why the wider set: challenges recur, and a challenger that fails 0.2% of episodes
        passes a 1,000-episode certificate 13% of the time, while a champion failing 0.1%
        fails one of the same 1,000 63% of the time; so with one set a worse model came to
        replace a better one (docs/performance.md, Staying solved). 10,000 episodes bound the
        winner's failure rate below 0.03% (95%) and a 0.2% challenger passes them ~2e-9 of
        the time."""
        from acting import evaluation
        n = self.cfg.challenge_episodes
        if not n or not self.certify(snap).passed:
            return
        prog = self.prog
        seed = challenge_seed(self.cfg.seed, prog.challenges)
        prog.challenges += 1
        with self.timer.section("challenge"):
            res = play_all(evaluation.NumpyQNetwork(snap.weights).greedy, n, seed)
            champion = play_all(self.champion().greedy, n, seed) if res.passed else None
        if champion is None or champion.passed:
            tie = "" if champion is None else ", as did best.keras"
            self.say(f"challenge by the snapshot of {snap.env_steps:,} env steps: {res.perfect}/{n} "
                     f"further episodes at 500{tie}; best.keras stays")
            return
        self.export_best(snap)
        prog.promotions += 1
        self.say(f"best.keras replaced by the snapshot of {snap.env_steps:,} env steps: "
                 f"{res.perfect}/{n} at 500 where the previous one had {champion.perfect}")

    def export_best(self, snap: Any) -> None:
        from acting import evaluation
        with self.timer.section("export"):
            self.agent.export(str(self.run_dir / MODEL_DIR / BEST_MODEL), snap.weights)
        self._champion = evaluation.NumpyQNetwork(snap.weights)
        self.agent.set_anchor(snap.weights)
        self.prog.best_model_env_steps = snap.env_steps
        if snap.certificate is not None and self.prog.certificate_episodes is None:
            self.prog.certificate_episodes = snap.certificate.requested
            self.prog.certificate_at_500 = snap.certificate.perfect
            self.prog.certificate_seed = snap.certificate_seed

    def champion(self) -> Any:
        """The network in best.keras (read back from the file after a resume)."""
        if getattr(self, "_champion", None) is None:
            self._champion = self._load_best()
        return self._champion

    def log_finished_rounds(self, wait: bool = False) -> None:
        """An eval.csv row for each round whose every episode has been played (all, with wait)."""
        with self.timer.section("eval_wait"):
            done = self.round_runner.completed(wait)
        for snap, res in done:
            s = res.stats()
            self.prog.best_eval_mean = max(self.prog.best_eval_mean, s["mean"])
            cert = snap.certificate
            row = {"round": snap.index + 1, "wall_s": snap.verdict_wall_s,
                   "env_steps": snap.env_steps, "learn_steps": snap.learn_steps, **s,
                   "passed": int(snap.passed), "consecutive": snap.consecutive,
                   "certificate_episodes": cert.requested if cert is not None else None,
                   "certificate_at_500": cert.perfect if cert is not None else None}
            self.prog.eval_rows.append(row)
            self.notify("on_eval", row)
            if self.on_eval is not None:
                self.stop_requested = self.on_eval(dict(row)) or self.stop_requested

    def _on_solved(self, snap: Any) -> None:
        prog = self.prog
        prog.solve_wall_s, prog.solve_env_steps = self.wall(), snap.env_steps
        prog.solve_learn_steps = snap.learn_steps
        cert = ""
        if prog.certificate_episodes:
            bound = rules.failure_rate_bound(prog.certificate_episodes)
            cert = (f", then {prog.certificate_episodes:,} never-seen episodes all at 500 "
                    f"(failure rate below {100 * bound:.2g}% per episode at 95% confidence)")
        self.say(f"solved at {prog.solve_wall_s:.1f} s from {self.clock_origin}, "
                 f"{snap.env_steps:,} env steps: {self.cfg.solve_rounds} rounds of "
                 f"{self.cfg.eval_episodes} episodes all at 500{cert}")
        self.notify("on_solve", {"solve_wall_s": prog.solve_wall_s,
                                 "solve_env_steps": prog.solve_env_steps,
                                 "solve_learn_steps": prog.solve_learn_steps})

    def checkpoint_if_due(self) -> None:
        """Every `checkpoint_every` env steps, and `checkpoint_seconds` after the last one. A
        checkpoint changes nothing in the run (see `checkpoint`), so the time-based ones leave
        the training path a function of env steps only, and the step schedule ignores them."""
        now, cfg = time.time(), self.cfg
        by_steps = self.prog.env_steps - self.last_ckpt_steps >= cfg.checkpoint_every
        if by_steps or now - self.last_ckpt_time >= cfg.checkpoint_seconds:
            self.checkpoint()
            if by_steps:
                self.last_ckpt_steps = self.prog.env_steps
        elif now - self.last_csv_flush >= CSV_FLUSH_SECONDS:
            with self.timer.section("logging"):
                self.flush_csvs()
            self.last_csv_flush = now

    def checkpoint(self) -> None:
        """Save the run's state. Applies no verdict: the rounds started are played out (their
        rows recorded) and the one whose verdict waits for the next evaluation point is saved
        with the checkpoint, so a run checkpointed at any moment decides exactly as one that
        was not, and a resumed run applies that verdict where the original would have."""
        self.log_finished_rounds(wait=True)
        ts = time.time()
        prog = self.prog
        prog.rounds_in_flight = [r.to_json() for r in self.round_runner.unapplied()]
        self.flush_csvs()
        prog.act_rng_state = self.act_rng.bit_generator.state
        snapshot = dataclasses.asdict(prog)
        snapshot["wall_before"] = self.wall()
        try:
            self.checkpointer.save(prog.env_steps, {"progress": snapshot, "config": self.cfg.to_dict()})
        except self.tf.errors.OpError as e:  # TensorFlow reports disk-full and permissions so
            from training.checkpoints import op_error_cause
            raise OSError(f"checkpoint write failed: {op_error_cause(e)}") from None
        self.last_ckpt_time = time.time()
        self.notify("on_checkpoint")
        self.timer.add("checkpoint", time.time() - ts)

    def flush_csvs(self) -> None:
        self.run_dir.write_csv(METRICS_CSV, METRICS_COLUMNS, self.prog.metrics_rows)
        self.run_dir.write_csv(EVAL_CSV, EVAL_COLUMNS, self.prog.eval_rows)

    def stop_reason(self) -> str | None:
        prog, cfg = self.prog, self.cfg
        budget = rules.stop_reason(prog.env_steps, self.wall(), prog.solve_env_steps,
                                   cfg.keep_training, cfg.max_env_steps, cfg.max_seconds,
                                   next_chunk=cfg.train_every * cfg.num_envs)
        return budget or self.stop_requested

    def _load_best(self):
        """The network that passed the solve rounds, as exported (what --evaluate plays)."""
        from acting import evaluation
        net, _path = evaluation.load_saved_network(self.run_dir / MODEL_DIR / BEST_MODEL)
        return net

    def say(self, message: str) -> None:
        if self.cfg.quiet:
            return
        bar = getattr(self, "bar", None)
        if bar is not None:
            bar.write(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def _write_fault(self, e: OSError) -> TrainingFault:
        return TrainingFault(f"cannot write to {self.run_dir.path}: {e.strerror or e}; stopped, "
                             f"{self._what_is_kept()}")

    def _what_is_kept(self) -> str:
        """What a failed run leaves on disk to go on from, and what the directory then takes."""
        from training.checkpoints import Checkpointer, find_intact
        d = self.run_dir.path
        try:
            latest, _ = find_intact(d)
        except CheckpointError:
            return (f"no checkpoint was written, so {d} cannot be resumed; start the run again "
                    "with --overwrite")
        return (f"last good checkpoint kept ({Checkpointer._number(latest):,} env steps): "
                f"continue with --resume {d}, or start again with --overwrite")


# --- small helpers the trainer uses ----------------------------------------------------------
def set_tf_threads(tf: Any, threads: int) -> None:
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already ran in this process (tests, Ray workers): keep its setting


def check_video_format(fmt: str) -> None:
    """A missing encoder for --video-format is a usage error, found before training starts."""
    from outputs.video import require_format
    try:
        require_format(fmt)
    except ValueError as e:
        from common.config import ConfigError
        raise ConfigError(str(e)) from None


def start_figure_process(cfg: TrainConfig, run_dir: RunDir) -> Any:
    """The figure's own process: a live window with --graphics when there is a display,
    otherwise off-screen, only to render the final PNG off the critical path."""
    from outputs.live_view import LiveView, interactive_session
    from outputs.plots import display_available
    window = cfg.graphics and display_available()
    return LiveView(run_dir / FIGURE_PNG, interactive_session(cfg.quiet),
                    backend=None if window else "agg", live=window)


def make_observers(cfg: TrainConfig, run_dir: RunDir, config_doc: dict[str, Any],
                   prog: Progress, started: list[Observer]) -> list[Observer]:
    """TensorBoard, then the observers `started` before TensorFlow's import (the figure's
    process), which get a resumed run's history first."""
    from outputs.tb_log import TensorBoardObserver
    resumed = prog.resumed_from_env_steps is not None
    observers: list[Observer] = [TensorBoardObserver(run_dir.path, config_doc["config"], resumed)]
    for view in started:
        # A resumed run's figure shows its whole history (TensorBoard has it in its files).
        for row in prog.metrics_rows:
            view.on_metrics(row)
        for row in prog.eval_rows:
            view.on_eval(row)
        observers.append(view)
    return observers


def config_json(cfg: TrainConfig, placement: dict[str, Any], xla: bool, resume: bool) -> dict:
    import gymnasium
    import keras
    import tensorflow as tf
    return {"config": cfg.to_dict(), "resolved": {
        **placement, "xla": xla, "resumed": resume,
        "learn_steps_per_call": cfg.learn_steps_per_call,
        "scored_and_exported_network": "float32 (the same weights in NumPy and in the .keras file)"},
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                     "keras": keras.__version__, "gymnasium": gymnasium.__version__,
                     "numpy": np.__version__},
        "argv": sys.argv}


def bar_postfix(prog: Progress, solve_rounds: int, eps: float) -> str:
    """The progress bar's text: the streak towards the solve, then (with --keep-training) how
    the rounds after it went; the streak keeps counting past the solve, so n/3 would mislead."""
    rows = prog.eval_rows
    last = f"{rows[-1]['mean']:.0f}" if rows else "-"
    if prog.solved:
        rounds = f"solved, after it {prog.post_solve_passed}/{prog.post_solve_rounds} rounds passed"
    else:
        rounds = f"rounds {prog.consecutive}/{solve_rounds}"
    return f"eps {eps:.2f} eval {last:>5} {rounds}"


def progress_bar(cfg: TrainConfig):
    if cfg.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.max_env_steps, unit="step", unit_scale=True, dynamic_ncols=True,
                desc="training", mininterval=0.5)
