"""Tests for sumtree_tf: SumTree and PrioritizedReplayBuffer.

Every behaviour that the trainer relies on inside its compiled step is checked
both in a plain tf.function ("graph") and under jit_compile=True ("xla").
Capacities are kept small so the whole file runs in well under a minute.
"""

from __future__ import annotations

import functools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from sumtree_tf import PrioritizedReplayBuffer, ReplayBatch, SumTree  # noqa: E402

MODES = ["graph", "xla"]


def compiled(fn, mode: str):
    return tf.function(fn, jit_compile=(mode == "xla"))


def leaves_of(tree: SumTree) -> np.ndarray:
    nodes = tree.nodes.numpy()
    return nodes[tree.num_leaf_slots : tree.num_leaf_slots + tree.capacity]


def assert_tree_consistent(tree: SumTree) -> None:
    nodes = tree.nodes.numpy()
    p = tree.num_leaf_slots
    parents = np.arange(1, p)
    # Exact equality on purpose: parents are recomputed, never patched by deltas.
    np.testing.assert_array_equal(nodes[parents], nodes[2 * parents] + nodes[2 * parents + 1])
    np.testing.assert_array_equal(nodes[p + tree.capacity :], 0.0)
    assert math.isclose(nodes[1], math.fsum(leaves_of(tree)), rel_tol=1e-12, abs_tol=0.0)


def fill_buffer(buf: PrioritizedReplayBuffer, n: int, start: int = 0, valid=None) -> None:
    """Add n rows whose every field encodes its global row number."""
    rows = np.arange(start, start + n)
    obs = np.repeat(rows[:, None], buf.obs_size, axis=1).astype(np.float32)
    buf.add(obs, rows, rows.astype(np.float32), obs + 0.5, rows % 2, valid)


def fill_buffer_tf(buf: PrioritizedReplayBuffer, rows: tf.Tensor) -> None:
    """In-graph twin of fill_buffer for use inside compiled functions."""
    obs = tf.repeat(tf.cast(rows, tf.float32)[:, None], buf.obs_size, axis=1)
    buf.add(obs, rows, tf.cast(rows, tf.float32), obs + 0.5, rows % 2)


# --------------------------------------------------------------------------
# SumTree: search
# --------------------------------------------------------------------------
_find_cache: dict[int, tuple] = {}


def _tree_and_find(capacity: int):
    # One traced function per capacity keeps hypothesis examples cheap.
    if capacity not in _find_cache:
        tree = SumTree(capacity)
        _find_cache[capacity] = (tree, tf.function(tree.find))
    return _find_cache[capacity]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), capacity=st.sampled_from([1, 2, 3, 5, 8, 13]))
def test_find_agrees_with_searchsorted_on_integer_priorities_with_zeros(data, capacity):
    # Small integers make every partial sum exact, so boundaries can be probed
    # exactly (v equal to a cumulative sum must go to the next positive leaf).
    prios = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=capacity, max_size=capacity)), np.float64
    )
    assume(prios.sum() > 0)
    tree, find = _tree_and_find(capacity)
    tree.rebuild_from_numpy(prios)
    cumsum = np.cumsum(prios)
    boundaries = np.concatenate([[0.0], cumsum[:-1]])
    fractions = data.draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=8, max_size=8))
    values = np.concatenate([boundaries, np.array(fractions) * cumsum[-1]])
    # Trailing zero leaves put boundaries at total, outside find's domain
    # (covered by the "at or above total" test); keep the shape fixed anyway.
    values = np.where(values < cumsum[-1], values, 0.0)
    expected = np.searchsorted(cumsum, values, side="right")
    np.testing.assert_array_equal(find(tf.constant(values)).numpy(), expected)


