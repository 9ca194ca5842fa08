"""compare_peers — time-to-solve CartPole-v1: our trainer against Stable-Baselines3 DQN and PPO.

One question, answered on this machine in one run: how many seconds from typing the command
until the agent provably solves CartPole-v1, for us and for two well-known peers?

Fairness rules (why the numbers are comparable):
* Every (contender, seed) run is a fresh process, and the runs are interleaved
  (ours s0, sb3_dqn s0, sb3_ppo s0, ours s1, ...) so that load from other work on the shared
  2-core machine falls on all contenders alike instead of on whichever ran during a busy spell.
* Time is measured from PROCESS START (run_log.process_start_time, the trainer's clock), so the torch import of a peer
  counts just as our TensorFlow import does. Evaluation time counts for everyone.
* One solve rule and one evaluation code path for all: `evaluation.evaluate` plays
  `--eval-episodes` greedy episodes of standard CartPole-v1, every episode played out; after
  `--solve-rounds` passing rounds in a row the snapshot that completed the streak plays
  `--certify-episodes` never-seen episodes (one env each, up to 1,000 at a time), all of which
  must reach 500, or the streak starts again (rules.after_round and after_certificate, the
  trainer's rule; the certificate's time counts in the solve, as it does in ours). Then
  `confirm_episodes` fresh episodes confirm the policy that solved (reported, not judged).
* The same episode seeds as the trainer's: round i of seed s plays the trainer's
  `eval_seed(s, i)`, the certificates and the confirmation their own seed streams.
* A peer imports only what it would in an environment of its own: SB3 is imported with
  TensorFlow kept out (torch.utils.tensorboard imports it whenever it is installed, and it is
  installed here only for our trainer).
* Peers use the RL-Zoo's tuned CartPole-v1 hyperparameters (cited below), one torch thread
  (CPU-FACTS: torch's default 2 threads next to another busy process was 10-25x slower), and
  stop at the RL-Zoo step budget; unsolved by then counts as unsolved (infinite time).

Evaluation cadence of the peers: every 1,024 env steps, right after a training phase.
  DQN (1 env, train_freq 256) -> every 4th training phase, so each round sees new weights.
  PPO (8 envs x n_steps 32 = 256 steps per rollout) -> every 4th rollout/update.
A round costs a few ms early in training (short episodes) and up to ~0.1-0.5 s for 64 x 500
steps, depending on machine load; a peer plays its rounds on its own thread between training
phases. Ours evaluates every `eval_every` vector steps of its own config (32 x 64 envs = 2,048
env steps), on a second thread while it learns (eval_rounds.py), and its time counts the same. Finer peer cadence only helps the peers: they can
stop sooner after the policy becomes good.

Usage (from the project root; run.sh installs benchmarks/requirements.txt on first use):
    benchmarks/run.sh compare_peers --seeds 5
    benchmarks/run.sh compare_peers --seeds 1 --contenders sb3_ppo
    benchmarks/run.sh compare_peers --eval-episodes 20 --solve-rounds 1 --certify-episodes 0  # CPU-FACTS' looser rule
Internal worker mode (one peer run, used by the parent):
    python benchmarks/compare_peers.py --worker sb3_dqn --seed 0 --out FILE.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent

from common import rules  # noqa: E402  (the solve rule, as the trainer applies it)
from common.config import TrainConfig  # noqa: E402  (the trainer's defaults for the rule)
from training.trainer import CERTIFY_ENVS, certificate_seed, eval_seed  # noqa: E402
from training.wrap_up import CONFIRM_ENVS, confirmation_seed  # noqa: E402
from experiments import stats, sweep_report  # noqa: E402  (statistics and report formatting)

CONTENDERS = ("ours", "sb3_dqn", "sb3_ppo")
PEERS = ("sb3_dqn", "sb3_ppo")
MISSING_DEPS_MSG = ("compare_peers: torch / stable-baselines3 not installed; install with: "
                    "benchmarks/run.sh compare_peers (installs benchmarks/requirements.txt)")

# RL-Zoo (rl-baselines3-zoo, hyperparams/dqn.yml and ppo.yml) settings for CartPole-v1.
# "lin_X" in the zoo means a schedule falling linearly from X to 0 over the step budget.
DQN_ZOO: dict[str, Any] = {
    "n_timesteps": 50_000, "n_envs": 1, "learning_rate": 2.3e-3, "batch_size": 64,
    "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
    "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
    "exploration_fraction": 0.16, "exploration_final_eps": 0.04, "net_arch": [256, 256],
}
PPO_ZOO: dict[str, Any] = {
    "n_timesteps": 100_000, "n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8,
    "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0, "learning_rate": "lin_0.001",
    "clip_range": "lin_0.2",
}
EVAL_EVERY_STEPS = {"sb3_dqn": 1024, "sb3_ppo": 1024}  # see the module docstring for why
DEFAULTS = TrainConfig()  # the rule's sizes default to the trainer's own
#: Kept out of a peer's process: installed only because our trainer shares the venv.
PEER_KEPT_OUT = ("tensorflow",)


# ------------------------------------------------------------------------------------------------
# Pure bookkeeping (no torch, no SB3: unit-tested in tests/test_compare_peers.py)
# ------------------------------------------------------------------------------------------------
@dataclass
class SolveTracker:
    """The trainer's solve rule (rules.py) applied to a peer's rounds, plus where it solved.

    When a round completes the streak, `certify` (if given) plays the snapshot's certificate and
    returns (passed, seconds at its end): a failed one resets the streak (after_certificate), a
    passed one solves, at the time the certificate ended. The first solve freezes the solve
    point; later rounds (if any) are still counted but cannot move it.
    """
    rounds_needed: int
    state: rules.SolveState = rules.SolveState()
    passed_rounds: int = 0
    certificates: int = 0
    certificates_failed: int = 0
    solve_env_steps: int | None = None
    solve_wall_s: float | None = None

    def __post_init__(self) -> None:
        if self.rounds_needed < 1:
            raise ValueError(f"rounds_needed must be >= 1, got {self.rounds_needed}")

    rounds = property(lambda self: self.state.rounds)
    consecutive = property(lambda self: self.state.consecutive)
    solved = property(lambda self: self.state.solved)

    def record(self, passed: bool, env_steps: int, wall_s: float,
               certify: Callable[[], tuple[bool, float]] | None = None) -> bool:
        """Count one round; return True when this round is the one that solves."""
        was_solved = self.solved
        self.state = rules.after_round(self.state, passed, self.rounds_needed)
        self.passed_rounds += int(passed)
        if not self.solved or was_solved:
            return False
        if certify is not None:
            self.certificates += 1
            cert_passed, wall_s = certify()
            self.certificates_failed += int(not cert_passed)
            self.state = rules.after_certificate(self.state, cert_passed)
            if not self.solved:
                return False
        self.solve_env_steps, self.solve_wall_s = env_steps, wall_s
        return True


@dataclass
class EvalSchedule:
    """Evaluate once each time the step counter crosses another multiple of `every`.

    Step counters jump (by n_envs, or by a whole rollout), so 'crossed since last time' rather
    than 'is an exact multiple' keeps the cadence right whatever the jump size.
    """
    every: int
    next_at: int = 0

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.next_at == 0:
            self.next_at = self.every

    def due(self, steps: int) -> bool:
        if steps < self.next_at:
            return False
        # Skip multiples already passed so one big jump gives one round, not a burst.
        self.next_at = (steps // self.every + 1) * self.every
        return True


def interleaved_schedule(contenders: Sequence[str], seeds: Iterable[int]) -> list[tuple[str, int]]:
    """ours s0, sb3_dqn s0, sb3_ppo s0, ours s1, ...: load spikes hit every contender alike."""
    return [(c, s) for s in seeds for c in contenders]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator for medians that may be inf or missing; None when meaningless."""
    if numerator is None or denominator is None or denominator <= 0 or math.isinf(denominator):
        return None
    return numerator / denominator  # inf / finite -> inf: a peer that never solved


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    return "inf" if math.isinf(r) else f"{r:.1f}x"


