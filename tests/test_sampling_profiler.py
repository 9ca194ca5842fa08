"""The default profiler (common/sampling_profiler.py) and how cartpole.py writes either one."""
from __future__ import annotations

import marshal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.sampling_profiler import SamplingProfiler, frame_name, shorten  # noqa: E402


def python_work(seconds: float) -> None:
    """Pure Python, holding the GIL the whole time."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(200))


BLOCK = np.ones(20_000)


def release_point() -> None:
    """An instant without the GIL: NumPy releases it around a kernel on an array this size (a
    sleep would too, but on a loaded machine it also hands the CPU away, and then the time
    really is spent there)."""
    np.sqrt(BLOCK, out=BLOCK)


def waiting(seconds: float) -> None:
    time.sleep(seconds)


def shares(p: SamplingProfiler) -> dict[str, float]:
    inclusive, _own = p.function_seconds()
    return {name: s / p.sampled_s for (_f, _l, name), s in inclusive.items()}


def test_samples_split_the_time_between_functions():
    p = SamplingProfiler()
    p.enable()
    python_work(0.3)
    waiting(0.3)
    p.disable()
    s = shares(p)
    assert p.samples > 40 and 0.55 <= p.sampled_s <= 1.5
    assert 0.3 <= s["python_work"] <= 0.7 and 0.3 <= s["waiting"] <= 0.7, s
    assert s["test_samples_split_the_time_between_functions"] > 0.95  # the caller: every sample


def test_samples_do_not_bunch_up_where_the_gil_is_released():
    # ~1 ms of Python, then an instant without the GIL, over and over: the sampler must not
    # take its samples only at the release points (it would, with the 5 ms switch interval).
    p = SamplingProfiler()
    p.enable()
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        python_work(0.001)
        release_point()
    p.disable()
    s = shares(p)
    assert s["python_work"] > 0.7 and s.get("release_point", 0.0) < 0.25, s


def test_disable_restores_the_switch_interval_and_stops_sampling():
    before = sys.getswitchinterval()
    p = SamplingProfiler()
    p.enable()
    assert sys.getswitchinterval() < before
    waiting(0.05)
    p.disable()
    assert sys.getswitchinterval() == before
    n = p.samples
    waiting(0.05)
    assert p.samples == n


def test_report_and_folded_stacks():
    p = SamplingProfiler()
    p.enable()
    python_work(0.1)
    p.disable()
    text = p.report()
    assert text.startswith("Sampled profile: the Python stack every 5 ms, ")
    assert "python_work" in text and "inclusive s" in text
    lines = p.folded().splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == p.samples
    assert all(";" in line.rsplit(" ", 1)[0] for line in lines)
    assert any("(python_work);" in line.rsplit(" ", 1)[0] for line in lines)


def test_paths_are_shown_from_the_project_or_site_packages():
    assert shorten(str(ROOT / "training" / "trainer.py")) == "training/trainer.py"
    assert shorten("/x/lib/python3.11/site-packages/numpy/core.py") == "numpy/core.py"
    assert frame_name(("/elsewhere/a.py", 3, "f")) == "/elsewhere/a.py:3(f)"


def fake_train(cfg, resume=False, t0=None, profiler=None):
    if profiler is not None:
        profiler.enable()
    python_work(0.05)
    return {"exit_code": 0}


def test_cartpole_writes_the_profile_each_profiler_makes(tmp_path, monkeypatch):
    import cartpole
    from common.config import TrainConfig
    from training import trainer
    monkeypatch.setattr(trainer, "train", fake_train)
    sampled, exact, none = tmp_path / "sampled", tmp_path / "exact", tmp_path / "none"
    for d in (sampled, exact, none):
        d.mkdir()
    cartpole.train_with_profile(TrainConfig(log_dir=str(sampled)), False, 0.0)
    assert sorted(p.name for p in sampled.iterdir()) == ["profile.folded", "profile.txt"]
    assert "python_work" in (sampled / "profile.txt").read_text()
    cartpole.train_with_profile(TrainConfig(log_dir=str(exact), profiler="cprofile"), False, 0.0)
    assert sorted(p.name for p in exact.iterdir()) == ["profile.prof", "profile.txt"]
    assert "function calls" in (exact / "profile.txt").read_text()
    stats = marshal.loads((exact / "profile.prof").read_bytes())
    assert any(name == "python_work" for (_f, _l, name) in stats)
    cartpole.train_with_profile(TrainConfig(log_dir=str(none), profile=False), False, 0.0)
    assert list(none.iterdir()) == []