@pytest.mark.parametrize("mode", MODES)
def test_find_agrees_with_searchsorted_on_random_real_priorities(mode):
    rng = np.random.default_rng(0)
    capacity = 1000
    prios = rng.exponential(size=capacity)
    prios[rng.random(capacity) < 0.3] = 0.0
    tree = SumTree(capacity)
    tree.rebuild_from_numpy(prios)
    values = np.sort(rng.random(4096)) * prios.sum()
    got = compiled(tree.find, mode)(tf.constant(values)).numpy()
    cumsum = np.cumsum(prios)
    expected = np.searchsorted(cumsum, values, side="right")
    # Tree and cumsum round differently; they may only disagree right at a boundary.
    mismatch = got != expected
    near_boundary = np.min(np.abs(values[:, None] - cumsum[None, :]), axis=1) < 1e-9 * cumsum[-1]
    assert not np.any(mismatch & ~near_boundary)
    assert np.all(prios[got] > 0)


@pytest.mark.parametrize("mode", MODES)
def test_find_never_returns_zero_leaf_even_for_values_at_or_above_total(mode):
    capacity = 7  # padding leaf 7 must never be returned either
    prios = np.array([0.0, 0.3, 0.0, 1e-12, 0.7, 0.0, 0.0])
    tree = SumTree(capacity)
    tree.rebuild_from_numpy(prios)
    total = tree.total().numpy()
    values = np.array([0.0, total * (1 - 1e-16), total, np.nextafter(total, np.inf), 10 * total])
    got = compiled(tree.find, mode)(tf.constant(values)).numpy()
    assert np.all(got < capacity)
    assert np.all(prios[got] > 0)
    assert got[-1] == 4  # past the end: the last positive leaf


# --------------------------------------------------------------------------
# SumTree: sampling statistics
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _sample_counts(prios: tuple[float, ...], batches: int, batch_size: int) -> np.ndarray:
    prios = np.array(prios)
    tree = SumTree(len(prios))
    tree.rebuild_from_numpy(prios)
    rng = tf.random.Generator.from_seed(1234)
    sample = tf.function(lambda: tree.sample(batch_size, rng)[0], jit_compile=True)
    drawn = np.concatenate([sample().numpy() for _ in range(batches)])
    return np.bincount(drawn, minlength=len(prios))


# Batches of 1 make the draws plain i.i.d. (stratification would make the
# counts almost deterministic and the chi-square test toothless).
_CHI_PRIOS = (1.0, 2.0, 3.0, 4.0, 6.0)
_CHI_BATCHES = 3000


def test_sampling_frequencies_match_priorities_chisquare():
    counts = _sample_counts(_CHI_PRIOS, _CHI_BATCHES, batch_size=1)
    expected = np.array(_CHI_PRIOS) / sum(_CHI_PRIOS) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_sampling_frequencies_reject_uniform_so_the_chisquare_check_has_power():
    # Guards the test above: had sample() ignored priorities, this would fail.
    counts = _sample_counts(_CHI_PRIOS, _CHI_BATCHES, batch_size=1)
    assert stats.chisquare(counts).pvalue < 1e-6


def test_stratified_batch_counts_stay_within_one_of_proportional():
    prios = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    counts = _sample_counts(tuple(prios), batches=1, batch_size=1600)
    np.testing.assert_allclose(counts, prios / prios.sum() * 1600, atol=1.0)


@pytest.mark.parametrize("mode", MODES)
def test_zero_priority_leaves_are_never_sampled(mode):
    capacity = 50
    rng = np.random.default_rng(3)
    prios = np.where(rng.random(capacity) < 0.6, 0.0, rng.exponential(size=capacity))
    prios[-5:] = 0.0
    prios[0] = 1e-9  # tiny but positive: allowed, and next to huge neighbours
    prios[1] = 1e6
    tree = SumTree(capacity)
    tree.rebuild_from_numpy(prios)
    gen = tf.random.Generator.from_seed(5)
    sample = compiled(lambda: tree.sample(512, gen), mode)
    for _ in range(20):
        idx, got_prio = (t.numpy() for t in sample())
        assert np.all(prios[idx] > 0)
        np.testing.assert_array_equal(got_prio, prios[idx])


