"""The solve and stop rules (rules.py) on made-up evaluation histories and budgets."""
from __future__ import annotations

import pytest

from common import rules
from common.rules import SolveState, after_round, replay, stop_reason

P, F = True, False


@pytest.mark.parametrize("verdicts, solved_at", [
    ([], None),
    ([P, P], None),                      # two in a row is not three
    ([P, P, P], 3),
    ([F, P, P, P], 4),
    ([P, P, F, P, P, P], 6),             # a failure resets the count
    ([P, F, P, F, P, P, F, P, P, P], 10),
    ([P, P, P, F, F, F], 3),             # failing after the solve never un-solves it
])
def test_solved_at_first_round_completing_the_streak(verdicts, solved_at):
    assert replay(verdicts, solve_rounds=3).solved_at_round == solved_at


def test_one_round_rule_solves_on_first_pass():
    assert replay([F, F, P], solve_rounds=1).solved_at_round == 3


def test_post_solve_rounds_are_counted_and_only_after_the_solve():
    s = replay([P, P, P, P, F, P, F], solve_rounds=3)
    assert (s.rounds, s.solved_at_round) == (7, 3)
    assert (s.post_solve_rounds, s.post_solve_passed) == (4, 2)
    assert s.consecutive == 0


def test_resuming_after_a_solve_continues_the_same_state():
    """A resumed run folds new rounds into the checkpointed state: same as one long history."""
    history = [F, P, P, P, P, F, P]
    whole = replay(history, 3)
    resumed = replay(history[4:], 3, state=replay(history[:4], 3))
    assert resumed == whole


def test_consecutive_keeps_counting_past_the_rule():
    s = replay([P] * 5, 3)
    assert (s.consecutive, s.solved_at_round, s.post_solve_passed) == (5, 3, 2)


def test_bad_rule_rejected():
    with pytest.raises(ValueError):
        after_round(SolveState(), True, 0)


BUDGET = dict(keep_training=0, max_env_steps=100_000, max_seconds=None)


def test_not_solved_within_budget_goes_on():
    assert stop_reason(50_000, 3.0, None, **BUDGET) is None


def test_stop_at_solve_without_keep_training():
    assert stop_reason(50_000, 3.0, 50_000, **BUDGET) == rules.STOP_SOLVED


def test_keep_training_runs_the_extra_steps_past_the_solve():
    kw = {**BUDGET, "keep_training": 8192}
    assert stop_reason(50_000 + 8191, 3.0, 50_000, **kw) is None
    assert stop_reason(50_000 + 8192, 3.0, 50_000, **kw) == rules.STOP_SOLVED


def test_resumed_after_solve_stops_by_checkpointed_solve_step():
    """The stop point is derived from the solve step, which the checkpoint carries."""
    kw = {**BUDGET, "keep_training": 10_000}
    assert stop_reason(55_000, 1.0, 50_000, **kw) is None
    assert stop_reason(60_000, 1.0, 50_000, **kw) == rules.STOP_SOLVED


def test_env_step_budget():
    assert stop_reason(100_000, 3.0, None, **BUDGET) == rules.STOP_MAX_ENV_STEPS
    assert stop_reason(99_999, 3.0, None, **BUDGET) is None


def test_time_budget():
    kw = {**BUDGET, "max_seconds": 10.0}
    assert stop_reason(10, 9.99, None, **kw) is None
    assert stop_reason(10, 10.0, None, **kw) == rules.STOP_MAX_SECONDS


def test_solve_wins_when_budgets_hit_on_the_same_step():
    kw = {**BUDGET, "max_seconds": 5.0}
    assert stop_reason(100_000, 6.0, 100_000, **kw) == rules.STOP_SOLVED


def test_keep_training_cut_short_by_a_budget_is_that_budget():
    kw = {**BUDGET, "keep_training": 200_000}
    assert stop_reason(100_000, 1.0, 60_000, **kw) == rules.STOP_MAX_ENV_STEPS


def test_a_failed_certificate_resets_the_streak_and_unsolves():
    s = replay([P, P, P], 3)
    assert s.solved
    s = rules.after_certificate(s, False)
    assert (s.solved, s.consecutive, s.rounds) == (False, 0, 3)
    # Training goes on: the next three passing rounds complete a new streak.
    assert replay([P, P], 3, state=s).solved is False
    assert replay([P, P, P], 3, state=s).solved_at_round == 6
    assert rules.after_certificate(replay([P, P, P], 3), True) == replay([P, P, P], 3)


@pytest.mark.parametrize("verdicts, due", [
    ([P, P, P], False),                  # the solving round itself is certified, not challenged
    ([P, P, P, P, P, P], False),         # the streak at the solve goes on: nothing new to offer
    ([P, P, P, F, P, P], False),
    ([P, P, P, F, P, P, P], True),       # a new streak after a failure: one challenge
    ([P, P, P, F, P, P, P, P], False),   # ... and not again on every round of it
    ([P, P, F, P, P], False),            # not solved: the certificate, not a challenge
])
def test_challenger_due_once_per_new_streak_after_the_solve(verdicts, due):
    assert rules.challenger_due(replay(verdicts, 3), 3) is due


def test_failure_rate_bound_is_the_exact_zero_failure_clopper_pearson_bound():
    from scipy import stats as st
    for n in (1, 64, 1000, 3000):
        # The upper end of the exact two-sided 90% interval is the one-sided 95% bound.
        assert rules.failure_rate_bound(n) == pytest.approx(st.beta.ppf(0.95, 1, n), rel=1e-9)
    assert rules.failure_rate_bound(1000) == pytest.approx(0.002991, abs=1e-6)
    with pytest.raises(ValueError):
        rules.failure_rate_bound(0)
