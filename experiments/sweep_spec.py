"""The sweep spec: its YAML model, parsing, validation and expansion into trials.

This module knows nothing of Ray and nothing of results, so a spec can be checked (and every
trial built) in milliseconds, before any cluster starts; `sweep.run_sweep` does exactly that.

Design
------
* **Every problem is one line.** Parsing raises `SweepError` (a `ValueError`) naming the key
  path (`search_space.lr.grid[2]`) and, for a typo, the closest known name. The CLI prints it and
  exits 2; a user never sees a traceback for a bad spec.
* **Values take the TrainConfig field's type.** `coerce_value` reads the dataclass annotation
  of the field being set, so a new TrainConfig field is sweepable without touching this module.
* **We expand the trial list ourselves.** Every trial (grid point x random draw x seed) is built
  up front with a seeded `random.Random` and checked with `TrainConfig.validate()`: the same spec
  always yields the same trials, and an invalid grid value fails before Ray starts. Seeds are the
  innermost dimension and a random draw is shared by its seeds, which is what makes
  per-configuration statistics over seeds meaningful.

Spec (YAML; see experiments/examples/sweep_small.yaml and experiments/examples/sweep_grid16.yaml)
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
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from common.config import ConfigError, TrainConfig, parse_hidden

YAML_MISSING = ("PyYAML is not installed: pip install -r requirements/sweep.txt "
                "(or ./run_cartpole_training.sh --sweep ... after that)")

SPEC_KEYS = ("name", "search_space", "seeds", "num_samples", "sample_seed", "metric",
             "max_concurrent", "resources_per_trial", "scheduler", "grace_period", "max_t",
             "reduction_factor", "budget")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform")
METRICS = {"time_to_solve": "solve_wall_s", "env_steps_to_solve": "solve_env_steps"}
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
    _parse_trial_keys(raw, spec)
    if "resources_per_trial" in raw:
        spec.resources = _parse_resources(raw["resources_per_trial"])
    _parse_scheduler(raw, spec)
    if "budget" in raw:
        spec.budget = _parse_budget(raw["budget"], space)
    return spec


def _parse_trial_keys(raw: dict[str, Any], spec: SweepSpec) -> None:
    """name, seeds, num_samples, sample_seed, metric and max_concurrent, into `spec`."""
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


def _parse_resources(res: Any) -> dict[str, float]:
    if not isinstance(res, dict) or not res:
        raise _fail("resources_per_trial", f"expected a mapping like {{cpu: 1}}, got {res!r}")
    resources: dict[str, float] = {}
    for k, v in res.items():
        if k not in ("cpu", "gpu"):
            raise _fail(f"resources_per_trial.{k}", "unknown resource; use cpu and/or gpu")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "cpu" and v <= 0):
            raise _fail(f"resources_per_trial.{k}", f"expected a {'positive' if k == 'cpu' else 'non-negative'} "
                                                    f"number, got {v!r}")
        resources[k] = float(v)
    resources.setdefault("cpu", 1.0)
    return resources


def _parse_scheduler(raw: dict[str, Any], spec: SweepSpec) -> None:
    """scheduler and the ASHA settings, which only apply with scheduler: asha."""
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


def _parse_budget(budget: Any, space: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(budget, dict):
        raise _fail("budget", f"expected a mapping like {{max_env_steps: 200000}}, got {budget!r}")
    out: dict[str, Any] = {}
    for k, v in budget.items():
        if k not in BUDGET_FIELDS:
            raise _fail(f"budget.{k}", f"not a budget field; budget takes {', '.join(BUDGET_FIELDS)}"
                                       + _suggest(str(k), BUDGET_FIELDS))
        if k in space:
            raise _fail(f"budget.{k}", "is also in search_space; set it in one place")
        out[k] = coerce_value(k, v, f"budget.{k}")
    return out


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a YAML spec file."""
    try:
        import yaml
    except ImportError:
        raise SweepError(YAML_MISSING) from None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SweepError(f"cannot read sweep spec {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # a binary file, or a text in another encoding
        raise SweepError(f"sweep spec {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                         f"at offset {e.start}); YAML specs are read as UTF-8") from None
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
