"""The demo GIF: written, a real multi-frame GIF, showing the episode the policy played."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from outputs.video import record_demo


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


# --- formats: the path and the one-line error when an encoder is missing --------------------

def balance(obs):
    """Push toward where the pole is falling: survives far longer than always-left."""
    return (obs[:, 2] + obs[:, 3] > 0).astype(int)


@pytest.mark.parametrize("given, fmt, want", [
    ("run/cartpole_demo.gif", "webm", "run/cartpole_demo.webm"),
    ("run/cartpole_demo", "mp4", "run/cartpole_demo.mp4"),
    ("run/cartpole_demo", None, "run/cartpole_demo.gif"),
    ("run/cartpole_demo.webm", None, "run/cartpole_demo.webm"),
    ("run/demo.v1", "gif", "run/demo.v1.gif"),
])
def test_demo_path_takes_the_format_suffix(given, fmt, want):
    from pathlib import Path
    from outputs.video import demo_path
    path, chosen = demo_path(given, fmt)
    assert path == Path(want) and chosen == want.rsplit(".", 1)[1]


def test_unknown_format_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="gif, mp4, webm"):
        record_demo(balance, tmp_path / "x", fmt="avi")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_missing_imageio_ffmpeg_is_a_one_line_error(tmp_path, monkeypatch, fmt):
    from outputs import video
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(video.VideoFormatError) as err:
        video.require_format(fmt)
    assert "\n" not in str(err.value) and "requirements/video.txt" in str(err.value)
    with pytest.raises(video.VideoFormatError):
        record_demo(balance, tmp_path / "demo", fmt=fmt)
    assert not list(tmp_path.iterdir())
    video.require_format("gif")  # GIF needs nothing extra


# --- MP4 and WebM, when imageio-ffmpeg is installed ------------------------------------------

@pytest.mark.parametrize("fmt, magic", [("mp4", b"ftyp"), ("webm", b"\x1a\x45\xdf\xa3")])
def test_video_formats_decode_to_every_frame(tmp_path, monkeypatch, fmt, magic):
    ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="mp4/webm need imageio-ffmpeg (pip install -r requirements/video.txt)")
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    info = record_demo(balance, tmp_path / "cartpole_demo.gif", seed=0, fmt=fmt, max_steps=60)
    out = tmp_path / f"cartpole_demo.{fmt}"
    assert info["path"] == str(out) and info["format"] == fmt
    data = out.read_bytes()
    assert len(data) == info["bytes"] and magic in data[:64]
    assert info["return"] == info["steps"] == 60
    assert info["frames"] == 61  # the reset frame, then every step
    frames, seconds = ffmpeg.count_frames_and_secs(str(out))
    assert frames == info["frames"]
    assert seconds == pytest.approx(61 / 50, abs=0.05)  # real time: CartPole's 0.02 s a step
    reader = ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (600, 400)  # full size
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cartpole_demo.{fmt}", "tmp"]
    assert not list((tmp_path / "tmp").iterdir()), "encoder temp files left behind"


def test_video_policy_errors_pass_through_and_leave_nothing(tmp_path, monkeypatch):
    pytest.importorskip("imageio_ffmpeg", reason="mp4 needs imageio-ffmpeg")
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    calls = []

    def fails_later(obs):
        calls.append(1)
        if len(calls) > 5:
            raise ValueError("bad policy")
        return balance(obs)
    with pytest.raises(ValueError, match="bad policy"):
        record_demo(fails_later, tmp_path / "demo", fmt="mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"]
    assert not list((tmp_path / "tmp").iterdir())