# --------------------------------------------------------------------------
# SumTree: updates
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_set_with_duplicate_indices_last_value_wins_and_sums_stay_consistent(mode):
    capacity = 13
    tree = SumTree(capacity)
    set_fn = compiled(tree.set, mode)
    rng = np.random.default_rng(7)
    reference = np.zeros(capacity)
    for _ in range(30):
        idx = rng.integers(0, capacity, size=40).astype(np.int32)  # many repeats
        val = rng.random(40)
        set_fn(tf.constant(idx), tf.constant(val))
        for i, v in zip(idx, val):  # sequential semantics: last write wins
            reference[i] = v
        np.testing.assert_array_equal(leaves_of(tree), reference)
        assert_tree_consistent(tree)


@pytest.mark.parametrize("mode", MODES)
def test_duplicates_all_carry_the_last_value_so_scatter_order_cannot_matter(mode):
    # TF's CPU scatters happen to apply updates in order, so the tree-level test
    # above would pass even without de-duplication; check the guarantee itself.
    tree = SumTree(6)
    find_last = compiled(lambda i: tree._last_occurrence(i, 8), mode)
    for idx in ([4, 1, 4, 0, 1, 4, 2, 1], [5, 5, 5, 5, 5, 5, 5, 5], [0, 1, 2, 3, 4, 5, 0, 1]):
        # Repeated calls also check that stamps left by earlier calls never win.
        got = find_last(tf.constant(idx, tf.int32)).numpy()
        expected = [max(j for j, other in enumerate(idx) if other == i) for i in idx]
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", MODES)
def test_set_matches_bulk_rebuild_bit_for_bit(mode):
    capacity = 37
    tree, fresh = SumTree(capacity), SumTree(capacity)
    set_fn = compiled(tree.set, mode)
    rng = np.random.default_rng(11)
    for _ in range(10):
        set_fn(tf.constant(rng.integers(0, capacity, 16).astype(np.int32)), tf.constant(rng.random(16)))
    fresh.rebuild_from_numpy(leaves_of(tree))
    np.testing.assert_array_equal(tree.nodes.numpy(), fresh.nodes.numpy())


def test_float_drift_after_many_updates_stays_below_1e9_relative():
    capacity = 1000
    tree = SumTree(capacity)
    set_fn = tf.function(tree.set, jit_compile=True)
    rng = np.random.default_rng(13)
    for _ in range(300):
        # Priorities spanning 12 orders of magnitude stress the rounding.
        idx = rng.integers(0, capacity, 256).astype(np.int32)
        set_fn(tf.constant(idx), tf.constant(10.0 ** rng.uniform(-6, 6, 256)))
    exact = math.fsum(leaves_of(tree))
    assert abs(tree.total().numpy() - exact) <= 1e-9 * exact
    assert_tree_consistent(tree)


def test_set_with_empty_batch_is_a_no_op():
    tree = SumTree(4)
    tree.rebuild_from_numpy(np.array([1.0, 2.0, 3.0, 4.0]))
    tf.function(tree.set, jit_compile=True)(tf.zeros([0], tf.int32), tf.zeros([0], tf.float64))
    assert tree.total().numpy() == 10.0


