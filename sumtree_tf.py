"""A sum tree and a prioritized replay buffer that live entirely in TensorFlow.

The point of this module is that sampling, storing and re-prioritising happen
inside the same compiled graph as the learning step, so a training loop never
crosses the Python/TensorFlow boundary for replay work (on this CPU a single
crossing costs more than a whole tree descent).

Design choices
--------------
* Layout. The tree is one flat ``tf.Variable`` in implicit heap order: the root
  is node 1, node ``i`` has children ``2i`` and ``2i + 1``, and leaf ``k`` sits at
  ``P + k`` where ``P`` is the smallest power of two >= capacity. Node 0 is never
  used. A complete binary tree makes every root-to-leaf path exactly
  ``log2(P)`` steps long, so a whole batch can walk down (or up) in lock step
  with one gather/scatter per level and fully static shapes, which is what XLA
  needs. Padding leaves ``capacity..P-1`` stay 0 forever, so they hold no mass
  and are never found.
* float64. Priorities are stored and summed in float64. With float32, a tree
  holding ~1e6 leaves has ~7 significant digits at the root, so small
  priorities would be rounded away in the descent and sampled with visibly
  wrong frequencies. The memory cost (16 bytes per slot) is negligible next
  to the stored transitions.
* No drift, no periodic rebuild. ``set`` never applies deltas
  (``node += new - old``), which is where sum trees usually accumulate error.
  Each touched parent is recomputed as ``left + right`` from its children, so
  after any sequence of updates every node is bit-for-bit what a fresh
  bottom-up build over the current leaves would give. ``total()`` can differ
  from another summation order (e.g. ``np.sum``) only by ordinary float64
  rounding, far below 1e-9 relative. A full rebuild is therefore only a
  bulk-load tool: ``rebuild_from_numpy`` (eager, NumPy, whole array) is meant
  for loading or resetting many priorities at once, while ``set`` (in-graph,
  batched) is what ``PrioritizedReplayBuffer.add`` and ``update_priorities``
  use on every step. Restoring a checkpoint needs neither, because the node
  variable is restored as is.
* Duplicates. TensorFlow leaves the write order of a scatter with repeated
  indices unspecified. ``set`` therefore first gives every duplicate the value
  of its last occurrence in the batch, so the scatter writes the same value
  whatever the order, and "last one wins" is deterministic. The last
  occurrence is found with a scatter-max of increasing "stamps" into a per-leaf
  int64 scratch variable: max is order-independent, and stamps only grow
  across calls, so stale entries never win and the scratch never needs
  clearing. This costs one extra int64 per slot but is O(batch); a stable
  argsort does the same job but XLA's CPU sort made it cost ~115 us per call
  on this machine (vs ~15 us), and ``unsorted_segment_max`` over all leaves
  would be O(capacity). Parents are recomputed from their children, so
  duplicate parents also all write the same value.
* Loops. Both the upward update and the downward search are
  ``tf.while_loop``s over the tree levels instead of Python-unrolled loops:
  measured on this machine, unrolling made the step 1.7x slower and tripled
  the XLA compile time.
* Nothing here is wrapped in ``tf.function``: callers fuse these methods into
  their own (optionally ``jit_compile=True``) functions. All reads and writes
  of the tree go through resource gathers/scatters; the code never reads the
  whole node array, so a call costs O(batch * depth), not O(capacity).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from common.tf_import import import_tensorflow

tf = import_tensorflow()

__all__ = ["SumTree", "PrioritizedReplayBuffer", "ReplayBatch"]


def _batch_size_of(x: tf.Tensor) -> int | tf.Tensor:
    # A static size keeps every shape static for XLA; the dynamic fallback
    # only matters for shape-relaxed traces.
    static = x.shape[0]
    return static if static is not None else tf.shape(x)[0]


class SumTree(tf.Module):
    """Binary sum tree over ``capacity`` non-negative float64 priorities."""

    def __init__(self, capacity: int, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise ValueError(f"capacity must be an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        # P: number of leaf slots (power of two); depth: levels below the root.
        self.num_leaf_slots = 1 << (self.capacity - 1).bit_length()
        self.depth = self.num_leaf_slots.bit_length() - 1
        self.nodes = tf.Variable(
            tf.zeros([2 * self.num_leaf_slots], tf.float64),
            trainable=False,
            name="nodes",
        )
        # Scratch for de-duplicating `set` batches (see module docstring).
        self.last_write_stamp = tf.Variable(
            tf.zeros([self.capacity], tf.int64), trainable=False, name="last_write_stamp"
        )
        self.stamp_base = tf.Variable(0, dtype=tf.int64, trainable=False, name="stamp_base")

    # -- reading ---------------------------------------------------------
    def total(self) -> tf.Tensor:
        """Sum of all priorities (float64 scalar)."""
        return tf.gather(self.nodes, 1)

    def get(self, indices: tf.Tensor) -> tf.Tensor:
        """Leaf priorities for int32 ``indices`` [B] (float64 [B])."""
        indices = tf.cast(indices, tf.int32)
        return tf.gather(self.nodes, indices + self.num_leaf_slots)

    def find(self, values: tf.Tensor) -> tf.Tensor:
        """For each v in [0, total) the leaf i with cumsum[i-1] <= v < cumsum[i].

        Guarantees, whatever the rounding: while total() > 0 the result has a
        positive priority; the result is always in [0, capacity). Values at or
        above total() land on the last positive leaf; on an empty tree every
        value maps to leaf 0.
        """
        values = tf.convert_to_tensor(values, tf.float64)
        node = tf.ones_like(values, dtype=tf.int32)

        def body(level, node, remaining):
            children = tf.gather(self.nodes, tf.stack([2 * node, 2 * node + 1], axis=1))
            left, right = children[:, 0], children[:, 1]
            # Only step into a subtree that holds mass: a positive parent always
            # has a positive child, so the walk can never end on a zero leaf,
            # even when `remaining` has been pushed past the subtree by rounding.
            go_right = (right > 0.0) & ((remaining >= left) | (left <= 0.0))
            remaining = tf.where(go_right, remaining - left, remaining)
            node = 2 * node + tf.cast(go_right, tf.int32)
            return level + 1, node, remaining

        _, node, _ = tf.while_loop(
            lambda level, *_: level < self.depth,
            body,
            (tf.constant(0), node, values),
        )
        # The walk only reaches padding leaves if the tree is corrupt (e.g.
        # negative priorities); clamp so callers can always gather with it.
        return tf.minimum(node - self.num_leaf_slots, self.capacity - 1)

    def sample(
        self, batch_size: int, rng: tf.random.Generator
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Stratified sample: value_j = (j + u_j) * total / B, u_j ~ U[0, 1).

        Stratifying lowers the variance of the batch composition compared with
        B independent draws at no extra cost. Returns (int32 indices [B],
        float64 priorities [B]).
        """
        u = rng.uniform([batch_size], dtype=tf.float64)
        strata = tf.range(batch_size, dtype=tf.float64)
        values = (strata + u) * (self.total() / batch_size)
        indices = self.find(values)
        return indices, self.get(indices)

    # -- writing ---------------------------------------------------------
    def set(self, indices: tf.Tensor, priorities: tf.Tensor) -> None:
        """Set leaf priorities (must be >= 0); the last duplicate in the batch wins."""
        indices = tf.cast(indices, tf.int32)
        priorities = tf.cast(priorities, tf.float64)
        indices.shape.assert_is_compatible_with(priorities.shape)
        n = _batch_size_of(indices)
        if isinstance(n, int) and n == 0:
            return

        winners = tf.gather(priorities, self._last_occurrence(indices, n))
        node = indices + self.num_leaf_slots
        self.nodes.scatter_nd_update(node[:, None], winners)

        def body(level, node):
            parent = node // 2
            children = tf.gather(self.nodes, tf.stack([2 * parent, 2 * parent + 1], axis=1))
            self.nodes.scatter_nd_update(parent[:, None], children[:, 0] + children[:, 1])
            # tf.function's automatic control dependencies make this output wait
            # for the scatter, so the next level reads the updated children.
            return level + 1, parent

        tf.while_loop(lambda level, _: level < self.depth, body, (tf.constant(0), node))

    def _last_occurrence(self, indices: tf.Tensor, n: int | tf.Tensor) -> tf.Tensor:
        """For each batch entry, the batch position of the last entry with the same index."""
        base = self.stamp_base.read_value()
        stamps = base + tf.range(n, dtype=tf.int64)
        self.last_write_stamp.scatter_max(tf.IndexedSlices(stamps, indices))
        self.stamp_base.assign(base + tf.cast(n, tf.int64))
        return tf.cast(tf.gather(self.last_write_stamp, indices) - base, tf.int32)

    def rebuild_from_numpy(self, leaf_priorities: np.ndarray) -> None:
        """Replace every priority at once (eager only; for bulk loads/resets).

        Builds all levels with vectorised NumPy and assigns the node array in
        one go, which is far cheaper than ``set`` over the whole capacity.
        Produces exactly the node values ``set`` would.
        """
        leaves = np.asarray(leaf_priorities, dtype=np.float64)
        if leaves.shape != (self.capacity,):
            raise ValueError(
                f"expected {self.capacity} leaf priorities, got shape {leaves.shape}"
            )
        if not np.all(np.isfinite(leaves)) or np.any(leaves < 0):
            raise ValueError("leaf priorities must be finite and >= 0")
        p = self.num_leaf_slots
        nodes = np.zeros(2 * p, np.float64)
        nodes[p : p + self.capacity] = leaves
        width = p
        while width > 1:
            nodes[width // 2 : width] = nodes[width : 2 * width : 2] + nodes[width + 1 : 2 * width : 2]
            width //= 2
        self.nodes.assign(nodes)


class ReplayBatch(NamedTuple):
    obs: tf.Tensor  # float32 [B, obs_size]
    action: tf.Tensor  # int32 [B]
    reward: tf.Tensor  # float32 [B]
    next_obs: tf.Tensor  # float32 [B, obs_size]
    done: tf.Tensor  # float32 [B], 1.0 = terminated
    indices: tf.Tensor  # int32 [B], slots to pass back to update_priorities
    weights: tf.Tensor  # float32 [B], importance weights, max 1
    discount: tf.Tensor | None = None  # float32 [B] for n-step batches: gamma ** steps summed


class PrioritizedReplayBuffer(tf.Module):
    """Ring buffer of transitions with proportional prioritisation (Schaul et al. 2016).

    Every piece of state (storage, ring pointer, size, max priority, the tree
    and the random generator) is a variable or trackable attribute, so
    ``tf.train.Checkpoint(buffer=buf)`` saves and restores all of it.

    Sampling from an empty buffer is not meaningful (weights become NaN);
    check ``size()`` first.
    """

    def __init__(
        self,
        capacity: int,
        obs_size: int = 4,
        alpha: float = 0.7,
        eps: float = 1e-6,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if isinstance(obs_size, bool) or not isinstance(obs_size, (int, np.integer)) or obs_size < 1:
            raise ValueError(f"obs_size must be an int >= 1, got {obs_size!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0 (it keeps every transition sampleable), got {eps!r}")
        self.capacity = int(capacity)
        self.obs_size = int(obs_size)
        self.alpha = float(alpha)
        self.eps = float(eps)

        def storage(shape, dtype, name):
            return tf.Variable(tf.zeros(shape, dtype), trainable=False, name=name)

        self.obs = storage([capacity, obs_size], tf.float32, "obs")
        self.action = storage([capacity], tf.int32, "action")
        self.reward = storage([capacity], tf.float32, "reward")
        self.next_obs = storage([capacity, obs_size], tf.float32, "next_obs")
        self.done = storage([capacity], tf.float32, "done")
        self.next_index = tf.Variable(0, dtype=tf.int32, trainable=False, name="next_index")
        self.filled = tf.Variable(0, dtype=tf.int32, trainable=False, name="filled")
        self.max_priority = tf.Variable(1.0, dtype=tf.float64, trainable=False, name="max_priority")
        self.tree = SumTree(capacity)
        self.rng = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )

    def size(self) -> tf.Tensor:
        """Number of filled slots (int32), including rows added with valid=False."""
        return self.filled.read_value()

    def add(self, obs, action, reward, next_obs, done, valid=None) -> None:
        """Append a batch of n transitions, overwriting the oldest when full.

        New rows get the current max priority so each is likely to be replayed
        at least once; rows with ``valid == False`` get priority 0 and are never
        sampled (they still occupy a slot and count in ``size()``).
        """
        obs = tf.convert_to_tensor(obs, tf.float32)
        n = tf.shape(obs)[0]
        keep = self.capacity
        # Rows that would be overwritten within this same call are dropped up
        # front, so no storage scatter ever sees a repeated slot.
        obs = obs[-keep:]
        action = tf.cast(action, tf.int32)[-keep:]
        reward = tf.cast(reward, tf.float32)[-keep:]
        next_obs = tf.cast(next_obs, tf.float32)[-keep:]
        done = tf.cast(done, tf.float32)[-keep:]
        m = tf.shape(obs)[0]

        # Skipped rows still advance the ring, exactly as if added one by one.
        start = self.next_index + (n - m)
        slots = tf.math.floormod(start + tf.range(m), self.capacity)[:, None]
        self.obs.scatter_nd_update(slots, obs)
        self.action.scatter_nd_update(slots, action)
        self.reward.scatter_nd_update(slots, reward)
        self.next_obs.scatter_nd_update(slots, next_obs)
        self.done.scatter_nd_update(slots, done)

        priority = tf.ones_like(reward, tf.float64) * self.max_priority
        if valid is not None:
            valid = tf.cast(valid, tf.bool)[-keep:]
            priority = tf.where(valid, priority, tf.zeros_like(priority))
        self.tree.set(slots[:, 0], priority)

        self.next_index.assign(tf.math.floormod(self.next_index + n, self.capacity))
        self.filled.assign(tf.minimum(self.filled + n, self.capacity))

    def sample(self, batch_size: int, beta) -> ReplayBatch:
        """Draw ``batch_size`` transitions with probability p_i / total.

        Importance weights w_i = (N * P(i))^-beta / max_j w_j with N = size(),
        computed in float64. ``beta`` may be a Python float or a tensor.
        """
        indices, priority = self.tree.sample(batch_size, self.rng)
        beta = tf.cast(beta, tf.float64)
        n = tf.cast(self.filled, tf.float64)
        prob = priority / self.tree.total()
        weights = tf.pow(n * prob, -beta)
        weights = weights / tf.reduce_max(weights)
        return self._batch(indices, tf.cast(weights, tf.float32))

    def sample_uniform(self, batch_size: int) -> ReplayBatch:
        """Draw ``batch_size`` slots uniformly (stratified over the filled slots), as alpha 0
        would: importance weights are 1, except for slots whose priority is 0 (added with
        ``valid == False``), which get weight 0 so they never count in a loss. The tree is
        only read, to tell those slots apart, never searched.
        """
        u = self.rng.uniform([batch_size], dtype=tf.float64)
        n = tf.cast(self.filled, tf.float64)
        strata = tf.range(batch_size, dtype=tf.float64)
        indices = tf.cast(tf.floor((strata + u) * (n / batch_size)), tf.int32)
        indices = tf.minimum(indices, self.filled - 1)  # float rounding at the top end
        weights = tf.cast(self.tree.get(indices) > 0.0, tf.float32)
        return self._batch(indices, weights)

    def _batch(self, indices: tf.Tensor, weights: tf.Tensor) -> ReplayBatch:
        """The stored transitions at `indices`, with their importance weights."""
        return ReplayBatch(
            obs=tf.gather(self.obs, indices),
            action=tf.gather(self.action, indices),
            reward=tf.gather(self.reward, indices),
            next_obs=tf.gather(self.next_obs, indices),
            done=tf.gather(self.done, indices),
            indices=indices,
            weights=weights,
        )

    def end_episodes(self, num_envs: int) -> None:
        """Add one vector step of autoreset rows (valid=False: priority 0, never sampled).

        For a resumed run: the episodes in flight at the checkpoint were not saved and fresh
        ones start in the same env slots, so without this row an n-step return (`n_step`)
        would run from an old episode's last step into a new episode's first. The old
        episodes then end as if truncated, bootstrapping from their last observation.
        """
        zeros = tf.zeros([num_envs], tf.float32)
        obs = tf.zeros([num_envs, self.obs_size], tf.float32)
        self.add(obs, tf.zeros([num_envs], tf.int32), zeros, obs, zeros,
                 tf.zeros([num_envs], tf.bool))

    def n_step(self, batch: ReplayBatch, n: int, stride: int, gamma: float,
               limit: tf.Tensor | None = None) -> ReplayBatch:
        """The n-step version of `batch`: the reward summed over up to `n` steps of the same
        episode, discounted, and the observation and termination flag after the last of them.
        `limit` (a scalar int tensor, at most `n`) lowers the bound at run time without another
        graph: the trainer's bound changes once the run has solved.

        The ring is filled a whole vector step at a time, so the next step of the env that
        wrote slot i sits at slot i + `stride` (the number of envs). A step is followed only
        while the episode goes on: the step summed last did not terminate, the next slot has
        been written since (it is not ahead of the newest row) and it is a real transition
        (priority > 0; the step after a done, the env's reset, was added with valid=False).
        A truncated episode therefore bootstraps from its last observation, as with n = 1.
        `discount` is gamma ** (steps summed), for the target r + discount * (1 - done) * Q.
        """
        reward, last, going = batch.reward, batch.indices, batch.done < 0.5
        discount = tf.fill(tf.shape(reward), tf.constant(gamma, tf.float32))
        ahead = tf.math.floormod(self.next_index - 1 - batch.indices, self.capacity)
        for k in range(1, n):
            nxt = tf.math.floormod(batch.indices + k * stride, self.capacity)
            going &= (ahead >= k * stride) & (self.tree.get(nxt) > 0.0)
            if limit is not None:
                going &= k < limit
            reward = tf.where(going, reward + discount * tf.gather(self.reward, nxt), reward)
            discount = tf.where(going, discount * gamma, discount)
            last = tf.where(going, nxt, last)
            going &= tf.gather(self.done, nxt) < 0.5
        return batch._replace(reward=reward, next_obs=tf.gather(self.next_obs, last),
                              done=tf.gather(self.done, last), discount=discount)

    def update_priorities(self, indices, td_errors) -> None:
        """Set priorities to (|td| + eps)^alpha and raise max_priority if needed."""
        # Cast before abs/pow: float16 TD errors would lose the eps entirely.
        td = tf.cast(td_errors, tf.float64)
        priority = tf.pow(tf.abs(td) + self.eps, self.alpha)
        self.tree.set(indices, priority)
        self.max_priority.assign(tf.maximum(self.max_priority, tf.reduce_max(priority)))
