"""Double DQN in TensorFlow: Q-networks, the learning step, and the fused store-and-learn call.

Everything here is graph code; the trainer (`trainer.py`) does the Python I/O.

Why one fused function: on this CPU a `tf.function` call costs 100-200 µs while a batch-1024
learning step costs a few hundred, so crossings dominate unless batched. The trainer collects
`train_every` vector steps in NumPy (acting with a NumPy copy of the online network, exact
because the weights only change inside this call), packs them into one float32 array, and makes
ONE call that stores them in the prioritized replay buffer and runs the learning steps (sample,
Double-DQN update, priority update, soft target update) in a `tf.while_loop`, returning the new
online weights for acting. Storing and learning in one XLA cluster also lets XLA fuse the sum
tree's sampling and update, which is where most of its time would otherwise go.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

from common.tf_import import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from acting.collection import ChunkLayout  # noqa: E402
from acting.evaluation import LAYER_NORM_EPS  # noqa: E402
from failure_replay import FailureReservoir  # noqa: E402
from sumtree_tf import PrioritizedReplayBuffer  # noqa: E402

RewardFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def build_q_network(obs_size: int, num_actions: int, hidden: tuple[int, ...],
                    dtype_policy: str = "float32", name: str = "q_network",
                    layer_norm: bool = False, dueling: bool = False) -> keras.Sequential:
    """MLP obs -> Q-values. Hidden layers follow `dtype_policy` (e.g. mixed_float16); the output
    layer is always float32 so Q-values, TD errors and priorities never live in float16.
    With `layer_norm` each hidden block is Dense -> LayerNormalization -> ReLU (as PQN does).
    With `dueling` the output layer gives a value and one advantage per action, combined as
    Q = V + A - mean(A) (Wang et al. 2016); `fold_dueling` turns it into a plain output layer."""
    layers: list[keras.layers.Layer] = [keras.Input((obs_size,), dtype="float32")]
    for w in hidden:
        if layer_norm:
            layers += [keras.layers.Dense(w, dtype=dtype_policy),
                       keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPS, dtype=dtype_policy),
                       keras.layers.Activation("relu", dtype=dtype_policy)]
        else:
            layers.append(keras.layers.Dense(w, activation="relu", dtype=dtype_policy))
    if dueling:
        layers += [keras.layers.Dense(num_actions + 1, dtype="float32"), DuelingCombine()]
    else:
        layers.append(keras.layers.Dense(num_actions, dtype="float32"))
    return keras.Sequential(layers, name=name)


class DuelingCombine(keras.layers.Layer):
    """[V, A_1..A_n] -> Q_i = V + A_i - mean(A). No weights: the preceding Dense holds them."""

    def call(self, head):
        adv = head[:, 1:]
        return head[:, :1] + adv - tf.reduce_mean(adv, axis=1, keepdims=True)


def fold_dueling(weights: list, in_graph: bool = False) -> list:
    """A dueling network's weights as those of the plain network computing the same Q: the
    combination is linear, so the output kernel K = [k_V, K_A] folds to k_V + K_A - mean(K_A)
    (and the bias alike). NumPy arrays, or graph tensors with `in_graph`."""
    mean = tf.reduce_mean if in_graph else np.mean
    *body, kernel, bias = weights
    return [*body, *(w[..., :1] + w[..., 1:] - mean(w[..., 1:], axis=-1, keepdims=True)
                     for w in (kernel, bias))]


def make_optimizer(lr: float, clip_norm: float, weight_decay: float) -> keras.optimizers.Optimizer:
    """Adam, or AdamW when `weight_decay` > 0. Only kernels decay: a bias or LayerNorm's
    gamma/beta pulled toward 0 would bias the Q-values or squash the normalised features, while
    the kernels are what grows without bound under Adam once the TD errors are small (with
    LayerNorm the hidden kernels' scale does not change the function, only the effective step
    size, which decay keeps from shrinking)."""
    if weight_decay <= 0:
        return keras.optimizers.Adam(lr, global_clipnorm=clip_norm)
    optimizer = keras.optimizers.AdamW(lr, weight_decay=weight_decay, global_clipnorm=clip_norm)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


class LearnStats(NamedTuple):
    loss: tf.Tensor        # mean Huber loss over the call's learning steps (0 if none ran)
    mean_q: tf.Tensor      # mean Q(s, a) of the sampled batches
    weights: list          # online network weights after the call, for NumPy acting

    @classmethod
    def from_flat(cls, flat: list) -> "LearnStats":
        """From the call's outputs in order (loss, mean Q, then the weights)."""
        return cls(flat[0], flat[1], list(flat[2:]))