# --------------------------------------------------------------------------
# SumTree: shapes and edge cases
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_empty_tree_has_zero_total_and_samples_in_range(mode):
    tree = SumTree(5)
    gen = tf.random.Generator.from_seed(0)
    idx, prio = compiled(lambda: tree.sample(8, gen), mode)()
    assert tree.total().numpy() == 0.0
    assert np.all((idx.numpy() >= 0) & (idx.numpy() < 5))
    np.testing.assert_array_equal(prio.numpy(), 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_capacity_one_tree_is_a_single_leaf(mode):
    tree = SumTree(1)
    assert tree.num_leaf_slots == 1 and tree.depth == 0
    gen = tf.random.Generator.from_seed(0)

    def run():
        tree.set(tf.constant([0, 0]), tf.constant([5.0, 2.5], tf.float64))
        return tree.total(), tree.sample(4, gen), tree.find(tf.constant([0.0, 2.4, 9.0], tf.float64))

    total, (idx, prio), found = compiled(run, mode)()
    assert total.numpy() == 2.5
    np.testing.assert_array_equal(idx.numpy(), 0)
    np.testing.assert_array_equal(prio.numpy(), 2.5)
    np.testing.assert_array_equal(found.numpy(), 0)


@pytest.mark.parametrize("capacity", [2, 3, 5, 1000])
@pytest.mark.parametrize("mode", MODES)
def test_non_power_of_two_capacities_round_trip_and_never_sample_padding(capacity, mode):
    tree = SumTree(capacity)
    assert tree.num_leaf_slots >= capacity and tree.num_leaf_slots < 2 * capacity
    gen = tf.random.Generator.from_seed(capacity)
    prios = np.random.default_rng(capacity).random(capacity) + 0.01
    idx = np.arange(capacity, dtype=np.int32)

    def run():
        tree.set(tf.constant(idx), tf.constant(prios))
        return tree.get(tf.constant(idx)), tree.sample(64, gen)[0]

    got, sampled = compiled(run, mode)()
    np.testing.assert_array_equal(got.numpy(), prios)
    assert np.all(sampled.numpy() < capacity)
    assert_tree_consistent(tree)


def test_rebuild_from_numpy_rejects_wrong_shape_and_negative_priorities():
    tree = SumTree(3)
    with pytest.raises(ValueError, match="expected 3"):
        tree.rebuild_from_numpy(np.ones(4))
    with pytest.raises(ValueError, match=">= 0"):
        tree.rebuild_from_numpy(np.array([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("capacity", [0, -1, 2.5, True])
def test_sumtree_rejects_invalid_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        SumTree(capacity)


# --------------------------------------------------------------------------
# PrioritizedReplayBuffer
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(capacity=0), "capacity"),
        (dict(capacity=4, alpha=-0.1), "alpha"),
        (dict(capacity=4, alpha=1.5), "alpha"),
        (dict(capacity=4, eps=0.0), "eps"),
        (dict(capacity=4, obs_size=0), "obs_size"),
    ],
)
def test_buffer_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PrioritizedReplayBuffer(**kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_ring_overwrites_oldest_rows_in_order(mode):
    buf = PrioritizedReplayBuffer(5, obs_size=2, seed=0)
    add = compiled(lambda rows: fill_buffer_tf(buf, rows), mode)
    add(tf.constant([0, 1, 2], tf.int32))
    assert buf.size().numpy() == 3 and buf.next_index.numpy() == 3
    add(tf.constant([3, 4, 5, 6], tf.int32))  # wraps: 5 -> slot 0, 6 -> slot 1
    np.testing.assert_array_equal(buf.action.numpy(), [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.obs.numpy()[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.next_obs.numpy()[:, 1], [5.5, 6.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(buf.done.numpy(), [1, 0, 0, 1, 0])
    assert buf.size().numpy() == 5 and buf.next_index.numpy() == 2


@pytest.mark.parametrize("mode", MODES)
def test_adding_more_rows_than_capacity_keeps_the_last_ones_in_ring_order(mode):
    buf = PrioritizedReplayBuffer(4, obs_size=1, seed=0)
    add = compiled(lambda rows: fill_buffer_tf(buf, rows), mode)
    add(tf.constant([0], tf.int32))
    add(tf.range(1, 11))  # rows 1..10; only 7..10 survive, as if added one by one
    np.testing.assert_array_equal(buf.action.numpy(), [8, 9, 10, 7])
    assert buf.next_index.numpy() == 3 and buf.size().numpy() == 4
    assert_tree_consistent(buf.tree)
    np.testing.assert_array_equal(leaves_of(buf.tree), 1.0)


@pytest.mark.parametrize("mode", MODES)
def test_importance_weights_match_numpy_formula(mode):
    buf = PrioritizedReplayBuffer(16, alpha=0.6, eps=1e-3, seed=4)
    fill_buffer(buf, 10)
    td = np.linspace(-2.0, 3.0, 10).astype(np.float32)
    buf.update_priorities(tf.range(10), tf.constant(td))
    beta = tf.constant(0.4)
    batch = compiled(lambda b: buf.sample(64, b), mode)(beta)
    p = (np.abs(td.astype(np.float64)) + 1e-3) ** 0.6
    w = (10 * p[batch.indices.numpy()] / p.sum()) ** -0.4
    np.testing.assert_allclose(batch.weights.numpy(), w / w.max(), rtol=1e-6)
    assert batch.weights.dtype == tf.float32
    # Rows come from the sampled slots.
    np.testing.assert_array_equal(batch.action.numpy(), batch.indices.numpy())


def test_beta_as_tensor_does_not_retrace():
    buf = PrioritizedReplayBuffer(8, seed=0)
    fill_buffer(buf, 8)
    sample = tf.function(lambda b: buf.sample(4, b).weights, jit_compile=True)
    for beta in (0.4, 0.5, 0.9):
        sample(tf.constant(beta))
    assert sample.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("mode", MODES)
def test_update_priorities_uses_abs_td_plus_eps_to_alpha_and_casts_float16(mode):
    buf = PrioritizedReplayBuffer(4, alpha=0.5, eps=0.01, seed=0)
    fill_buffer(buf, 4)
    td = tf.constant([-4.0, 0.0, 1.0, 0.25], tf.float16)
    compiled(buf.update_priorities, mode)(tf.range(4), td)
    expected = (np.abs(np.array([-4.0, 0.0, 1.0, 0.25])) + 0.01) ** 0.5
    np.testing.assert_allclose(leaves_of(buf.tree), expected, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_new_rows_get_the_running_max_priority(mode):
    buf = PrioritizedReplayBuffer(8, alpha=1.0, eps=1e-6, seed=0)
    add = compiled(lambda rows: fill_buffer_tf(buf, rows), mode)
    update = compiled(buf.update_priorities, mode)
    add(tf.range(2))
    np.testing.assert_array_equal(leaves_of(buf.tree)[:2], 1.0)  # initial max priority
    update(tf.constant([0]), tf.constant([9.0]))
    update(tf.constant([0]), tf.constant([0.5]))  # lower later: max must not drop
    add(tf.range(2, 4))
    expected_max = 9.0 + 1e-6
    assert buf.max_priority.numpy() == pytest.approx(expected_max, rel=1e-12)
    np.testing.assert_allclose(leaves_of(buf.tree)[2:4], expected_max, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_invalid_rows_are_stored_counted_but_never_sampled(mode):
    buf = PrioritizedReplayBuffer(32, obs_size=1, seed=2)
    rows = np.arange(32)
    valid = rows % 3 != 0

    def add():
        obs = tf.constant(rows[:, None], tf.float32)
        buf.add(obs, rows, rows, obs, tf.zeros(32), tf.constant(valid))

    compiled(add, mode)()
    assert buf.size().numpy() == 32
    sample = compiled(lambda: buf.sample(256, 1.0).indices, mode)
    drawn = np.concatenate([sample().numpy() for _ in range(10)])
    assert np.all(valid[drawn])
    assert set(drawn) == set(rows[valid])


def test_add_sample_update_fused_in_one_xla_function_keeps_tree_consistent():
    buf = PrioritizedReplayBuffer(50, seed=3)

    @tf.function(jit_compile=True)
    def step(rows, beta):
        obs = tf.repeat(tf.cast(rows, tf.float32)[:, None], 4, axis=1)
        buf.add(obs, rows, tf.cast(rows, tf.float32), obs, tf.zeros_like(obs[:, 0]), rows % 5 != 0)
        batch = buf.sample(16, beta)
        buf.update_priorities(batch.indices, batch.reward * 0.01)
        return batch

    for k in range(8):
        batch = step(tf.range(10 * k, 10 * k + 10), tf.constant(0.5))
        assert np.all(batch.action.numpy() % 5 != 0)
        np.testing.assert_array_equal(batch.action.numpy(), buf.action.numpy()[batch.indices.numpy()])
    assert step.experimental_get_tracing_count() == 1
    assert_tree_consistent(buf.tree)


def test_checkpoint_round_trip_restores_contents_priorities_and_rng(tmp_path):
    buf = PrioritizedReplayBuffer(12, obs_size=3, seed=42)
    fill_buffer(buf, 9)
    buf.update_priorities(tf.constant([1, 4, 7]), tf.constant([5.0, 0.1, 2.0]))
    path = tf.train.Checkpoint(buffer=buf).save(str(tmp_path / "ckpt"))
    saved = [v.numpy() for v in buf.variables]
    sample = tf.function(lambda: buf.sample(8, 0.5))
    after_save = sample()

    # Mutate everything, then restore into a differently seeded fresh buffer.
    fill_buffer(buf, 7, start=100)
    buf.update_priorities(tf.range(12), tf.fill([12], 50.0))
    restored = PrioritizedReplayBuffer(12, obs_size=3, seed=7)
    tf.train.Checkpoint(buffer=restored).restore(path).assert_consumed()
    assert len(restored.variables) == len(saved)
    for v, value in zip(restored.variables, saved):
        np.testing.assert_array_equal(v.numpy(), value, err_msg=v.name)
    assert restored.size().numpy() == 9
    # Same rng state -> the very same draw as right after saving.
    again = tf.function(lambda: restored.sample(8, 0.5))()
    np.testing.assert_array_equal(again.indices.numpy(), after_save.indices.numpy())
    np.testing.assert_array_equal(again.weights.numpy(), after_save.weights.numpy())
    assert isinstance(again, ReplayBatch)


@pytest.mark.parametrize("mode", MODES)
def test_uniform_sample_ignores_priorities_and_weighs_invalid_rows_zero(mode):
    """--uniform-solved: every filled slot equally likely whatever its priority, weight 1,
    except slots added as invalid (priority 0), which get weight 0; nothing past `filled`."""
    buf = PrioritizedReplayBuffer(64, obs_size=1, seed=4)
    rows = np.arange(40)
    valid = rows % 5 != 0
    obs = tf.constant(rows[:, None], tf.float32)
    buf.add(obs, rows, rows, obs, tf.zeros(40), tf.constant(valid))
    # Very unequal priorities: proportional sampling would almost never draw rows 20-39.
    heavy = rows[:20][valid[:20]]
    buf.update_priorities(tf.constant(heavy, tf.int32), tf.fill([len(heavy)], 1e6))
    sample = compiled(lambda: buf.sample_uniform(200), mode)
    batches = [sample() for _ in range(50)]
    drawn = np.concatenate([b.indices.numpy() for b in batches])
    weights = np.concatenate([b.weights.numpy() for b in batches])
    assert drawn.min() >= 0 and drawn.max() < 40
    np.testing.assert_array_equal(weights, valid[drawn].astype(np.float32))
    counts = np.bincount(drawn, minlength=40)
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform over the 40 filled slots
    assert counts[20:].sum() > 0.4 * len(drawn)


def _n_step_reference(rewards, terminated, valid, t, e, n, gamma):
    """(return, last step, done) for the transition of env e at vector step t, walked along
    that env's own trajectory: the straightforward definition the ring arithmetic must match."""
    ret, disc, last = 0.0, 1.0, t
    for k in range(n):
        s = t + k
        if k > 0 and (s >= len(rewards) or not valid[s, e] or terminated[s - 1, e]):
            break
        ret += disc * rewards[s, e]
        disc *= gamma
        last = s
    return ret, disc, last, terminated[last, e]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mark_invalid", [True, False])
@pytest.mark.parametrize("limit", [None, 1, 2], ids=["n3", "limit1-of-5", "limit2-of-5"])
def test_n_step_returns_follow_each_env_until_its_episode_ends(mode, seed, mark_invalid, limit):
    """Two envs, episodes that terminate, are truncated (next step invalid, no termination) or
    run past the newest row; the ring wraps, so old rows are overwritten. Without the valid
    flags (every row sampleable) a termination alone must still end the sum. A run-time
    `limit` below the traced bound (5) sums exactly as that many steps would."""
    envs, steps, gamma = 2, 11, 0.9
    n = 3 if limit is None else limit
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(0.1, 1.0, (steps, envs)).astype(np.float32)
    terminated = rng.random((steps, envs)) < 0.2
    truncated = ~terminated & (rng.random((steps, envs)) < 0.15)
    valid = np.ones((steps, envs), bool)
    if mark_invalid:
        valid[1:] = ~(terminated | truncated)[:-1]
    buf = PrioritizedReplayBuffer(16, obs_size=2, seed=0)
    for t in range(steps):
        next_obs = np.stack([np.full(envs, t), np.arange(envs)], 1).astype(np.float32)
        buf.add(np.zeros((envs, 2), np.float32), np.zeros(envs, np.int32), rewards[t], next_obs,
                terminated[t].astype(np.float32), valid[t] if mark_invalid else None)
    # the 16 slots hold vector steps 3..10 (22 rows went into 16)
    held = [(t, e) for t in range(steps - 8, steps) for e in range(envs) if valid[t, e]]
    slots = np.array([(t * envs + e) % 16 for t, e in held], np.int32)

    def draw(indices):
        b = buf._batch(indices, tf.ones(tf.shape(indices), tf.float32))
        if limit is None:
            return buf.n_step(b, n, envs, gamma)
        return buf.n_step(b, 5, envs, gamma, tf.constant(limit))

    got = compiled(draw, mode)(tf.constant(slots))
    for row, (t, e) in enumerate(held):
        ret, disc, last, done = _n_step_reference(rewards, terminated, valid, t, e, n, gamma)
        assert got.reward.numpy()[row] == pytest.approx(ret, rel=1e-6), (t, e)
        assert got.discount.numpy()[row] == pytest.approx(disc, rel=1e-6), (t, e)
        assert tuple(got.next_obs.numpy()[row]) == (last, e), (t, e)
        assert got.done.numpy()[row] == float(done), (t, e)


@pytest.mark.parametrize("mode", MODES)
def test_end_episodes_stops_n_step_returns_at_a_resume(mode):
    """Rows written before `end_episodes` never sum into rows written after it (a resumed run
    starts new episodes in the same env slots); the marker rows are never sampled."""
    envs = 2
    buf = PrioritizedReplayBuffer(16, obs_size=2, seed=0)

    def step(t):
        next_obs = np.stack([np.full(envs, t), np.arange(envs)], 1).astype(np.float32)
        buf.add(np.zeros((envs, 2), np.float32), np.zeros(envs, np.int32),
                np.ones(envs, np.float32), next_obs, np.zeros(envs, np.float32))
    step(0)
    buf.end_episodes(envs)
    step(1)
    assert list(buf.tree.get(tf.range(6)).numpy()) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]

    def draw(indices):
        b = buf._batch(indices, tf.ones(tf.shape(indices), tf.float32))
        return buf.n_step(b, 3, envs, 0.5)
    got = compiled(draw, mode)(tf.constant([0, 1], tf.int32))
    np.testing.assert_array_equal(got.reward.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(got.next_obs.numpy()[:, 0], [0.0, 0.0])
