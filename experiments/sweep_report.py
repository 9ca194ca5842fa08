"""Sweep results: one row per trial, ranking, per-configuration statistics, and the files
sweep.csv, sweep.md and sweep.png.

Everything here is a pure function of the spec and the rows (plain dicts, as sweep.csv holds
them), with no Ray in sight: `sweep.run_sweep` builds rows from what Tune reports and calls
`write_csv` as each trial ends and `write_reports` at the end, and tests render reports from
hand-made rows. Rows read back from a CSV carry strings ("True", "12.5"), so every reader here
goes through `_num` and accepts both forms.

Ranking (`metric: time_to_solve`, or `env_steps_to_solve`): solved trials first, fastest first;
then unsolved trials by best evaluation mean (higher first); failed trials last. Configurations
(a configuration = one set of hyperparameters over all its seeds) are ranked by success rate,
then by median time-to-solve over their solved seeds, then by mean best evaluation mean.

Statistics come from `stats.py`, as the multi-seed report's do: IQM is rliable's 25% trim, and a
configuration's `median_all` counts an unsolved seed as never solving.
"""
from __future__ import annotations

import io
import math
import os
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

from common import run_log
from experiments import stats
from experiments.stats import finite_or_none
from experiments.sweep_spec import METRICS, SweepSpec, Trial, display_value

SWEEP_CSV, SWEEP_MD, SWEEP_PNG = "sweep.csv", "sweep.md", "sweep.png"
#: Where run_sweep puts per-trial logs and Tune's own files; sweep.md points readers there.
TRIALS_DIR, TUNE_DIR = "trials", "ray_tune"

METRIC_LABELS = {"time_to_solve": "time to solve (s)", "env_steps_to_solve": "env steps to solve"}
CSV_RESULT_COLUMNS = ("status", "solved", "solve_wall_s", "solve_env_steps", "best_eval_mean",
                      "confirm_mean_return", "eval_rounds", "total_env_steps", "total_wall_s",
                      "stop_reason", "error", "log_dir")


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


def rank_key(row: dict[str, Any], metric_key: str) -> tuple:
    """Solved (fastest first), then unsolved by best eval mean (highest first), failed last."""
    best = finite_or_none(row.get("best_eval_mean"))
    neg_best = -best if best is not None else math.inf
    value = finite_or_none(row.get(metric_key))
    if row.get("solved") in (True, "True") and value is not None:
        return (0, value, neg_best)
    group = 2 if row.get("status") in ("failed", "not-run") else 1
    return (group, neg_best, 0.0)


def rank_trials(rows: Sequence[dict[str, Any]], metric: str = "time_to_solve") -> list[dict[str, Any]]:
    key = METRICS[metric]
    return sorted(rows, key=lambda r: rank_key(r, key))


