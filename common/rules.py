"""The solve rule and the stop rule, as pure functions of the evaluation history and the budgets.

The trainer, the sweep's progress reporting and the tests all use these, so "solved" means one
thing everywhere:

* A round **passes** when every one of its `eval_episodes` greedy episodes scores 500.
* `consecutive` counts passing rounds in a row; a failing round resets it to 0.
* The run is **solved** at the first round where `consecutive` reaches `solve_rounds`, and,
  when a certificate is asked for (`--certify-episodes`, on by default), only if that round's
  snapshot then plays every one of the certificate's never-seen episodes to 500
  (`after_certificate`); a failed certificate resets the streak and training goes on. Later
  rounds (with `--keep-training`) never un-solve the run; they are counted as post-solve rounds.
* `failure_rate_bound` is what a passed certificate proves: the exact one-sided upper bound on
  the per-episode failure rate (Clopper-Pearson with zero failures in n: 1 - (1 - c)^(1/n)).
* The run **stops** when solved and `keep_training` env steps have passed since the solve, or
  when a budget (`max_env_steps`, `max_seconds`) is spent. When several hold at once the solve
  wins, so a run that solved on its last allowed step is reported as solved, not as out of budget.

No TensorFlow, no I/O: everything here is a function of numbers, cheap to test with made-up
pass/fail sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

STOP_SOLVED, STOP_MAX_ENV_STEPS, STOP_MAX_SECONDS = "solved", "max_env_steps", "max_seconds"


@dataclass(frozen=True)
class SolveState:
    """Where a run stands with respect to the solve rule after some evaluation rounds."""
    rounds: int = 0
    consecutive: int = 0
    solved_at_round: int | None = None   # 1-based round index at which the rule was first met
    post_solve_rounds: int = 0
    post_solve_passed: int = 0

    @property
    def solved(self) -> bool:
        return self.solved_at_round is not None


def after_round(state: SolveState, passed: bool, solve_rounds: int) -> SolveState:
    """The state after one more evaluation round with verdict `passed`."""
    if solve_rounds <= 0:
        raise ValueError(f"solve_rounds must be positive, got {solve_rounds}")
    rounds = state.rounds + 1
    consecutive = state.consecutive + 1 if passed else 0
    if state.solved:
        return SolveState(rounds, consecutive, state.solved_at_round,
                          state.post_solve_rounds + 1, state.post_solve_passed + int(passed))
    solved_at = rounds if consecutive >= solve_rounds else None
    return SolveState(rounds, consecutive, solved_at)


def after_certificate(state: SolveState, passed: bool) -> SolveState:
    """The state after the certificate of the round that just completed the streak: kept as
    solved if it passed; otherwise not solved and the streak starts again from zero."""
    if passed:
        return state
    return SolveState(state.rounds, 0, None, state.post_solve_rounds, state.post_solve_passed)


def challenger_due(state: SolveState, solve_rounds: int) -> bool:
    """After the solve, a snapshot may challenge the certified model once per new streak: when
    the learner, having failed a round since the solve, again passes `solve_rounds` in a row."""
    return (state.solved and state.consecutive == solve_rounds
            and state.rounds - state.solved_at_round >= solve_rounds)


def failure_rate_bound(episodes: int, confidence: float = 0.95) -> float:
    """Upper `confidence` bound on the per-episode failure rate after `episodes` episodes
    without a failure (exact one-sided Clopper-Pearson; 1000 episodes give about 0.3%)."""
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    return 1.0 - (1.0 - confidence) ** (1.0 / episodes)


def replay(verdicts: Iterable[bool], solve_rounds: int, state: SolveState = SolveState()) -> SolveState:
    """Fold `after_round` over a sequence of round verdicts (e.g. eval.csv's `passed`)."""
    for passed in verdicts:
        state = after_round(state, bool(passed), solve_rounds)
    return state


def stop_reason(env_steps: int, wall_s: float, solve_env_steps: int | None, keep_training: int,
                max_env_steps: int, max_seconds: float | None, next_chunk: int = 0) -> str | None:
    """Why the run stops now, or None to go on.

    `solve_env_steps` is the env-step count at the solve (None if not solved); it is part of the
    checkpointed state, so a run resumed after its solve stops at the same point. `next_chunk`
    is the env steps the next chunk would take: a chunk that would pass `max_env_steps` is not
    started, so the budget is never overshot.
    """
    if solve_env_steps is not None and env_steps >= solve_env_steps + keep_training:
        return STOP_SOLVED
    if env_steps + next_chunk > max_env_steps or env_steps >= max_env_steps:
        return STOP_MAX_ENV_STEPS
    if max_seconds is not None and wall_s >= max_seconds:
        return STOP_MAX_SECONDS
    return None
