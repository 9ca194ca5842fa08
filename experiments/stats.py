"""Statistics over seeds and trials, in one place for every report that summarises runs.

Used by the multi-seed report (`seeds_report.py`), the sweep report (`sweep_report.py`) and the
benchmarks (`benchmarks/bench_solve.py`, `benchmarks/compare_peers.py`). Pure functions of lists
of numbers: no files, no plotting, so each can be checked against an independent computation.

Conventions, chosen once here so the reports agree with each other:

* Missing values: result files hold numbers as JSON values or CSV strings, and a run that did
  not get that far holds None, "" or NaN. `finite_or_none` turns any of them into a float or
  None, and every statistic below is None for an empty input rather than NaN or an exception.
* IQM (interquartile mean) follows Agarwal et al. 2021 ("Deep RL at the edge of the statistical
  precipice") and rliable: `scipy.stats.trim_mean(x, 0.25)`, which cuts floor(n/4) values from
  each end, so for fewer than four values it is the plain mean.
* Time-to-solve statistics are over solved runs only; `median_counting_unsolved` gives the
  honest companion, with an unsolved run counted as never solving (+inf), so it is infinite
  once half or more of the runs failed and cannot flatter an unreliable configuration.
* Confidence intervals are percentile bootstraps (rliable's default; BCa's jackknife breaks down
  on the ties small seed counts produce) with a fixed generator seed, so a report regenerated
  from the same runs shows the same numbers. The `rliable` package itself is not used: it pulls
  in a heavy stack (arch, statsmodels, seaborn) for what is, with one task and tens of seeds, a
  plain percentile bootstrap.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

#: The bootstrap behind every confidence interval; written into reports as their footnote.
BOOTSTRAP = {"method": "percentile", "n_resamples": 10_000, "confidence_level": 0.95, "seed": 20210901}
#: With fewer values a resampled interval says nothing the raw values don't, so none is given.
MIN_FOR_CI = 3


def finite_or_none(v: Any) -> float | None:
    """A number from a CSV/JSON field, or None for missing, non-numeric, NaN or infinite."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def finite_values(values: Iterable[Any]) -> list[float]:
    """The finite numbers among `values`, in order; None, NaN, inf and non-numbers dropped."""
    return [f for v in values if (f := finite_or_none(v)) is not None]