def summarize_configs(rows: Sequence[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per-configuration statistics over its seeds, ranked best first.

    Time-to-solve statistics are over solved seeds only (with the success rate beside them);
    `median_all` also counts unsolved seeds as never solving, as the multi-seed report does, so it
    is infinite once half the seeds failed and cannot flatter an unreliable configuration.
    """
    key = spec.metric_key
    by_config: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(int(r["config"]), []).append(r)
    out = []
    for c, group in by_config.items():
        ran = [r for r in group if r["status"] != "not-run"]
        solved = [v for r in ran if r["solved"] in (True, "True") and (v := finite_or_none(r.get(key))) is not None]
        bests = [b for r in ran if (b := finite_or_none(r.get("best_eval_mean"))) is not None]
        out.append({
            "config": c, "params": {f: group[0].get(f) for f in spec.fields},
            "seeds": len(group), "ran": len(ran), "solved": len(solved),
            "failed": sum(r["status"] == "failed" for r in group),
            "success_rate": len(solved) / len(ran) if ran else 0.0,
            "median": stats.median(solved),
            "iqm": float(stats.iqm(solved)) if solved else None,
            "min": min(solved) if solved else None, "max": max(solved) if solved else None,
            "median_all": stats.median_counting_unsolved(solved, len(ran) - len(solved)),
            "mean_best_eval": stats.mean(bests),
        })
    out.sort(key=lambda s: (-s["success_rate"], s["median"] if s["median"] is not None else math.inf,
                            -(s["mean_best_eval"] or 0.0), s["config"]))
    return out


def csv_columns(spec: SweepSpec) -> list[str]:
    return ["trial", "config", "seed", *spec.fields, *CSV_RESULT_COLUMNS]


def write_csv(log_dir: Path, spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> None:
    run_log.atomic_write_text(log_dir / SWEEP_CSV, run_log.csv_text(csv_columns(spec), rows))


def fmt_metric(v: Any, metric: str) -> str:
    """A metric value for people: seconds or a step count, "inf" for never, "–" for missing."""
    x = finite_or_none(v)
    if x is None:
        return "inf" if v == math.inf else "–"
    return f"{x:.1f} s" if metric == "time_to_solve" else f"{x:,.0f}"


def fmt_num(v: Any, digits: int = 1) -> str:
    """A number with `digits` decimals, or "–" when there is none (empty CSV cell, NaN)."""
    x = finite_or_none(v)
    return "–" if x is None else f"{x:.{digits}f}"


def md_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> list[str]:
    """A GitHub-markdown table's lines (also used by benchmarks/compare_peers.py)."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in body]
    return lines


def _md_header(spec: SweepSpec, rows: Sequence[dict[str, Any]], n_configs: int,
               info: dict[str, Any]) -> list[str]:
    """Title, what was swept and how it went, and the settings every trial shared."""
    label = METRIC_LABELS[spec.metric]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "stopped-early", "failed", "not-run")}
    n_solved = sum(r["solved"] is True for r in rows)
    out = [f"# Sweep: {spec.name}", ""]
    out += [f"- Spec: `{info.get('spec_path', '')}`; {len(rows)} trials = "
            f"{n_configs} configurations x {len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))})",
            f"- Ranked by {label}; scheduler: {spec.scheduler}"
            + (f" (ASHA on eval_mean, grace {spec.grace_period}, max_t {spec.max_t} eval rounds, "
               f"reduction {spec.reduction_factor:g})" if spec.scheduler == "asha" else ""),
            f"- Outcome: {n_solved} solved; {counts['ok']} finished, {counts['stopped-early']} "
            f"stopped early, {counts['failed']} failed"
            + (f", {counts['not-run']} not run" if counts["not-run"] else ""),
            f"- Ray: {info.get('ray', '')}; up to {info.get('concurrency', '?')} trials at once, "
            f"{display_value(spec.resources.get('cpu', 1.0))} CPU each; sweep wall time "
            f"{fmt_num(info.get('wall_s'))} s",
            "- Times are per trial from its train() call (TensorFlow import included) and were "
            "measured while other trials shared the machine: compare them within one sweep only.",
            ""]
    fixed = [d for d in spec.dimensions if not d.varies]
    if fixed or spec.budget:
        out += ["Fixed settings: " + ", ".join(
            [f"`{d.name}={d.describe()}`" for d in fixed]
            + [f"`{k}={display_value(v)}` (budget)" for k, v in spec.budget.items()]), ""]
    if spec.varying:
        out += ["Swept: " + ", ".join(f"`{d.name}`: {d.describe()}" for d in spec.varying), ""]
    return out


def _md_configs(spec: SweepSpec, configs: list[dict[str, Any]]) -> list[str]:
    varying = [d.name for d in spec.varying]
    out = ["## Configurations", "",
           f"Over each configuration's seeds; {METRIC_LABELS[spec.metric]} statistics over solved "
           "seeds only. 'median, all' counts an unsolved seed as never solving.", ""]
    out += md_table(
        ["rank", "config", *varying, "solved", "median", "IQM", "median, all", "mean best eval"],
        [[i + 1, s["config"], *(s["params"][f] for f in varying), f"{s['solved']}/{s['ran']}",
          fmt_metric(s["median"], spec.metric), fmt_metric(s["iqm"], spec.metric),
          fmt_metric(s["median_all"], spec.metric), fmt_num(s["mean_best_eval"])]
         for i, s in enumerate(configs)])
    out.append("")
    return out


def _md_best(spec: SweepSpec, best: dict[str, Any], ranked: list[dict[str, Any]]) -> list[str]:
    """The winning configuration and each of its seeds."""
    label, m = METRIC_LABELS[spec.metric], spec.metric
    out = ["## Best configuration", ""]
    out += [f"Configuration {best['config']}: "
            + (", ".join(f"`{f}={best['params'][f]}`" for f in spec.fields) or "defaults"), ""]
    out += [f"- Success rate: {best['solved']}/{best['ran']} seeds "
            f"({100 * best['success_rate']:.0f}%)",
            f"- Median {label}: {fmt_metric(best['median'], m)}; IQM: {fmt_metric(best['iqm'], m)}; "
            f"range {fmt_metric(best['min'], m)} to {fmt_metric(best['max'], m)} (solved seeds)",
            f"- Median over all seeds (unsolved = never): {fmt_metric(best['median_all'], m)}",
            "- With this few seeds these are descriptions, not estimates: rerun the winner with "
            "`cartpole.py --seeds 0-19 ...` for confidence intervals.", ""]
    seeds_of_best = [r for r in ranked if int(r["config"]) == best["config"]]
    out += md_table(["trial", "seed", "status", "solved", "time (s)", "env steps", "best eval"],
                     [[r["trial"], r["seed"], r["status"], "yes" if r["solved"] is True else "no",
                       fmt_num(r["solve_wall_s"]), fmt_num(r["solve_env_steps"], 0),
                       fmt_num(r["best_eval_mean"])] for r in seeds_of_best])
    out.append("")
    return out


