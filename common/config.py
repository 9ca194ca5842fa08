"""Every setting of a training run, in one documented dataclass.

`TrainConfig` is the single source of truth: `cartpole.py` builds its command line from the
field metadata below (so `--help` and the code never disagree), `config.json` in the log
directory is `dataclasses.asdict` of it, and the sweep and multi-seed runners override fields by
name. `validate()` turns impossible values into a one-line `ConfigError`, raised before
TensorFlow is even imported, so bad input never surfaces as a traceback from deep inside it.

Defaults are tuned for time-to-solve on a 2-core CPU; how, and what the alternatives (the seed
design's `--hidden 12,12` among them) measured, is in docs/performance.md, "Defaults, and how
they were tuned".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """An impossible or inconsistent setting; its message is one line meant for the user."""


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass
class TrainConfig:
    # --- run and output -------------------------------------------------------------------
    log_dir: str | None = field(default=None, metadata=_opt(
        "Directory for logs, plots, checkpoints and models (default: runs/<timestamp>). A "
        "directory that already holds a run is refused: continue it with --resume DIR or "
        "replace it with --overwrite."))
    overwrite: bool = field(default=False, metadata=_opt(
        "Empty the run files of an existing log dir first (files you added there are kept)."))
    seed: int | None = field(default=None, metadata=_opt(
        "Seed for TensorFlow, NumPy, gymnasium and replay sampling; random if omitted "
        "(the one used is recorded in config.json)."))
    graphics: bool = field(default=False, metadata=_opt(
        "Render a demo of a greedy episode (GIF) and refresh the metrics figure during training."))
    video_format: str = field(default="gif", metadata=_opt(
        "Format of the --graphics demo: gif (plays inline in READMEs), or mp4 / webm (every "
        "frame, full size; need imageio-ffmpeg from requirements/video.txt).",
        choices=("gif", "mp4", "webm")))
    profile: bool = field(default=True, metadata=_opt(
        "Profile the run from its first learning call on (TensorFlow's import and tracing are "
        "timed in timings.json instead); --profiler says how."))
    profiler: str = field(default="sample", metadata=_opt(
        "sample: read the Python stack 200 times a second, write profile.txt (seconds per function, "
        "estimated) and profile.folded (for flame-graph viewers); cprofile: Python's cProfile, "
        "exact call counts at a cost to the run's speed, writes profile.prof and profile.txt.",
        choices=("sample", "cprofile")))
    quiet: bool = field(default=False, metadata=_opt("No progress bar or per-round messages."))

    # --- environment and reward -----------------------------------------------------------
    num_envs: int = field(default=64, metadata=_opt("Parallel CartPole-v1 environments."))
    reward: str = field(default="shaped", metadata=_opt(
        "Training reward: 'shaped' (1 upright and centred, falling to 0 at the limits) or "
        "'standard' (CartPole's +1). Evaluation always uses the standard score.",
        choices=("shaped", "standard")))

    # --- network and learning -------------------------------------------------------------
    hidden: tuple[int, ...] = field(default=(48, 48), metadata=_opt(
        "Hidden layer widths of the Q-network, comma separated (the seed design's is 12,12; "
        "docs/performance.md compares them)."))
    gamma: float = field(default=0.998, metadata=_opt("Discount factor, in [0, 1)."))
    tau: float = field(default=0.06, metadata=_opt(
        "Soft target update rate per learning step, in (0, 1]."))
    batch_size: int = field(default=1024, metadata=_opt("Replay batch size per learning step."))
    lr: float = field(default=5e-3, metadata=_opt("Initial Adam learning rate."))
    lr_final: float = field(default=1e-3, metadata=_opt(
        "Learning rate after linear decay (kept as the floor afterwards)."))
    lr_decay_steps: int = field(default=20_000, metadata=_opt(
        "Learning steps over which the learning rate decays from --lr to --lr-final."))
    lr_solved: float | None = field(default=None, metadata=_opt(
        "Learning rate from the moment the task is solved (with --keep-training); default: "
        "half of --lr-final. A solved network needs small steps to stay solved, yet not so "
        "small that it stops correcting what it forgets (docs/performance.md compares values)."))
    layer_norm: bool = field(default=False, metadata=_opt(
        "LayerNormalization after each hidden Dense layer (Dense -> LayerNorm -> ReLU). It "
        "helps a solved agent stay solved but makes every learning step dearer and the solve "
        "slower, and the default is tuned for time to solve, so it is off by default "
        "(docs/performance.md has the figures)."))
    dueling: bool = field(default=False, metadata=_opt(
        "A dueling output layer: a value and one advantage per action, combined as "
        "Q = V + A - mean(A) (Wang et al. 2016), so the gap between the actions learns at a "
        "step size of its own. best.keras and the NumPy policy get the plain layer it folds "
        "into (the same Q-values)."))
    weight_decay: float = field(default=0.0, metadata=_opt(
        "Decoupled weight decay (AdamW) on the Q-network's kernels, per learning step scaled "
        "by the learning rate; biases and LayerNorm's gamma/beta are not decayed. 0 = plain "
        "Adam. Paired with --layer-norm it is meant to keep a solved learner solved "
        "(docs/performance.md, Staying solved)."))
    gap_solved: float = field(default=0.5, metadata=_opt(
        "Advantage learning once the task is solved (with --keep-training), in [0, 1): each "
        "target is lowered by this share of the target network's action gap at (s, a), "
        "max_b Q'(s, b) - Q'(s, a) (Bellemare et al. 2016). The greedy action's target is "
        "unchanged, the other action's is pushed down, so the gap between them widens and "
        "small errors in Q flip fewer greedy actions. 0 = plain Double DQN. Before the solve "
        "nothing changes (docs/performance.md, Staying solved)."))
    anchor_solved: float = field(default=1.5, metadata=_opt(
        "Once the task is solved (with --keep-training), add to the loss this weight times the "
        "batch mean of sum_a (A(s, a) - A*(s, a))^2, where A = Q - mean_a Q is the learner's "
        "advantage and A* that of the delivered model (best.keras: the certified snapshot, or "
        "a challenger that replaced it). It keeps the learner's action preferences near the "
        "certified policy's on replayed states while Q itself goes on learning. 0 = off. "
        "Before the solve nothing changes (docs/performance.md, Staying solved)."))
    margin_solved: float = field(default=1.0, metadata=_opt(
        "Once the task is solved (with --keep-training), add DQfD's large-margin loss with the "
        "delivered model (best.keras) as the expert: the batch mean of max_a [Q(s, a) + M (a != "
        "a*)] - Q(s, a*), a* the delivered model's greedy action, M this margin. 0 = off. "
        "Before the solve nothing changes (docs/performance.md, Staying solved)."))
    n_step: int = field(default=3, metadata=_opt(
        "Multi-step returns: each target sums the rewards of up to this many steps of the same "
        "episode, discounted, before bootstrapping (1 = plain one-step Double DQN; Rainbow "
        "uses 3). Computed from the replay ring when a batch is drawn, so the buffer's "
        "contents and checkpoints are the same for every value."))
    n_step_solved: int | None = field(default=None, metadata=_opt(
        "The --n-step bound once the task is solved (with --keep-training); default: --n-step. "
        "Chosen at run time inside the same graph (docs/performance.md, Staying solved)."))
    huber_delta: float = field(default=1.0, metadata=_opt("Huber loss threshold delta."))
    clip_norm: float = field(default=10.0, metadata=_opt("Global gradient-norm clip."))

    # --- replay ----------------------------------------------------------------------------
    buffer_size: int = field(default=65536, metadata=_opt("Replay capacity in transitions."))
    alpha: float = field(default=0.7, metadata=_opt(
        "Prioritisation exponent alpha in [0, 1] (0 = uniform replay)."))
    uniform_solved: bool = field(default=False, metadata=_opt(
        "Replay uniformly once the task is solved (with --keep-training): prioritisation off, "
        "as alpha 0, with importance weights 1 and no more priority updates. Before the solve "
        "nothing changes."))
    beta_start: float = field(default=0.5, metadata=_opt(
        "Importance-sampling exponent beta at the start, in [0, 1]."))
    beta_final: float = field(default=1.0, metadata=_opt("Beta after annealing, in [0, 1]."))
    beta_steps: int = field(default=4000, metadata=_opt(
        "Learning steps over which beta anneals from --beta-start to --beta-final."))

    failure_rows: int = field(default=0, metadata=_opt(
        "Kept failures (terminal transitions from a reservoir apart from the replay ring) added "
        "to every learning batch once the run has solved; 0 = off. Keeps the network from forgetting what failing looks "
        "like once it no longer fails (DQN's collapse after solving)."))
    failure_capacity: int = field(default=4096, metadata=_opt(
        "Size of the failure reservoir: the latest terminal transitions kept."))

    # --- exploration and schedule ---------------------------------------------------------
    eps_start: float = field(default=1.0, metadata=_opt("Initial epsilon of epsilon-greedy."))
    eps_final: float = field(default=0.01, metadata=_opt("Final epsilon."))
    eps_solved: float | None = field(default=None, metadata=_opt(
        "Epsilon from the moment the task is solved (with --keep-training); default: "
        "--eps-final. More exploration once solved keeps failures coming into the replay "
        "buffer, which a solved agent otherwise stops seeing."))
    eps_decay_steps: int = field(default=300, metadata=_opt(
        "Vector steps over which epsilon decays linearly."))
    train_every: int = field(default=16, metadata=_opt(
        "Vector steps collected between calls of the fused store-and-learn TensorFlow function."))
    learn_ratio: float = field(default=1.0, metadata=_opt(
        "Learning steps per vector step (each call runs train_every * learn_ratio steps)."))
    learning_starts: int = field(default=1024, metadata=_opt(
        "Environment steps collected before learning starts."))
    xla: str = field(default="auto", metadata=_opt(
        "XLA-compile the store-and-learn function: auto (on), on, off.",
        choices=("auto", "on", "off")))
    xla_cache: bool = field(default=True, metadata=_opt(
        "Keep compiled XLA programs and the traced graph of the learning call in "
        "~/.cache/cartpole/xla (or $CARTPOLE_XLA_CACHE) so later runs of the same configuration "
        "load them instead of tracing and compiling again (the first learning call's cost; "
        "docs/performance.md)."))
    threads: int = field(default=1, metadata=_opt(
        "TensorFlow intra- and inter-op threads (0: as many as TensorFlow picks). The loop is "
        "sequential and its ops are small, so a second thread mostly waits on the first, and "
        "the second core is the evaluation worker's (docs/performance.md)."))
    mixed_precision: str = field(default="auto", metadata=_opt(
        "mixed_float16 with loss scaling: auto (on only with a GPU), on, off.",
        choices=("auto", "on", "off")))
    device: str = field(default="auto", metadata=_opt(
        "Where the network trains: auto (the first GPU TensorFlow sees, else the CPU), cpu, or "
        "gpu (a one-line error and exit 2 when there is none). Recorded in config.json.",
        choices=("auto", "cpu", "gpu")))
    gpu_memory_limit: int | None = field(default=None, metadata=_opt(
        "Cap TensorFlow's memory on each visible GPU at this many MB; default: memory growth "
        "(allocate on demand), so several runs can share one GPU."))

    # --- evaluation and stopping ----------------------------------------------------------
    eval_every: int = field(default=32, metadata=_opt(
        "Vector steps between greedy evaluation rounds on standard CartPole-v1."))
    eval_process: bool = field(default=True, metadata=_opt(
        "Play evaluation rounds in a worker process on the second core while learning goes on "
        "(same verdicts, collected at the next evaluation point); off: in the trainer itself."))
    eval_episodes: int = field(default=64, metadata=_opt(
        "Episodes per evaluation round; all must score 500 for the round to pass."))
    solve_rounds: int = field(default=3, metadata=_opt(
        "Consecutive passing rounds that count as solved."))
    certify_episodes: int = field(default=1000, metadata=_opt(
        "Never-seen episodes the snapshot that completes the solve rounds must all play to 500 "
        "before the run counts as solved (a failure resets the streak; 0: the plain rule). "
        "After the solve, a later snapshot may replace model/best.keras (--challenge-episodes)."))
    challenge_episodes: int = field(default=10000, metadata=_opt(
        "After the solve (with --keep-training), a snapshot that completes a new streak and "
        "passes a certificate replaces model/best.keras only if it also plays this many further "
        "never-seen episodes all to 500 while the model in best.keras fails at least one of "
        "them. 0: best.keras is never replaced."))
    confirm_episodes: int = field(default=100, metadata=_opt(
        "Fresh episodes played with the saved model/best.keras at the end, reported (the "
        "certificate is the judged test)."))
    keep_training: int = field(default=0, metadata=_opt(
        "Environment steps to keep training (and evaluating) after solving."))
    max_env_steps: int = field(default=1_000_000, metadata=_opt(
        "Budget of environment steps; exit code 3 if unsolved by then."))
    max_seconds: float | None = field(default=None, metadata=_opt(
        "Wall-clock budget in seconds from process start (default: none, only the env-step "
        "budget)."))

    # --- checkpoints -------------------------------------------------------------------------
    checkpoint_every: int = field(default=100_000, metadata=_opt(
        "Environment steps between checkpoints (one is also written at the end)."))
    checkpoint_seconds: float = field(default=60.0, metadata=_opt(
        "Also checkpoint when this many seconds have passed since the last one."))

    # ------------------------------------------------------------------------------------------
    def learning_rate(self, learn_steps: int, solved: bool) -> float:
        """Linear decay from lr to lr_final over lr_decay_steps; once solved, lr_solved (by
        default half of lr_final)."""
        if solved:
            return self.lr_final / 2 if self.lr_solved is None else self.lr_solved
        return linear_schedule(self.lr, self.lr_final, self.lr_decay_steps, learn_steps)

    @property
    def learn_steps_per_call(self) -> int:
        return max(1, round(self.train_every * self.learn_ratio))

    def validate(self) -> "TrainConfig":
        """Raise `ConfigError` (one line) for the first impossible setting; return self."""
        # First, because every range check below is a comparison, and a comparison with NaN is
        # False: `nan <= 0` would let --lr nan through. No float setting means anything as inf.
        for name in float_fields():
            v = getattr(self, name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{flag_name(name)} must be a finite number, got {v}")

        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

        def in_range(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
            v = getattr(self, name)
            bad = v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
            if bad:
                lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
                raise ConfigError(f"--{name.replace('_', '-')} must be in {lb}{lo}, {hi}{rb}, got {v}")

        for name in ("num_envs", "batch_size", "lr", "lr_decay_steps", "huber_delta", "clip_norm",
                     "buffer_size", "beta_steps", "eps_decay_steps", "train_every", "learn_ratio",
                     "eval_every", "eval_episodes", "solve_rounds", "max_env_steps",
                     "checkpoint_every", "checkpoint_seconds"):
            positive(name)
        if self.lr_solved is not None and not 0 <= self.lr_solved <= self.lr:
            raise ConfigError(f"--lr-solved must be in [0, --lr={self.lr}], got {self.lr_solved}")
        if not 1 <= self.n_step <= 16:
            raise ConfigError(f"--n-step must be in [1, 16], got {self.n_step}")
        if self.n_step_solved is not None and not 1 <= self.n_step_solved <= 16:
            raise ConfigError(f"--n-step-solved must be in [1, 16], got {self.n_step_solved}")
        if not 0 <= self.gap_solved < 1:
            raise ConfigError(f"--gap-solved must be in [0, 1), got {self.gap_solved}")
        if not 0 <= self.margin_solved <= 1e6:
            raise ConfigError(f"--margin-solved must be in [0, 1e6], got {self.margin_solved}")
        if not 0 <= self.anchor_solved <= 1e6:
            raise ConfigError(f"--anchor-solved must be in [0, 1e6], got {self.anchor_solved}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"--weight-decay must be in [0, 1), got {self.weight_decay}")
        if self.lr_final < 0 or self.lr_final > self.lr:
            raise ConfigError(f"--lr-final must be in [0, --lr={self.lr}], got {self.lr_final}")
        in_range("gamma", 0.0, 1.0, hi_open=True)
        in_range("tau", 0.0, 1.0, lo_open=True)
        for name in ("alpha", "beta_start", "beta_final", "eps_start", "eps_final"):
            in_range(name, 0.0, 1.0)
        if self.eps_solved is not None and not 0 <= self.eps_solved <= 1:
            raise ConfigError(f"--eps-solved must be in [0, 1], got {self.eps_solved}")
        for name in ("certify_episodes", "challenge_episodes", "confirm_episodes", "keep_training",
                     "learning_starts", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        # Sensible ceilings: beyond these a run would spend its life evaluating or run out of memory.
        if self.eval_episodes > 10_000 or max(self.confirm_episodes, self.certify_episodes,
                                               self.challenge_episodes) > 100_000:
            raise ConfigError("--eval-episodes is limited to 10000, --certify-episodes, "
                              "--challenge-episodes and --confirm-episodes to 100000")
        if self.num_envs > 65_536:
            raise ConfigError(f"--num-envs is limited to 65536, got {self.num_envs}")
        if self.buffer_size > 1 << 24:
            raise ConfigError(f"--buffer-size is limited to {1 << 24}, got {self.buffer_size}")
        if not 0 <= self.failure_rows <= self.batch_size:
            raise ConfigError(f"--failure-rows must be in [0, --batch-size={self.batch_size}], "
                              f"got {self.failure_rows}")
        if self.failure_capacity <= 0:
            raise ConfigError(f"--failure-capacity must be positive, got {self.failure_capacity}")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"--batch-size ({self.batch_size}) must not exceed --buffer-size ({self.buffer_size})")
        self._check_trainable_sizes()
        if not self.hidden or any(h <= 0 for h in self.hidden) or len(self.hidden) > 8:
            raise ConfigError(f"--hidden needs 1 to 8 positive widths, got {','.join(map(str, self.hidden))}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"--max-seconds must be positive, got {self.max_seconds}")
        if self.seed is not None and not 0 <= self.seed < 2**31:
            raise ConfigError(f"--seed must be in [0, 2^31), got {self.seed}")
        self._check_choices()
        if self.gpu_memory_limit is not None and not 0 < self.gpu_memory_limit <= 1 << 20:
            raise ConfigError(f"--gpu-memory-limit must be in [1, {1 << 20}] MB, got {self.gpu_memory_limit}")
        return self

    def _check_choices(self) -> None:
        """Every field with `choices` in its metadata, in one place: argparse checks them on the
        command line, but sweeps, config.json and a resume's checkpoint build configs without it
        (a resumed `xla: "yes"` must not quietly mean on)."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ConfigError(f"{flag_name(f.name)} must be one of {', '.join(choices)}, "
                                  f"got {getattr(self, f.name)!r}")
    def _check_trainable_sizes(self) -> None:
        """Sizes that are each valid but cannot train together, and sizes the machine cannot hold.

        Every call stores a chunk of train_every * num_envs transitions at once: a budget below
        one chunk cannot run a single call, and a replay buffer below one chunk overwrites the
        chunk within itself, so the network learns from a handful of transitions over and over
        and diverges (--buffer-size 1 --batch-size 1 did)."""
        chunk = self.train_every * self.num_envs
        if self.max_env_steps < chunk:
            raise ConfigError(f"--max-env-steps ({self.max_env_steps}) is less than one chunk "
                              f"(--train-every x --num-envs = {chunk} env steps)")
        if self.buffer_size < chunk:
            raise ConfigError(f"--buffer-size ({self.buffer_size}) must hold at least one chunk "
                              f"(--train-every x --num-envs = {chunk} transitions)")
        for flag, n in (("--n-step", self.n_step), ("--n-step-solved", self.n_step_solved or 0)):
            if n * self.num_envs > self.buffer_size // 2:
                raise ConfigError(f"{flag} x --num-envs must be at most half of --buffer-size, "
                                  f"got {n} x {self.num_envs} against {self.buffer_size}")
        need, have = memory_needed(self), available_memory()
        if have is not None and need > have:
            raise ConfigError(f"--hidden {','.join(map(str, self.hidden))} with --batch-size "
                              f"{self.batch_size} and --buffer-size {self.buffer_size} needs about "
                              f"{need / 2**30:.1f} GiB of memory; {have / 2**30:.1f} GiB is available")

    def replace(self, **changes: Any) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config read back from JSON (config.json, a checkpoint's state), type-checked.

        Unknown keys are dropped and missing ones take their defaults, so runs written by a
        version with fewer or more settings still load; a value of the wrong type is a
        `ConfigError`, never a TypeError later in `validate()` or deep inside training.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(d).__name__}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                values[f.name] = _typed(f, d[f.name])
        return cls(**values)


