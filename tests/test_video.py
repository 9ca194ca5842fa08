"""The demo GIF: written, a real multi-frame GIF, and it shows the episode the policy played."""
from __future__ import annotations

import numpy as np
from PIL import Image

from video import record_demo


def test_demo_gif_written_and_valid(tmp_path):
    out = tmp_path / "demo.gif"
    # Always pushing left fails within a few dozen steps: a short, known episode.
    info = record_demo(lambda obs: np.zeros(len(obs), int), out, seed=0)
    data = out.read_bytes()
    assert data[:6] == b"GIF89a" and len(data) == info["bytes"] > 1000
    with Image.open(out) as img:
        # Pillow merges identical consecutive frames (e.g. a repeated final state) into one.
        assert 3 < img.n_frames <= info["frames"]
        assert img.size == (300, 200)  # 600x400 render at half scale
    assert 5 <= info["return"] < 50


def test_balancing_policy_gives_longer_episode(tmp_path):
    # Push toward where the pole is falling: survives far longer than always-left.
    info = record_demo(lambda obs: (obs[:, 2] + obs[:, 3] > 0).astype(int), tmp_path / "b.gif",
                       seed=0, max_steps=120, frame_stride=4)
    assert info["return"] == 120
    assert info["frames"] == 120 // 4 + 1
