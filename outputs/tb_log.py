"""TensorBoard event files for a run, written with `tf.summary` from the rows the trainer logs.

`TensorBoardObserver` is one of the trainer's observers (see the Observer methods below). Every
scalar tag comes from `metrics.py`, so a TensorBoard curve and its CSV column cannot drift apart.
The x axis of every curve is `env_steps`. The run's settings go to TensorBoard's hparams plugin
with the solve and evaluation tags as its metrics, so `tensorboard --logdir runs/seeds` (or a
sweep's directory) lines up seeds and trials with the settings that produced them.

Cost and safety, both decided by WHEN values reach the event file:
- The observer's row methods only append to a Python list (about a microsecond). The values are
  written and flushed at `on_checkpoint` and `on_end`, so a default run, which checkpoints only
  at its end, pays for TensorBoard after it has solved, never on the way to the solve.
- Each write is one event per env step holding every tag of that step: an eager
  `tf.summary.scalar` cost ~0.4 ms per value here (~0.6 s for a default run's ~1,500 values),
  one event per step ~0.2 ms (~20 ms for the run).
- Each event carries the wall time at which its values were LOGGED, not the later time at which
  it was written, so TensorBoard's "relative" and "wall" axes show the run's real pace. That is
  why the events go through the summary writer's ImportEvent op (an Event proto with its own
  wall_time) rather than `tf.summary.experimental.write_raw_pb`, which stamps the write time.
- Nothing reaches the event file before the checkpoint that covers it. A resumed run restarts
  from its last checkpoint and writes a new event file in the same directory; TensorBoard reads
  all of a directory's event files as one run, in order, so the curves continue with no step
  written twice. (Values logged after the last checkpoint of a crashed session were never
  written, exactly like the rows the resumed run recomputes.)
"""
from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import metrics
from common.observer import Observer

#: CSV column -> tag, for metrics.csv rows and eval.csv rows.
TRAIN_TAGS = metrics.tags(metrics.TRAIN_METRICS)
EVAL_TAGS = metrics.tags(metrics.EVAL_METRICS)
#: Tag -> meaning, shown by TensorBoard as each chart's description.
DESCRIPTIONS = {m.tag: m.meaning for m in metrics.TRAIN_METRICS + metrics.EVAL_METRICS if m.tag}
DESCRIPTIONS[metrics.EPISODIC_LENGTH_TAG] = (
    "mean length of the training episodes finished in this interval (epsilon-greedy)")
DESCRIPTIONS[metrics.SOLVE_TAGS["solve_wall_s"]] = (
    "seconds from the clock origin (process start) to the solve; written once")
DESCRIPTIONS[metrics.SOLVE_TAGS["solve_env_steps"]] = "environment steps at the solve; written once"
#: Settings that only steer output, never what is learned: not hyperparameters to compare.
NOT_HPARAMS = frozenset({"log_dir", "quiet", "profile", "graphics", "video_format", "xla_cache",
                         "overwrite"})
#: The hparams dashboard's metrics: each session shows the LAST value of these tags, i.e. the
#: solve (absent if unsolved) and the final evaluation round.
HPARAM_METRIC_TAGS = (metrics.SOLVE_TAGS["solve_wall_s"], metrics.SOLVE_TAGS["solve_env_steps"],
                      TRAIN_TAGS["steps_per_s"], EVAL_TAGS["mean"], EVAL_TAGS["at_500"])

_EVENT_GLOB = "events.out.tfevents.*"
_DT_FLOAT = 1  # tensorflow.DataType.DT_FLOAT, as the scalar plugin stores values


