"""The demo GIF: written, a real multi-frame GIF, showing the episode the policy played."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from video import record_demo


def test_demo_gif_written_and_valid(tmp_path):
    out = tmp_path / "demo.gif"
    # Always pushing left fails within a few dozen steps: a short, known episode.
    info = record_demo(lambda obs: np.zeros(len(obs), int), out, seed=0)
    data = out.read_bytes()
    assert data[:6] == b"GIF89a" and len(data) == info["bytes"] > 1000
    assert info["path"] == str(out)
    with Image.open(out) as img:
        # Pillow merges identical consecutive frames (e.g. a repeated final state) into one.
        assert 3 < img.n_frames <= info["frames"]
        assert img.size == (300, 200)  # 600x400 render at half scale
        assert img.info.get("loop") == 0
        # 25 fps; merged duplicate frames keep their time, so the total is unchanged.
        total_ms = 0
        for i in range(img.n_frames):
            img.seek(i)
            total_ms += img.info["duration"]
        assert total_ms == 40 * info["frames"]
    assert 5 <= info["return"] < 50
    assert info["frames"] == 1 + -(-info["steps"] // 2)  # first, every 2nd step, last
    assert not [p for p in tmp_path.iterdir() if p.name != "demo.gif"], "temp file left behind"


def test_balancing_policy_gives_longer_episode(tmp_path):
    # Push toward where the pole is falling: survives far longer than always-left.
    info = record_demo(lambda obs: (obs[:, 2] + obs[:, 3] > 0).astype(int), tmp_path / "b.gif",
                       seed=0, max_steps=120, frame_stride=4)
    assert info["return"] == info["steps"] == 120
    assert info["frames"] == 120 // 4 + 1


def test_missing_pygame_is_a_one_line_runtime_error(tmp_path, monkeypatch):
    # gymnasium imports pygame lazily inside render(); a None entry makes that import fail.
    monkeypatch.setitem(sys.modules, "pygame", None)
    monkeypatch.setitem(sys.modules, "pygame.gfxdraw", None)
    with pytest.raises(RuntimeError) as err:
        record_demo(lambda obs: np.zeros(len(obs), int), tmp_path / "x.gif")
    assert "\n" not in str(err.value) and "render" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_policy_errors_are_not_disguised_as_render_errors(tmp_path):
    def broken(obs):
        raise ValueError("bad policy")
    with pytest.raises(ValueError, match="bad policy"):
        record_demo(broken, tmp_path / "x.gif")
