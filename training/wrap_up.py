"""The end of a run, after the loop stops: every output a finished run leaves behind.

    wrap_up(run, reason, episode_seed)
      on_loop_end         the figure's process gets the last rows and starts the final PNG
      checkpoint          the final one (TF variables, replay, Progress)
      final.keras         the network as it ended
      confirmation        best.keras on `confirm_episodes` never-seen episodes (reported only)
      demo                (--graphics) a greedy episode of best.keras
      summary.json        the run's verdict and figures
      figure              collected from its process (or drawn here if it could not deliver)
      timings.json        seconds by component
      console             "wrote ..." (and "not solved ..." when it did not solve)

The certificate and the choice of best.keras are decisions of the run, made in the trainer
before the "solved" line; nothing here changes what the run decided, it only reports it.
`run` is the `Trainer` (this module reads its state and calls its checkpoint); `episode_seed`
maps an evaluation-round index to its episode seeds (the trainer's `eval_seed` for this run).

The confirmation plays the trainer's champion: the certified snapshot's float32 weights, which
are what best.keras holds (a resumed run reads them back from the file), so the file is not
loaded again on the way out.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from common import rules, seeds
from common.run_log import (BEST_MODEL, FIGURE_PNG, FINAL_MODEL, MODEL_DIR, SUMMARY_JSON,
                            TIMINGS_JSON)

CONFIRM_ENVS = 64      # the confirmation's episodes run this many at a time
#: What each time in summary.json and timings.json measures (they are all seconds from the
#: clock origin, `clock_origin` in both files).
CLOCKS = {
    "solve_wall_s": "when the trainer applied the verdict that solved the run (its certificate "
                    "played), just before the 'solved' line",
    "total_wall_s": "when the training loop stopped, before the wrap-up (final checkpoint, "
                    "exports, confirmation, figure, summary)",
    "wrap_up_end_wall_s": "when timings.json was written, after the wrap-up; only the profile "
                          "files and the process exit come later",
}


def confirmation_seed(seed: int) -> int:
    """The confirmation's episode seeds: a stream of their own (common/seeds.py)."""
    return seeds.episode_seed(seed, seeds.CONFIRMATION, 0)

TIMINGS_NOTE = (
    "store_and_learn = replay add + learning steps, fused in one TensorFlow call; "
    "act_and_pack = NumPy acting and packing; eval_rounds_played = time spent playing evaluation "
    "rounds (in the worker process, overlapping learning); eval_wait = time the loop waited for "
    "a round; observers_end = closing TensorBoard and collecting the final figure from its "
    "process (plot: the figure drawn here instead); wall from the clock origin")


def wrap_up(run: Any, reason: str, episode_seed: Callable[[int], int]) -> dict[str, Any]:
    """Final checkpoint, final model, confirmation of best.keras, figure, demo, summary.

    The figure's process starts rendering the final PNG first (on the second core), while this
    process checkpoints, exports and confirms; `on_end` then collects it.
    """
    prog = run.prog
    end_wall = run.wall()
    solved = f"solved at {prog.solve_wall_s:.1f} s" if prog.solved else "not solved"
    run.notify("on_loop_end", f"finished: {solved}")
    run.checkpoint()
    with run.timer.section("export"):
        run.agent.export(str(run.run_dir / MODEL_DIR / FINAL_MODEL))
    best_net = run.champion() if prog.solved else None
    confirmed = confirm(run, best_net, confirmation_seed(run.cfg.seed)) if best_net is not None else {}
    demo = write_demo(run, best_net) if run.cfg.graphics else None
    run.flush_csvs()
    result = summary(run, reason, end_wall, confirmed, champion_post_solve_share(run, episode_seed))
    run.run_dir.write_json(SUMMARY_JSON, result)
    with run.timer.section("observers_end"):
        run.notify("on_end", result)
    if not any(o.figure_written for o in run.observers):
        write_figure(run)  # no figure process, or it could not deliver
    write_timings(run, end_wall)
    run.env.close()
    say_where_it_wrote(run, result, demo)
    return result


def confirm(run: Any, best_net: Any, seed: int) -> dict[str, Any]:
    """`confirm_episodes` never-seen episodes with best.keras, reported, never judged."""
    from acting import evaluation
    if not run.cfg.confirm_episodes:
        return {}
    with run.timer.section("confirm"):
        res = evaluation.evaluate(best_net.greedy, run.cfg.confirm_episodes, seed=seed,
                                  num_envs=CONFIRM_ENVS)
    stats = res.stats()
    run.say(f"confirmation: {stats['at_500']}/{stats['episodes']} never-seen episodes at "
            f"500 with {MODEL_DIR}/{BEST_MODEL} (mean {stats['mean']:.1f}, min {stats['min']:.0f})")
    return stats


def champion_post_solve_share(run: Any, episode_seed: Callable[[int], int]) -> float | None:
    """The delivered model (best.keras) replayed on every post-solve round's own episodes:
    the share of those rounds it passes (post_solve_pass_fraction is the learner's)."""
    from acting import evaluation
    from acting.eval_rounds import ROUND_ENVS
    prog, cfg = run.prog, run.cfg
    post = [r for r in prog.eval_rows if prog.solved and r["round"] > prog.solved_at_round]
    if not post:
        return None
    with run.timer.section("champion_replay"):
        act = run.champion().greedy
        passed = sum(evaluation.evaluate(act, cfg.eval_episodes, seed=episode_seed(r["round"] - 1),
                                         num_envs=min(cfg.eval_episodes, ROUND_ENVS)).passed
                     for r in post)
    return passed / len(post)


