"""What a training process imports: nothing it does not use.

Keras, imported by TensorFlow's own `__init__`, imports pandas and matplotlib.pyplot whenever
they are installed (about a second of start-up between them), and PIL; TensorFlow's legacy
Keras imports scipy.sparse (~0.2 s more); the trainer process uses none of them (the figure is
drawn by a process of its own). The trainer imports TensorFlow with all four kept out
(tf_import.modules_kept_out); these tests hold it to that, in a real (tiny) training process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

KEPT_OUT = ("pandas", "matplotlib", "matplotlib.pyplot", "PIL", "scipy", "scipy.sparse")

# A tiny run through the CLI, then the modules the process holds at its end.
PROBE = """
import json, sys
import cartpole
code = cartpole.main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if sys.modules[m] is not None)}))
"""


def _training_modules(tmp_path) -> set[str]:
    args = ["--log-dir", str(tmp_path / "run"), "--seed", "0", "--max-env-steps", "2048",
            "--quiet", "--no-profile", "--no-xla-cache"]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 3, proc.stderr[-2000:]  # ran to its budget: a whole (tiny) run
    assert (tmp_path / "run" / "summary.json").is_file()
    return set(out["modules"])


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_a_training_process_never_imports_pandas_or_matplotlib(tmp_path):
    modules = _training_modules(tmp_path)
    assert "tensorflow" in modules and "keras" in modules  # it did train
    assert not modules & set(KEPT_OUT), sorted(modules & set(KEPT_OUT))


def test_kept_out_modules_import_normally_afterwards():
    # The block lasts only while TensorFlow imports: a later explicit import (the trainer's
    # own figure fallback) still works, and a module already imported is left alone.
    code = ("import sys\n"
            "from common.tf_import import KEPT_OUT_OF_TRAINER, modules_kept_out\n"
            "import json\n"
            "with modules_kept_out(KEPT_OUT_OF_TRAINER + ('json',)):\n"
            "    try:\n"
            "        import matplotlib.pyplot\n"
            "        blocked = False\n"
            "    except ImportError:\n"
            "        blocked = True\n"
            "    assert sys.modules['json'] is json\n"
            "assert blocked and 'matplotlib' not in sys.modules\n"
            "import matplotlib.pyplot\n"
            "print('ok')\n")
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib not installed")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_native_stderr_keeps_what_is_not_benign_even_when_the_block_raises(capfd):
    """TensorFlow's native start-up lines go to file descriptor 2; the benign ones are dropped,
    anything else is replayed, also when the block raises, and fd 2 works again afterwards."""
    from common.tf_import import benign_native_stderr_hidden
    with pytest.raises(RuntimeError):
        with benign_native_stderr_hidden():
            os.write(2, b"I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n")
            os.write(2, b"E0000 something real went wrong\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "E0000 something real went wrong\nafter\n"


def test_the_collector_is_off_through_start_up_and_back_after_the_run(tmp_path, monkeypatch):
    """train() turns Python's cyclic garbage collector off while TensorFlow imports and the run
    is built, then freezes what start-up made and turns it on at the first learning call; when
    the run ends, the frozen objects are collectable again (a later run in this process, as in
    these tests or a sweep's worker, must not keep the earlier one's)."""
    import gc

    from common.config import TrainConfig
    from training import trainer

    seen = []
    start_up = {}
    real_build = trainer.Trainer._build

    def build(self):
        start_up["enabled"] = gc.isenabled()
        real_build(self)

    cfg = TrainConfig(log_dir=str(tmp_path / "run"), seed=0, quiet=True, profile=False,
                      max_env_steps=4096, eval_every=16, xla_cache=False)
    monkeypatch.setattr(trainer.Trainer, "_build", build)
    assert gc.isenabled()
    trainer.train(cfg, on_eval=lambda row: seen.append((gc.isenabled(), gc.get_freeze_count())))
    assert start_up == {"enabled": False}
    assert seen and all(enabled and frozen > 0 for enabled, frozen in seen), seen[:3]
    assert gc.isenabled() and gc.get_freeze_count() == 0
