"""Tests of devices.py on a CPU: device resolution from made-up GPU lists, the order of the GPU
memory settings (a fake `tf` that records calls and, like TensorFlow, refuses physical-device
settings once its runtime has started), the RuntimeError path, a real TensorFlow without a GPU,
and the GPU flags' bad inputs through the command line.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from training import devices
from common.config import ConfigError, TrainConfig
from conftest import ROOT, run_cli


# ------------------------------------------------------------------------------------------------
# A fake tensorflow module
# ------------------------------------------------------------------------------------------------
class FakeDevice(SimpleNamespace):
    def __hash__(self) -> int:
        return hash(self.name)


class FakeTF:
    """Records every tf.config call. Like TensorFlow: listing logical devices starts the runtime,
    after which memory growth, memory limits and visible devices can no longer change."""

    def __init__(self, n_gpus: int, started: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.started = started
        self.gpus = [FakeDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(n_gpus)]
        self.growth: dict[str, bool] = {}
        self.limits: dict[str, int] = {}
        self.visible: list | None = None
        self.config = SimpleNamespace(
            list_physical_devices=self.list_physical_devices,
            list_logical_devices=self.list_logical_devices,
            set_visible_devices=self.set_visible_devices,
            set_logical_device_configuration=self.set_logical_device_configuration,
            LogicalDeviceConfiguration=lambda memory_limit: SimpleNamespace(memory_limit=memory_limit),
            experimental=SimpleNamespace(set_memory_growth=self.set_memory_growth,
                                         get_device_details=self.get_device_details))

    def list_physical_devices(self, kind: str) -> list:
        self.calls.append(("list_physical_devices", kind))
        return list(self.gpus) if kind == "GPU" else []

    def list_logical_devices(self, kind: str = "GPU") -> list:
        self.calls.append(("list_logical_devices", kind))
        self.started = True
        return []

    def set_memory_growth(self, dev: FakeDevice, enable: bool) -> None:
        self.calls.append(("set_memory_growth", dev.name))
        if dev.name in self.limits:
            raise ValueError("Cannot set memory growth on device when virtual devices configured")
        if self.started:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        self.growth[dev.name] = enable

    def set_logical_device_configuration(self, dev: FakeDevice, confs: list) -> None:
        self.calls.append(("set_logical_device_configuration", dev.name))
        if self.started:
            raise RuntimeError("Virtual devices cannot be modified after being initialized")
        (conf,) = confs
        self.limits[dev.name] = conf.memory_limit

    def set_visible_devices(self, devs: list, kind: str) -> None:
        self.calls.append(("set_visible_devices", kind))
        if self.started:
            raise RuntimeError("Visible devices cannot be modified after being initialized")
        self.visible = devs

    def get_device_details(self, dev: FakeDevice) -> dict:
        self.calls.append(("get_device_details", dev.name))
        return {"device_name": "Fake RTX 9000", "compute_capability": (8, 9)}


def cfg(**changes: Any) -> TrainConfig:
    return TrainConfig(**changes).validate()


# ------------------------------------------------------------------------------------------------
# Pure resolution
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("requested, n_gpus, device, kind", [
    ("auto", 0, "/CPU:0", "cpu"), ("auto", 2, "/GPU:0", "gpu"),
    ("cpu", 0, "/CPU:0", "cpu"), ("cpu", 1, "/CPU:0", "cpu"), ("gpu", 3, "/GPU:0", "gpu"),
])
def test_resolve_device_from_faked_gpu_lists(requested: str, n_gpus: int, device: str, kind: str) -> None:
    p = devices.resolve_device(requested, [object()] * n_gpus)
    assert (p.device, p.kind, p.gpus_visible) == (device, kind, n_gpus)


def test_gpu_requested_without_a_gpu_is_one_line_with_the_way_out() -> None:
    with pytest.raises(devices.DeviceError) as info:
        devices.resolve_device("gpu", [])
    message = str(info.value)
    assert "\n" not in message and "TensorFlow sees no GPU" in message and "CARTPOLE_GPU=1" in message
    assert isinstance(info.value, ConfigError)  # so the CLI prints one line and exits 2
    with pytest.raises(devices.DeviceError, match="got 'tpu'"):
        devices.resolve_device("tpu", [object()])


@pytest.mark.parametrize("setting, kind, expected", [
    ("auto", "gpu", True), ("auto", "cpu", False), ("on", "cpu", True), ("on", "gpu", True),
    ("off", "gpu", False), ("off", "cpu", False),
])
def test_mixed_precision_auto_means_gpu_only(setting: str, kind: str, expected: bool) -> None:
    placement = devices.Placement(f"/{kind.upper()}:0", kind, int(kind == "gpu"))
    assert devices.use_mixed_precision(setting, placement) is expected


# ------------------------------------------------------------------------------------------------
# The order of TensorFlow calls
# ------------------------------------------------------------------------------------------------
def test_memory_growth_on_every_gpu_before_anything_else() -> None:
    tf = FakeTF(n_gpus=3)
    record = devices.setup_device(tf, cfg())
    names = [g.name for g in tf.gpus]
    assert tf.growth == {n: True for n in names} and not tf.limits
    # Only listing the physical GPUs may come before the growth settings; nothing started the
    # runtime on the way (so the first tensor the trainer makes still finds growth in place).
    kinds = [c[0] for c in tf.calls]
    first_other = next(i for i, k in enumerate(kinds) if k not in ("list_physical_devices", "set_memory_growth"))
    assert [c[1] for c in tf.calls[:first_other] if c[0] == "set_memory_growth"] == names
    assert "set_memory_growth" not in kinds[first_other:] and not tf.started
    assert record == {"device": "/GPU:0", "device_kind": "gpu",
                      "device_name": "Fake RTX 9000 (compute capability 8.9)", "gpus_visible": 3,
                      "gpu_memory": "growth", "mixed_precision": True}


def test_memory_limit_replaces_growth_on_every_gpu() -> None:
    tf = FakeTF(n_gpus=2)
    record = devices.setup_device(tf, cfg(gpu_memory_limit=1536, mixed_precision="off"))
    assert tf.limits == {g.name: 1536 for g in tf.gpus} and not tf.growth
    assert record["gpu_memory"] == "limit 1536 MB" and record["mixed_precision"] is False


def test_device_cpu_hides_the_gpus_instead() -> None:
    tf = FakeTF(n_gpus=2)
    record = devices.setup_device(tf, cfg(device="cpu"))
    assert tf.visible == [] and not tf.growth and not tf.limits
    assert record["device"] == "/CPU:0" and record["gpu_memory"] == "hidden"
    assert record["gpus_visible"] == 2 and record["mixed_precision"] is False


def test_device_gpu_without_a_gpu_fails_before_touching_any_setting() -> None:
    tf = FakeTF(n_gpus=0)
    with pytest.raises(devices.DeviceError, match="--device gpu: TensorFlow sees no GPU"):
        devices.setup_device(tf, cfg(device="gpu"))
    assert [c[0] for c in tf.calls] == ["list_physical_devices"]


@pytest.mark.parametrize("changes, fragment", [
    ({}, "cannot set memory growth on the GPUs: Physical devices cannot be modified"),
    ({"gpu_memory_limit": 512}, "cannot set a 512 MB memory limit on the GPUs: Virtual devices"),
    ({"device": "cpu"}, "cannot hide the GPUs for --device cpu: Visible devices"),
])
def test_settings_after_tensorflow_started_are_one_line(changes: dict, fragment: str) -> None:
    tf = FakeTF(n_gpus=1)
    tf.config.list_logical_devices("GPU")  # something used TensorFlow before the settings
    with pytest.raises(devices.DeviceError) as info:
        devices.setup_device(tf, cfg(**changes))
    message = str(info.value)
    assert fragment in message and "\n" not in message and "must come first" in message


def test_no_gpu_means_no_configuration_calls() -> None:
    tf = FakeTF(n_gpus=0)
    assert devices.configure_gpus(tf, None) == "no GPU" and devices.configure_gpus(tf, 256) == "no GPU"
    assert {c[0] for c in tf.calls} == {"list_physical_devices"}


# ------------------------------------------------------------------------------------------------
# The real TensorFlow on this CPU
# ------------------------------------------------------------------------------------------------
REAL_TF_CHECK = """
import sys
from training import devices
from common.config import TrainConfig
from common.tf_import import import_tensorflow
tf = import_tensorflow()
if tf.config.list_physical_devices("GPU"):
    print("HAS_GPU"); sys.exit(0)