def _md_trials(spec: SweepSpec, ranked: list[dict[str, Any]]) -> list[str]:
    """Every trial, ranked, then the failures and where to look further."""
    varying = [d.name for d in spec.varying]
    out = ["## All trials, ranked", "",
           f"Solved trials by {METRIC_LABELS[spec.metric]}, then unsolved by best evaluation mean, "
           "failed last.", ""]
    out += md_table(
        ["rank", "trial", *varying, "seed", "status", "solved", "time (s)", "env steps",
         "best eval", "stop"],
        [[i + 1, r["trial"], *(r.get(f, "") for f in varying), r["seed"], r["status"],
          "yes" if r["solved"] is True else "no", fmt_num(r["solve_wall_s"]),
          fmt_num(r["solve_env_steps"], 0), fmt_num(r["best_eval_mean"]), r["stop_reason"] or ""]
         for i, r in enumerate(ranked)])
    failures = [r for r in ranked if r["status"] == "failed"]
    if failures:
        out += ["", "## Failures", ""]
        out += [f"- `{r['trial']}`: {r['error'] or 'unknown error'}" for r in failures]
    out += ["", f"Files: `{SWEEP_CSV}` (every trial), `{SWEEP_PNG}`, per-trial logs in "
                f"`{TRIALS_DIR}/<trial>/`, Ray Tune's own records in `{TUNE_DIR}/`.", ""]
    return out


def render_markdown(spec: SweepSpec, rows: Sequence[dict[str, Any]], info: dict[str, Any]) -> str:
    ranked = rank_trials(rows, spec.metric)
    configs = summarize_configs(rows, spec)
    out = [*_md_header(spec, rows, len(configs), info), *_md_configs(spec, configs)]
    if configs:
        out += _md_best(spec, configs[0], ranked)
    out += _md_trials(spec, ranked)
    return "\n".join(out)


Panel = tuple[str, list[Any], bool, bool]  # name, x values, categorical?, log x?


def _panels(spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> list[Panel]:
    """One panel per swept hyperparameter (up to six), or one per trial if only seeds vary.

    Grid and choice values are few and discrete, so they get evenly spaced category slots
    (readable ticks, jitter for overlapping seeds); ranges get a true numeric axis.
    """
    panels: list[Panel] = [(d.name, [r.get(d.name, "") for r in rows], d.kind in ("grid", "choice"),
                            d.kind == "loguniform") for d in spec.varying[:6]]
    if not panels:
        panels.append(("trial", [r["trial"] for r in rows], True, False))
    return panels


def _x_positions(xs_raw: list[Any], categorical: bool,
                 rng: random.Random) -> tuple[list[float], list[str] | None]:
    """x coordinates for a panel, and its category tick labels (None for a numeric axis)."""
    if not categorical and all(finite_or_none(x) is not None for x in xs_raw):
        return [float(x) for x in xs_raw], None
    cats = list(dict.fromkeys(str(x) for x in xs_raw))
    if all(finite_or_none(c) is not None for c in cats):
        cats.sort(key=float)
    return [cats.index(str(x)) + rng.uniform(-0.12, 0.12) for x in xs_raw], cats


def _draw_panel(ax: Any, spec: SweepSpec, rows: Sequence[dict[str, Any]], panel: Panel,
                xy: tuple[list[float], list[str] | None], top: float) -> None:
    """Solved trials at their metric value; the others in a band above the dashed line."""
    name, _, _, log_x = panel
    xs, ticks = xy
    band = top * 1.15
    groups = {"solved": ([], [], "o", "tab:blue"), "not solved": ([], [], "^", "tab:orange"),
              "failed": ([], [], "x", "tab:red")}
    for x, r in zip(xs, rows):
        v = finite_or_none(r.get(spec.metric_key))
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


def render_png(spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> bytes:
    """The metric against each swept hyperparameter (up to six): one dot per trial; trials that
    did not solve are drawn in a band above the plot so they are not silently missing."""
    import matplotlib
    matplotlib.use("Agg")  # file output only; never touch a display
    import matplotlib.pyplot as plt

    panels = _panels(spec, rows)
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    solved_vals = [v for r in rows if r["solved"] is True and (v := finite_or_none(r.get(spec.metric_key))) is not None]
    top = max(solved_vals) if solved_vals else 1.0
    rng = random.Random(0)  # jitter for overlapping categorical points, fixed for reproducible plots
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, spec, rows, panel, _x_positions(panel[1], panel[2], rng), top)
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