class DoubleDQNAgent(tf.Module):
    """Online and target Q-networks, Adam with linear LR decay and global-norm clipping, and the
    Double-DQN learning step: y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a)).
    Truncated episodes bootstrap (their `done` is 0); only termination cuts the return."""

    def __init__(self, obs_size: int, num_actions: int, hidden: tuple[int, ...] = (48, 48),
                 gamma: float = 0.998, tau: float = 0.06, lr: float = 5e-3, huber_delta: float = 1.0, clip_norm: float = 10.0,
                 mixed_precision: bool = False, reward_max: float | None = 1.0,
                 layer_norm: bool = False, weight_decay: float = 0.0, gap_solved: float = 0.0,
                 anchor_solved: float = 0.0, margin_solved: float = 0.0, dueling: bool = False):
        super().__init__(name="double_dqn")
        self.dueling = dueling
        self.obs_size, self.num_actions = obs_size, num_actions
        self.gamma, self.tau, self.huber_delta = gamma, tau, huber_delta
        self.mixed_precision, self.hidden, self.layer_norm = mixed_precision, tuple(hidden), layer_norm
        self.gap_solved, self.anchor_solved = gap_solved, anchor_solved
        self.margin_solved = margin_solved
        # Rewards lie in [0, reward_max], so no true Q-value exceeds reward_max / (1 - gamma)
        # (500 for CartPole at gamma .998). Capping the target there stops the runaway
        # bootstrapping seen after solving (mean Q past 10^5, the policy collapsing); below the
        # bound the target is unchanged, so learning up to the solve is bit-for-bit the same.
        self.q_max = None if reward_max is None or gamma >= 1 else reward_max / (1.0 - gamma)
        policy = "mixed_float16" if mixed_precision else "float32"
        self.online = build_q_network(obs_size, num_actions, hidden, policy, "online", layer_norm,
                                      dueling)
        self.target = build_q_network(obs_size, num_actions, hidden, policy, "target", layer_norm,
                                      dueling)
        self.target.set_weights(self.online.get_weights())
        # The delivered model's network, for --anchor-solved and --margin-solved: the trainer
        # sets its weights when best.keras is written (the solve, a promotion) or read back (a
        # resume). Always a plain network: it gets the delivered (folded) weights.
        self.anchor = (build_q_network(obs_size, num_actions, hidden, policy, "anchor", layer_norm)
                       if anchor_solved > 0 or margin_solved > 0 else None)
        # A plain float: the trainer sets the value before each call from its own schedule
        # (linear decay, then a lower floor once solved), which a Keras schedule keyed only on
        # the step count could not express.
        optimizer = make_optimizer(lr, clip_norm, weight_decay)
        if mixed_precision:
            # Loss scaling keeps small float16 gradients from flushing to zero; it unscales before
            # the inner optimizer clips and applies, and skips steps whose gradients overflow.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        # Build before any tracing: creating optimizer slots inside a jitted loop is not allowed.
        self.optimizer.build(self.online.trainable_variables)
        self.learn_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="learn_steps")

    # --- graph pieces -------------------------------------------------------------------------
    def td_targets(self, reward: tf.Tensor, next_obs: tf.Tensor, done: tf.Tensor,
                   discount: tf.Tensor | None = None) -> tf.Tensor:
        """Double-DQN targets; `discount` [B] (gamma ** steps, n-step returns) or gamma."""
        next_action = tf.argmax(self.online(next_obs), axis=1, output_type=tf.int32)
        next_q = tf.gather(self.target(next_obs), next_action, axis=1, batch_dims=1)
        discount = self.gamma if discount is None else discount
        target = reward + discount * (1.0 - done) * next_q
        return target if self.q_max is None else tf.minimum(target, self.q_max)

    def gap_term(self, obs: tf.Tensor, action: tf.Tensor, solved: tf.Tensor) -> tf.Tensor:
        """Advantage learning's correction to the targets: -alpha * (max_b Q'(s, b) - Q'(s, a))
        once solved, else 0 (and then the target network's extra pass is skipped)."""
        def gap():
            q = self.target(obs)
            return -self.gap_solved * (tf.reduce_max(q, axis=1)
                                       - tf.gather(q, action, axis=1, batch_dims=1))
        return tf.cond(solved, gap, lambda: tf.zeros(tf.shape(action), tf.float32))

    def anchor_term(self, obs: tf.Tensor, q_all: tf.Tensor, solved: tf.Tensor) -> tf.Tensor:
        """The penalties keeping the learner near the delivered model, once solved (else 0):
        anchor_solved * mean over rows of sum_a (A(s, a) - A*(s, a))^2, A = Q - mean_a Q
        (advantages, not Q: the value level keeps learning; only the preferences are held),
        plus the large-margin term `margin_term` when margin_solved > 0."""
        def penalty():
            ref = tf.stop_gradient(self.anchor(obs))
            total = tf.constant(0.0)
            if self.anchor_solved > 0:
                diff = ((q_all - tf.reduce_mean(q_all, axis=1, keepdims=True))
                        - (ref - tf.reduce_mean(ref, axis=1, keepdims=True)))
                total += self.anchor_solved * tf.reduce_mean(tf.reduce_sum(tf.square(diff), 1))
            if self.margin_solved > 0:
                total += self.margin_term(q_all, tf.argmax(ref, axis=1, output_type=tf.int32))
            return total
        return tf.cond(solved, penalty, lambda: tf.constant(0.0))

    def margin_term(self, q_all: tf.Tensor, expert: tf.Tensor) -> tf.Tensor:
        """DQfD's large-margin loss (Hester et al. 2018) with the delivered model as the expert:
        mean over rows of max_a [Q(s, a) + m * (a != a*)] - Q(s, a*), m = margin_solved. Zero
        where the learner already prefers a* by at least m; it acts on the greedy choice itself,
        which the squared-advantage anchor only reaches through small gaps."""
        other = 1.0 - tf.one_hot(expert, self.num_actions, dtype=q_all.dtype)
        best = tf.reduce_max(q_all + self.margin_solved * other, axis=1)
        return tf.reduce_mean(best - tf.gather(q_all, expert, axis=1, batch_dims=1))

    def set_anchor(self, weights: list[np.ndarray]) -> None:
        """The delivered model's weights (Keras order), for --anchor-solved; else a no-op."""
        if self.anchor is not None:
            self.anchor.set_weights(weights)

    def huber(self, td: tf.Tensor) -> tf.Tensor:
        abs_td = tf.abs(td)
        quad = tf.minimum(abs_td, self.huber_delta)
        return 0.5 * quad * quad + self.huber_delta * (abs_td - quad)

    def train_step(self, obs, action, reward, next_obs, done, weights, n_main=None, solved=None,
                   discount=None):
        """One importance-weighted Double-DQN update; returns (|TD error| [B], loss, mean Q).

        With `n_main`, the first `n_main` rows are the prioritized batch and the rest are extra
        rows (kept failures): the loss is the weighted sum over all rows divided by `n_main`,
        so the prioritized part keeps its scale, and mean Q describes the prioritized rows.
        """
        target = self.td_targets(reward, next_obs, done, discount)
        if self.gap_solved > 0 and solved is not None:
            target = target + self.gap_term(obs, action, solved)
        target = tf.stop_gradient(target)
        variables = self.online.trainable_variables
        with tf.GradientTape() as tape:
            q_all = self.online(obs)
            q = tf.gather(q_all, action, axis=1, batch_dims=1)
            td = target - q
            if n_main is None:
                loss = tf.reduce_mean(weights * self.huber(td))
            else:
                loss = tf.reduce_sum(weights * self.huber(td)) / float(n_main)
                q = q[:n_main]
            objective = loss  # `loss` stays the TD loss that is logged
            if self.anchor is not None and solved is not None:
                objective = objective + self.anchor_term(obs, q_all, solved)
            scaled = self.optimizer.scale_loss(objective) if self.mixed_precision else objective
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        self.soft_update()
        self.learn_steps.assign_add(1)
        return tf.abs(td), loss, tf.reduce_mean(q)

    def soft_update(self) -> None:
        for t, o in zip(self.target.weights, self.online.weights):
            t.assign(t * (1.0 - self.tau) + o * self.tau)

    # --- Python-side helpers ------------------------------------------------------------------
    def numpy_weights(self) -> list[np.ndarray]:
        """The online network's weights in the plain network's shape (NumPy acting, export)."""
        weights = [np.asarray(w) for w in self.online.get_weights()]
        return fold_dueling(weights) if self.dueling else weights

    def policy_weights(self) -> list[tf.Tensor]:
        """`numpy_weights` as graph tensors, the fused call's outputs."""
        weights = [tf.identity(w) for w in self.online.weights]
        return fold_dueling(weights, in_graph=True) if self.dueling else weights

    def learning_rate(self) -> float:
        return float(np.asarray(self.optimizer.learning_rate))

    def set_learning_rate(self, value: float) -> None:
        """Assign the optimizer's learning-rate variable (also inside a loss-scale optimizer)."""
        self.optimizer.learning_rate.assign(value)

    def graph_variables(self) -> list[tf.Variable]:
        """Every variable the learning step reads or writes, in a fixed order."""
        nets = [self.online, self.target] + ([self.anchor] if self.anchor is not None else [])
        return ([v.value for net in nets for v in net.weights]
                + [v.value for v in self.optimizer.variables] + [self.learn_steps])

    def checkpoint_variables(self) -> dict[str, list]:
        """Plain tf.Variables for tf.train.Checkpoint. Keras 3 models do not restore into a fresh
        object graph by structure reliably, so we checkpoint explicit, ordered variable lists."""
        return {"online": [v.value for v in self.online.weights],
                "target": [v.value for v in self.target.weights],
                "optimizer": [v.value for v in self.optimizer.variables],
                "learn_steps": self.learn_steps}

    def export(self, path: str, weights: list[np.ndarray] | None = None) -> None:
        """Write the online network (or these weights in its shape) as a `.keras` file that
        plain Keras can load (obs -> Q).

        Always a float32 network: under mixed precision the hidden layers compute in float16
        during learning, but their variables are float32, and the trainer scores (solve rule,
        confirmation) with exactly those float32 weights in NumPy. Exporting them in a float32
        model makes best.keras, --evaluate and the score play one and the same network.
        `weights` lets the trainer export the snapshot an evaluation round judged.
        """
        model = self.online
        if self.mixed_precision or self.dueling or weights is not None:
            model = build_q_network(self.obs_size, self.num_actions, self.hidden, "float32",
                                    "online", self.layer_norm)
            model.set_weights(self.numpy_weights() if weights is None else weights)
        tmp = f"{path}.tmp.keras"  # Keras insists on the extension; rename makes it atomic.
        model.save(tmp)
        os.replace(tmp, path)


