"""A reservoir of failures: the last terminal transitions, kept apart from the replay ring.

Why: once the agent balances every episode to 500, no new failures are collected, and the
replay ring (65,536 transitions = about 64 learning calls of 64 envs) overwrites the last ones
within ~65k env steps. From then on every batch holds near-optimal play only; the network
forgets what a doomed state is worth, max Q on those states drifts toward 1/(1-gamma), and the
policy can collapse (the failure analysed publicly in ARENA_3.0 PR #399). Keeping the latest
`capacity` terminal transitions here, and mixing a fixed number of them into every learning
batch, keeps the failure signal alive for as long as training goes on.

Graph code only. Rows are stored packed exactly as the trainer's chunk (collection.ChunkLayout),
written inside the fused store-and-learn call with static shapes: a cumulative sum over the
chunk's "terminated and valid" mask gives each failure its ring slot, every other row is sent
to one scratch slot past the end that is never sampled. Everything is a variable (and the
sampler a `tf.random.Generator`), so a checkpoint carries the reservoir and a resumed run
continues it exactly.
"""
from __future__ import annotations

from common.tf_import import import_tensorflow

tf = import_tensorflow()


class FailureReservoir(tf.Module):
    def __init__(self, capacity: int, width: int, seed: int, name: str = "failures"):
        super().__init__(name=name)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        # One extra row: the scratch slot for the chunk's non-failure rows.
        self.rows = tf.Variable(tf.zeros([capacity + 1, width], tf.float32), trainable=False,
                                name="rows")
        self.next_index = tf.Variable(0, dtype=tf.int32, trainable=False, name="next_index")
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False, name="count")
        self.rng = tf.random.Generator.from_seed(seed)

    def add(self, chunk: tf.Tensor, is_failure: tf.Tensor) -> None:
        """Keep the rows of `chunk` [n, width] where `is_failure` [n] (bool) holds."""
        inc = tf.cast(is_failure, tf.int32)
        position = self.next_index + tf.cumsum(inc) - 1
        slots = tf.where(is_failure, tf.math.floormod(position, self.capacity), self.capacity)
        self.rows.scatter_nd_update(slots[:, None], chunk)
        added = tf.reduce_sum(inc)
        self.next_index.assign(tf.math.floormod(self.next_index + added, self.capacity))
        self.count.assign(tf.minimum(self.count + added, self.capacity))

    def sample(self, n: int) -> tuple[tf.Tensor, tf.Tensor]:
        """`n` rows drawn uniformly from the kept failures, and whether any exist (float 0/1).

        With an empty reservoir the rows are the (zero) scratch row and the flag is 0, so the
        caller can weight them out while keeping the batch's static shape.
        """
        hi = tf.maximum(self.count, 1)
        j = self.rng.uniform([n], 0, hi, dtype=tf.int32)
        j = tf.where(self.count > 0, j, self.capacity)
        return tf.gather(self.rows, j), tf.cast(self.count > 0, tf.float32)
