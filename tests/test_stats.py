"""Tests for stats.py: named edge cases and checks against computations written out here.

The independent references are plain NumPy on sorted arrays (order statistics, slicing for the
trimmed mean, our own resampling for the bootstrap), never the function under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import stats

RNG = np.random.default_rng(20240611)


def reference_trimmed_mean(x, proportion: float) -> float:
    x = np.sort(np.asarray(x, float))
    cut = int(len(x) * proportion)  # floor(n * p) from each end
    return float(x[cut:len(x) - cut].mean())


# --------------------------------------------------------------------------------------------
# Reading numbers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    (3, 3.0), (2.5, 2.5), ("12.5", 12.5), ("-4", -4.0), ("1e3", 1000.0),
    (None, None), ("", None), ("abc", None), ("True", None), ([1], None),
    (float("nan"), None), ("nan", None), (math.inf, None), ("-inf", None),
])
def test_finite_or_none(raw, expected):
    assert stats.finite_or_none(raw) == expected


def test_finite_values_drops_missing_nan_and_inf_in_order():
    assert stats.finite_values([1, None, "2", float("nan"), math.inf, "", "x", 0]) == [1.0, 2.0, 0.0]
    assert stats.finite_values([]) == []


# --------------------------------------------------------------------------------------------
# Median, mean, trimmed means
# --------------------------------------------------------------------------------------------
def test_empty_input_gives_none_not_nan():
    assert stats.median([]) is None
    assert stats.mean([]) is None
    assert stats.median_counting_unsolved([], 0) is None


def test_one_value_is_its_own_median_mean_and_iqm():
    assert stats.median([7.5]) == 7.5 and stats.mean([7.5]) == 7.5
    assert float(stats.iqm([7.5])) == 7.5


def test_all_equal_values():
    x = [4.0] * 9
    assert stats.median(x) == 4.0 and stats.mean(x) == 4.0 and float(stats.iqm(x)) == 4.0


@pytest.mark.parametrize("n", [2, 5, 8, 21])
def test_median_and_mean_match_numpy_percentile_and_sum(n):
    x = RNG.normal(40, 12, n).tolist()
    assert stats.median(x) == pytest.approx(float(np.percentile(x, 50)))
    assert stats.mean(x) == pytest.approx(math.fsum(x) / n)


@pytest.mark.parametrize("n", range(1, 14))
def test_iqm_cuts_floor_n_over_4_from_each_end(n):
    x = RNG.exponential(30, n)
    assert float(stats.iqm(x)) == pytest.approx(reference_trimmed_mean(x, 0.25))
    if n < 4:  # nothing is cut: the plain mean
        assert float(stats.iqm(x)) == pytest.approx(x.mean())


def test_iqm_of_a_known_set_and_along_an_axis():
    assert float(stats.iqm([10, 30, 12, 14])) == pytest.approx(13.0)  # 10 and 30 cut
    rows = RNG.normal(size=(3, 8))
    assert np.allclose(stats.iqm(rows, axis=-1), [reference_trimmed_mean(r, 0.25) for r in rows])


@pytest.mark.parametrize("proportion", [0.0, 0.1, 0.2, 0.4])
def test_trimmed_mean_matches_slicing(proportion):
    x = RNG.normal(0, 5, 17)
    assert float(stats.trimmed_mean(x, proportion)) == pytest.approx(reference_trimmed_mean(x, proportion))


# --------------------------------------------------------------------------------------------
# Counting unsolved runs as never solving
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solved, n_unsolved, expected", [
    ([10.0, 30.0], 1, 30.0),           # 10, 30, inf -> the middle one
    ([10.0, 20.0, 30.0], 1, 25.0),     # 10, 20, 30, inf -> mean of 20 and 30
    ([5.0], 2, math.inf),              # most runs never solved
    ([5.0, 9.0], 2, math.inf),         # exactly half: the middle pair includes inf
    ([], 3, math.inf),
    ([12.0], 0, 12.0),
    ([30.0, 10.0, 20.0], 0, 20.0),     # input order does not matter
])
def test_median_counting_unsolved(solved, n_unsolved, expected):
    assert stats.median_counting_unsolved(solved, n_unsolved) == expected


def test_median_counting_unsolved_matches_order_statistics():
    solved = RNG.uniform(5, 100, 11)
    for n_unsolved in range(0, 12):
        everything = np.sort(np.concatenate([solved, np.full(n_unsolved, np.inf)]))
        n = len(everything)
        ref = everything[n // 2] if n % 2 else (everything[n // 2 - 1] + everything[n // 2]) / 2
        assert stats.median_counting_unsolved(solved.tolist(), n_unsolved) == ref


# --------------------------------------------------------------------------------------------
# Bootstrap confidence intervals
# --------------------------------------------------------------------------------------------
def test_bootstrap_small_inputs_give_no_interval():
    assert stats.bootstrap_estimate([], stats.iqm) == {"value": None, "ci_low": None, "ci_high": None}
    for x in ([3.0], [3.0, 5.0]):
        assert stats.bootstrap_estimate(x, stats.iqm) == {"value": 4.0 if len(x) == 2 else 3.0,
                                                          "ci_low": None, "ci_high": None}


def test_bootstrap_all_equal_gives_a_zero_width_interval():
    assert stats.bootstrap_estimate([8.0] * 6, stats.iqm) == {"value": 8.0, "ci_low": 8.0, "ci_high": 8.0}


def test_bootstrap_matches_our_own_percentile_resampling():
    x = RNG.normal(50, 10, 30)
    est = stats.bootstrap_estimate(x, stats.iqm)
    assert est["value"] == pytest.approx(reference_trimmed_mean(x, 0.25))
    # Independent resampling (another generator): the same 2.5th/97.5th percentiles up to
    # Monte Carlo error, which with 10,000 resamples is far below the 0.2 allowed here (the
    # interval is ~5 wide; a 90% interval would move each end by ~0.8).
    idx = np.random.default_rng(7).integers(0, len(x), (10_000, len(x)))
    lo, hi = np.percentile(stats.iqm(x[idx], axis=-1), [2.5, 97.5])
    assert est["ci_low"] == pytest.approx(lo, abs=0.2)
    assert est["ci_high"] == pytest.approx(hi, abs=0.2)
    assert stats.bootstrap_estimate(x, stats.iqm) == est  # fixed seed: reproducible


# --------------------------------------------------------------------------------------------
# The time-to-solve summary and the spread of a per-seed fraction
# --------------------------------------------------------------------------------------------
def test_solve_stats_against_numpy():
    times = [41.0, 55.5, 38.2, 120.0, 47.9, 60.1]
    s = stats.solve_stats(times, n_ran=8)
    assert (s["n"], s["excluded_unsolved"]) == (6, 2)
    assert s["median"]["value"] == pytest.approx(np.percentile(times, 50))
    assert s["iqm"]["value"] == pytest.approx(reference_trimmed_mean(times, 0.25))
    assert (s["mean"], s["min"], s["max"]) == (pytest.approx(np.mean(times)), 38.2, 120.0)
    for est in (s["median"], s["iqm"]):
        assert min(times) <= est["ci_low"] <= est["value"] <= est["ci_high"] <= max(times)
    # 38.2 41 47.9 55.5 60.1 120 inf inf: the 4th and 5th of 8 sorted values, both finite.
    assert s["median_all_seeds"] == {"value": pytest.approx((55.5 + 60.1) / 2), "infinite": False, "n": 8}


def test_solve_stats_half_unsolved_and_nothing_ran():
    s = stats.solve_stats([30.0, 50.0], n_ran=4)
    assert s["median_all_seeds"] == {"value": None, "infinite": True, "n": 4}
    assert s["median"] == {"value": 40.0, "ci_low": None, "ci_high": None}
    none = stats.solve_stats([], n_ran=0)
    assert none["n"] == 0 and none["mean"] is None and none["min"] is None
    assert none["median"]["value"] is None
    assert none["median_all_seeds"] == {"value": None, "infinite": False, "n": 0}


def test_spread_skips_missing_entries():
    s = stats.spread([None, float("nan"), 0.5, 1.0, "0.75", ""])
    assert s == {"n": 3, "min": 0.5, "median": 0.75, "mean": 0.75, "max": 1.0}
    assert stats.spread([]) == {"n": 0, "min": None, "median": None, "mean": None, "max": None}
    assert stats.spread([0.9] * 4) == {"n": 4, "min": 0.9, "median": 0.9, "mean": pytest.approx(0.9), "max": 0.9}


def test_ratio_of_medians_value_and_degenerate_cases():
    r = stats.ratio_of_medians([30.0, 40.0, 50.0], [5.0, 10.0, 15.0])
    assert r["value"] == pytest.approx(4.0) and r["ci_low"] <= 4.0 <= r["ci_high"]
    assert stats.ratio_of_medians([], [1.0])["value"] is None
    assert stats.ratio_of_medians([1.0], [0.0])["value"] is None
    assert stats.ratio_of_medians([1.0], [math.inf, math.inf])["value"] is None
    few = stats.ratio_of_medians([2.0, 4.0], [1.0, 1.0, 1.0])
    assert few["value"] == 3.0 and few["ci_low"] is None  # under MIN_FOR_CI runs a side
    same = stats.ratio_of_medians([6.0] * 4, [2.0] * 5)
    assert (same["value"], same["ci_low"], same["ci_high"]) == (3.0, 3.0, 3.0)


def test_ratio_of_medians_interval_is_an_order_statistic_of_possible_ratios():
    # With odd group sizes a resampled median is one of the values, so both ends of the
    # interval are ratios of one numerator value to one denominator value, inf included.
    num, den = [30.0, 40.0, math.inf, 35.0, 45.0], [6.0, 7.0, 8.0]
    r = stats.ratio_of_medians(num, den)
    possible = {a / b for a in num for b in den}
    assert r["ci_low"] in possible and r["ci_high"] in possible
    assert r["value"] == pytest.approx(40.0 / 7.0)
    assert r["ci_low"] < r["value"] < r["ci_high"]