def fmt_num(v: float | int | None, digits: int = 1) -> str:
    """The reports' numbers (sweep_report's): `digits` decimals, whole counts with thousands
    separators, "inf" for a median over mostly unsolved runs, "–" for none."""
    if isinstance(v, (int, float)) and math.isinf(v):
        return "inf"
    if digits == 0:
        return sweep_report.fmt_metric(v, "env_steps_to_solve")
    return sweep_report.fmt_num(v, digits)


def fmt_interval(est: dict[str, Any]) -> str:
    """'[4.9x, 8.8x]': a ratio's bootstrap interval, or why there is none."""
    if est["ci_low"] is None:
        return f"none (under {stats.MIN_FOR_CI} runs a side, or ours unsolved in one)"
    return f"[{fmt_ratio(est['ci_low'])}, {fmt_ratio(est['ci_high'])}]"


@dataclass
class RunResult:
    """One (contender, seed) run as the tables need it; `extra` keeps the raw details."""
    contender: str
    seed: int
    solved: bool
    solve_wall_s: float | None = None
    solve_env_steps: int | None = None
    confirm_mean: float | None = None
    confirm_at_500: int | None = None
    confirm_episodes: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(runs: Sequence[RunResult], contenders: Sequence[str],
              baseline: str = "ours") -> list[dict[str, Any]]:
    """Per-contender summary rows, with each contender's median time relative to `baseline`."""
    rows: list[dict[str, Any]] = []
    for c in contenders:
        mine = [r for r in runs if r.contender == c]
        if not mine:
            continue
        times = [float(r.solve_wall_s) for r in mine if r.solved and r.solve_wall_s is not None]
        steps = [r.solve_env_steps for r in mine if r.solved and r.solve_env_steps is not None]
        rows.append({
            "contender": c, "runs": len(mine), "solved": sum(r.solved for r in mine),
            # Unsolved runs are dropped, then counted as infinitely slow.
            "median_s_solved": stats.median(times),
            "median_s_inf": stats.median_counting_unsolved(times, len(mine) - len(times)),
            "median_env_steps": statistics.median(steps) if steps else None,
        })
    base = next((row for row in rows if row["contender"] == baseline), None)
    for row in rows:
        row["ratio_vs_baseline"] = ratio(row["median_s_inf"], base["median_s_inf"]) if base else None
        row["ratio_vs_baseline_solved_only"] = \
            ratio(row["median_s_solved"], base["median_s_solved"]) if base else None
        row["ratio_vs_baseline_ci"] = (stats.ratio_of_medians(_times_inf(runs, row["contender"]),
                                                              _times_inf(runs, baseline))
                                       if base else stats.ratio_of_medians([], []))
    return rows