def median(values: Iterable[float]) -> float | None:
    """Median as a float, or None when there are no values."""
    x = np.asarray(list(values), dtype=float)
    return float(np.median(x)) if len(x) else None


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean as a float, or None when there are no values."""
    x = np.asarray(list(values), dtype=float)
    return float(x.mean()) if len(x) else None


def trimmed_mean(values: Any, proportion_cut: float, axis: int = -1) -> Any:
    """Mean after cutting floor(n * proportion_cut) values from each end (scipy's trim_mean).

    Works along `axis` so that the bootstrap can evaluate many resamples in one call.
    """
    from scipy.stats import trim_mean  # scipy costs ~0.3 s to import; only reports need it
    return trim_mean(values, proportion_cut, axis=axis)


def iqm(values: Any, axis: int = -1) -> Any:
    """Interquartile mean: floor(n/4) values cut from each end (the middle 50% only when 4
    divides n: for n = 10 it keeps 6), as rliable's aggregate_iqm, which is this same call."""
    return trimmed_mean(values, 0.25, axis=axis)


def median_counting_unsolved(solved: Iterable[float], n_unsolved: int) -> float | None:
    """Median over all runs with each unsolved run counted as +inf (never solving).

    Finite only while more than half of the runs solved; None when there are no runs at all.
    """
    x = np.concatenate([np.asarray(list(solved), dtype=float), np.full(n_unsolved, np.inf)])
    return float(np.median(x)) if len(x) else None


def _median_along(values: Any, axis: int = -1) -> Any:
    return np.median(values, axis=axis)


def bootstrap_estimate(values: Iterable[float], stat: Callable[..., Any]) -> dict[str, Any]:
    """`stat(values)` with a percentile-bootstrap interval per BOOTSTRAP.

    `stat` must accept an `axis` argument (like np.median or `iqm`). Returns value / ci_low /
    ci_high, all None for no values and only the value below MIN_FOR_CI values; when every
    value is equal, every resample is too, so the interval is that value.
    """
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    value = float(stat(x))
    if len(x) < MIN_FOR_CI:
        return {"value": value, "ci_low": None, "ci_high": None}
    if np.ptp(x) == 0:
        return {"value": value, "ci_low": value, "ci_high": value}
    from scipy.stats import bootstrap
    res = bootstrap((x,), stat, vectorized=True, axis=-1,
                    n_resamples=BOOTSTRAP["n_resamples"], method=BOOTSTRAP["method"],
                    confidence_level=BOOTSTRAP["confidence_level"],
                    rng=np.random.default_rng(BOOTSTRAP["seed"]))
    ci = res.confidence_interval
    return {"value": value, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def solve_stats(solved: Iterable[float], n_ran: int) -> dict[str, Any]:
    """Time (or steps) to solve over the solved runs, out of `n_ran` runs that finished.

    Median and IQM with bootstrap intervals, mean, min, max over the solved values, how many
    unsolved runs that excludes, and the median over all runs with unsolved ones as never.
    """
    x = np.sort(np.asarray(list(solved), dtype=float))
    n_unsolved = n_ran - len(x)
    med_all = median_counting_unsolved(x, n_unsolved) if n_ran else median(x)
    return {
        "n": int(len(x)),
        "excluded_unsolved": int(n_unsolved),
        "median": bootstrap_estimate(x, _median_along),
        "iqm": bootstrap_estimate(x, iqm),
        "mean": mean(x),
        "min": float(x[0]) if len(x) else None,
        "max": float(x[-1]) if len(x) else None,
        "median_all_seeds": {"value": med_all if med_all is not None and math.isfinite(med_all) else None,
                             "infinite": med_all is not None and math.isinf(med_all),
                             "n": int(n_ran)},
    }


def spread(values: Iterable[Any]) -> dict[str, Any]:
    """n, min, median, mean and max of the finite values (missing and NaN entries skipped)."""
    x = finite_values(values)
    return {"n": len(x), "min": min(x) if x else None, "median": median(x), "mean": mean(x),
            "max": max(x) if x else None}


def ratio_of_medians(numerator: Iterable[float], denominator: Iterable[float]) -> dict[str, Any]:
    """median(numerator) / median(denominator), two independent groups of runs (e.g. a peer's
    seconds to solve over ours), with a percentile-bootstrap interval per BOOTSTRAP: each group
    resampled on its own, the ratio of the resampled medians, its 2.5th and 97.5th percentiles.

    An unsolved run enters as +inf (never solving), so a ratio can be infinite; the percentiles
    are then order statistics of the resampled ratios (no interpolation towards inf). None
    throughout for an empty group or a zero or infinite denominator median; no interval below
    MIN_FOR_CI runs a group, or when a denominator run is infinite.
    """
    x = np.asarray(list(numerator), dtype=float)
    y = np.asarray(list(denominator), dtype=float)
    none = {"value": None, "ci_low": None, "ci_high": None}
    if not len(x) or not len(y):
        return none
    den = float(np.median(y))
    if den <= 0 or not math.isfinite(den):
        return none
    value = float(np.median(x)) / den
    if min(len(x), len(y)) < MIN_FOR_CI or not np.isfinite(y).all():
        return {**none, "value": value}
    rng = np.random.default_rng(BOOTSTRAP["seed"])
    n = BOOTSTRAP["n_resamples"]
    mx = np.median(x[rng.integers(0, len(x), (n, len(x)))], axis=1)
    my = np.median(y[rng.integers(0, len(y), (n, len(y)))], axis=1)
    tail = (1.0 - BOOTSTRAP["confidence_level"]) / 2
    low, high = np.quantile(mx / my, [tail, 1.0 - tail], method="inverted_cdf")
    return {"value": value, "ci_low": float(low), "ci_high": float(high)}
