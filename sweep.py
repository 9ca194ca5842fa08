"""Hyperparameter and seed sweeps of the CartPole trainer on Ray Tune.

Entry point: `run_sweep(spec_path, log_dir)`, reached as `python cartpole.py --sweep SPEC.yaml
--log-dir DIR [--ray-address ADDR]`. Ray is imported only here, and only when a sweep runs.

Design
------
* **We expand the trial list ourselves; Tune schedules it.** The YAML spec is parsed into
  dimensions, and every trial (grid point x random draw x seed) is built up front with a seeded
  `random.Random`, turned into a `TrainConfig` and checked with `validate()` *before* Ray starts.
  A typo in the 12th grid value therefore costs milliseconds and one line, not a cluster start
  and a failed trial. Tune receives only a `grid_search` over trial indices, and still owns
  concurrency, resources, the ASHA scheduler and fault isolation. The price is that Tune's own
  search algorithms (Optuna, HyperOpt, ...) are not used; for a problem that solves in seconds,
  grid and random search are what we want anyway.
* **Seeds are the innermost grid dimension.** Every sampled configuration runs once per seed
  with identical hyperparameters (a random draw is shared by its seeds, unlike Tune's native
  sampling, which would redraw per grid point). That is what makes per-configuration statistics
  (success rate, median and IQM time-to-solve) meaningful.
* **One trial = one fresh Ray worker process** (`reuse_actors=False`). TensorFlow's graphs, thread
  pools and memory cannot leak between trials. Each trial calls `train_fn(cfg, on_eval=...)`
  with `log_dir=DIR/trials/<trial name>`, `quiet=True`, `profile=False`, `graphics=False`, and
  reports every evaluation round to Tune (so ASHA can cut poor trials), then one final row
  carrying the run's summary.
* **A failing trial never stops the sweep.** Exceptions from the trainer (ConfigError,
  TrainingFault on a NaN loss, anything else) are caught inside the trainable and reported as a
  final row with `status="failed"` and a one-line error; faults that kill the worker process are
  caught by Tune (`FailureConfig(max_failures=0, fail_fast=False)`) and read back from the result
  grid. `SystemExit`, which Tune raises inside `tune.report` to stop a trial, is deliberately not
  caught.
* **Results are the driver's job.** `DIR/sweep.csv` is rewritten (atomically, via run_log) each
  time a trial ends, so an interrupted sweep still leaves its finished rows; `sweep.md` and
  `sweep.png` are written at the end. Per-trial logs stay in `DIR/trials/`, Tune's own files in
  `DIR/ray_tune/`.

Spec (YAML; see examples/sweep_small.yaml and examples/sweep_grid16.yaml)
-------------------------------------------------------------------------
    name: grid16                      # optional, shown in reports
    search_space:                     # TrainConfig field -> value or distribution
      lr: {grid: [1.0e-3, 5.0e-3]}    # every value (grids multiply)
      hidden: {choice: ["12,12", "64,64"]}   # one at random per configuration
      gamma: {uniform: [0.99, 0.999]}        # uniform / loguniform: [low, high]
      batch_size: 512                 # a fixed value (hidden also takes [64, 64])
    num_samples: 4                    # random draws per grid point (default 1)
    sample_seed: 0                    # seeds the draws: same spec, same trials
    seeds: [0, 1, 2]                  # or a count: 3 -> [0, 1, 2]; default [0]
    metric: time_to_solve             # or env_steps_to_solve
    max_concurrent: 2                 # default: as many as the CPUs allow
    resources_per_trial: {cpu: 1}     # also gpu
    scheduler: asha                   # or none (default); the three keys below need asha
    grace_period: 8                   # eval rounds before ASHA's first cut (default 8)
    max_t: 500                        # eval rounds after which ASHA stops any trial (500)
    reduction_factor: 2               # default 2
    budget: {max_env_steps: 400000, max_seconds: 180}   # also keep_training, confirm_episodes
`seed`, `log_dir`, `quiet`, `profile` and `graphics` are set by the sweep, never by the spec.
ASHA ranks trials on their evaluation mean at rungs of `grace_period`, 2x, 4x, ... evaluation
rounds (Tune's `training_iteration`); a trial it stops after its solving round still counts as
solved, because every reported round carries the solved-so-far flag and time.

Ranking (`metric: time_to_solve`, or `env_steps_to_solve`): solved trials first, fastest first;
then unsolved trials by best evaluation mean (higher first); failed trials last. Configurations
(a configuration = one set of hyperparameters over all its seeds) are ranked by success rate,
then by median time-to-solve over their solved seeds, then by mean best evaluation mean.

Exit code of `run_sweep`: 0 if at least one trial solved, 3 if trials ran but none solved (the
trainer's "unsolved" code), 1 if every trial failed. Bad specs and a missing Ray raise
`SweepError` (a `ValueError` with a one-line message; the CLI prints it and exits 2).
"""
from __future__ import annotations

import dataclasses
import difflib
import io
import itertools
import logging
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from config import ConfigError, TrainConfig, parse_hidden
import run_log

TrainFn = Callable[..., dict]

RAY_MISSING = ("Ray is not installed: pip install -r requirements-sweep.txt "
               "(or ./run_cartpole_training.sh --sweep ... after that)")
YAML_MISSING = ("PyYAML is not installed: pip install -r requirements-sweep.txt "
                "(or ./run_cartpole_training.sh --sweep ... after that)")

SWEEP_CSV, SWEEP_MD, SWEEP_PNG = "sweep.csv", "sweep.md", "sweep.png"
SPEC_COPY, TRIALS_JSON = "sweep_spec.yaml", "sweep_trials.json"
TRIALS_DIR, TUNE_DIR = "trials", "ray_tune"

SPEC_KEYS = ("name", "search_space", "seeds", "num_samples", "sample_seed", "metric",
             "max_concurrent", "resources_per_trial", "scheduler", "grace_period", "max_t",
             "reduction_factor", "budget")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform")
