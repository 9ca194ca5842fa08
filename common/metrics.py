"""Every metric the trainer records, named once: CSV column, TensorBoard tag and meaning.

`metrics.csv` (one row per learning call) and `eval.csv` (one row per evaluation round) take
their columns from here, and the TensorBoard writer takes its tags from here, so a metric cannot
be renamed in one place and forgotten in another. No TensorFlow, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    column: str            # CSV column name
    tag: str | None        # TensorBoard scalar tag (None: CSV only)
    meaning: str


#: metrics.csv: one row per store-and-learn call.
TRAIN_METRICS = (
    Metric("wall_s", None, "seconds since the clock origin (process start) when the row was "
           "recorded, after its learning call; a resumed run's sessions summed"),
    Metric("env_steps", None, "environment steps so far (the x axis of every TensorBoard curve)"),
    Metric("learn_steps", "charts/learn_steps", "learning steps (gradient updates) so far"),
    Metric("epsilon", "charts/epsilon", "exploration epsilon of the last collected vector step"),
    Metric("lr", "charts/lr", "Adam learning rate used by this call"),
    Metric("beta", "charts/beta", "importance-sampling exponent used by this call"),
    Metric("loss", "losses/td_loss", "mean importance-weighted Huber TD loss of this call's steps"),
    Metric("mean_q", "losses/q_values", "mean Q(s, a) over this call's sampled batches"),
    Metric("action_gap", "diagnostics/action_gap",
           "mean |Q(s,a1) - Q(s,a2)| over the envs' current states after this call"),
    Metric("doomed_max_q", "diagnostics/doomed_max_q",
           "mean max_a Q on the run's fixed set of doomed states (one step before termination)"),
    Metric("episodes", "charts/episodes", "training episodes finished so far"),
    Metric("train_return_mean", "charts/episodic_return",
           "mean standard return (+1 per step) of training episodes finished in this interval "
           "(epsilon-greedy, not the score)"),
    Metric("train_return_max", None, "best standard return of those episodes"),
    Metric("steps_per_s", "charts/SPS", "env steps per second of this session"),
    Metric("rss_mb", "perf/rss_mb", "resident memory of the process, MiB"),
)

#: eval.csv: one row per greedy evaluation round on standard CartPole-v1. Every statistic covers
#: all `eval_episodes` episodes of the round: rounds are played out, never cut at a failure.
EVAL_METRICS = (
    Metric("round", None, "evaluation round, 1-based"),
    Metric("wall_s", None, "seconds since the clock origin when the trainer collected the round's "
           "verdict (the worker played it earlier, while learning went on)"),
    Metric("env_steps", None, "training env steps of the weights that were evaluated"),
    Metric("learn_steps", None, "learning steps of the weights that were evaluated"),
    Metric("episodes", "eval/episodes", "episodes played in the round (all of them)"),
    Metric("mean", "eval/mean_return", "mean standard return over the round's episodes"),
    Metric("min", "eval/min_return", "lowest return in the round"),
    Metric("max", None, "highest return in the round"),
    Metric("at_500", "eval/episodes_at_500", "episodes of the round that scored 500"),
    Metric("passed", "eval/passed", "1 if every episode scored 500"),
    Metric("consecutive", "eval/consecutive_passed",
           "passing rounds in a row after this round (0 when its certificate failed)"),
    Metric("certificate_episodes", None,
           "never-seen episodes this round's snapshot played as a certificate (empty: none)"),
    Metric("certificate_at_500", "eval/certificate_at_500",
           "of those, episodes at 500 (all of them: the certificate passed)"),
)

METRICS_COLUMNS = tuple(m.column for m in TRAIN_METRICS)
EVAL_COLUMNS = tuple(m.column for m in EVAL_METRICS)
#: Columns that measure the machine, not the learning; they differ between identical runs.
TIMING_COLUMNS = ("wall_s", "steps_per_s", "rss_mb")
#: Training-episode length is the return under the standard reward (+1 per step).
EPISODIC_LENGTH_TAG = "charts/episodic_length"
#: TensorBoard tags of the solve event (written once, at the solve).
SOLVE_TAGS = {"solve_wall_s": "solve/wall_seconds", "solve_env_steps": "solve/env_steps",
              "solve_learn_steps": "solve/learn_steps"}


def tags(metrics: tuple[Metric, ...]) -> dict[str, str]:
    """CSV column -> TensorBoard tag, for the metrics that have one."""
    return {m.column: m.tag for m in metrics if m.tag}
