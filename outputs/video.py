"""A demo of one greedy episode of standard CartPole-v1, saved as GIF (default), MP4 or WebM.

Frames come from gymnasium's own `rgb_array` mode (pygame draws off-screen, so no display is
needed). GIF is the default because browsers and Markdown viewers play it inline, README
included; it is encoded with Pillow, which matplotlib already depends on, with frames thinned
and downscaled so a full 500-step episode stays well under a megabyte. MP4 (H.264) and WebM
(VP9) keep every frame at full size and real time; they are encoded by the ffmpeg binary that
ships inside the `imageio-ffmpeg` wheel (requirements/video.txt), installed only when asked for,
so nobody needs a system ffmpeg and a GIF-only user installs nothing extra.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from common.run_log import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

#: Greedy policy: a batch of observations [n, 4] float32 -> actions [n].
ActFn = Callable[[np.ndarray], np.ndarray]

FORMATS = ("gif", "mp4", "webm")
#: CartPole-v1 advances 0.02 s per step: 50 frames a second is real time.
STEPS_PER_SECOND = 50.0
#: Per format: frame stride, scale, and the ffmpeg codec and options (None: Pillow's GIF).
#: H.264 and VP9 at constant quality; yuv420p and faststart so every browser plays the MP4.
_ENCODING: dict[str, tuple[int, float, str | None, list[str]]] = {
    "gif": (2, 0.5, None, []),
    "mp4": (1, 1.0, "libx264", ["-crf", "23", "-preset", "medium", "-movflags", "+faststart"]),
    "webm": (1, 1.0, "libvpx-vp9", ["-crf", "34", "-b:v", "0", "-deadline", "good",
                                    "-cpu-used", "4", "-row-mt", "1"]),
}
_INSTALL_HINT = "pip install -r requirements/video.txt"


class VideoFormatError(RuntimeError, ValueError):
    """A video format this machine cannot write; the message is one line for the user.

    A RuntimeError like every other reason a demo cannot be made (a finished run then skips its
    demo with this line), and a ValueError like every bad setting, so that checked at start-up
    (`require_format`) the command line reports it as a usage error, never as a traceback.
    """


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())  # pygame/gymnasium/ffmpeg messages can span several lines
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _headless_sdl() -> None:
    # pygame must not look for a screen or a sound card on a headless box; respect the
    # caller's choice if they set these themselves.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def demo_path(path: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """The file to write and its format: `fmt` wins and replaces a known video suffix
    ("demo.gif" + "webm" -> "demo.webm"); without `fmt` the suffix decides, GIF by default."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        fmt = suffix if suffix in FORMATS else "gif"
    if fmt not in FORMATS:
        raise ValueError(f"video format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if suffix in FORMATS:
        path = path.with_suffix("")
    return path.with_name(f"{path.name}.{fmt}"), fmt


def require_format(fmt: str) -> None:
    """Raise VideoFormatError (one line) now if `fmt` cannot be written here, so a run can
    refuse at start-up rather than after training."""
    if fmt not in FORMATS:
        raise ValueError(f"video format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if _ENCODING[fmt][2] is None:
        return
    try:
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise VideoFormatError(f"--video-format {fmt} needs imageio-ffmpeg ({_one_line(e)}); "
                               f"install it with: {_INSTALL_HINT}") from None


def _grab(env: Any, scale: float, even: bool) -> np.ndarray:
    """The current frame as RGB uint8 [h, w, 3]; RuntimeError if rendering is unavailable.
    `even` trims to even sizes, which H.264/VP9 in yuv420p require."""
    from PIL import Image

    try:
        rgb = env.render()
    except Exception as e:  # noqa: BLE001 - missing pygame, no video driver, ...
        raise RuntimeError(f"cannot render CartPole here ({_one_line(e)})") from None
    if rgb is None:
        raise RuntimeError("cannot render CartPole here (env.render() returned no frame)")
    frame = np.asarray(rgb, dtype=np.uint8)
    if scale != 1.0:
        img = Image.fromarray(frame)
        size = (max(2, round(img.width * scale)), max(2, round(img.height * scale)))
        frame = np.asarray(img.resize(size, Image.Resampling.BILINEAR))
    if even:
        frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
    return np.ascontiguousarray(frame)


class _GifSink:
    """Collects palette frames in memory (a few KB each) and encodes them at the end."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.frames: list[Image.Image] = []

    def add(self, frame: np.ndarray) -> None:
        from PIL import Image
        # CartPole has a handful of flat colours; 32 covers them plus the resize's soft edges.
        self.frames.append(Image.fromarray(frame).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=32))

    def finish(self) -> bytes:
        buf = io.BytesIO()
        self.frames[0].save(buf, format="GIF", save_all=True, append_images=self.frames[1:],
                            loop=0, duration=max(20, round(1000 / self.fps)), optimize=True)
        return buf.getvalue()

    def abort(self) -> None:
        self.frames.clear()


class _FfmpegSink:
    """Streams frames into ffmpeg as they are played (full-size RGB frames of a whole episode
    would take ~360 MB), into a temporary file that is read back once complete."""

    def __init__(self, fmt: str, fps: float) -> None:
        require_format(fmt)
        self.fmt, self.fps = fmt, fps
        self._tmp = tempfile.TemporaryDirectory(prefix="cartpole-demo-")
        self._file = os.path.join(self._tmp.name, f"demo.{fmt}")
        self._writer: Any = None
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg
        try:
            if self._writer is None:
                _, _, codec, options = _ENCODING[self.fmt]
                self._writer = imageio_ffmpeg.write_frames(
                    self._file, (frame.shape[1], frame.shape[0]), fps=self.fps, codec=codec,
                    quality=None, macro_block_size=2, output_params=options,
                    ffmpeg_log_level="error")
                self._writer.send(None)  # start ffmpeg
            self._writer.send(frame)
        except (OSError, RuntimeError, StopIteration) as e:
            self.abort()
            raise RuntimeError(f"cannot encode the {self.fmt} demo ({_one_line(e)})") from None
        self.frames += 1

    def finish(self) -> bytes:
        try:
            self._writer.close()
            with open(self._file, "rb") as f:
                return f.read()
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"cannot encode the {self.fmt} demo ({_one_line(e)})") from None
        finally:
            self._tmp.cleanup()

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - already failing; the first error is reported
                pass
            self._writer = None
        self._tmp.cleanup()


def record_demo(act: ActFn, path: str | Path, seed: int = 0, fmt: str | None = None,
                max_steps: int = 500, frame_stride: int | None = None,
                scale: float | None = None, fps: float | None = None) -> dict[str, Any]:
    """Play one episode with `act` and write it at `path` (suffix set by `fmt`), atomically.

    Every `frame_stride`-th frame is kept (plus the first and the last, so the ending is
    visible) and resized by `scale`; by default GIF keeps every 2nd frame at half size and
    MP4/WebM every frame at full size, both in real time (`fps` = 50 / stride).
    Returns {"path", "format", "frames", "return", "bytes", "steps"}. Raises VideoFormatError
    (one line) if the format's encoder is not installed and RuntimeError (one line) if this
    machine cannot render or encode; errors raised by `act` pass through as they are.
    """
    path, fmt = demo_path(path, fmt)
    default_stride, default_scale, codec, _ = _ENCODING[fmt]
    frame_stride = default_stride if frame_stride is None else frame_stride
    scale = default_scale if scale is None else scale
    if frame_stride < 1 or not scale > 0 or max_steps < 1:
        raise ValueError("record_demo needs frame_stride >= 1, scale > 0 and max_steps >= 1")
    fps = STEPS_PER_SECOND / frame_stride if fps is None else fps
    _headless_sdl()
    try:
        import gymnasium as gym
    except ImportError as e:
        raise RuntimeError(f"cannot render CartPole here ({_one_line(e)})") from None
    sink = _GifSink(fps) if codec is None else _FfmpegSink(fmt, fps)  # missing encoder: now

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    total, steps, frames = 0.0, 0, 0
    try:
        obs, _ = env.reset(seed=seed)
        sink.add(_grab(env, scale, even=codec is not None))  # fail fast, before the policy runs
        frames = 1
        while steps < max_steps:
            action = np.asarray(act(np.asarray(obs, dtype=np.float32)[None, :]))
            obs, reward, terminated, truncated, _ = env.step(int(action.reshape(-1)[0]))
            total += float(reward)
            steps += 1
            done = terminated or truncated or steps >= max_steps
            if done or steps % frame_stride == 0:
                sink.add(_grab(env, scale, even=codec is not None))
                frames += 1
            if done:
                break
    except BaseException:
        sink.abort()
        raise
    finally:
        env.close()

    data = sink.finish()
    atomic_write_bytes(path, data)
    return {"path": str(path), "format": fmt, "frames": frames, "return": total,
            "bytes": len(data), "steps": steps}