def make_sampler(buffer: PrioritizedReplayBuffer, batch_size: int, uniform_solved: bool,
                 n_step: int = 1, stride: int = 1, gamma: float | None = None,
                 n_step_solved: int | None = None):
    """The replay draw of one learning step, as graph code: `sample(beta, solved)`.

    Prioritized always, or with `uniform_solved` uniform once `solved` is true; with
    `n_step` > 1 the batch carries n-step returns (`buffer.n_step`, `stride` = envs), over at
    most `n_step_solved` steps once `solved` is true (None: `n_step` throughout). Which graph
    is built is decided here, at trace time, so the one-step graph is untouched.
    """
    n_solved = n_step if n_step_solved is None else n_step_solved
    n_max = max(n_step, n_solved)
    if n_max > 1 and gamma is None:
        raise ValueError("n-step returns need the discount gamma")

    def draw(beta, solved):
        if not uniform_solved:
            return buffer.sample(batch_size, beta)
        return tf.cond(solved, lambda: buffer.sample_uniform(batch_size),
                       lambda: buffer.sample(batch_size, beta))

    def sample(beta, solved):
        b = draw(beta, solved)
        if n_max == 1:
            return b
        limit = None if n_solved == n_step else tf.where(solved, n_solved, n_step)
        return buffer.n_step(b, n_max, stride, gamma, limit)
    return sample