def _times_inf(runs: Sequence[RunResult], contender: str) -> list[float]:
    """A contender's seconds to solve, an unsolved run as +inf (never solving)."""
    return [float(r.solve_wall_s) if r.solved and r.solve_wall_s is not None else math.inf
            for r in runs if r.contender == contender]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 markdown: bool = False) -> str:
    """Plain aligned text (first column left, the rest right) or a GitHub-markdown table."""
    if markdown:
        return "\n".join(sweep_report.md_table(headers, rows))
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(text.rstrip() for text in lines)


RUN_HEADERS = ("contender", "seed", "solved", "s from start", "env steps", "confirm mean",
               "confirm @500", "note")
SUMMARY_HEADERS = ("contender", "solved", "median s (solved)", "median s (unsolved=inf)",
                   "median env steps", "time vs ours", "95% interval")


def run_rows(runs: Sequence[RunResult]) -> list[list[str]]:
    return [[r.contender, str(r.seed), "yes" if r.solved else "no", fmt_num(r.solve_wall_s),
             fmt_num(r.solve_env_steps, 0), fmt_num(r.confirm_mean),
             f"{r.confirm_at_500}/{r.confirm_episodes}" if r.confirm_episodes else "-", r.note]
            for r in runs]


def summary_rows(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[s["contender"], f"{s['solved']}/{s['runs']}", fmt_num(s["median_s_solved"]),
             fmt_num(s["median_s_inf"]), fmt_num(s["median_env_steps"], 0),
             fmt_ratio(s["ratio_vs_baseline"]),
             fmt_interval(s["ratio_vs_baseline_ci"]) if s["ratio_vs_baseline_ci"]["ci_low"] is not None
             else "-"] for s in summary]


