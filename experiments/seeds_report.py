"""The multi-seed report: `report.json`, `report.md` and `report.png` from a multi-seed log dir.

`write_report(log_dir)` reads every `seed_*` directory (plus any seed the runner's manifest lists;
see `seed_dirs.py`), aggregates them with `stats.py` and renders the three files, each written
atomically. It starts no process and can be rerun at any time (`write_report(log_dir)`).

Aggregates follow Agarwal et al. 2021: median and interquartile mean (IQM) of time and env steps
to solve with 95% bootstrap confidence intervals over the solved seeds, how many unsolved seeds
that excludes, the median over all seeds with an unsolved seed counted as never solving, and a
performance profile. For runs that trained on after solving (`--keep-training`), it also says
how well the solved seeds stayed solved, every figure the README quotes: how many seeds passed
>= 99% of their post-solve rounds, the spread of `post_solve_pass_fraction` (the learner's
share of passing post-solve rounds), the lowest post-solve round mean, and the delivered
model's share apart. Nothing in the files depends on when they were written (no timestamps, a
fixed bootstrap seed), so regenerating a report from the same directories gives the same bytes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

from common import run_log
from experiments import stats
from experiments.seed_dirs import discover_seeds, read_eval, read_manifest, seed_dir, seed_outcome

REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"
STATUSES = ("solved", "unsolved", "crashed", "missing")


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------
def build_report(log_dir: str | Path) -> dict[str, Any]:
    """The report as a dict (what report.json holds), from the seed directories as they are now."""
    log_dir = Path(log_dir)
    entries, interrupted = read_manifest(log_dir)
    listed = {int(k) for k in entries if str(k).isdigit()}
    outcomes = [seed_outcome(log_dir, s, entries.get(str(s)))
               for s in sorted(listed | discover_seeds(log_dir))]
    ran = [r for r in outcomes if r["status"] in ("solved", "unsolved")]
    solved = [r for r in ran if r["solved"]]
    n_ran, k = len(ran), len(solved)

    def solved_values(key: str) -> list[float]:
        return [r[key] for r in solved if r[key] is not None]

    return {
        "log_dir": str(log_dir),
        "n_seeds": len(outcomes),
        "counts": {st: sum(r["status"] == st for r in outcomes) for st in STATUSES},
        "success": {
            "solved": k, "ran": n_ran, "rate": k / n_ran if n_ran else None,
            # Conservative view: every seed that did not finish cleanly counts as a failure.
            "rate_counting_failures": k / len(outcomes) if outcomes else None,
        },
        "solve_wall_s": stats.solve_stats(solved_values("solve_wall_s"), n_ran),
        "solve_env_steps": stats.solve_stats(solved_values("solve_env_steps"), n_ran),
        "bootstrap": dict(stats.BOOTSTRAP, min_n=stats.MIN_FOR_CI),
        "staying_solved": staying_solved(solved),
        "interrupted": interrupted,
        "seeds": [{key: v for key, v in r.items() if key != "tail"} for r in outcomes],
        "failures": [{"seed": r["seed"], "status": r["status"], "exit_code": r["exit_code"],
                      "note": r["note"], "tail": r["tail"]}
                     for r in outcomes if r["status"] in ("crashed", "missing")],
    }


#: A seed "stays solved" when at least this share of its post-solve rounds passes (issue 17's
#: target, with no post-solve round mean below STAY_SOLVED_MIN_MEAN).
STAY_SOLVED_SHARE, STAY_SOLVED_MIN_MEAN = 0.99, 450.0


def staying_solved(solved: list[dict[str, Any]]) -> dict[str, Any]:
    """How well the solved seeds stayed solved while training went on after the solve.

    Over the solved seeds with at least one evaluation round after the solve (only runs with
    --keep-training have such rounds): the learner's share of passing post-solve rounds, the
    same share for the delivered model (best.keras replayed on those rounds' episodes), and
    the lowest round mean after the solve (from eval.csv).
    """
    measured = [r for r in solved
                if r["post_solve_pass_fraction"] is not None and (r["post_solve_rounds"] or 0) > 0]
    lows = [(r["post_solve_min_mean"], r["seed"]) for r in measured if r["post_solve_min_mean"] is not None]
    lowest = min(lows) if lows else (None, None)
    champion = [r["champion_post_solve_pass_fraction"] for r in measured
                if r["champion_post_solve_pass_fraction"] is not None]
    return {
        "solved": len(solved), "measured": len(measured),
        "all_rounds_passed": sum(r["post_solve_pass_fraction"] == 1.0 for r in measured),
        "share_threshold": STAY_SOLVED_SHARE, "min_mean_threshold": STAY_SOLVED_MIN_MEAN,
        "at_threshold": sum(r["post_solve_pass_fraction"] >= STAY_SOLVED_SHARE for r in measured),
        "pass_fraction": stats.spread(r["post_solve_pass_fraction"] for r in measured),
        "post_solve_rounds": stats.spread(r["post_solve_rounds"] for r in measured),
        "lowest_round_mean": lowest[0], "lowest_round_mean_seed": lowest[1],
        "lowest_round_mean_known": len(lows),
        "round_mean_at_or_above": sum(m >= STAY_SOLVED_MIN_MEAN for m, _ in lows),
        "min_round_mean": stats.spread(m for m, _ in lows),
        "champion_measured": len(champion),
        "champion_at_threshold": sum(f >= STAY_SOLVED_SHARE for f in champion),
        "champion_pass_fraction": stats.spread(champion),
    }


def write_report(log_dir: str | Path) -> dict[str, Any]:
    """Aggregate the seed directories into report.json / report.md / report.png, written
    atomically; returns the report dict."""
    log_dir = Path(log_dir)
    report = build_report(log_dir)
    curves = {r["seed"]: read_eval(seed_dir(log_dir, r["seed"])) for r in report["seeds"]}
    log_dir.mkdir(parents=True, exist_ok=True)
    run_log.atomic_write_json(log_dir / REPORT_JSON, report)
    run_log.atomic_write_text(log_dir / REPORT_MD, render_markdown(report))
    run_log.atomic_write_bytes(log_dir / REPORT_PNG, render_png(report, curves))
    return report


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _fmt_time(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _fmt_steps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _fmt_est(est: dict[str, Any], fmt: Callable[[float | None], str]) -> str:
    if est["value"] is None:
        return "-"
    if est["ci_low"] is None:
        return f"{fmt(est['value'])} (no CI, n < {stats.MIN_FOR_CI})"
    return f"{fmt(est['value'])} [{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]"


def _md_outcome(report: dict[str, Any]) -> list[str]:
    c, s, n = report["counts"], report["success"], report["n_seeds"]
    lines = [f"# Multi-seed report: `{Path(report['log_dir']).name}`", ""]
    if report["interrupted"]:
        lines += ["**Interrupted (Ctrl-C): this report covers only the seeds that finished.**", ""]
    lines += [f"{n} seeds: {s['ran']} ran to a clean end ({c['solved']} solved, {c['unsolved']} unsolved), "
              f"{c['crashed']} crashed, {c['missing']} missing.", ""]
    if s["ran"]:
        lines.append(f"**Success rate: {s['solved']}/{s['ran']} ({100 * s['rate']:.1f}%)** of the seeds that ran.")
        if c["crashed"] or c["missing"]:
            lines.append(f"Counting the {c['crashed'] + c['missing']} crashed or missing seed(s) as failures: "
                         f"{s['solved']}/{n} ({100 * s['rate_counting_failures']:.1f}%).")
    else:
        lines.append("**No seed ran to a clean end.**")
    lines.append("")
    return lines


def iqm_meaning(n: int) -> str:
    """What the IQM column is, for `n` values: "the middle 50%" holds only when 4 divides n."""
    cut = n // 4
    return (f"IQM = interquartile mean (Agarwal et al. 2021): the mean after cutting floor(n/4) "
            f"values from each end, here {cut} of {n} from each end, so the mean of the middle "
            f"{n - 2 * cut}; the same function as rliable's aggregate_iqm (scipy's "
            f"trim_mean(x, 0.25)), which gives identical values.")


def _md_solve_stats(report: dict[str, Any]) -> list[str]:
    b, n_ran = report["bootstrap"], report["success"]["ran"]
    t, e = report["solve_wall_s"], report["solve_env_steps"]
    lines = [
        "## Time and environment steps to solve", "",
        f"Over the {t['n']} solved seed(s); {t['excluded_unsolved']} unsolved seed(s) excluded. "
        f"Brackets: {100 * b['confidence_level']:.0f}% {b['method']} bootstrap confidence interval "
        f"({b['n_resamples']:,} resamples, fixed seed), given from {b['min_n']} values up. "
        f"{iqm_meaning(t['n'])} Time is wall-clock seconds from process start, so it includes "
        "start-up.", "",
        f"| metric | median | IQM | mean | min | max | median of all {n_ran} (unsolved = inf) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m, fmt in (("wall time to solve (s)", t, _fmt_time), ("env steps to solve", e, _fmt_steps)):
        ma = m["median_all_seeds"]
        all_txt = "inf" if ma["infinite"] else fmt(ma["value"])
        lines.append(f"| {label} | {_fmt_est(m['median'], fmt)} | {_fmt_est(m['iqm'], fmt)} | "
                     f"{fmt(m['mean'])} | {fmt(m['min'])} | {fmt(m['max'])} | {all_txt} |")
    return lines


def _md_per_seed(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Per seed", "",
             "| seed | status | solved | time to solve (s) | env steps to solve | confirm mean | exit code | stop reason |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for r in report["seeds"]:
        cm = r["confirm_mean_return"]
        lines.append(f"| {r['seed']} | {r['status']} | {'yes' if r['solved'] else 'no'} | "
                     f"{_fmt_time(r['solve_wall_s'])} | {_fmt_steps(r['solve_env_steps'])} | "
                     f"{'-' if cm is None else f'{cm:.1f}'} | "
                     f"{'-' if r['exit_code'] is None else r['exit_code']} | {r['stop_reason'] or '-'} |")
    return lines


def _fmt_share(v: float | None) -> str:
    """Two decimals, so a share just under the 99% threshold (96/97 = 98.97%) never reads 99.0%."""
    return "-" if v is None else f"{100 * v:.2f}%"


def _fmt_mean(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _spread_row(label: str, sp: dict[str, Any], fmt: Callable[[float | None], str]) -> str:
    return f"| {label} | {fmt(sp['min'])} | {fmt(sp['median'])} | {fmt(sp['mean'])} | {fmt(sp['max'])} |"


def _md_staying_solved(report: dict[str, Any]) -> list[str]:
    """Only for runs with evaluation rounds after the solve; otherwise there is nothing to say."""
    st = report["staying_solved"]
    if not st["measured"]:
        return []
    m, share = st["measured"], st["share_threshold"]
    low = st["lowest_round_mean"]
    low_txt = ("unknown (no eval.csv with the post-solve rows)" if low is None else
               f"{low:.1f} (seed {st['lowest_round_mean_seed']}; known for {st['lowest_round_mean_known']} of {m} seeds)")
    lines = ["", "## Staying solved", "",
             f"{m} of the {st['solved']} solved seeds were evaluated after solving (training went on "
             "with `--keep-training`). Per seed, the share of those post-solve evaluation rounds "
             "that passed (all episodes at 500), for the learner and for the delivered model "
             "(`best.keras` replayed on the same rounds' episodes), and the lowest round mean "
             "after the solve (eval.csv).", "",
             f"- **Learner: {st['at_threshold']}/{m} seeds passed >= {100 * share:.0f}% of their "
             f"post-solve rounds** ({st['all_rounds_passed']}/{m} passed every one).",
             f"- **Lowest post-solve round mean: {low_txt}**; seeds with every post-solve round "
             f"mean >= {st['min_mean_threshold']:.0f}: {st['round_mean_at_or_above']}/{st['lowest_round_mean_known']}.",
             f"- Delivered model (best.keras): {st['champion_at_threshold']}/{st['champion_measured']} "
             f"seeds passed >= {100 * share:.0f}% of the same rounds.", "",
             "| over the seeds | min | median | mean | max |", "|---|---:|---:|---:|---:|",
             _spread_row("learner: post-solve rounds passed", st["pass_fraction"], _fmt_share),
             _spread_row("best.keras: post-solve rounds passed", st["champion_pass_fraction"], _fmt_share),
             _spread_row("lowest post-solve round mean", st["min_round_mean"], _fmt_mean),
             _spread_row("post-solve rounds", st["post_solve_rounds"], _fmt_steps),
             "", "| seed | post-solve rounds | passed | learner share | lowest round mean | best.keras share |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in report["seeds"]:
        if r["solved"] and r["post_solve_pass_fraction"] is not None and (r["post_solve_rounds"] or 0) > 0:
            lines.append(f"| {r['seed']} | {_fmt_steps(r['post_solve_rounds'])} | "
                         f"{_fmt_steps(r['post_solve_passed'])} | {_fmt_share(r['post_solve_pass_fraction'])} | "
                         f"{_fmt_mean(r['post_solve_min_mean'])} | "
                         f"{_fmt_share(r['champion_post_solve_pass_fraction'])} |")
    return lines


def _md_failures(report: dict[str, Any]) -> list[str]:
    if not report["failures"]:
        return []
    lines = ["", "## Crashed or missing seeds", ""]
    for f in report["failures"]:
        code = "" if f["exit_code"] is None else f", exit code {f['exit_code']}"
        lines.append(f"- seed {f['seed']}: {f['status']}{code}: {f['note']}")
        if f["tail"]:
            lines += ["", "  ```", *[f"  {ln}" for ln in f["tail"][-10:]], "  ```", ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    lines = [*_md_outcome(report), *_md_solve_stats(report), *_md_staying_solved(report),
             *_md_per_seed(report), *_md_failures(report)]
    lines += ["", f"![eval curves and performance profile]({REPORT_PNG})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------
STATUS_COLOURS = {"solved": "tab:blue", "unsolved": "tab:orange", "crashed": "tab:red", "missing": "tab:gray"}


def _draw_eval_curves(ax: Any, report: dict[str, Any], curves: dict[int, list[tuple[float, float]]]) -> None:
    status = {r["seed"]: r["status"] for r in report["seeds"]}
    drawn = set()
    for seed, pts in sorted(curves.items()):
        if not pts:
            continue
        x, y = zip(*pts)
        st = status.get(seed, "missing")
        ax.plot(x, y, lw=0.8, alpha=0.75, color=STATUS_COLOURS[st], label=st if st not in drawn else None)
        drawn.add(st)
    ax.axhline(500, color="k", ls="--", lw=1, label="500 (max return)")
    ax.set(xlabel="environment steps", ylabel="greedy eval mean return",
           title=f"Eval curves, one line per seed ({sum(bool(p) for p in curves.values())} seeds)",
           ylim=(0, 520))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def _draw_profile(ax: Any, report: dict[str, Any]) -> None:
    """Fraction of seeds solved against wall time: each solve lifts the curve by 1/n_ran."""
    n_ran = report["success"]["ran"]
    times = sorted(r["solve_wall_s"] for r in report["seeds"] if r["solved"] and r["solve_wall_s"] is not None)
    if n_ran:
        ends = [r["total_wall_s"] for r in report["seeds"] if r["total_wall_s"] is not None]
        x_end = max([*times, *ends, 1.0])
        # Step function from (0, 0); unsolved seeds never lift it, so it ends below 1.
        xs = [0.0, *times, x_end]
        ys = [0.0, *[(i + 1) / n_ran for i in range(len(times))], len(times) / n_ran]
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.5)
        ax.set_xlim(0, x_end * 1.02)
    else:
        ax.text(0.5, 0.5, "no seed ran to a clean end", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="wall time from process start (s)", ylabel="fraction of seeds solved",
           title=f"Performance profile ({len(times)}/{n_ran} seeds solved)", ylim=(0, 1.02))
    ax.grid(alpha=0.3)


def render_png(report: dict[str, Any], curves: dict[int, list[tuple[float, float]]]) -> bytes:
    """Eval curves (left) and the performance profile (right), as PNG bytes."""
    # The object API with an explicit Agg canvas: no pyplot, so no global backend or figure
    # state is touched, and it works headless and from any thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_eval, ax_prof = fig.subplots(1, 2)
    _draw_eval_curves(ax_eval, report, curves)
    _draw_profile(ax_prof, report)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
