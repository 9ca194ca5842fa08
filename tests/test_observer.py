"""The Observer interface: every hook declared once, a misspelt hook fails loudly."""
import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from common.observer import HOOKS, Observer, hook

ROOT = Path(__file__).resolve().parent.parent


def test_the_hooks_are_the_ones_the_trainer_calls():
    assert HOOKS == {"on_metrics", "on_episodes", "on_eval", "on_solve", "on_checkpoint",
                     "on_loop_end", "on_end", "on_abort"}


def test_a_misspelt_hook_in_an_observer_is_refused_when_its_class_is_made():
    with pytest.raises(TypeError, match="on_metric, which is not an Observer hook"):
        class Typo(Observer):
            def on_metric(self, row):  # meant on_metrics: would never be called
                pass


def test_a_misspelt_event_is_refused_when_the_trainer_notifies():
    from training.trainer import Trainer
    seen = []

    class Rows(Observer):
        def on_metrics(self, row):
            seen.append(row)

    trainer = SimpleNamespace(observers=[Rows(), Observer()])
    Trainer.notify(trainer, "on_metrics", {"env_steps": 1})
    assert seen == [{"env_steps": 1}]
    with pytest.raises(TypeError, match="'on_metric' is not an Observer hook"):
        Trainer.notify(trainer, "on_metric", {"env_steps": 2})
    with pytest.raises(TypeError):
        hook(Observer(), "finish")  # the old name of on_loop_end


def test_every_event_the_trainer_sends_is_a_declared_hook():
    # The calls are string names; read them from the source so a misspelt one fails here,
    # without a training run reaching it.
    events = []
    for path in (ROOT / "training").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "notify" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                events.append(node.args[0].value)
    assert {"on_metrics", "on_eval", "on_end"} <= set(events)
    assert set(events) <= HOOKS, set(events) - HOOKS


def test_tensorboard_and_the_live_view_are_observers():
    from outputs.live_view import LiveView
    from outputs.tb_log import TensorBoardObserver
    assert issubclass(TensorBoardObserver, Observer) and issubclass(LiveView, Observer)
    assert Observer().figure_written is False