def ratio_lines(summary: Sequence[dict[str, Any]], baseline: str = "ours") -> list[str]:
    """'sb3_dqn / ours = 5.3x' lines: median seconds, unsolved counted as infinitely slow."""
    base = next((s for s in summary if s["contender"] == baseline), None)
    if base is None:
        return [f"(no ratios: '{baseline}' was not among the contenders)"]
    out = []
    for s in summary:
        if s["contender"] == baseline:
            continue
        if base["median_s_inf"] is None or math.isinf(base["median_s_inf"]):
            out.append(f"{s['contender']} / {baseline} = n/a ({baseline} unsolved in most runs)")
            continue
        out.append(f"{s['contender']} / {baseline} = {fmt_ratio(s['ratio_vs_baseline'])} "
                   f"(median s, unsolved = inf; 95% bootstrap interval "
                   f"{fmt_interval(s['ratio_vs_baseline_ci'])}; "
                   f"solved-only medians: {fmt_ratio(s['ratio_vs_baseline_solved_only'])})")
    return out


def render_markdown(runs: Sequence[RunResult], summary: Sequence[dict[str, Any]],
                    meta: dict[str, Any]) -> str:
    rule = f"{meta['eval_episodes']} greedy episodes all 500, {meta['solve_rounds']} round(s) in a row"
    if meta.get("certify_episodes"):
        rule += f", then a certificate of {meta['certify_episodes']:,} never-seen episodes all 500"
    return "\n".join([
        "# compare_peers: time to solve CartPole-v1", "",
        f"- started: {meta['started']}; command: `{meta['command']}`",
        f"- solve rule: {rule}; seconds from process start; {meta['cpus']} CPUs; "
        f"load average at start {meta['load_start']}, at end {meta.get('load_end')}",
        f"- versions: {meta.get('versions', {})}", "",
        "## Runs (in the order they ran)", "", format_table(RUN_HEADERS, run_rows(runs), True), "",
        "## Summary", "", format_table(SUMMARY_HEADERS, summary_rows(summary), True), "",
        *[f"- {line}" for line in ratio_lines(summary)], "",
    ])