METRICS = {"time_to_solve": "solve_wall_s", "env_steps_to_solve": "solve_env_steps"}
METRIC_LABELS = {"time_to_solve": "time to solve (s)", "env_steps_to_solve": "env steps to solve"}
#: The only fields `budget:` may set: they bound a trial's cost, not what it learns.
BUDGET_FIELDS = ("max_env_steps", "max_seconds", "keep_training", "confirm_episodes")
#: Fields the sweep sets itself, with the reason shown when a spec tries to.
RESERVED_FIELDS = {
    "log_dir": "each trial logs to DIR/trials/<trial name>",
    "seed": "use the top-level 'seeds:' key",
    "quiet": "trials always run quiet",
    "profile": "trials never run under cProfile",
    "graphics": "trials never render",
}
MAX_TRIALS = 10_000  # a guard against a grid that multiplies out by accident
MAX_SEED = 2**31  # the trainer's own --seed limit (exclusive)

CSV_RESULT_COLUMNS = ("status", "solved", "solve_wall_s", "solve_env_steps", "best_eval_mean",
                      "confirm_mean_return", "eval_rounds", "total_env_steps", "total_wall_s",
                      "stop_reason", "error", "log_dir")


class SweepError(ValueError):
    """A sweep cannot start (bad spec, Ray missing, cluster unreachable); one line for the user."""


