"""A demo of one greedy episode of standard CartPole-v1, as an animated GIF.

Rendered through gymnasium's own `rgb_array` mode (pygame draws off-screen, so no display is
needed) and encoded with Pillow, which matplotlib already brings: no ffmpeg, no extra install.
A GIF rather than MP4 because every browser and Markdown viewer plays it inline, README included.
Frames are thinned and downscaled to keep a 500-step episode around a megabyte.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from run_log import atomic_write_bytes

ActFn = Callable[[np.ndarray], np.ndarray]


def record_demo(act: ActFn, path: str | Path, seed: int = 0, max_steps: int = 500,
                frame_stride: int = 2, scale: float = 0.5, fps: int = 25) -> dict[str, Any]:
    """Play one greedy episode with `act` (obs [1,4] -> actions [1]); write it as a GIF at `path`.

    Returns {"path", "frames", "return", "bytes"}. Raises RuntimeError (one line) if the
    environment cannot render here.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame without a screen
    import gymnasium as gym
    from PIL import Image

    try:
        env = gym.make("CartPole-v1", render_mode="rgb_array")
    except Exception as e:  # missing pygame and friends surface here
        raise RuntimeError(f"cannot render CartPole here: {e}") from None
    frames: list[Image.Image] = []
    total = 0.0
    try:
        obs, _ = env.reset(seed=seed)
        for t in range(max_steps):
            if t % frame_stride == 0:
                frames.append(_frame(env.render(), scale))
            action = int(np.asarray(act(np.asarray(obs, np.float32)[None, :]))[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        frames.append(_frame(env.render(), scale))  # the final state, failure included
    except Exception as e:
        raise RuntimeError(f"rendering failed: {type(e).__name__}: {e}") from None
    finally:
        env.close()
    buf = io.BytesIO()
    # Palette conversion per frame keeps colours right; duration is per frame in milliseconds.
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=max(1, round(1000 / fps)), optimize=True)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return {"path": str(path), "frames": len(frames), "return": total, "bytes": len(data)}


def _frame(rgb: np.ndarray, scale: float):
    from PIL import Image
    img = Image.fromarray(np.asarray(rgb, np.uint8))
    if scale != 1.0:
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))),
                         Image.BILINEAR)
    return img.convert("P", palette=Image.ADAPTIVE, colors=32)
