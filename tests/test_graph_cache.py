"""The fused call's graph kept between runs (training/graph_cache.py): a later run of the same
configuration calls the stored graph without tracing and computes exactly what the traced one
does; any other configuration, or a damaged file, traces; and the graph does not depend on the
seed, which is why the key leaves it out. (tests/test_determinism.py runs the whole trainer
twice on a fresh cache: the first run traces, the second loads, the runs are identical.)"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from common.tf_import import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402

from acting.collection import ChunkLayout  # noqa: E402
from agent import DoubleDQNAgent, LearnStats, make_store_and_learn  # noqa: E402
from rewards import get_reward_fn  # noqa: E402
from sumtree_tf import PrioritizedReplayBuffer  # noqa: E402
from training.graph_cache import CachedCall  # noqa: E402

GRAPH_ARGS = {"hidden": (8, 8), "batch_size": 32, "n_step": 2}


def build(directory, seed: int = 0, graph_args=GRAPH_ARGS, anchor: float = 1.0):
    """A small agent, buffer and fused call, as the trainer builds them, behind a CachedCall."""
    keras.utils.set_random_seed(seed)
    buffer = PrioritizedReplayBuffer(512, 4, alpha=0.7, seed=seed + 1)
    agent = DoubleDQNAgent(4, 2, hidden=graph_args["hidden"], anchor_solved=anchor)
    fn = make_store_and_learn(agent, buffer, get_reward_fn("shaped"), graph_args["batch_size"],
                              jit_compile=False, n_step=graph_args["n_step"], num_envs=8)
    variables = [*agent.graph_variables(), *buffer.variables, buffer.rng.state]
    return agent, CachedCall(fn, variables, dict(graph_args), directory, LearnStats.from_flat)


def chunks(n: int = 3) -> list[tf.Tensor]:
    rng = np.random.default_rng(0)
    layout = ChunkLayout(4)
    out = []
    for _ in range(n):
        c = np.zeros((64, layout.width), np.float32)
        c[:, layout.obs] = rng.normal(0, 0.05, (64, 4))
        c[:, layout.action] = rng.integers(0, 2, 64)
        c[:, layout.next_obs] = rng.normal(0, 0.05, (64, 4))
        c[:, layout.valid] = 1.0
        out.append(tf.constant(c))
    return out


def learn(call, solved: float = 0.0) -> list[np.ndarray]:
    """Three calls of 4 learning steps; the online weights after them."""
    for chunk in chunks():
        stats = call(chunk, tf.constant(4), tf.constant(0.5), tf.constant(solved))
    return [np.asarray(w) for w in stats.weights]


def test_a_later_build_loads_the_graph_and_computes_the_same(tmp_path):
    agent_a, first = build(tmp_path)
    weights_a = learn(first)
    assert first.status == "traced" and first.traces() == 1
    assert len(list(tmp_path.glob("store_and_learn-*.json"))) == 1
    agent_b, second = build(tmp_path)
    initial = agent_b.numpy_weights()
    weights_b = learn(second)
    assert second.status == "loaded"
    assert second.traces() == 0, "a loaded graph must not be traced again"
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    # The stored graph read and wrote the new build's variables, not the first one's.
    assert int(agent_b.learn_steps.numpy()) == 12
    assert not np.array_equal(agent_b.numpy_weights()[0], initial[0])
    np.testing.assert_array_equal(agent_b.numpy_weights()[0], weights_b[0])


def test_another_configuration_traces_its_own_graph(tmp_path):
    build(tmp_path)[1](*first_args())
    _, other = build(tmp_path, graph_args={**GRAPH_ARGS, "batch_size": 16})
    other(*first_args())
    assert other.status == "traced"
    assert len(list(tmp_path.glob("store_and_learn-*.json"))) == 2


@pytest.mark.parametrize("damage", ["truncated", "not_json", "wrong_variables"])
def test_a_damaged_or_foreign_file_means_tracing(tmp_path, damage):
    _, first = build(tmp_path)
    reference = learn(first)
    path = next(tmp_path.glob("store_and_learn-*.json"))
    if damage == "truncated":
        path.write_text(path.read_text()[:1000])
    elif damage == "not_json":
        path.write_bytes(b"\x00\x01 not a graph")
    else:
        entry = json.loads(path.read_text())
        entry["variables"][0][0] = [3, 3]  # a capture that is not the variable we hold there
        path.write_text(json.dumps(entry))
    _, again = build(tmp_path)
    weights = learn(again)
    assert again.status == "traced"
    for a, b in zip(reference, weights):
        np.testing.assert_array_equal(a, b)
    json.loads(path.read_text())  # rewritten whole


def test_without_a_directory_the_function_is_called_as_is(tmp_path):
    _, plain = build(None)
    learn(plain)
    assert plain.status == "plain" and plain.traces() == 1


def test_an_unwritable_directory_costs_nothing_but_the_file(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the directory would go")
    _, call = build(blocked / "graphs")
    learn(call)
    assert call.status == "traced"


def canonical_graph(call) -> list[str]:
    """The traced graph's functions as text, with the per-process numbering taken out of names
    (`while_body_123`, `dense_1`: Keras numbers its layers per process too; `CustomGradient-9`)
    and each function's lines sorted (renaming reorders lists sorted by name); attribute
    values, seeds among them, stay."""
    cf = call.fn.get_concrete_function()
    fdefs = [*cf.graph.as_graph_def().library.function, cf.function_def]
    return sorted("\n".join(sorted(re.sub(r"[_-]\d+|_", "", str(f)).splitlines())) for f in fdefs)


def test_the_graph_does_not_depend_on_the_seed():
    """The key leaves the seed out, so one stored graph serves every seed: that is only right
    if tracing under another seed gives the same graph (no seeded op; the random state is in
    variables)."""
    graphs = []
    for seed in (0, 7):  # each traced right after its build, under its own global seed
        graphs.append(canonical_graph(build(None, seed=seed)[1]))
    assert graphs[0] == graphs[1]


def test_both_branches_of_the_solved_flag_run_from_a_loaded_graph(tmp_path):
    """After the solve the call takes the anchor's branch (functions of the stored library)."""
    _, first = build(tmp_path)
    before = learn(first, solved=1.0)
    _, second = build(tmp_path)
    after = learn(second, solved=1.0)
    assert second.status == "loaded"
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def first_args():
    return chunks(1)[0], tf.constant(4), tf.constant(0.5), tf.constant(0.0)