# ------------------------------------------------------------------------------------------------
# Spec
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One `search_space` entry: a fixed value, a grid, a random choice or a random range."""
    name: str
    kind: str  # "fixed" | "grid" | "choice" | "uniform" | "loguniform"
    values: tuple[Any, ...] = ()  # fixed (one value), grid and choice
    low: float | None = None  # uniform and loguniform
    high: float | None = None
    integer: bool = False  # round draws of uniform/loguniform (int fields)

    @property
    def varies(self) -> bool:
        return self.kind != "fixed" and not (self.kind in ("grid", "choice") and len(self.values) == 1)

    @property
    def is_random(self) -> bool:
        return self.kind in ("choice", "uniform", "loguniform")

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        assert self.low is not None and self.high is not None
        if self.kind == "uniform":
            x = rng.uniform(self.low, self.high)
        else:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        # Clamp: exp(log(x)) can land a hair outside the bounds, which validate() may reject.
        x = min(max(x, self.low), self.high)
        return int(round(x)) if self.integer else x

    def describe(self) -> str:
        if self.kind == "fixed":
            return display_value(self.values[0])
        if self.kind in ("grid", "choice"):
            # Widths like 64,64 would blur into the list's own commas: bracket them.
            shown = (f"({display_value(v)})" if isinstance(v, tuple) else display_value(v)
                     for v in self.values)
            return f"{self.kind} [{', '.join(shown)}]"
        return f"{self.kind} [{display_value(self.low)}, {display_value(self.high)}]"


@dataclass
class SweepSpec:
    dimensions: list[Dimension]
    seeds: list[int] = field(default_factory=lambda: [0])
    num_samples: int = 1
    sample_seed: int = 0
    metric: str = "time_to_solve"
    max_concurrent: int | None = None
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0})
    scheduler: str = "none"
    grace_period: int = 8
    max_t: int = 500
    reduction_factor: float = 2.0
    budget: dict[str, Any] = field(default_factory=dict)
    name: str = "sweep"

    @property
    def fields(self) -> list[str]:
        """Every search_space field, in spec order (the CSV's hyperparameter columns)."""
        return [d.name for d in self.dimensions]

    @property
    def varying(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.varies]

    @property
    def metric_key(self) -> str:
        return METRICS[self.metric]


@dataclass
class Trial:
    index: int
    name: str
    config_index: int
    seed: int
    params: dict[str, Any]  # the search_space values of this trial, by field
    overrides: dict[str, Any]  # every TrainConfig change (params + budget + seed), JSON-able

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fail(where: str, message: str) -> SweepError:
    return SweepError(f"sweep spec: {where}: {message}")


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _field_kind(name: str) -> tuple[str, bool]:
    """('int'|'float'|'str'|'bool'|'widths', nullable) from the dataclass annotation string."""
    annotation = str(_FIELDS[name].type)
    nullable = "None" in annotation
    if annotation.startswith("tuple"):
        return "widths", nullable
    return annotation.split("|")[0].strip(), nullable


def coerce_value(name: str, value: Any, where: str) -> Any:
    """Turn a YAML value into the field's type, or raise a one-line SweepError.

    Numeric strings are accepted on purpose: YAML 1.1 (PyYAML) reads `1e-3` as the *string*
    "1e-3" (it wants `1.0e-3`), and rejecting the most natural way to write a learning rate would
    be hostile.
    """
    kind, nullable = _field_kind(name)
    if value is None:
        if nullable:
            return None
        raise _fail(where, "null is not allowed here")
    if kind == "widths":
        try:
            widths = parse_hidden(value)
        except (ConfigError, TypeError):
            raise _fail(where, f"expected widths like 64,64 or [64, 64], got {value!r}") from None
        if not widths:
            raise _fail(where, "needs at least one layer width")
        return widths
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(where, f"expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(where, f"expected a string, got {value!r}")
        choices = _FIELDS[name].metadata.get("choices")
        if choices and value not in choices:
            raise _fail(where, f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    # int / float
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(where, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _fail(where, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _fail(where, f"expected a finite number, got {value!r}")
    if kind == "int":
        if isinstance(value, int):
            return value
        if not number.is_integer():
            raise _fail(where, f"expected an integer, got {value!r}")
        return int(number)
    return number


def _parse_dimension(name: str, raw: Any) -> Dimension:
    where = f"search_space.{name}"
    if name in RESERVED_FIELDS:
        raise _fail(where, f"cannot be swept: {RESERVED_FIELDS[name]}")
    if name not in _FIELDS:
        raise _fail(where, "not a TrainConfig field" + _suggest(name, _FIELDS))
    kind, _ = _field_kind(name)
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
            keys = ", ".join(map(str, raw)) or "nothing"
            raise _fail(where, f"expected one of {{{', '.join(k + ': ...' for k in DISTRIBUTIONS)}}}, "
                               f"got {keys}")
        dist, arg = next(iter(raw.items()))
        where = f"{where}.{dist}"
        if dist in ("grid", "choice"):
            if not isinstance(arg, list) or not arg:
                raise _fail(where, "expected a non-empty list of values")
            values = tuple(coerce_value(name, v, f"{where}[{i}]") for i, v in enumerate(arg))
            if dist == "grid" and len(set(values)) != len(values):
                raise _fail(where, "has duplicate values (each would run twice)")
            return Dimension(name, dist, values)
        if kind not in ("int", "float"):
            raise _fail(where, f"{dist} needs a numeric field; use grid or choice for {name}")
        if not isinstance(arg, list) or len(arg) != 2:
            raise _fail(where, "expected [low, high]")
        lo = float(coerce_value(name, arg[0], f"{where}[0]"))
        hi = float(coerce_value(name, arg[1], f"{where}[1]"))
        if not lo < hi:
            raise _fail(where, f"low must be below high, got [{display_value(lo)}, {display_value(hi)}]")
        if dist == "loguniform" and lo <= 0:
            raise _fail(where, f"low must be positive, got {display_value(lo)}")
        return Dimension(name, dist, low=lo, high=hi, integer=kind == "int")
    if isinstance(raw, list) and kind != "widths":
        # A bare list is ambiguous (grid or random choice?), so we make the author say which.
        raise _fail(where, "a bare list is ambiguous: write {grid: [...]} or {choice: [...]}")
    return Dimension(name, "fixed", (coerce_value(name, raw, where),))


def _int(raw: Any, where: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise _fail(where, f"expected an integer >= {minimum}, got {raw!r}")
    return raw


def _parse_seeds(raw: Any) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= MAX_TRIALS:
            raise _fail("seeds", f"a count must be in [1, {MAX_TRIALS}], got {raw}")
        return list(range(raw))
    if not isinstance(raw, list) or not raw:
        raise _fail("seeds", f"expected a count or a non-empty list of seeds, got {raw!r}")
    seeds = []
    for i, s in enumerate(raw):
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < MAX_SEED:
            raise _fail(f"seeds[{i}]", f"expected an integer in [0, 2^31), got {s!r}")
        seeds.append(s)
    if len(set(seeds)) != len(seeds):
        raise _fail("seeds", "has duplicates")
    return seeds


def parse_spec(raw: Any) -> SweepSpec:
    """Check a loaded YAML document and return the spec; every problem is a one-line SweepError."""
    if not isinstance(raw, dict):
        raise SweepError(f"sweep spec: expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise _fail(str(key), "unknown key" + _suggest(str(key), SPEC_KEYS)
                        + f"; known keys: {', '.join(SPEC_KEYS)}")
    space = raw.get("search_space")
    if not isinstance(space, dict) or not space:
        raise _fail("search_space", "expected a non-empty mapping of TrainConfig fields")
    spec = SweepSpec(dimensions=[_parse_dimension(str(k), v) for k, v in space.items()])

    if "name" in raw:
        if not isinstance(raw["name"], str) or not raw["name"].strip():
            raise _fail("name", f"expected a non-empty string, got {raw['name']!r}")
        spec.name = raw["name"].strip()
    if "seeds" in raw:
        spec.seeds = _parse_seeds(raw["seeds"])
    if "num_samples" in raw:
        spec.num_samples = _int(raw["num_samples"], "num_samples", 1)
    if spec.num_samples > 1 and not any(d.is_random for d in spec.dimensions):
        raise _fail("num_samples", "needs a choice/uniform/loguniform dimension to draw from "
                                   "(use seeds: for repeats)")
    if "sample_seed" in raw:
        spec.sample_seed = _int(raw["sample_seed"], "sample_seed", 0)
    if "metric" in raw:
        if raw["metric"] not in METRICS:
            raise _fail("metric", f"must be one of {', '.join(METRICS)}, got {raw['metric']!r}")
        spec.metric = raw["metric"]
    if raw.get("max_concurrent") is not None:
        spec.max_concurrent = _int(raw["max_concurrent"], "max_concurrent", 1)
    if "resources_per_trial" in raw:
        res = raw["resources_per_trial"]
        if not isinstance(res, dict) or not res:
            raise _fail("resources_per_trial", f"expected a mapping like {{cpu: 1}}, got {res!r}")
        spec.resources = {}
        for k, v in res.items():
            if k not in ("cpu", "gpu"):
                raise _fail(f"resources_per_trial.{k}", "unknown resource; use cpu and/or gpu")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "cpu" and v <= 0):
                raise _fail(f"resources_per_trial.{k}", f"expected a {'positive' if k == 'cpu' else 'non-negative'} "
                                                        f"number, got {v!r}")
            spec.resources[k] = float(v)
        spec.resources.setdefault("cpu", 1.0)
    if "scheduler" in raw:
        sched = raw["scheduler"]
        # YAML reads a bare `none` as the string "none" but `null`/`~` as None; accept both.
        sched = "none" if sched is None else sched
        if sched not in ("asha", "none"):
            raise _fail("scheduler", f"must be asha or none, got {sched!r}")
        spec.scheduler = sched
    asha_keys = [k for k in ("grace_period", "max_t", "reduction_factor") if k in raw]
    if asha_keys and spec.scheduler != "asha":
        raise _fail(asha_keys[0], "only applies with scheduler: asha")
    if "grace_period" in raw:
        spec.grace_period = _int(raw["grace_period"], "grace_period", 1)
    if "max_t" in raw:
        spec.max_t = _int(raw["max_t"], "max_t", 1)
    if spec.max_t < spec.grace_period:
        raise _fail("max_t", f"must be >= grace_period ({spec.grace_period}), got {spec.max_t}")
    if "reduction_factor" in raw:
        rf = raw["reduction_factor"]
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or rf <= 1:
            raise _fail("reduction_factor", f"expected a number > 1, got {rf!r}")
        spec.reduction_factor = float(rf)
    if "budget" in raw:
        budget = raw["budget"]
        if not isinstance(budget, dict):
            raise _fail("budget", f"expected a mapping like {{max_env_steps: 200000}}, got {budget!r}")
        for k, v in budget.items():
            if k not in BUDGET_FIELDS:
                raise _fail(f"budget.{k}", f"not a budget field; budget takes {', '.join(BUDGET_FIELDS)}"
                                           + _suggest(str(k), BUDGET_FIELDS))
            if k in space:
                raise _fail(f"budget.{k}", "is also in search_space; set it in one place")
            spec.budget[k] = coerce_value(k, v, f"budget.{k}")
    return spec


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a YAML spec file."""
    try:
        import yaml
    except ImportError:
        raise SweepError(YAML_MISSING) from None
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SweepError(f"cannot read sweep spec {path}: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SweepError(f"sweep spec {path}: invalid YAML{at}: {problem}") from None
    return parse_spec(raw)


# ------------------------------------------------------------------------------------------------
# Trials
# ------------------------------------------------------------------------------------------------
def display_value(v: Any) -> str:
    """A compact, stable text form for tables, CSV cells and trial descriptions."""
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def config_from_overrides(overrides: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    changes = dict(overrides)
    if "hidden" in changes:
        changes["hidden"] = parse_hidden(changes["hidden"])
    return (base or TrainConfig()).replace(**changes)


def expand_trials(spec: SweepSpec, base: TrainConfig | None = None) -> list[Trial]:
    """Every trial of the sweep, each config checked with TrainConfig.validate().

    Order: for each of `num_samples` draws, the full grid (first search_space field varies
    slowest); within a configuration, its seeds. Random values are drawn once per configuration,
    from `random.Random(sample_seed)`, so the same spec always yields the same trials.
    """
    grid_dims = [d for d in spec.dimensions if d.kind == "grid"]
    n_configs = spec.num_samples * math.prod(len(d.values) for d in grid_dims)
    n_trials = n_configs * len(spec.seeds)
    if n_trials > MAX_TRIALS:
        raise _fail("search_space", f"expands to {n_trials} trials; the limit is {MAX_TRIALS}")
    rng = random.Random(spec.sample_seed)
    trials: list[Trial] = []
    config_index = 0
    for _ in range(spec.num_samples):
        for point in itertools.product(*(d.values for d in grid_dims)):
            grid_values = dict(zip((d.name for d in grid_dims), point))
            params: dict[str, Any] = {}
            for d in spec.dimensions:
                if d.kind == "fixed":
                    params[d.name] = d.values[0]
                elif d.kind == "grid":
                    params[d.name] = grid_values[d.name]
                else:
                    params[d.name] = d.sample(rng)
            changes = {**params, **spec.budget}
            try:
                config_from_overrides({**changes, "seed": spec.seeds[0]}, base).validate()
            except ConfigError as e:
                shown = ", ".join(f"{d.name}={display_value(params[d.name])}" for d in spec.varying)
                raise SweepError(f"sweep spec: configuration {config_index}"
                                 f"{' (' + shown + ')' if shown else ''} is invalid: {e}") from None
            for seed in spec.seeds:
                index = len(trials)
                trials.append(Trial(
                    index=index, name=f"t{index:03d}_c{config_index:02d}_s{seed}",
                    config_index=config_index, seed=seed, params=dict(params),
                    overrides={k: _jsonable(v) for k, v in {**changes, "seed": seed}.items()}))
            config_index += 1
    return trials


# ------------------------------------------------------------------------------------------------
# Inside a trial (runs in a Ray worker process)
# ------------------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def _ray_error_line(e: BaseException) -> str:
    """One line from an error Tune caught. A trial's own exception arrives wrapped (its `cause`
    is the original); a dead worker process arrives as a multi-line notice whose first line
    says what happened."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return _one_line(cause)
    return _one_line(e)


def _progress_metrics(row: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What Tune sees for an evaluation round. The same keys appear in every report (final ones
    included), because ASHA and Tune's loggers read a metric from every result."""
    solve = state.get("solve")
    return {
        "eval_round": row.get("round"), "eval_mean": float(row.get("mean") or 0.0),
        "eval_min": row.get("min"), "eval_max": row.get("max"), "at_500": row.get("at_500"),
        "passed": bool(row.get("passed")), "consecutive": row.get("consecutive"),
        "env_steps": row.get("env_steps"), "learn_steps": row.get("learn_steps"),
        "wall_s": row.get("wall_s"), "best_eval_mean": state.get("best"),
        # Solved-so-far travels with every round: if the scheduler stops the trial right after
        # its solving round (ASHA's max_t can), the final summary never arrives, and the sweep
        # must still know that, and when, it solved.
        "solved": solve is not None,
        "solve_wall_s": solve[0] if solve else None, "solve_env_steps": solve[1] if solve else None,
        "final": False, "status": "running", "error": "",
    }


def run_trial(trial: dict[str, Any], train_fn: TrainFn | None, trials_root: str,
              cpus: float, report: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run one trial and report its evaluation rounds and final row; return the final row.

    `report` is `tune.report` in a sweep; it is a parameter so this function can be tested
    without Ray. When Tune stops the trial, `report` raises SystemExit inside the trainer's
    callback; that is not an Exception, so it passes through and ends the trial as Tune intends.
    """
    # One TensorFlow thread pool per granted CPU: with two trials on two cores, TF's default
    # (a pool the size of the machine per process) oversubscribes, and 1/1 was measured fastest.
    threads = str(max(1, int(cpus)))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    state: dict[str, Any] = {"best": None, "last": None, "rounds": 0, "solve": None,
                             "solve_rounds": TrainConfig.solve_rounds}

    def on_eval(row: dict[str, Any]) -> None:
        mean = row.get("mean")
        if mean is not None and (state["best"] is None or mean > state["best"]):
            state["best"] = float(mean)
        # The trainer's own rule: solved once `solve_rounds` rounds in a row have passed.
        if state["solve"] is None and (row.get("consecutive") or 0) >= state["solve_rounds"]:
            state["solve"] = (row.get("wall_s"), row.get("env_steps"))
        state["last"], state["rounds"] = row, state["rounds"] + 1
        report(_progress_metrics(row, state))

    summary: dict[str, Any] = {}
    error = ""
    try:
        if train_fn is None:
            import cartpole  # here, not at module level: only trial processes need TensorFlow
            train_fn = cartpole.train
        cfg = config_from_overrides(trial["overrides"]).replace(
            log_dir=os.path.join(trials_root, trial["name"]), quiet=True, profile=False,
            graphics=False)
        state["solve_rounds"] = cfg.solve_rounds
        summary = dict(train_fn(cfg, on_eval=on_eval) or {})
    except Exception as e:  # noqa: BLE001 - any trainer failure becomes a failed row, never a crash
        error = _one_line(e)
    final = _progress_metrics(state["last"] or {}, state)
    best = summary.get("best_eval_mean", state["best"])
    if summary:
        final.update({"solved": bool(summary.get("solved", False)),
                      "solve_wall_s": summary.get("solve_wall_s"),
                      "solve_env_steps": summary.get("solve_env_steps")})
    final.update({
        "final": True, "status": "failed" if error else "ok", "error": error,
        "best_eval_mean": None if best is None else float(best),
        "confirm_mean_return": summary.get("confirm_mean_return"),
        "total_env_steps": summary.get("total_env_steps"), "total_wall_s": summary.get("total_wall_s"),
        "eval_rounds": summary.get("eval_rounds", state["rounds"]),
        "stop_reason": summary.get("stop_reason", ""), "exit_code": summary.get("exit_code"),
    })
    report(final)
    return final


# ------------------------------------------------------------------------------------------------
# Results: rows, ranking, statistics, files
# ------------------------------------------------------------------------------------------------
def result_row(trial: Trial, metrics: dict[str, Any] | None, ray_error: str | None,
               trials_root: str, scheduler: str = "none") -> dict[str, Any]:
    """One sweep.csv row from the trial and the last result Tune holds for it."""
    m = metrics or {}
    if ray_error:
        status, error = "failed", ray_error
    elif m.get("final"):
        status, error = m.get("status", "ok"), m.get("error", "")
    elif m:
        status, error = "stopped-early", ""  # ASHA (or an interrupted sweep) cut it mid-run
    else:
        status, error = "not-run", ""
    row: dict[str, Any] = {"trial": trial.name, "config": trial.config_index, "seed": trial.seed}
    row.update({k: display_value(v) for k, v in trial.params.items()})
    final = bool(m.get("final"))
    # A trial cut after its solving round still solved (its rounds say so); a failed one did not
    # finish cleanly, so it is never counted as solved.
    solved = bool(m.get("solved")) and status in ("ok", "stopped-early")
    row.update({
        "status": status, "solved": solved,
        "solve_wall_s": m.get("solve_wall_s") if solved else None,
        "solve_env_steps": m.get("solve_env_steps") if solved else None,
        "best_eval_mean": m.get("best_eval_mean"),
        "confirm_mean_return": m.get("confirm_mean_return") if final else None,
        "eval_rounds": m.get("eval_rounds") if final else m.get("eval_round"),
        "total_env_steps": m.get("total_env_steps") if final else m.get("env_steps"),
        "total_wall_s": m.get("total_wall_s") if final else m.get("wall_s"),
        "stop_reason": (m.get("stop_reason") or "") if final else (
            ("asha" if scheduler == "asha" else "interrupted") if status == "stopped-early" else ""),
        "error": error, "log_dir": os.path.join(trials_root, trial.name),
    })
    return row


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def rank_key(row: dict[str, Any], metric_key: str) -> tuple:
    """Solved (fastest first), then unsolved by best eval mean (highest first), failed last."""
    best = _num(row.get("best_eval_mean"))
    neg_best = -best if best is not None else math.inf
    value = _num(row.get(metric_key))
    if row.get("solved") in (True, "True") and value is not None:
        return (0, value, neg_best)
    group = 2 if row.get("status") in ("failed", "not-run") else 1
    return (group, neg_best, 0.0)


def rank_trials(rows: Sequence[dict[str, Any]], metric: str = "time_to_solve") -> list[dict[str, Any]]:
    key = METRICS[metric]
    return sorted(rows, key=lambda r: rank_key(r, key))


def _iqm(values: Sequence[float]) -> float:
    try:
        from multiseed import iqm  # the multi-seed report's convention (rliable's 25% trim)
        return float(iqm(list(values)))
    except ImportError:
        xs = sorted(values)
        cut = len(xs) // 4
        kept = xs[cut:len(xs) - cut]
        return sum(kept) / len(kept)


def summarize_configs(rows: Sequence[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per-configuration statistics over its seeds, ranked best first.

    Time-to-solve statistics are over solved seeds only (with the success rate beside them);
    `median_all` also counts unsolved seeds as never solving, as multiseed.py's report does, so it
    is infinite once half the seeds failed and cannot flatter an unreliable configuration.
    """
    key = spec.metric_key
    by_config: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(int(r["config"]), []).append(r)
    out = []
    for c, group in by_config.items():
        ran = [r for r in group if r["status"] != "not-run"]
        solved = [v for r in ran if r["solved"] in (True, "True") and (v := _num(r.get(key))) is not None]
        bests = [b for r in ran if (b := _num(r.get("best_eval_mean"))) is not None]
        everything = sorted(solved) + [math.inf] * (len(ran) - len(solved))
        out.append({
            "config": c, "params": {f: group[0].get(f) for f in spec.fields},
            "seeds": len(group), "ran": len(ran), "solved": len(solved),
            "failed": sum(r["status"] == "failed" for r in group),
            "success_rate": len(solved) / len(ran) if ran else 0.0,
            "median": statistics.median(solved) if solved else None,
            "iqm": _iqm(solved) if solved else None,
            "min": min(solved) if solved else None, "max": max(solved) if solved else None,
            "median_all": statistics.median(everything) if everything else None,
            "mean_best_eval": sum(bests) / len(bests) if bests else None,
        })
    out.sort(key=lambda s: (-s["success_rate"], s["median"] if s["median"] is not None else math.inf,
                            -(s["mean_best_eval"] or 0.0), s["config"]))
    return out


def csv_columns(spec: SweepSpec) -> list[str]:
    return ["trial", "config", "seed", *spec.fields, *CSV_RESULT_COLUMNS]


def write_csv(log_dir: Path, spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> None:
    run_log.atomic_write_text(log_dir / SWEEP_CSV, run_log.csv_text(csv_columns(spec), rows))


def _fmt_metric(v: Any, metric: str) -> str:
    x = _num(v)
    if x is None:
        return "inf" if v == math.inf else "–"
    return f"{x:.1f} s" if metric == "time_to_solve" else f"{x:,.0f}"


def _fmt(v: Any, digits: int = 1) -> str:
    x = _num(v)
    return "–" if x is None else f"{x:.{digits}f}"


def _md_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in body]
    return lines


def render_markdown(spec: SweepSpec, rows: Sequence[dict[str, Any]], info: dict[str, Any]) -> str:
    ranked = rank_trials(rows, spec.metric)
    configs = summarize_configs(rows, spec)
    varying = [d.name for d in spec.varying]
    label = METRIC_LABELS[spec.metric]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "stopped-early", "failed", "not-run")}
    n_solved = sum(r["solved"] is True for r in rows)
    out = [f"# Sweep: {spec.name}", ""]
    out += [f"- Spec: `{info.get('spec_path', '')}`; {len(rows)} trials = "
            f"{len(configs)} configurations x {len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))})",
            f"- Ranked by {label}; scheduler: {spec.scheduler}"
            + (f" (ASHA on eval_mean, grace {spec.grace_period}, max_t {spec.max_t} eval rounds, "
               f"reduction {spec.reduction_factor:g})" if spec.scheduler == "asha" else ""),
            f"- Outcome: {n_solved} solved; {counts['ok']} finished, {counts['stopped-early']} "
            f"stopped early, {counts['failed']} failed"
            + (f", {counts['not-run']} not run" if counts["not-run"] else ""),
            f"- Ray: {info.get('ray', '')}; up to {info.get('concurrency', '?')} trials at once, "
            f"{display_value(spec.resources.get('cpu', 1.0))} CPU each; sweep wall time "
            f"{_fmt(info.get('wall_s'))} s",
            "- Times are per trial from its train() call (TensorFlow import included) and were "
            "measured while other trials shared the machine: compare them within one sweep only.",
            ""]
    fixed = [d for d in spec.dimensions if not d.varies]
    if fixed or spec.budget:
        out += ["Fixed settings: " + ", ".join(
            [f"`{d.name}={d.describe()}`" for d in fixed]
            + [f"`{k}={display_value(v)}` (budget)" for k, v in spec.budget.items()]), ""]
    if varying:
        out += ["Swept: " + ", ".join(f"`{d.name}`: {d.describe()}" for d in spec.varying), ""]

    out += ["## Configurations", "",
            f"Over each configuration's seeds; {label} statistics over solved seeds only. "
            "'median, all' counts an unsolved seed as never solving.", ""]
    out += _md_table(
        ["rank", "config", *varying, "solved", "median", "IQM", "median, all", "mean best eval"],
        [[i + 1, s["config"], *(s["params"][f] for f in varying), f"{s['solved']}/{s['ran']}",
          _fmt_metric(s["median"], spec.metric), _fmt_metric(s["iqm"], spec.metric),
          _fmt_metric(s["median_all"], spec.metric), _fmt(s["mean_best_eval"])]
         for i, s in enumerate(configs)])
    out.append("")

    if configs:
        best = configs[0]
        out += ["## Best configuration", ""]
        out += [f"Configuration {best['config']}: "
                + (", ".join(f"`{f}={best['params'][f]}`" for f in spec.fields) or "defaults"), ""]
        out += [f"- Success rate: {best['solved']}/{best['ran']} seeds "
                f"({100 * best['success_rate']:.0f}%)",
                f"- Median {label}: {_fmt_metric(best['median'], spec.metric)}; IQM: "
                f"{_fmt_metric(best['iqm'], spec.metric)}; range "
                f"{_fmt_metric(best['min'], spec.metric)} to {_fmt_metric(best['max'], spec.metric)} "
                "(solved seeds)",
                f"- Median over all seeds (unsolved = never): {_fmt_metric(best['median_all'], spec.metric)}",
                "- With this few seeds these are descriptions, not estimates: rerun the winner with "
                "`cartpole.py --seeds 0-19 ...` for confidence intervals.", ""]
        seeds_of_best = [r for r in ranked if int(r["config"]) == best["config"]]
        out += _md_table(["trial", "seed", "status", "solved", "time (s)", "env steps", "best eval"],
                         [[r["trial"], r["seed"], r["status"], "yes" if r["solved"] is True else "no",
                           _fmt(r["solve_wall_s"]), _fmt(r["solve_env_steps"], 0),
                           _fmt(r["best_eval_mean"])] for r in seeds_of_best])
        out.append("")

    out += ["## All trials, ranked", "",
            f"Solved trials by {label}, then unsolved by best evaluation mean, failed last.", ""]
    out += _md_table(
        ["rank", "trial", *varying, "seed", "status", "solved", "time (s)", "env steps",
         "best eval", "stop"],
        [[i + 1, r["trial"], *(r.get(f, "") for f in varying), r["seed"], r["status"],
          "yes" if r["solved"] is True else "no", _fmt(r["solve_wall_s"]),
          _fmt(r["solve_env_steps"], 0), _fmt(r["best_eval_mean"]), r["stop_reason"] or ""]
         for i, r in enumerate(ranked)])
    failures = [r for r in ranked if r["status"] == "failed"]
    if failures:
        out += ["", "## Failures", ""]
        out += [f"- `{r['trial']}`: {r['error'] or 'unknown error'}" for r in failures]
    out += ["", f"Files: `{SWEEP_CSV}` (every trial), `{SWEEP_PNG}`, per-trial logs in "
                f"`{TRIALS_DIR}/<trial>/`, Ray Tune's own records in `{TUNE_DIR}/`.", ""]
    return "\n".join(out)


def render_png(spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> bytes:
    """The metric against each swept hyperparameter (up to six): one dot per trial; trials that
    did not solve are drawn in a band above the plot so they are not silently missing."""
    import matplotlib
    matplotlib.use("Agg")  # file output only; never touch a display
    import matplotlib.pyplot as plt

    key = spec.metric_key
    dims = spec.varying[:6]
    # (name, x values, categorical?, log x?). Grid and choice values are few and discrete, so
    # they get evenly spaced category slots (readable ticks, jitter for overlapping seeds);
    # ranges get a true numeric axis.
    panels: list[tuple[str, list[Any], bool, bool]] = []
    for d in dims:
        panels.append((d.name, [r.get(d.name, "") for r in rows], d.kind in ("grid", "choice"),
                       d.kind == "loguniform"))
    if not panels:  # nothing but seeds varies: plot per trial
        panels.append(("trial", [r["trial"] for r in rows], True, False))
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    solved_vals = [v for r in rows if r["solved"] is True and (v := _num(r.get(key))) is not None]
    top = max(solved_vals) if solved_vals else 1.0
    band = top * 1.15
    rng = random.Random(0)  # jitter for overlapping categorical points, fixed for reproducible plots
    for ax, (name, xs_raw, categorical, log_x) in zip(axes.flat, panels):
        if not categorical and all(_num(x) is not None for x in xs_raw):
            xs = [float(x) for x in xs_raw]
            ticks = None
        else:
            cats = list(dict.fromkeys(str(x) for x in xs_raw))
            if all(_num(c) is not None for c in cats):
                cats.sort(key=float)
            xs = [cats.index(str(x)) + rng.uniform(-0.12, 0.12) for x in xs_raw]
            ticks = cats
        groups = {"solved": ([], [], "o", "tab:blue"), "not solved": ([], [], "^", "tab:orange"),
                  "failed": ([], [], "x", "tab:red")}
        for x, r in zip(xs, rows):
            v = _num(r.get(key))
            if r["solved"] is True and v is not None:
                g = "solved"
            else:
                g, v = ("failed" if r["status"] == "failed" else "not solved"), band
            groups[g][0].append(x)
            groups[g][1].append(v)
        for label, (gx, gy, marker, color) in groups.items():
            if gx:
                ax.scatter(gx, gy, marker=marker, color=color, label=label, alpha=0.8)
        if ticks is not None:
            ax.set_xticks(range(len(ticks)))
            ax.set_xticklabels(ticks, rotation=30 if max(map(len, ticks)) > 6 else 0)
        elif log_x:
            ax.set_xscale("log")
        ax.axhline(top * 1.07, color="0.7", lw=0.8, ls="--")
        ax.set_xlabel(name)
        ax.set_ylabel(METRIC_LABELS[spec.metric])
        ax.set_ylim(0, band * 1.08)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Sweep {spec.name}: {METRIC_LABELS[spec.metric]} (unsolved above the dashed line)",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_reports(log_dir: Path, spec: SweepSpec, rows: Sequence[dict[str, Any]],
                  info: dict[str, Any]) -> None:
    write_csv(log_dir, spec, rows)
    run_log.atomic_write_text(log_dir / SWEEP_MD, render_markdown(spec, rows, info))
    run_log.atomic_write_bytes(log_dir / SWEEP_PNG, render_png(spec, rows))


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
        import ray.tune  # noqa: F401 - the [tune] extra is what we need
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def _worker_pythonpath(train_fn: TrainFn | None) -> str:
    """PYTHONPATH for trial processes: the project (so `sweep`, `config`, `cartpole` import) and
    the directory of an injected train_fn's module (Ray pickles module-level functions by name).
    Ray adds only the driver's script directory and working directory on its own, which misses
    both under pytest or when started from elsewhere."""
    paths = [str(Path(__file__).resolve().parent)]
    module = sys.modules.get(getattr(train_fn, "__module__", "") or "")
    module_file = getattr(module, "__file__", None)
    if module_file:
        paths.append(str(Path(module_file).resolve().parent))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(paths))


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when a host:port cluster address does not answer.

    ray.init() retries an unreachable address for many minutes (measured: still waiting after
    400 s), which looks like a hang. "auto" needs no check: Ray answers at once when there is no
    local cluster to find.
    """
    import socket
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or something Ray itself will judge
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
                         "(is `ray start --head` running there, and the port open?)") from None


def _start_ray(ray: Any, ray_address: str | None, train_fn: TrainFn | None) -> bool:
    """Start or join Ray; return True if we started it (and so must shut it down)."""
    if ray.is_initialized():
        return False  # an embedding program (or a test) already owns a Ray session
    common = dict(
        include_dashboard=False, log_to_driver=False,
        # Ray's start-up warnings (token auth, dashboard, ...) are not actionable for a sweep.
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": _worker_pythonpath(train_fn),
                                  "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}})
    if ray_address:
        _check_reachable(ray_address)
    try:
        if ray_address:
            # num_cpus and include_dashboard belong to whoever started the cluster.
            common.pop("include_dashboard")
            ray.init(address=ray_address, **common)
        else:
            # address="local" so a RAY_ADDRESS left in the environment cannot silently redirect
            # a local sweep to some cluster. The object store only carries small results.
            ray.init(address="local", num_cpus=os.cpu_count() or 1,
                     object_store_memory=256 * 2**20, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray instance"
        causes = f"{e} {e.__cause__ or ''}"
        if ray_address and ("AuthenticationError" in type(e.__cause__).__name__
                            or "InvalidAuthToken" in causes):
            # Ray >= 2.5x clusters started with `ray start` require a token by default, and Ray
            # sends it to an explicitly named address only when told to (never implicitly).
            raise SweepError(f"{where} requires token authentication: copy the head's "
                             "~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN) and set "
                             "RAY_AUTH_MODE=token, or use --ray-address auto on the head") from None
        raise SweepError(f"cannot start or join {where}: {_one_line(e)}") from None
    return True


def _progress_callback(tune: Any, trials: list[Trial], varying: list[str],
                       record: Callable[[int, dict[str, Any], str | None], None],
                       say: Callable[[str], None]) -> Any:
    """A Tune callback (driver side) that records each finished trial's last result via
    `record` and prints one line about it."""

    class Progress(tune.Callback):
        def __init__(self) -> None:
            self.done = 0

        def _finish(self, trial: Any, ray_error: str | None) -> None:
            t = trials[trial.config["trial_index"]]
            m = dict(trial.last_result or {})
            record(t.index, m, ray_error)
            self.done += 1
            if ray_error:
                what = f"failed: {ray_error}"
            elif m.get("final") and m.get("status") == "failed":
                what = f"failed: {m.get('error')}"
            elif m.get("final") and m.get("solved"):
                what = (f"solved in {_fmt(m.get('solve_wall_s'))} s, "
                        f"{int(m.get('solve_env_steps') or 0):,} env steps")
            elif m.get("final"):
                what = (f"not solved ({m.get('stop_reason') or 'ended'}), best eval mean "
                        f"{_fmt(m.get('best_eval_mean'))}")
            else:
                what = f"stopped early by the scheduler after {m.get('eval_round') or 0} eval rounds"
                if m.get("solved"):
                    what = f"solved in {_fmt(m.get('solve_wall_s'))} s, then {what}"
            shown = "".join(f" {k}={display_value(t.params[k])}" for k in varying)
            say(f"[{self.done}/{len(trials)}] {t.name}{shown} seed={t.seed}: {what}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, None)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, "the trial process died (see ray_tune/ for Ray's record)")

    return Progress()


def run_sweep(spec_path: str, log_dir: str, ray_address: str | None = None,
              train_fn: TrainFn | None = None, quiet: bool = False) -> int:
    """Run the sweep described by the YAML file `spec_path`, writing results into `log_dir`.

    `train_fn(cfg, on_eval=...) -> summary` defaults to `cartpole.train` (imported inside each
    trial process); tests inject a fast stand-in. Returns 0 if some trial solved, 3 if none did,
    1 if every trial failed. Raises SweepError (one line) when the sweep cannot start.
    """
    t_start = time.time()
    spec = load_spec(spec_path)
    trials = expand_trials(spec)
    ray = _import_ray()
    from ray import tune

    out = Path(log_dir).resolve()  # absolute: Tune runs each trial in its own working directory
    try:
        (out / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        run_log.atomic_write_text(out / SPEC_COPY, Path(spec_path).read_text())
        run_log.atomic_write_json(out / TRIALS_JSON, [t.to_json() for t in trials])
    except OSError as e:
        raise SweepError(f"log dir {out} is not writable: {e.strerror or e}") from None
    trials_root = str(out / TRIALS_DIR)

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    started_ray = _start_ray(ray, ray_address, train_fn)
    try:
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        need = spec.resources.get("cpu", 1.0)
        if not ray_address and need > cluster_cpus:
            # Tune would wait forever for a slot that a local machine can never offer.
            raise SweepError(f"sweep spec: resources_per_trial.cpu={need:g} exceeds the "
                             f"{cluster_cpus:g} CPUs of this machine")
        slots = int(cluster_cpus // need) if need else 1
        concurrency = min(x for x in (spec.max_concurrent, max(1, slots), len(trials)) if x)
        n_configs = len({t.config_index for t in trials})
        say(f"sweep {spec.name}: {len(trials)} trials ({n_configs} configurations x "
            f"{len(spec.seeds)} seeds), up to {concurrency} at a time on "
            f"{'Ray at ' + ray_address if ray_address else 'local Ray'} ({cluster_cpus:g} CPUs); "
            f"scheduler {spec.scheduler}; results in {out}")

        metrics_by_trial: dict[int, dict[str, Any]] = {}
        errors_by_trial: dict[int, str] = {}
        info = {"spec_path": spec_path, "concurrency": concurrency,
                "ray": f"{ray.__version__}, " + (f"cluster at {ray_address}" if ray_address
                                                  else f"local, {cluster_cpus:g} CPUs")}

        def current_rows() -> list[dict[str, Any]]:
            return [result_row(t, metrics_by_trial.get(t.index), errors_by_trial.get(t.index),
                               trials_root, spec.scheduler) for t in trials]

        def record(index: int, metrics: dict[str, Any], ray_error: str | None) -> None:
            metrics_by_trial[index] = metrics
            if ray_error:
                errors_by_trial[index] = ray_error
            # Rewrite sweep.csv as each trial ends, so an interrupted sweep keeps what finished.
            try:
                write_csv(out, spec, current_rows())
            except OSError:
                pass  # the final write reports a persistent problem; one hiccup must not stop Tune

        callback = _progress_callback(tune, trials, [d.name for d in spec.varying], record, say)
        trial_table = {t.index: {"name": t.name, "overrides": t.overrides} for t in trials}
        cpus = spec.resources.get("cpu", 1.0)

        def sweep_trial(config: dict[str, Any]) -> None:
            run_trial(trial_table[config["trial_index"]], train_fn, trials_root, cpus, tune.report)

        trainable = tune.with_resources(sweep_trial, {k: v for k, v in spec.resources.items() if v})
        scheduler = None
        if spec.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler
            scheduler = ASHAScheduler(time_attr="training_iteration", metric="eval_mean", mode="max",
                                      grace_period=spec.grace_period, max_t=spec.max_t,
                                      reduction_factor=spec.reduction_factor)

        def trial_name(trial: Any) -> str:
            return trials[trial.config["trial_index"]].name

        tuner = tune.Tuner(
            trainable,
            param_space={"trial_index": tune.grid_search([t.index for t in trials])},
            tune_config=tune.TuneConfig(
                num_samples=1, scheduler=scheduler, max_concurrent_trials=spec.max_concurrent,
                reuse_actors=False, trial_name_creator=trial_name, trial_dirname_creator=trial_name),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(out), verbose=0, callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
        # Tune logs a full traceback for every failed trial; we already print one line per trial
        # and sweep.md lists every error, so only Tune's critical messages get through.
        # Tune's newer console output prints a header and per-error blocks even at verbose=0;
        # its classic engine honours verbose=0 (our callback does the talking).
        tune_logger = logging.getLogger("ray.tune")
        old_level, old_output = tune_logger.level, os.environ.get("RAY_AIR_NEW_OUTPUT")
        tune_logger.setLevel(logging.CRITICAL)
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        try:
            grid = tuner.fit()
        except Exception as e:  # noqa: BLE001 - Tune itself broke; keep what we have
            say(f"sweep: Ray Tune stopped: {_one_line(e)}")
            grid = None
        finally:
            tune_logger.setLevel(old_level)
            if old_output is None:
                os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
            else:
                os.environ["RAY_AIR_NEW_OUTPUT"] = old_output
        if grid is not None:
            for result in grid:
                cfg = result.config or {}
                if "trial_index" not in cfg:
                    continue
                i = int(cfg["trial_index"])
                if result.metrics:
                    metrics_by_trial[i] = dict(result.metrics)
                if result.error is not None:
                    errors_by_trial[i] = _ray_error_line(result.error)
        rows = current_rows()
        info["wall_s"] = time.time() - t_start
        write_reports(out, spec, rows, info)
    finally:
        if started_ray:
            ray.shutdown()

    n_solved = sum(r["solved"] is True for r in rows)
    n_failed = sum(r["status"] == "failed" for r in rows)
    best = summarize_configs(rows, spec)[0] if rows else None
    say(f"sweep done in {time.time() - t_start:.1f} s: {n_solved}/{len(rows)} trials solved, "
        f"{n_failed} failed; see {out / SWEEP_MD}")
    if best is not None and best["solved"]:
        say(f"best configuration {best['config']}: "
            + ", ".join(f"{k}={v}" for k, v in best["params"].items())
            + f" ({best['solved']}/{best['ran']} solved, median {_fmt_metric(best['median'], spec.metric)})")
    if n_solved:
        return 0
    return 1 if rows and n_failed == len(rows) else 3
