"""The trainer's Timer: `section` adds a block's seconds to its component, also when it raises."""
from __future__ import annotations

import pytest

from training import trainer


def test_section_adds_the_blocks_seconds_also_when_it_raises(monkeypatch):
    ticks = iter([1.0, 1.5, 2.0, 4.0, 10.0, 10.25])
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: next(ticks))
    timer = trainer.Timer()
    with timer.section("export"):
        pass
    with pytest.raises(ValueError):
        with timer.section("export"):
            raise ValueError("disk full")
    with timer.section("confirm"):
        pass
    assert timer.seconds == {"export": 2.5, "confirm": 0.25}
