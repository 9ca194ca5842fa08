"""The fused call's traced graph, kept on disk between runs of one configuration.

Tracing `store_and_learn` is Python building a graph (three networks, the gradient, Adam, the
sum tree, the n-step sums, all inside a while loop): 0.4-0.5 s of every run's start on this CPU
(docs/performance.md), and the same graph every time for one configuration. So the first run of
a configuration traces as before and writes the result: the function's `FunctionDef` and every
function it calls (the loop's body and condition, the branches), renamed to carry the cache key,
plus which of our variables each captured handle is. Later runs hand those definitions to
TensorFlow's runtime (`add_function_def`, ~3 ms) and call them by name, with no tracing at all.

Every run, the tracing one included, calls the registered copy, so the first run and the later
ones execute one and the same graph, and XLA compiles one program (which its own persistent
cache then keeps): a cached run is step for step the run that traced.

The key: TensorFlow's, Keras's and Python's versions, every source file of the trainer's code,
and the arguments that build the graph (sizes, hyperparameters baked in as constants, device,
XLA on or off). Not the seed: the graph reads its random state from variables (tf.random
Generators) and holds no seeded op, so one graph serves every seed (tests/test_graph_cache.py
checks this). Anything unexpected (a capture that is not one of our variables, a damaged or
foreign file, a failed registration) means tracing as before; the cache can cost nothing but
its own small file.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
# Code that builds or feeds the trainer's graph lives in these; tests, benchmarks, experiments
# and outputs never run in the trace. A change to any file here retraces (a few hundred ms once).
SOURCE_DIRS = ("acting", "common", "training")
FORMAT = 1  # of the file written; part of the key


def graph_cache_dir() -> str:
    """Beside the XLA programs (common/tf_import.py): per machine kind, under
    ~/.cache/cartpole (or $CARTPOLE_XLA_CACHE)."""
    from common.tf_import import default_xla_cache_dir
    return os.path.join(default_xla_cache_dir(), "graphs")


def source_digest(root: Path = ROOT) -> str:
    """sha256 over the trainer's source files (top-level modules and SOURCE_DIRS), in order."""
    files = sorted(root.glob("*.py")) + sorted(p for d in SOURCE_DIRS
                                               for p in (root / d).rglob("*.py"))
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(graph_args: dict[str, Any]) -> str:
    """A short hex key for one graph: versions, sources, and the arguments that build it."""
    import keras
    import tensorflow as tf
    parts = (FORMAT, sys.version_info[:2], tf.__version__, keras.__version__, source_digest(),
             sorted((k, repr(v)) for k, v in graph_args.items()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def _rename(fdefs: list, suffix: str) -> None:
    """Give every function a name ending in `suffix` and point every call at the new names, so
    the definitions never meet a name TensorFlow's tracer hands out in this process."""
    names = {f.signature.name: f"{f.signature.name}__{suffix}" for f in fdefs}

    def fix(attr) -> None:
        if attr.HasField("func") and attr.func.name in names:
            attr.func.name = names[attr.func.name]
        for fn in attr.list.func:
            if fn.name in names:
                fn.name = names[fn.name]

    for f in fdefs:
        f.signature.name = names[f.signature.name]
        for node in f.node_def:
            if node.op in names:  # a function called as an op
                node.op = names[node.op]
            for attr in node.attr.values():
                fix(attr)


class CachedCall:
    """Calls `fn` (a `tf.function` with an input signature) through a registered copy of its
    graph, read from `directory` when a run of the same key wrote it, else traced and written.

    `variables`: every tf.Variable the graph may capture, in an order fixed by the code and the
    configuration (each capture is stored as an index into it). `pack`: flat outputs ->
    what `fn` returns. `status` says what the first call did: "loaded", "traced" (and written),
    or "plain" (no directory, or the graph could not be cached: `fn` itself is called).
    """

    def __init__(self, fn, variables: Sequence[Any], graph_args: dict[str, Any],
                 directory: str | None, pack: Callable[[list], Any]):
        self.fn, self.variables, self.pack = fn, list(variables), pack
        self.directory, self.graph_args = directory, graph_args
        self.status: str | None = None
        self._name: bytes | None = None
        self._captures: list = []
        self._n_out = 0

    def __call__(self, *args):
        if self.status is None:
            self.status = self._prepare()
        if self._name is None:
            return self.fn(*args)
        from tensorflow.python.eager import context
        flat = context.context().call_function(self._name, list(args) + self._captures,
                                               self._n_out)
        return self.pack(flat)

    def traces(self) -> int:
        """How many times `fn` was traced in this process (0 when the graph was loaded)."""
        return self.fn.experimental_get_tracing_count()

    # --- first call ---------------------------------------------------------------------------
    def _prepare(self) -> str:
        if self.directory is None:
            return "plain"
        try:
            key = cache_key(self.graph_args)
        except OSError:
            return "plain"
        path = Path(self.directory) / f"store_and_learn-{key}.json"
        entry = self._read(path, key)
        status = "loaded"
        if entry is None:
            entry, status = self._trace(key), "traced"
            if entry is None:
                return "plain"
            self._write(path, entry)
        return status if self._register(entry) else "plain"

    def _trace(self, key: str) -> dict[str, Any] | None:
        cf = self.fn.get_concrete_function()
        by_handle = {id(v.handle): i for i, v in enumerate(self.variables)}
        captures = []
        for t in cf.captured_inputs:
            if id(t) not in by_handle:
                return None  # a constant or a foreign variable: this graph is not cacheable
            captures.append(by_handle[id(t)])
        fdefs = [*cf.graph.as_graph_def().library.function, cf.function_def]
        fdefs = [type(f).FromString(f.SerializeToString()) for f in fdefs]  # copies to rename
        _rename(fdefs, key)
        return {"format": FORMAT, "key": key,
                "functions": [base64.b64encode(f.SerializeToString()).decode() for f in fdefs],
                "main": fdefs[-1].signature.name, "captures": captures,
                "n_out": len(cf.function_def.signature.output_arg),
                "variables": [self._describe(i) for i in captures]}

    def _describe(self, i: int) -> list:
        v = self.variables[i]
        return [list(v.shape), v.dtype.name]

    def _read(self, path: Path, key: str) -> dict[str, Any] | None:
        """The entry at `path` if it is whole, of this key, and its captures are variables of
        our list with the shapes and types it recorded; else None (and the run traces)."""
        try:
            entry = json.loads(path.read_text())
            ok = (entry["format"] == FORMAT and entry["key"] == key
                  and all(isinstance(i, int) and 0 <= i < len(self.variables)
                          for i in entry["captures"])
                  and entry["variables"] == [self._describe(i) for i in entry["captures"]])
            return entry if ok else None
        except Exception:  # absent, unreadable, damaged or foreign: trace instead
            return None

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, path)  # whole or not at all, even with two runs writing at once
        except OSError:  # a full or read-only disk costs the next run a trace, nothing more
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def _register(self, entry: dict[str, Any]) -> bool:
        from tensorflow.core.framework import function_pb2
        from tensorflow.python.eager import context
        ctx = context.context()
        try:
            for data in entry["functions"]:
                f = function_pb2.FunctionDef.FromString(base64.b64decode(data))
                if not ctx.has_function(f.signature.name):  # a run earlier in this process
                    ctx.add_function_def(f)
        except Exception:
            return False
        self._name = entry["main"].encode()
        self._captures = [self.variables[i].handle for i in entry["captures"]]
        self._n_out = entry["n_out"]
        return True