def write_figure(run: Any) -> None:
    from outputs.plots import plot_training
    with run.timer.section("plot"):
        plot_training(run.prog.metrics_rows, run.prog.eval_rows, run.run_dir / FIGURE_PNG)


def write_demo(run: Any, best_net: Any) -> Path | None:
    """A greedy episode of best.keras (the model that solved), or of the final network."""
    from outputs.video import record_demo
    net = best_net if best_net is not None else run.qnet
    with run.timer.section("graphics"):
        try:
            info = record_demo(net.greedy, run.run_dir / demo_name(run.cfg),
                               seed=seeds.episode_seed(run.cfg.seed, seeds.DEMO, 0),
                               fmt=run.cfg.video_format)
        except RuntimeError as e:
            run.say(f"demo video skipped: {e}")
            return None
    return Path(info["path"])


def demo_name(cfg: Any) -> str:
    return f"cartpole_demo.{cfg.video_format}"


def summary(run: Any, reason: str, end_wall: float, confirm: dict[str, Any],
            champion_share: float | None) -> dict[str, Any]:
    from common.errors import EXIT_SOLVED, EXIT_UNSOLVED
    prog = run.prog
    return {
        "solved": prog.solved, "solve_wall_s": prog.solve_wall_s,
        "solve_env_steps": prog.solve_env_steps, "solve_learn_steps": prog.solve_learn_steps,
        "clock_origin": run.clock_origin,
        "confirm_mean_return": confirm.get("mean"), "confirm_min_return": confirm.get("min"),
        "confirm_episodes": confirm.get("episodes", 0), "confirm_at_500": confirm.get("at_500"),
        "confirm_model": f"{MODEL_DIR}/{BEST_MODEL}" if confirm else None,
        "total_wall_s": end_wall, "total_env_steps": prog.env_steps,
        "total_learn_steps": prog.learn_steps, "eval_rounds": prog.rounds,
        "best_eval_mean": prog.best_eval_mean, "post_solve_rounds": prog.post_solve_rounds,
        "post_solve_passed": prog.post_solve_passed,
        "post_solve_pass_fraction": (prog.post_solve_passed / prog.post_solve_rounds
                                     if prog.post_solve_rounds else None),
        "champion_post_solve_pass_fraction": champion_share,
        "best_model_env_steps": prog.best_model_env_steps, "promotions": prog.promotions,
        "challenges": prog.challenges,
        "certificate_episodes": prog.certificate_episodes,
        "certificate_at_500": prog.certificate_at_500,
        "certificate_seed": prog.certificate_seed,
        "certificate_failure_bound": (rules.failure_rate_bound(prog.certificate_episodes)
                                      if prog.certificate_episodes else None),
        "certificates_failed": prog.certificates_failed,
        "stop_reason": reason, "exit_code": EXIT_SOLVED if prog.solved else EXIT_UNSOLVED,
        "seed": run.cfg.seed, "peak_rss_mb": run.peak_rss / 2**20,
        "resumed_from_env_steps": prog.resumed_from_env_steps,
        "store_and_learn_traces": run.store_and_learn.traces(),
        # "loaded": the traced graph of an earlier run of this configuration was reused
        # (graph_cache.py); "traced": traced here and kept; "plain": not cached.
        "store_and_learn_graph": run.store_and_learn.status,
    }


def write_timings(run: Any, end_wall: float) -> None:
    run.timer.add("eval_rounds_played", run.round_runner.busy_s)
    run.run_dir.write_json(TIMINGS_JSON, {
        "seconds": {k: round(v, 4) for k, v in run.timer.seconds.items()},
        "total_wall_s": end_wall, "clock_origin": run.clock_origin,
        # Taken here, as the last file is written: the wrap-up is in it, the profile files and
        # the exit after it are not.
        "wrap_up_end_wall_s": run.wall(), "clocks": CLOCKS,
        # CPU seconds of this process alone (all its threads; not the evaluation worker's or the
        # figure's process): unlike wall time, hardly moved by other load.
        "process_cpu_s": round(time.process_time(), 3),
        # What the figure's process did (live redraws, their seconds, backend), when there is one.
        "figure_process": next((o.report for o in run.observers
                                if getattr(o, "report", None) is not None), None),
        "note": TIMINGS_NOTE})


def say_where_it_wrote(run: Any, summary: dict[str, Any], demo: Path | None) -> None:
    d = run.run_dir.path
    if not summary["solved"]:
        run.say(f"not solved: stopped by {summary['stop_reason']} after "
                f"{summary['total_env_steps']:,} env steps; best round mean "
                f"{summary['best_eval_mean']:.1f}")
    files = [d / SUMMARY_JSON, d / FIGURE_PNG]
    if summary["solved"]:
        files.append(d / MODEL_DIR / BEST_MODEL)
    files += [demo] if demo is not None else []
    run.say("wrote " + ", ".join(str(f) for f in files))