assert devices.configure_gpus(tf, None) == "no GPU"
assert devices.configure_gpus(tf, 1024) == "no GPU"
record = devices.setup_device(tf, TrainConfig())
# The runtime has still not started: a pre-start setting is still accepted.
tf.config.threading.set_intra_op_parallelism_threads(1)
print(record["device"], record["gpu_memory"], record["mixed_precision"], bool(record["device_name"]))
"""


def test_real_tensorflow_without_gpu_is_a_no_op() -> None:
    proc = subprocess.run([sys.executable, "-c", REAL_TF_CHECK, str(ROOT)], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip().splitlines()[-1]
    if out == "HAS_GPU":
        pytest.skip("this machine has a GPU; the no-GPU path does not apply")
    assert out == "/CPU:0 no GPU False True"


# ------------------------------------------------------------------------------------------------
# The GPU flags' bad inputs, through the command line
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--gpu-memory-limit", "lots"], "argument --gpu-memory-limit: invalid int value: 'lots'"),
    (["--gpu-memory-limit", "0"], "--gpu-memory-limit must be in [1, 1048576] MB, got 0"),
    (["--gpu-memory-limit", "-512"], "--gpu-memory-limit must be in [1, 1048576] MB, got -512"),
])
def test_bad_gpu_flags_are_one_line_and_exit_2(tmp_path, args: list[str], fragment: str) -> None:
    # A budget of its own: were the flag accepted, the run would stop in seconds.
    proc = run_cli(*args, "--log-dir", str(tmp_path / "run"), "--max-env-steps", "2048", timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartpole.py: error: ") and fragment in lines[0]


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
def test_device_gpu_without_a_gpu_through_the_cli(tmp_path) -> None:
    proc = run_cli("--device", "gpu", "--log-dir", str(tmp_path / "run"), "--max-env-steps", "2048",
                   "--quiet", "--no-profile", timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartpole.py: error: --device gpu: TensorFlow sees no GPU")