def hparam_values(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The run's settings as hparams: scalars kept, sequences joined ("48,48"), unset (None)
    settings and output-only settings left out (the plugin takes bool/int/float/str only)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if key in NOT_HPARAMS:
            continue
        if isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
    return out


def _number(value: Any) -> float | None:
    """A float for the event file, or None for a missing value (CSV rows may hold '')."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _preload() -> None:
    """Import the TensorBoard modules the first flush needs (~30 ms, mostly the hparams API).

    Run on a background thread while the trainer sets up and compiles (TensorFlow's tracing and
    XLA release the GIL for long stretches), so the cost does not land on the first checkpoint.
    Any failure is left for the real import to report.
    """
    try:
        import tensorboard.compat.proto.event_pb2  # noqa: F401
        import tensorboard.plugins.hparams.api  # noqa: F401
        import tensorboard.plugins.scalar.metadata  # noqa: F401
    except Exception:  # noqa: BLE001
        pass


def _write_error(e: Any) -> OSError:
    lines = str(getattr(e, "message", e)).strip().splitlines() or [type(e).__name__]
    return OSError(f"TensorBoard event write failed: {lines[0][:160]}")


class TensorBoardObserver(Observer):
    """Writes the run's scalars and hparams into `log_dir` as TensorBoard event files.

    `config` is the run's settings (`TrainConfig.to_dict()`); `resumed` says this session
    continues a run whose earlier sessions may already have written events there. `seconds`
    accumulates the time spent inside this observer, for timings.json.
    """

    def __init__(self, log_dir: str | Path, config: dict[str, Any], resumed: bool, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.log_dir = Path(log_dir)
        self.config = dict(config)
        self.resumed = resumed
        self.seconds = 0.0
        self.values_written = 0
        self._clock = clock
        # step -> (wall time it was first logged, {tag: value})
        self._pending: dict[int, tuple[float, dict[str, float]]] = {}
        self._writer: Any = None
        self._tf: Any = None
        self._described: set[str] = set()  # tags whose metadata this event file already holds
        self._closed = False
        # TensorFlow writes event files without TensorBoard, but the protos and the hparams
        # plugin come from the tensorboard package: without it the run goes on, events off.
        self.available = importlib.util.find_spec("tensorboard") is not None
        if not self.available:
            print("TensorBoard events off: the tensorboard package is not installed "
                  "(pip install -r requirements.txt)", file=sys.stderr)
        else:
            threading.Thread(target=_preload, name="tensorboard-preload", daemon=True).start()

    # ---------------------------------------------------------------- Observer hooks
    def on_metrics(self, row: dict[str, Any]) -> None:
        t = time.perf_counter()
        self._add_row(row, TRAIN_TAGS)
        self.seconds += time.perf_counter() - t

    def on_episodes(self, env_steps: int, returns: np.ndarray, lengths: np.ndarray) -> None:
        # The interval's mean, not one value per episode: TensorBoard keeps a single value per
        # (tag, step), and every episode of an interval is reported at the same env step.
        # The return's mean arrives with the metrics row (train_return_mean).
        t = time.perf_counter()
        if len(lengths):
            self._add(int(env_steps), metrics.EPISODIC_LENGTH_TAG, float(np.mean(lengths)))
        self.seconds += time.perf_counter() - t

    def on_eval(self, row: dict[str, Any]) -> None:
        t = time.perf_counter()
        self._add_row(row, EVAL_TAGS)
        self.seconds += time.perf_counter() - t

    def on_solve(self, info: dict[str, Any]) -> None:
        t = time.perf_counter()
        step = _number(info.get("solve_env_steps"))
        if step is not None:
            for key, tag in metrics.SOLVE_TAGS.items():
                value = _number(info.get(key))
                if value is not None:
                    self._add(int(step), tag, value)
        self.seconds += time.perf_counter() - t

    def on_checkpoint(self) -> None:
        t = time.perf_counter()
        self.flush()
        self.seconds += time.perf_counter() - t

    def on_end(self, summary: dict[str, Any]) -> None:
        t = time.perf_counter()
        self.close()
        self.seconds += time.perf_counter() - t

    # ---------------------------------------------------------------- buffering
    def _add_row(self, row: dict[str, Any], tags: dict[str, str]) -> None:
        step = _number(row.get("env_steps"))
        if step is None:
            return
        for column, tag in tags.items():
            value = _number(row.get(column))
            if value is not None:
                self._add(int(step), tag, value)

    def _add(self, step: int, tag: str, value: float) -> None:
        entry = self._pending.get(step)
        if entry is None:
            entry = self._pending[step] = (self._clock(), {})
        entry[1][tag] = value

    # ---------------------------------------------------------------- writing
    def flush(self) -> None:
        """Write every pending value and flush the event file to disk.

        Raises OSError (one line) if TensorFlow cannot write, so the trainer reports it like
        any other failed log write and keeps its last checkpoint.
        """
        if not self.available:
            self._pending.clear()
            return
        if self._closed or (not self._pending and self._writer is not None):
            return
        tf = self._open()
        pending, self._pending = self._pending, {}
        try:
            for step in sorted(pending):
                wall, values = pending[step]
                self._write_event(step, wall, values)
                self.values_written += len(values)
            self._writer.flush()
        except tf.errors.OpError as e:
            raise _write_error(e) from None

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        if self._writer is not None:
            self._writer.close()
        self._closed = True

    def _open(self) -> Any:
        """Create the event file on first use, with the hparams of a run seen for the first time."""
        if self._writer is not None:
            return self._tf
        from common.tf_import import import_tensorflow
        tf = self._tf = import_tensorflow()
        # A resumed run keeps the hparams its first session wrote (TensorBoard would otherwise
        # list the run twice); only if no event file exists yet are they written now.
        first_session = not (self.resumed and any(self.log_dir.glob(_EVENT_GLOB)))
        try:
            # Our own buffering decides when data is written; TensorFlow's queue must not flush
            # on its own timer in between (its defaults: 10 items or 2 minutes).
            self._writer = tf.summary.create_file_writer(str(self.log_dir), max_queue=1 << 20,
                                                         flush_millis=1 << 30)
            if first_session:
                self._write_hparams()
        except tf.errors.OpError as e:
            self._writer = None
            raise _write_error(e) from None
        return tf

    def _write_hparams(self) -> None:
        from tensorboard.plugins.hparams import api as hp
        values = hparam_values(self.config)
        with self._writer.as_default():
            hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(values)],
                              metrics=[hp.Metric(tag, description=DESCRIPTIONS.get(tag, ""))
                                       for tag in HPARAM_METRIC_TAGS])
            # The run directory's name (seed_3, a sweep trial's name) identifies the trial in
            # the hparams table, rather than a hash of the values.
            hp.hparams(values, trial_id=self.log_dir.resolve().name or None)

    def _write_event(self, step: int, wall: float, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2
        summary = self._summary(values)
        resource = getattr(self._writer, "_resource", None)
        if resource is None:  # a TensorFlow without the writer's handle: write-time stamps
            with self._writer.as_default():
                self._tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
            return
        event = event_pb2.Event(wall_time=wall, step=step, summary=summary)
        self._tf.raw_ops.ImportEvent(writer=resource, event=event.SerializeToString())

    def _summary(self, values: dict[str, float]) -> Any:
        """One Summary proto holding every tag of a step, as `tf.summary.scalar` would store
        each (a float32 scalar tensor under the scalar plugin); metadata on a tag's first use."""
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.scalar import metadata as scalar_metadata
        summary = summary_pb2.Summary()
        for tag, value in values.items():
            entry = summary.value.add(tag=tag)
            entry.tensor.dtype = _DT_FLOAT
            entry.tensor.float_val.append(value)
            if tag not in self._described:
                entry.metadata.CopyFrom(scalar_metadata.create_summary_metadata(
                    display_name=tag, description=DESCRIPTIONS.get(tag, "")))
                self._described.add(tag)
        return summary