#: CartPole-v1's observation and action sizes (the network's input and output widths).
OBS_SIZE, NUM_ACTIONS = 4, 2


def memory_needed(cfg: TrainConfig) -> int:
    """A lower estimate (bytes) of what a run's arrays take, float32 throughout: each weight is
    held ~8 times (online and target networks, gradient, two Adam slots, the NumPy copies of the
    trainer and the evaluation worker, a snapshot), each replay row (2 observations, action,
    reward, done) twice with the sum tree, and a batch's activations ~6 times (forward and
    backward, online and target). Checked before anything is allocated, so an impossible
    --hidden is one line, not an allocation failure deep in TensorFlow."""
    widths = [OBS_SIZE, *cfg.hidden, NUM_ACTIONS]
    params = sum(a * b + b for a, b in zip(widths, widths[1:]))
    replay = cfg.buffer_size * ((2 * OBS_SIZE + 3) * 2 + 2)
    activations = cfg.batch_size * sum(widths) * 6
    return 4 * (8 * params + replay + activations)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now, or None if it cannot be told."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil or no /proc: skip the check, never fail on it
        return None


def flag_name(field_name: str) -> str:
    """The command-line flag of a TrainConfig field: lr_final -> --lr-final."""
    return "--" + field_name.replace("_", "-")