def _failure_batch(failures: FailureReservoir | None, failure_rows: int, layout: ChunkLayout,
                   reward_fn: RewardFn, gamma: float):
    """`with_failures(batch, weight)`: the prioritized batch plus `failure_rows` kept failures
    (one-step terminal transitions, so their discount never counts), as train_step's keyword
    arguments; the kept rows get importance weight `weight`."""
    def with_failures(b, weight):
        rows, any_kept = failures.sample(failure_rows)
        f_next, f_term = rows[:, layout.next_obs], rows[:, layout.terminated]
        discount = (None if b.discount is None else
                    tf.concat([b.discount, tf.fill([failure_rows], gamma)], 0))
        return dict(obs=tf.concat([b.obs, rows[:, layout.obs]], 0),
                    action=tf.concat([b.action, tf.cast(rows[:, layout.action], tf.int32)], 0),
                    reward=tf.concat([b.reward, reward_fn(f_next, f_term > 0.5)], 0),
                    next_obs=tf.concat([b.next_obs, f_next], 0),
                    done=tf.concat([b.done, f_term], 0), discount=discount,
                    weights=tf.concat([b.weights, tf.fill([failure_rows], any_kept * weight)], 0))
    return with_failures


def make_store_and_learn(agent: DoubleDQNAgent, buffer: PrioritizedReplayBuffer,
                         reward_fn: RewardFn, batch_size: int, jit_compile: bool,
                         failures: FailureReservoir | None = None, failure_rows: int = 0,
                         uniform_solved: bool = False, n_step: int = 1, num_envs: int = 1,
                         n_step_solved: int | None = None):
    """Build the single per-call `tf.function`: store a packed chunk, then learn `n_learn` steps.

    Signature is fixed ([None, width] float32 chunk, scalar int32 and float32) so it traces once
    for the whole run; `beta` and `n_learn` are tensors so their changing values never retrace.
    With a failure reservoir and `failure_rows > 0`, the chunk's terminal transitions are also
    kept there, and every learning batch gets `failure_rows` of them on top of its
    `batch_size` prioritized rows, with importance weight `failure_weight` (the trainer passes
    0 until the run has solved, 1 after) and no priority update. That same argument is the
    "solved" flag: with `uniform_solved`, once it is 1 the batches are drawn uniformly from the
    replay (importance weights 1) and priorities are no longer updated. With `n_step` > 1 the
    targets use n-step returns (`n_step_solved` steps once solved, see `make_sampler`); the
    chunk's rows are vector steps of `num_envs` envs, in order.
    """
    layout = ChunkLayout(agent.obs_size)
    use_failures = failures is not None and failure_rows > 0

    with_failures = _failure_batch(failures, failure_rows, layout, reward_fn, agent.gamma)
    # autograph=False: we write tf.while_loop explicitly, and AutoGraph's source transpiling was
    # ~80% of the trace time (0.6 of 0.86 s here).
    @tf.function(jit_compile=jit_compile, autograph=False, input_signature=[
        tf.TensorSpec([None, layout.width], tf.float32),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.float32)])
    def store_and_learn(chunk: tf.Tensor, n_learn: tf.Tensor, beta: tf.Tensor,
                        failure_weight: tf.Tensor = tf.constant(0.0)) -> LearnStats:
        next_obs = chunk[:, layout.next_obs]
        terminated = chunk[:, layout.terminated]
        valid = chunk[:, layout.valid] > 0.5
        buffer.add(chunk[:, layout.obs], tf.cast(chunk[:, layout.action], tf.int32),
                   reward_fn(next_obs, terminated > 0.5), next_obs, terminated, valid)
        if use_failures:
            failures.add(chunk, valid & (terminated > 0.5))

        solved = failure_weight > 0.5
        sample = make_sampler(buffer, batch_size, uniform_solved, n_step, num_envs, agent.gamma,
                              n_step_solved)

        def update_priorities(indices, td_abs):
            if not uniform_solved:
                buffer.update_priorities(indices, td_abs)
                return

            def update():
                buffer.update_priorities(indices, td_abs)
                return tf.constant(0)

            # Frozen once solved: the tree then only marks which slots hold a real transition.
            tf.cond(solved, lambda: tf.constant(0), update)

        def body(i, loss_sum, q_sum):
            b = sample(beta, solved)
            if use_failures:
                td_abs, loss, mean_q = agent.train_step(**with_failures(b, failure_weight),
                                                        n_main=batch_size, solved=solved)
                td_abs = td_abs[:batch_size]
            else:
                td_abs, loss, mean_q = agent.train_step(b.obs, b.action, b.reward, b.next_obs,
                                                        b.done, b.weights, solved=solved,
                                                        discount=b.discount)
            update_priorities(b.indices, td_abs)
            return i + 1, loss_sum + loss, q_sum + mean_q

        _, loss_sum, q_sum = tf.while_loop(
            lambda i, *_: i < n_learn, body, (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        denom = tf.cast(tf.maximum(n_learn, 1), tf.float32)
        return LearnStats(loss_sum / denom, q_sum / denom, agent.policy_weights())

    return store_and_learn
