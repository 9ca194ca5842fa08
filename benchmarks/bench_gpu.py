"""The GPU check: what TensorFlow sees, how it will use the GPU, and time to solve per setting.

    CARTPOLE_GPU=1 benchmarks/run.sh bench_gpu [--seeds 3] [--args "--hidden 64,64"]

Run it on a machine with an NVIDIA GPU after the one-command set-up (docs/gpu.md). It prints:

1. **TensorFlow's view**: version, whether this build has CUDA (and which CUDA/cuDNN it was
   built against), every physical GPU with its name and compute capability;
2. **memory growth**: it applies the trainer's own GPU settings (devices.configure_gpus) in this
   process and reads back, per GPU, whether growth is on (or the memory limit);
3. **time to solve per setting**, each seed in a fresh process through the multi-seed runner:
   `--device cpu --mixed-precision off` (the baseline), then on a GPU `--device gpu` with mixed
   precision off and on. Per setting: the placement and precision each run recorded in its
   config.json, solved seeds, median seconds from process start to solve, and the median
   start-up floor (TensorFlow import + set-up + first call);
4. a **markdown table** of the same, with a column for the machine to fill in, ready to paste
   into docs/gpu.md.

Without a GPU it runs the CPU row only and says that no GPU was found.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from training import devices  # noqa: E402
from experiments import multiseed  # noqa: E402
from experiments.seed_dirs import seed_dir  # noqa: E402

FLOOR_PARTS = ("import", "setup", "first_call_trace_compile")
#: (--device, --mixed-precision) per row; the GPU rows need a GPU.
SETTINGS = (("cpu", "off"), ("gpu", "off"), ("gpu", "on"))


def tensorflow_view(memory_limit_mb: int | None) -> list[Any]:
    """Print what TensorFlow sees and the memory settings it accepted; return the GPUs."""
    from common.tf_import import import_tensorflow
    tf = import_tensorflow()
    build = tf.sysconfig.get_build_info()
    cuda = (f"built with CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}"
            if tf.test.is_built_with_cuda() else "built without CUDA")
    print(f"TensorFlow {tf.__version__} ({cuda})")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("GPUs: none found. TensorFlow sees no GPU here, so only the CPU row runs. On an "
              "NVIDIA machine: CARTPOLE_GPU=1 benchmarks/run.sh bench_gpu (installs "
              "requirements/gpu.txt), and check `nvidia-smi`.")
        return []
    for i, gpu in enumerate(gpus):
        placement = devices.Placement(f"/GPU:{i}", "gpu", len(gpus))
        print(f"GPU {i}: {gpu.name}: {devices.device_name(tf, placement, [gpu])}")
    setting = devices.configure_gpus(tf, memory_limit_mb)
    for i, gpu in enumerate(gpus):
        try:
            growth = tf.config.experimental.get_memory_growth(gpu)
        except (RuntimeError, ValueError):
            growth = None
        print(f"GPU {i}: memory growth {'on' if growth else 'off'} (trainer's setting: {setting})")
    logical = tf.config.list_logical_devices("GPU")  # starts the runtime: settings are final now
    print(f"logical GPU devices after start-up: {', '.join(d.name for d in logical) or 'none'}")
    return gpus


def run_setting(out: Path, device: str, precision: str, seeds: list[int], extra: list[str]) -> dict:
    """Train every seed with one setting; return what the runs recorded."""
    args = ["--no-profile", "--device", device, "--mixed-precision", precision, *extra]
    where = out / f"{device}-mixed-{precision}"
    multiseed.run_seeds(seeds, where, args, workers=1, quiet=True)
    solved, floors, placements = [], [], set()
    for seed in seeds:
        d = seed_dir(where, seed)
        try:
            summary = json.loads((d / "summary.json").read_text())
            seconds = json.loads((d / "timings.json").read_text())["seconds"]
            resolved = json.loads((d / "config.json").read_text()).get("resolved", {})
        except (OSError, ValueError, KeyError):
            print(f"  seed {seed}: no result (see {d / 'output.log'})")
            continue
        floors.append(sum(seconds.get(k, 0.0) for k in FLOOR_PARTS))
        if summary.get("solved"):
            solved.append(float(summary["solve_wall_s"]))
        placements.add((resolved.get("device", "?"), resolved.get("device_name", "?"),
                        resolved.get("gpu_memory", "?"), resolved.get("mixed_precision", "?")))
    return {"device": device, "precision": precision, "runs": len(seeds), "solved": solved,
            "floors": floors, "placements": sorted(map(str, placements)), "dir": where}


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def print_results(results: list[dict]) -> None:
    print()
    for r in results:
        print(f"--device {r['device']} --mixed-precision {r['precision']}: solved "
              f"{len(r['solved'])}/{r['runs']}, median time to solve {_median(r['solved'])} s, "
              f"median floor {_median(r['floors'])} s  ({r['dir']})")
        for p in r["placements"]:
            print(f"  recorded (device, name, GPU memory, mixed precision): {p}")
    print("\nResults table (fill in the machine; paste into docs/gpu.md):\n")
    print("| machine (GPU, driver, CUDA) | --device | mixed precision | solved | median s to solve | median floor s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| _fill in_ | {r['device']} | {r['precision']} | {len(r['solved'])}/{r['runs']} | "
              f"{_median(r['solved'])} | {_median(r['floors'])} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds per setting (0..N-1)")
    p.add_argument("--args", default="", help="extra training flags for every run")
    p.add_argument("--gpu-memory-limit", type=int, default=None,
                   help="check this memory limit (MB) instead of memory growth")
    p.add_argument("--out", default=None, help="log dir (default: a new temp dir)")
    a = p.parse_args(argv)
    if a.seeds < 1:
        p.error("--seeds must be at least 1")
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_gpu-"))
    gpus = tensorflow_view(a.gpu_memory_limit)
    settings = [s for s in SETTINGS if gpus or s[0] == "cpu"]
    extra = shlex.split(a.args)
    if a.gpu_memory_limit is not None:
        extra += ["--gpu-memory-limit", str(a.gpu_memory_limit)]
    print(f"\n{a.seeds} seed(s) per setting, one run at a time; logs in {out}")
    results = [run_setting(out, dev, prec, list(range(a.seeds)), extra) for dev, prec in settings]
    print_results(results)
    if not gpus:
        print("\nNo GPU was found: the GPU rows were not run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
