"""Which device a run trains on, how TensorFlow may use GPU memory, and what config.json says.

The trainer calls `setup_device(tf, cfg)` right after importing TensorFlow and before anything
runs on a device (seeding, thread settings, the first tensor). That order matters because GPU
settings are "physical device" settings: TensorFlow fixes them when its runtime initialises, and
afterwards refuses to change them with a RuntimeError.

* **Memory growth on every visible GPU.** By default TensorFlow maps nearly all the memory of
  every GPU it can see into the first process that touches it, so a second run on the same GPU
  (`--seeds ... --workers 4`, a sweep with `resources_per_trial: {gpu: 0.25}`) fails out of
  memory. With growth on, each process takes what it uses. `--gpu-memory-limit MB` instead caps
  each GPU at a fixed size (one logical device of that size); the two are exclusive in
  TensorFlow, so a limit replaces growth.
* **`--device auto|cpu|gpu`.** auto takes the first GPU if TensorFlow sees one; cpu hides the
  GPUs from TensorFlow altogether (otherwise it would still claim their memory); gpu without a
  GPU is a one-line `DeviceError` (a `ConfigError`, so the CLI exits 2).
* **Mixed precision** (`--mixed-precision auto|on|off`): auto means on only on a GPU, where
  float16 maths pays; on this project's 2-core CPU it measured slower per learning step.

`resolve_device` and `use_mixed_precision` are pure functions of plain values, so the tests
exercise them with made-up device lists; `configure_gpus` and `setup_device` take the tensorflow
module as an argument, so a recording fake can check the order of calls.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, Sequence

from common.config import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "gpu")
PRECISION_CHOICES = ("auto", "on", "off")

NO_GPU_HINT = ("install the CUDA build with CARTPOLE_GPU=1 ./run_cartpole_training.sh ... "
               "(requirements/gpu.txt), check `nvidia-smi`, or use --device auto")


class DeviceError(ConfigError):
    """The requested device cannot be used, or GPU settings came too late; one line."""


@dataclass(frozen=True)
class Placement:
    """Where the network lives: a TensorFlow device string and what kind of device it is."""
    device: str        # "/GPU:0" or "/CPU:0", for tf.device()
    kind: str          # "gpu" or "cpu"
    gpus_visible: int  # GPUs TensorFlow could see before --device cpu hid them


def resolve_device(requested: str, gpus: Sequence[Any]) -> Placement:
    """The placement for `--device requested` given TensorFlow's list of physical GPUs."""
    if requested not in DEVICE_CHOICES:
        raise DeviceError(f"--device must be auto, cpu or gpu, got {requested!r}")
    n = len(gpus)
    if requested == "gpu" and n == 0:
        raise DeviceError(f"--device gpu: TensorFlow sees no GPU on this machine; {NO_GPU_HINT}")
    if requested == "cpu" or n == 0:
        return Placement("/CPU:0", "cpu", n)
    return Placement("/GPU:0", "gpu", n)


def use_mixed_precision(setting: str, placement: Placement) -> bool:
    """--mixed-precision: on and off are taken at their word; auto is on only on a GPU."""
    if setting not in PRECISION_CHOICES:
        raise DeviceError(f"--mixed-precision must be auto, on or off, got {setting!r}")
    return setting == "on" or (setting == "auto" and placement.kind == "gpu")


def configure_gpus(tf: Any, memory_limit_mb: int | None = None) -> str:
    """Set memory growth (or a memory limit) on every visible GPU; return what was set.

    Must run before TensorFlow initialises its runtime. Returns "growth", "limit <N> MB", or
    "no GPU" when there is nothing to configure (then nothing at all is called on `tf` beyond
    listing the GPUs, so on a CPU-only machine this is a no-op). A RuntimeError from TensorFlow
    (settings after initialisation) or a ValueError (growth and a limit mixed in one process)
    becomes a one-line DeviceError.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "no GPU"
    try:
        for gpu in gpus:
            if memory_limit_mb is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit_mb)])
    except (RuntimeError, ValueError) as e:
        what = "memory growth" if memory_limit_mb is None else f"a {memory_limit_mb} MB memory limit"
        raise DeviceError(f"cannot set {what} on the GPUs: {_first_line(e)} (TensorFlow was "
                          "already running in this process; GPU settings must come first)") from None
    return "growth" if memory_limit_mb is None else f"limit {memory_limit_mb} MB"


def hide_gpus(tf: Any) -> None:
    """--device cpu: keep TensorFlow off the GPUs entirely (it would otherwise claim their memory)."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError) as e:
        raise DeviceError(f"cannot hide the GPUs for --device cpu: {_first_line(e)} (TensorFlow "
                          "was already running in this process; GPU settings must come first)") from None


def device_name(tf: Any, placement: Placement, gpus: Sequence[Any]) -> str:
    """A human name for the device: the GPU's model from TensorFlow, or the CPU's model."""
    if placement.kind == "gpu":
        try:
            details = tf.config.experimental.get_device_details(gpus[0]) or {}
        except (RuntimeError, ValueError):
            details = {}
        name = str(details.get("device_name") or "GPU")
        cc = details.get("compute_capability")
        return f"{name} (compute capability {cc[0]}.{cc[1]})" if cc else name
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def setup_device(tf: Any, cfg: Any) -> dict[str, Any]:
    """Apply cfg.device, cfg.gpu_memory_limit and cfg.mixed_precision; return the placement.

    Call right after importing TensorFlow, before anything runs on a device. The returned dict
    goes into config.json's "resolved" section: `device` (for tf.device), `device_kind`,
    `device_name`, `gpus_visible`, `gpu_memory` ("growth", "limit N MB", "hidden" or "no GPU")
    and `mixed_precision` (the precision actually used).
    """
    gpus = list(tf.config.list_physical_devices("GPU"))
    placement = resolve_device(cfg.device, gpus)  # --device gpu without a GPU fails here
    mixed = use_mixed_precision(cfg.mixed_precision, placement)
    if placement.kind == "cpu" and gpus:
        hide_gpus(tf)
        memory = "hidden"
    else:
        memory = configure_gpus(tf, cfg.gpu_memory_limit)
    return {"device": placement.device, "device_kind": placement.kind,
            "device_name": device_name(tf, placement, gpus), "gpus_visible": placement.gpus_visible,
            "gpu_memory": memory, "mixed_precision": mixed}


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