def parse_contenders(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in CONTENDERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender(s) {bad or text!r}; choose from {','.join(CONTENDERS)}")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time-to-solve CartPole-v1 from process start: ours vs SB3 DQN and PPO "
                    "(RL-Zoo hyperparameters), same solve rule and evaluation code for all.")
    p.add_argument("--seeds", type=positive_int, default=5,
                   help="Seeds per contender (0..N-1; at least 3 for an interval on the ratios).")
    p.add_argument("--first-seed", type=int, default=0, help="First seed (default 0).")
    p.add_argument("--contenders", type=parse_contenders, default=list(CONTENDERS),
                   help="Comma separated, from ours,sb3_dqn,sb3_ppo (default all three).")
    p.add_argument("--eval-episodes", type=positive_int, default=DEFAULTS.eval_episodes,
                   help=f"Episodes per evaluation round; all must score 500 (default {DEFAULTS.eval_episodes}).")
    p.add_argument("--solve-rounds", type=positive_int, default=DEFAULTS.solve_rounds,
                   help=f"Passing rounds in a row that count as solved (default {DEFAULTS.solve_rounds}).")
    p.add_argument("--certify-episodes", type=int, default=DEFAULTS.certify_episodes,
                   help="Never-seen episodes the streak's snapshot must all play to 500, or the "
                        f"streak starts again; 0 = no certificate (default {DEFAULTS.certify_episodes:,}).")
    p.add_argument("--out", default=None, help="Results directory (default /tmp/compare_peers-<time>).")
    p.add_argument("--our-args", default="", help='Extra flags for cartpole.py, e.g. "--lr 3e-3".')
    p.add_argument("--timeout", type=positive_int, default=1800,
                   help="Seconds before one run is killed and counted unsolved (default 1800).")
    # Worker mode: one peer run in this fresh process, result written as JSON.
    p.add_argument("--worker", choices=PEERS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.eval_episodes > 10_000:
        p.error("--eval-episodes is limited to 10000")
    if not 0 <= args.certify_episodes <= 100_000:
        p.error("--certify-episodes must be between 0 and 100000")
    if args.worker and not args.out:
        p.error("--worker needs --out FILE.json")  # in worker mode --out is the result file
    if args.out is None:
        args.out = f"/tmp/compare_peers-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def peer_deps_missing() -> bool:
    return any(importlib.util.find_spec(m) is None for m in ("torch", "stable_baselines3"))


# ------------------------------------------------------------------------------------------------
# Worker: one SB3 run in a fresh process
# ------------------------------------------------------------------------------------------------
def _seconds_since_start() -> Callable[[], float]:
    # The same clock as our trainer's (run_log.process_start_time), so both sides are timed alike.
    from common.run_log import process_start_time
    t0 = process_start_time()
    return lambda: time.time() - t0


def linear_schedule(start: float) -> Callable[[float], float]:
    """The zoo's lin_X: SB3 passes progress_remaining, 1 at the start and 0 at the budget."""
    return lambda progress_remaining: progress_remaining * start


def zoo_value(value: Any) -> Any:
    """A zoo setting as SB3 takes it: 'lin_X' becomes a linear schedule, anything else as is."""
    if isinstance(value, str) and value.startswith("lin_"):
        return linear_schedule(float(value[len("lin_"):]))
    return value


def greedy_act(model: Any) -> Callable[[Any], Any]:
    """Deterministic action of an SB3 DQN or PPO model: argmax Q for DQN (no epsilon), the
    action distribution's mode for PPO; obs [n,4] float32 -> actions [n].

    The same actions as `model.predict(obs, deterministic=True)` (tested on both algorithms
    with the pinned SB3), minus its input checks and reshaping: ~80-100 us a call instead of
    ~140-150 us here. Our agent acts through a cheap NumPy forward pass, so giving the peers
    their cheapest greedy call keeps evaluation overhead from tilting the comparison.
    """
    import torch
    policy = model.policy
    policy.set_training_mode(False)

    def act(obs: Any) -> Any:
        with torch.inference_mode():
            return policy._predict(torch.from_numpy(obs), deterministic=True).numpy()
    return act


def _import_peer() -> tuple[Any, Any, Any]:
    """torch (one thread), stable_baselines3 (with TensorFlow kept out) and our evaluation;
    exit 2 in one line when the peers' libraries are missing."""
    from common.tf_import import modules_kept_out
    try:
        import torch
        # One intra-op thread before any torch work: the machine has 2 cores and other load.
        torch.set_num_threads(1)
        # SB3 imports torch.utils.tensorboard, which imports TensorFlow whenever it is installed
        # (it is here, for our trainer): seconds a peer in its own environment never spends.
        with modules_kept_out(PEER_KEPT_OUT):
            import stable_baselines3 as sb3
            import stable_baselines3.common.callbacks  # noqa: F401 - read as sb3.common.callbacks
            import stable_baselines3.common.env_util  # noqa: F401 - read as sb3.common.env_util
            import stable_baselines3.common.logger  # noqa: F401 - read as sb3.common.logger
    except ImportError:
        print(MISSING_DEPS_MSG, file=sys.stderr)
        raise SystemExit(2)
    from acting import evaluation
    return torch, sb3, evaluation


@dataclass
class PeerRounds:
    """A peer's evaluation rounds and certificates, each playing the episodes the trainer's
    would for the same seed (`eval_seed` with the trainer's round indices)."""
    evaluation: Any  # acting.evaluation, imported by the worker
    seed: int
    eval_episodes: int
    certify_episodes: int
    since_start: Callable[[], float]
    tracker: SolveTracker
    schedule: EvalSchedule
    eval_log: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    eval_s: float = 0.0

    def certify(self, model: Any) -> tuple[bool, float]:
        """The snapshot that completed the streak on its certificate, as the trainer plays it."""
        cert_seed = certificate_seed(self.seed, self.tracker.certificates - 1)
        ts = time.perf_counter()
        res = self.evaluation.evaluate(greedy_act(model), self.certify_episodes, seed=cert_seed,
                                       num_envs=min(self.certify_episodes, CERTIFY_ENVS))
        self.eval_s += time.perf_counter() - ts
        self.certificates.append({"env_steps": int(model.num_timesteps), "seed": cert_seed,
                                  "passed": res.passed, "at_500": res.perfect})
        return res.passed, self.since_start()

    def evaluate_if_due(self, model: Any) -> None:
        steps = int(model.num_timesteps)
        if self.tracker.solved or not self.schedule.due(steps):
            return
        ts = time.perf_counter()
        res = self.evaluation.evaluate(greedy_act(model), self.eval_episodes,
                                       seed=eval_seed(self.seed, self.tracker.rounds))
        self.eval_s += time.perf_counter() - ts
        self.tracker.record(res.passed, steps, self.since_start(),
                            (lambda: self.certify(model)) if self.certify_episodes else None)
        self.eval_log.append({"env_steps": steps, "wall_s": round(self.since_start(), 3),
                              "passed": res.passed, **res.stats()})


def solve_callback(sb3: Any, rounds: PeerRounds) -> Any:
    """An SB3 callback that runs a round right after each training phase once 1,024 more steps
    have passed, and stops learning at the next env step once solved. Built here, not at module
    level, because its base class is SB3's, which the parent process never imports."""

    class SolveCallback(sb3.common.callbacks.BaseCallback):
        def evaluate_if_due(self) -> None:
            rounds.evaluate_if_due(self.model)

        def _on_rollout_start(self) -> None:
            self.evaluate_if_due()

        def _on_step(self) -> bool:
            return not rounds.tracker.solved

    return SolveCallback()


def zoo_model(sb3: Any, kind: str, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """The peer `kind` with the RL-Zoo's settings: (model, its vector env, the settings)."""
    env = sb3.common.env_util.make_vec_env(
        "CartPole-v1", n_envs=(DQN_ZOO if kind == "sb3_dqn" else PPO_ZOO)["n_envs"], seed=seed)
    if kind == "sb3_dqn":
        z = DQN_ZOO
        model = sb3.DQN("MlpPolicy", env, learning_rate=z["learning_rate"],
                        batch_size=z["batch_size"], buffer_size=z["buffer_size"],
                        learning_starts=z["learning_starts"], gamma=z["gamma"],
                        target_update_interval=z["target_update_interval"],
                        train_freq=z["train_freq"], gradient_steps=z["gradient_steps"],
                        exploration_fraction=z["exploration_fraction"],
                        exploration_final_eps=z["exploration_final_eps"],
                        policy_kwargs={"net_arch": z["net_arch"]}, seed=seed, verbose=0,
                        device="cpu")
    else:
        z = PPO_ZOO
        model = sb3.PPO("MlpPolicy", env, n_steps=z["n_steps"], batch_size=z["batch_size"],
                        gae_lambda=z["gae_lambda"], gamma=z["gamma"], n_epochs=z["n_epochs"],
                        ent_coef=z["ent_coef"], learning_rate=zoo_value(z["learning_rate"]),
                        clip_range=zoo_value(z["clip_range"]), seed=seed, verbose=0, device="cpu")
    # A logger that writes nothing: without one, every learn() makes an empty SB3-<time>
    # directory in the system's temporary directory (its default log folder).
    model.set_logger(sb3.common.logger.Logger(folder=None, output_formats=[]))
    return model, env, z


def run_worker(kind: str, seed: int, eval_episodes: int, solve_rounds: int,
               certify_episodes: int = 0,
               confirm_episodes: int = DEFAULTS.confirm_episodes) -> dict[str, Any]:
    """Train one SB3 peer with the zoo settings until solved or out of budget; return the record.

    Its rounds, certificates and confirmation play the episodes the trainer's would for the
    same seed (`eval_seed` with the trainer's round indices). Phases: import -> model ->
    learn (with its rounds) -> confirm -> record.
    """
    since_start = _seconds_since_start()  # anchored at process start, so the imports count
    torch, sb3, evaluation = _import_peer()
    import_s = since_start()

    rounds = PeerRounds(evaluation, seed, eval_episodes, certify_episodes, since_start,
                        SolveTracker(solve_rounds), EvalSchedule(EVAL_EVERY_STEPS[kind]))
    tracker = rounds.tracker
    model, env, z = zoo_model(sb3, kind, seed)
    setup_s = since_start()
    callback = solve_callback(sb3, rounds)
    model.learn(total_timesteps=z["n_timesteps"], callback=callback)
    # The last training phase before the budget has no following rollout start: give it its round.
    callback.evaluate_if_due()
    end_s = since_start()

    confirm: dict[str, Any] = {}
    if tracker.solved and confirm_episodes:
        res = evaluation.evaluate(greedy_act(model), confirm_episodes,
                                  seed=confirmation_seed(seed), num_envs=CONFIRM_ENVS)
        confirm = res.stats()
    env.close()
    return {
        "contender": kind, "seed": seed, "solved": tracker.solved,
        "solve_wall_s": tracker.solve_wall_s, "solve_env_steps": tracker.solve_env_steps,
        "confirm_mean_return": confirm.get("mean"), "confirm_at_500": confirm.get("at_500"),
        "confirm_episodes": confirm.get("episodes"), "confirm_min_return": confirm.get("min"),
        "eval_rounds": tracker.rounds, "passed_rounds": tracker.passed_rounds,
        "certify_episodes": certify_episodes, "certificates": rounds.certificates,
        "certificates_failed": tracker.certificates_failed,
        "eval_s": round(rounds.eval_s, 3), "import_s": round(import_s, 3),
        "setup_done_s": round(setup_s, 3), "train_end_s": round(end_s, 3),
        "total_env_steps": int(model.num_timesteps), "budget_env_steps": z["n_timesteps"],
        "eval_every_env_steps": rounds.schedule.every, "hyperparameters": z,
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "stable_baselines3": sb3.__version__},
        "eval_log": rounds.eval_log,
    }


# ------------------------------------------------------------------------------------------------
# Parent: schedule, launch, collect, report
# ------------------------------------------------------------------------------------------------
def _run_process(cmd: list[str], log_path: Path, timeout: int,
                 env: dict[str, str]) -> tuple[int | None, float]:
    """Run one fresh process with output to a log; return (exit code or None on timeout, wall s)."""
    t = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    return code, time.perf_counter() - t


def run_ours(seed: int, args: argparse.Namespace, out: Path) -> RunResult:
    log_dir = out / "runs" / f"ours-s{seed}"
    cmd = [sys.executable, str(ROOT / "cartpole.py"), "--seed", str(seed),
           "--log-dir", str(log_dir), "--overwrite", "--quiet",
           "--eval-episodes", str(args.eval_episodes), "--solve-rounds", str(args.solve_rounds),
           "--certify-episodes", str(args.certify_episodes), *shlex.split(args.our_args)]
    code, wall = _run_process(cmd, out / "logs" / f"ours-s{seed}.log", args.timeout,
                              dict(os.environ))
    summary_path = log_dir / "summary.json"
    if not summary_path.is_file():
        why = "timeout" if code is None else f"exit {code}, no summary.json"
        return RunResult("ours", seed, False, note=why, extra={"cmd": cmd, "process_wall_s": wall})
    s = json.loads(summary_path.read_text())
    solved = bool(s.get("solved"))
    return RunResult("ours", seed, solved, s.get("solve_wall_s") if solved else None,
                     s.get("solve_env_steps") if solved else None, s.get("confirm_mean_return"),
                     s.get("confirm_at_500"), s.get("confirm_episodes") or None,
                     note="" if solved else f"unsolved (exit {s.get('exit_code', code)})",
                     extra={"cmd": cmd, "process_wall_s": wall, "summary": s})


def run_peer(kind: str, seed: int, args: argparse.Namespace, out: Path) -> RunResult:
    result_path = out / "runs" / f"{kind}-s{seed}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--seed", str(seed),
           "--out", str(result_path), "--eval-episodes", str(args.eval_episodes),
           "--solve-rounds", str(args.solve_rounds), "--certify-episodes", str(args.certify_episodes)]
    # Pin every thread pool too, not only torch's intra-op pool, so a peer uses one core.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code, wall = _run_process(cmd, out / "logs" / f"{kind}-s{seed}.log", args.timeout, env)
    if code != 0 or not result_path.is_file():
        why = "timeout" if code is None else f"worker exit {code} (see logs/{kind}-s{seed}.log)"
        return RunResult(kind, seed, False, note=why, extra={"cmd": cmd, "process_wall_s": wall})
    r = json.loads(result_path.read_text())
    return RunResult(kind, seed, bool(r["solved"]), r["solve_wall_s"], r["solve_env_steps"],
                     r["confirm_mean_return"], r["confirm_at_500"], r["confirm_episodes"],
                     note="" if r["solved"] else f"unsolved in {r['budget_env_steps']:,} steps",
                     extra={"cmd": cmd, "process_wall_s": wall,
                            **{k: v for k, v in r.items() if k != "eval_log"}})


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_all(args: argparse.Namespace) -> int:
    if any(c in PEERS for c in args.contenders) and peer_deps_missing():
        print(MISSING_DEPS_MSG, file=sys.stderr)
        return 2
    if "ours" in args.contenders and not (ROOT / "cartpole.py").is_file():
        print("compare_peers: cartpole.py not found in the project root", file=sys.stderr)
        return 2
    out = Path(args.out)
    if (out / "runs").is_dir() and any((out / "runs").iterdir()):
        # An old summary.json there would be read as this run's result: never mix two runs.
        print(f"compare_peers: {out} already holds results; pass a new --out", file=sys.stderr)
        return 2
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv),
        "eval_episodes": args.eval_episodes, "solve_rounds": args.solve_rounds,
        "certify_episodes": args.certify_episodes, "contenders": args.contenders,
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "our_args": args.our_args, "cpus": os.cpu_count(), "load_start": _load(),
        "python": platform.python_version(), "eval_every_env_steps": EVAL_EVERY_STEPS,
        "hyperparameters": {"sb3_dqn": DQN_ZOO, "sb3_ppo": PPO_ZOO},
    }
    schedule = interleaved_schedule(args.contenders, meta["seeds"])
    print(f"compare_peers: {len(schedule)} runs, rule {args.eval_episodes} episodes x "
          f"{args.solve_rounds} round(s), certificate {args.certify_episodes:,} episodes; "
          f"results in {out}", flush=True)
    runs: list[RunResult] = []
    for i, (contender, seed) in enumerate(schedule, 1):
        load = _load()
        r = run_ours(seed, args, out) if contender == "ours" else run_peer(contender, seed, args, out)
        r.extra["load_before"] = load
        runs.append(r)
        if "versions" in r.extra:
            meta.setdefault("versions", {}).update(r.extra["versions"])
        print(f"[{i}/{len(schedule)}] {contender} s{seed}: "
              f"{'solved in ' + fmt_num(r.solve_wall_s) + ' s' if r.solved else 'not solved'}"
              f"{', ' + r.note if r.note else ''} (load {load})", flush=True)
    meta["load_end"] = _load()
    summary = summarize(runs, args.contenders)

    print("\nPer run (seconds from process start to solve):")
    print(format_table(RUN_HEADERS, run_rows(runs)))
    print("\nSummary:")
    print(format_table(SUMMARY_HEADERS, summary_rows(summary)))
    for line in ratio_lines(summary):
        print(line)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "runs": [asdict(r) for r in runs], "summary": summary},
        indent=2, default=str))
    (out / "results.md").write_text(render_markdown(runs, summary, meta))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_worker(args.worker, args.seed, args.eval_episodes, args.solve_rounds,
                            args.certify_episodes)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