def float_fields() -> list[str]:
    """Names of the TrainConfig fields that hold a float (possibly optional)."""
    return [f.name for f in dataclasses.fields(TrainConfig) if "float" in str(f.type)]


def _typed(f: dataclasses.Field, value: Any) -> Any:
    """`value` as field `f` holds it, or a one-line ConfigError naming the field."""
    kind = str(f.type)
    if value is None and "None" in kind:
        return None
    if f.name == "hidden":
        return parse_hidden(value)
    if "bool" in kind:
        ok = isinstance(value, bool)
    elif "float" in kind:  # JSON may write a whole float as an int
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif "int" in kind:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"setting {f.name} should be {kind}, got {value!r}")
    return value


def linear_schedule(start: float, end: float, steps: int, t: float) -> float:
    """Linear from `start` to `end` over `steps`, then held at `end` (epsilon, beta)."""
    frac = min(max(t / steps, 0.0), 1.0)
    return start + (end - start) * frac


def parse_hidden(value: Any) -> tuple[int, ...]:
    """'64,64' or [64, 64] -> (64, 64), with a one-line error for anything else."""
    try:
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
        else:
            parts = list(value)  # TypeError for a bare number
        if any(isinstance(p, (float, bool)) for p in parts):  # int() would truncate 1.5 quietly
            raise TypeError
        widths = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--hidden takes comma-separated integers like 64,64, got {value!r}") from None
    return widths

