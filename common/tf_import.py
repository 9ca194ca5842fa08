"""Import TensorFlow without its start-up noise, while never hiding a real error.

TensorFlow's C++ runtime writes straight to file descriptor 2 on import and on first device
query: oneDNN and CPU-feature notices, "Could not find cuda drivers", and an `E...cuInit` line
on every machine without a GPU. `TF_CPP_MIN_LOG_LEVEL=2` drops the informational ones; the rest
we catch by pointing fd 2 at a temporary file for the import and the device query, then replay
every line that is not one of the known, benign start-up messages. Anything unexpected (a
broken install, a real CUDA failure on a GPU machine) still reaches the user.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import sys
import tempfile
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENIGN = re.compile(
    r"oneDNN custom operations|cpu_feature_guard|rebuild TensorFlow with the appropriate|"
    r"Could not find cuda drivers|failed call to cuInit|absl::InitializeLog|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning|This TensorFlow binary is optimized|To enable the following instructions|"
    r"disabling MLIR crash reproducer|XLA service .* initialized|StreamExecutor \[|"
    r"Compiled cluster using XLA|"
    # XLA's persistent cache: it first tries to parse each entry as text, then reads it as
    # binary; and it flags the tuning hints +prefer-no-scatter/+prefer-no-gather, which are not
    # instruction sets, as "not supported on the host". Other feature mismatches still show.
    r"Error parsing text-format tensorflow\.XlaSerializedCacheEntry|"
    r"Target machine feature \+prefer-no-(scatter|gather) is not\s+supported on the host")

_tf = None

#: Optional packages that `import tensorflow` imports only because they are installed, and
#: that the trainer process never uses: Keras's pandas (array slicing) and matplotlib, pyplot
#: included (visualization helpers; the figure is drawn by a process of its own), and PIL
#: (image utilities); TensorFlow's legacy Keras's scipy.sparse (sparse inputs to a v1 `fit`;
#: the reports' statistics import scipy in their own process). Blocking a package blocks its
#: submodules too.
KEPT_OUT_OF_TRAINER = ("pandas", "matplotlib", "PIL", "scipy")


def _machine_key() -> str:
    """TensorFlow version + a hash of this CPU's feature flags: a compiled program is only ever
    reused on the kind of CPU it was compiled for (a shared home directory must never hand an
    AVX-512 program to a CPU without it)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    digest = hashlib.sha1(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]
    from importlib.metadata import PackageNotFoundError, version
    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "unknown"
    return f"tf{tf_version}-{digest}"


def default_xla_cache_dir() -> str:
    base = os.environ.get("CARTPOLE_XLA_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "cartpole", "xla"))
    return os.path.join(base, _machine_key())


def enable_xla_cache(directory: str | None = None) -> str | None:
    """Ask TensorFlow to keep compiled XLA programs on disk between runs.

    Compiling the fused store-and-learn function is a large share of a whole solve on this CPU;
    with the cache a later run of the same configuration loads it instead (docs/performance.md).
    TensorFlow keys each entry by a fingerprint of the program, so a different network, batch
    size or TensorFlow version simply compiles afresh. Must run before TensorFlow is imported.
    """
    if _tf is not None:
        return None  # too late: XLA reads its flags once, at import
    directory = directory or default_xla_cache_dir()
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return None  # an unwritable home only costs the compile time, never the run
    flag = f"--tf_xla_persistent_cache_directory={directory}"
    existing = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" not in existing:
        os.environ["TF_XLA_FLAGS"] = f"{existing} {flag}".strip()
    return directory


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Inside the block, file descriptor 2 (where native libraries write, past Python's
    `sys.stderr`) points at a temporary file; once fd 2 is restored, what was written there is
    appended to the list the block received."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    try:
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield captured
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                captured.append(capture.read().decode(errors="replace"))
    finally:
        os.close(saved)


@contextlib.contextmanager
def benign_native_stderr_hidden() -> Iterator[None]:
    """Capture fd 2 inside the block, then replay all but the benign lines."""
    captured: list[str] = []
    try:
        with native_stderr_captured() as captured:
            yield
    finally:
        for line in "".join(captured).splitlines():
            if line.strip() and not BENIGN.search(line):
                print(line, file=sys.stderr)


@contextlib.contextmanager
def modules_kept_out(names: tuple[str, ...]) -> Iterator[None]:
    """Inside the block, `import NAME` raises ImportError for each of `names` not yet imported
    (a None entry in sys.modules means "not available"), so a library that imports them only
    if it can goes without; afterwards the entries are gone and a real import works again."""
    blocked = [n for n in names if n not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def import_tensorflow(keep_out: tuple[str, ...] = ()):
    """Return the tensorflow module, imported quietly once; list GPUs while still quiet.

    `keep_out`: modules TensorFlow's import must go without (see KEPT_OUT_OF_TRAINER); only
    the first call, which imports, uses it."""
    global _tf
    if _tf is not None:
        return _tf
    with benign_native_stderr_hidden(), modules_kept_out(keep_out):
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")  # triggers the cuInit probe now, not later
    _tf = tf
    return tf
