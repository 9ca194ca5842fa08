"""The `Observer` interface: every hook the trainer calls, declared once.

An observer (TensorBoard, the figure's process) receives the run's rows and moments; it never
steers the run. The hooks, in the order a run calls them:

    on_metrics(row)                        every metrics.csv row, as it is made
    on_episodes(env_steps, returns, lengths)   the training episodes that ended in that chunk
    on_eval(row)                           every eval.csv row
    on_solve(info)                         once, when the solve rounds pass
    on_checkpoint()                        after each checkpoint is on disk
    on_loop_end(status)                    the loop has stopped; the wrap-up begins
    on_end(summary)                        the wrap-up is done (summary.json is written)
    on_abort()                             the run failed: stop, write nothing more

and one question the trainer asks after `on_end`: `figure_written` (did this observer write the
run's figure, so the trainer need not draw it).

The form is a base class whose hooks do nothing, as Stable-Baselines3's `BaseCallback`, rather
than a `typing.Protocol`, for what a Protocol cannot check at run time: an implementation writes
only the hooks it needs and the trainer calls every hook directly (no `getattr(..., None)` that
skips a misspelt name in silence); a subclass that defines an `on_*` method not declared here is
refused when its class is created, and `hook()` refuses an event name not declared here.
"""
from __future__ import annotations

from typing import Any, Callable


class Observer:
    """Base of every observer: all hooks declared, none does anything."""

    def on_metrics(self, row: dict[str, Any]) -> None:
        pass

    def on_episodes(self, env_steps: int, returns: Any, lengths: Any) -> None:
        pass

    def on_eval(self, row: dict[str, Any]) -> None:
        pass

    def on_solve(self, info: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self) -> None:
        pass

    def on_loop_end(self, status: str) -> None:
        pass

    def on_end(self, summary: dict[str, Any]) -> None:
        pass

    def on_abort(self) -> None:
        pass

    @property
    def figure_written(self) -> bool:
        return False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = sorted(name for name in vars(cls) if name.startswith("on_") and name not in HOOKS)
        if unknown:
            raise TypeError(f"{cls.__name__} defines {', '.join(unknown)}, which is not an "
                            f"Observer hook (hooks: {', '.join(sorted(HOOKS))})")


HOOKS = frozenset(name for name in vars(Observer) if name.startswith("on_"))


def hook(observer: Observer, event: str) -> Callable[..., None]:
    """The observer's method for `event`, which must be a declared hook."""
    if event not in HOOKS:
        raise TypeError(f"'{event}' is not an Observer hook (hooks: {', '.join(sorted(HOOKS))})")
    return getattr(observer, event)
