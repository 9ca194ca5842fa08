"""A demo of one greedy episode of standard CartPole-v1, saved as an animated GIF.

Frames come from gymnasium's own `rgb_array` mode (pygame draws off-screen, so no display is
needed) and are encoded with Pillow, which matplotlib already depends on: no ffmpeg. A GIF
rather than MP4 because browsers and Markdown viewers play it inline, README included. Frames
are thinned and downscaled so a full 500-step episode stays well under a megabyte.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from run_log import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

#: Greedy policy: a batch of observations [n, 4] float32 -> actions [n].
ActFn = Callable[[np.ndarray], np.ndarray]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())  # pygame/gymnasium messages can span several lines
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _headless_sdl() -> None:
    # pygame must not look for a screen or a sound card on a headless box; respect the
    # caller's choice if they set these themselves.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def _grab(env: Any, scale: float) -> "Image.Image":
    """The current frame as a small palette image; RuntimeError if rendering is unavailable."""
    from PIL import Image

    try:
        rgb = env.render()
    except Exception as e:  # noqa: BLE001 - missing pygame, no video driver, ...
        raise RuntimeError(f"cannot render CartPole here ({_one_line(e)})") from None
    if rgb is None:
        raise RuntimeError("cannot render CartPole here (env.render() returned no frame)")
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    if scale != 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
    # CartPole has a handful of flat colours; 32 covers them plus the resize's soft edges.
    return img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)


def record_demo(act: ActFn, path: str | Path, seed: int = 0, max_steps: int = 500,
                frame_stride: int = 2, scale: float = 0.5, fps: float = 25.0) -> dict[str, Any]:
    """Play one episode with `act` and write it as a looping GIF at `path`, atomically.

    Every `frame_stride`-th frame is kept (plus the last one, so the ending is visible) and
    shrunk by `scale`. CartPole advances 0.02 s per step, so stride 2 at 25 fps is real time.
    Returns {"path", "frames", "return", "bytes", "steps"}. Raises RuntimeError with a one-line
    message if this machine cannot render CartPole; errors raised by `act` pass through as is.
    """
    if frame_stride < 1 or not scale > 0 or max_steps < 1:
        raise ValueError("record_demo needs frame_stride >= 1, scale > 0 and max_steps >= 1")
    _headless_sdl()
    try:
        import gymnasium as gym
    except ImportError as e:
        raise RuntimeError(f"cannot render CartPole here ({_one_line(e)})") from None

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    frames: list[Image.Image] = []
    total, steps = 0.0, 0
    try:
        obs, _ = env.reset(seed=seed)
        frames.append(_grab(env, scale))  # fail fast, before the policy runs at all
        while steps < max_steps:
            action = np.asarray(act(np.asarray(obs, dtype=np.float32)[None, :]))
            obs, reward, terminated, truncated, _ = env.step(int(action.reshape(-1)[0]))
            total += float(reward)
            steps += 1
            done = terminated or truncated or steps >= max_steps
            if done or steps % frame_stride == 0:
                frames.append(_grab(env, scale))
            if done:
                break
    finally:
        env.close()

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=max(20, round(1000 / fps)), optimize=True)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return {"path": str(path), "frames": len(frames), "return": total, "bytes": len(data),
            "steps": steps}
