"""Wiring tests: what really reaches the replay buffer, and what the fused call really does.

The unit tests of the env, the sum tree and the agent each check one piece; a mistake in how
the pieces are joined (obs and next_obs swapped when packing a chunk, truncation stored as
`done`, the priority update or the importance weights dropped from the fused call) would pass
all of them. These tests join the real pieces and check the result from the outside:

* `test_stored_transitions_*`: the trainer's collection path (`TFWrappedVecEnv`,
  `collection.collect_chunk` acting with a `NumpyQNetwork`, `agent.make_store_and_learn` with
  `n_learn=0`) fills a `PrioritizedReplayBuffer`; every stored row is then re-derived from
  CartPole's equations of motion and gymnasium's termination rules.
* `test_fused_learning_step_matches_numpy_reference`: one learning step on a tiny buffer whose
  priorities make the sampled batch independent of the random draw, checked against a NumPy
  re-computation of the Double-DQN targets, importance weights, weighted Huber loss, gradient,
  Adam step, soft update and new priorities.
"""
from __future__ import annotations

import os
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from agent import DoubleDQNAgent, make_store_and_learn  # noqa: E402
from acting.collection import ChunkLayout, EpsilonSchedule, collect_chunk  # noqa: E402
from acting.evaluation import NumpyQNetwork  # noqa: E402
from rewards import shaped_reward  # noqa: E402
from sumtree_tf import PrioritizedReplayBuffer  # noqa: E402
from test_vec_env import (MAX_STEPS, RESET_BOUND, THETA_LIMIT, X_LIMIT,  # noqa: E402
                          follows_dynamics)
from vec_env_tf import TFWrappedVecEnv  # noqa: E402

# --------------------------------------------------------------------------------------------
# The collection path, end to end
# --------------------------------------------------------------------------------------------
NUM_ENVS = 8
CHUNK_STEPS = 20  # vector steps per store call, as --train-every would give
# Three phases, in calls of CHUNK_STEPS vector steps: a balancing controller with 10% random
# actions long enough for every env to reach the 500-step truncation (and its autoreset step);
# a controller holding the pole at a lean, so the cart accelerates off the track (|x| > 2.4);
# then purely random actions (pole-angle terminations).
BALANCE_CALLS, DRIFT_CALLS, RANDOM_CALLS = 26, 14, 6
TOTAL_CALLS = BALANCE_CALLS + DRIFT_CALLS + RANDOM_CALLS
TOTAL_ROWS = TOTAL_CALLS * CHUNK_STEPS * NUM_ENVS


def linear_controller(coefficients, bias: float = 0.0) -> list[np.ndarray]:
    """Weights of a ReLU MLP whose greedy action is `coefficients . obs + bias > 0`.

    Two hidden units carry relu(s) and relu(-s); Q(1) - Q(0) = s, so argmax is action 1 exactly
    when s > 0 (a tie at s == 0 picks action 0, as `>` does).
    """
    c = np.asarray(coefficients, np.float32)
    return [np.stack([c, -c], axis=1), np.array([bias, -bias], np.float32),
            np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), np.zeros(2, np.float32)]


BALANCE = linear_controller([0.01, 0.1, 1.0, 0.5])  # x, x_dot, theta, theta_dot
DRIFT = linear_controller([0.0, 0.0, 10.0, 2.0], bias=-0.4)  # keeps theta near 0.04 rad


class Stored(NamedTuple):
    """The buffer's rows in time order, as a [T, N] grid, next to the env's own record."""
    obs: np.ndarray          # [T, N, 4] read back from the buffer
    action: np.ndarray       # [T, N]
    reward: np.ndarray       # [T, N]
    next_obs: np.ndarray     # [T, N, 4]
    done: np.ndarray         # [T, N]
    priority: np.ndarray     # [T, N] the rows' leaves in the sum tree
    env_actions: np.ndarray  # [T, N] what the env was stepped with
    env_terminated: np.ndarray  # [T, N] the env's own flags, recorded as it stepped
    env_truncated: np.ndarray
    env_valid: np.ndarray
    first_obs: np.ndarray    # [N, 4] the reset observation collection started from


def record_steps(env: TFWrappedVecEnv, log: list) -> None:
    """Wrap env.step_numpy so every (actions, step) pair it handles is kept."""
    step_numpy = env.step_numpy

    def recording_step(actions):
        step = step_numpy(actions)
        log.append((np.array(actions), step))
        return step

    env.step_numpy = recording_step


@pytest.fixture(scope="module")
def stored() -> Stored:
    keras.utils.set_random_seed(0)
    agent = DoubleDQNAgent(4, 2, hidden=(8,))
    buffer = PrioritizedReplayBuffer(8192, 4, alpha=0.7, seed=1)
    assert buffer.capacity >= TOTAL_ROWS, "rows must not be overwritten, or slots lose time order"
    store = make_store_and_learn(agent, buffer, shaped_reward, batch_size=32, jit_compile=True)
    layout = ChunkLayout(4)
    chunk = np.zeros((CHUNK_STEPS, NUM_ENVS, layout.width), np.float32)
    qnet = NumpyQNetwork(BALANCE)
    rng = np.random.default_rng(3)
    log: list = []
    with TFWrappedVecEnv(NUM_ENVS, seed=11) as env:
        obs = first_obs = env.reset_numpy()
        record_steps(env, log)
        for call in range(TOTAL_CALLS):
            if call < BALANCE_CALLS:
                epsilon = EpsilonSchedule(0.1, 0.1, 1)
            elif call < BALANCE_CALLS + DRIFT_CALLS:
                qnet.set_weights(DRIFT)
                epsilon = EpsilonSchedule(0.0, 0.0, 1)
            else:
                epsilon = EpsilonSchedule(1.0, 1.0, 1)
            obs, _, _ = collect_chunk(env, qnet, rng, obs, chunk, layout, epsilon,
                                      call * CHUNK_STEPS)
            store(tf.constant(chunk.reshape(-1, layout.width)), tf.constant(0), tf.constant(0.5))
    assert int(agent.learn_steps.numpy()) == 0 and int(buffer.size().numpy()) == TOTAL_ROWS
    grid = (TOTAL_CALLS * CHUNK_STEPS, NUM_ENVS)
    rows = slice(0, TOTAL_ROWS)
    leaves = buffer.tree.nodes.numpy()[buffer.tree.num_leaf_slots:][rows]
    steps = [s for _, s in log]
    return Stored(
        obs=buffer.obs.numpy()[rows].reshape(*grid, 4),
        action=buffer.action.numpy()[rows].reshape(grid),
        reward=buffer.reward.numpy()[rows].reshape(grid),
        next_obs=buffer.next_obs.numpy()[rows].reshape(*grid, 4),
        done=buffer.done.numpy()[rows].reshape(grid),
        priority=leaves.reshape(grid),
        env_actions=np.stack([a for a, _ in log]),
        env_terminated=np.stack([s.terminated for s in steps]),
        env_truncated=np.stack([s.truncated for s in steps]),
        env_valid=np.stack([s.valid for s in steps]),
        first_obs=first_obs,
    )


def past_thresholds(next_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x out, theta out, too close to a threshold to judge from a float32 observation)."""
    nxt = next_obs.astype(np.float64)
    x, theta = np.abs(nxt[..., 0]), np.abs(nxt[..., 2])
    # The env decides on its float64 state; only a float32 value within rounding of a limit
    # could disagree with it.
    ambiguous = (np.abs(x - X_LIMIT) < 1e-6) | (np.abs(theta - THETA_LIMIT) < 1e-7)
    return x > X_LIMIT, theta > THETA_LIMIT, ambiguous


def episode_lengths_at(valid: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """[T, N] number of valid steps of the episode up to and including each step."""
    length = np.zeros(valid.shape, np.int64)
    running = np.zeros(valid.shape[1], np.int64)
    for t in range(valid.shape[0]):
        running = np.where(valid[t], running + 1, 0)
        length[t] = running
        running[ended[t]] = 0
    return length


def test_stored_rows_are_the_env_steps_in_order(stored: Stored):
    # Slot order is time order: each row's obs is the previous row's next_obs (also across
    # an autoreset, whose next_obs is the fresh state acted on next), starting at the reset.
    np.testing.assert_array_equal(stored.obs[0], stored.first_obs)
    np.testing.assert_array_equal(stored.obs[1:], stored.next_obs[:-1])
    np.testing.assert_array_equal(stored.action, stored.env_actions)


def test_run_covers_truncations_and_both_kinds_of_termination(stored: Stored):
    # Guards the tests below against passing on a run that never shows the cases they check.
    valid = stored.env_valid
    x_out, theta_out, _ = past_thresholds(stored.next_obs)
    assert (valid & stored.env_truncated).sum() >= NUM_ENVS
    assert (valid & x_out).sum() >= 5 and (valid & theta_out).sum() >= 20
    assert (~valid).sum() >= 40


def test_stored_valid_transitions_follow_cartpole_dynamics(stored: Stored):
    valid = stored.priority > 0
    ok = follows_dynamics(stored.obs[valid], stored.action[valid], stored.next_obs[valid])
    bad = np.flatnonzero(~ok)
    assert ok.all(), f"{bad.size} of {ok.size} stored transitions break the dynamics, first {bad[:5]}"
    # The autoreset rows pair a final state with a reset state; they must not pass.
    invalid = ~stored.env_valid
    assert not follows_dynamics(stored.obs[invalid], stored.action[invalid],
                                stored.next_obs[invalid]).any()
    assert np.all(np.abs(stored.next_obs[invalid]) <= RESET_BOUND)


def test_autoreset_rows_get_priority_zero_and_real_ones_the_max(stored: Stored):
    # Validity comes from the env's own record here, not from anything the buffer holds.
    np.testing.assert_array_equal(stored.priority[~stored.env_valid], 0.0)
    # No learning ran, so every real transition carries the initial max priority.
    np.testing.assert_array_equal(stored.priority[stored.env_valid], 1.0)


def test_stored_done_is_termination_never_truncation(stored: Stored):
    valid = stored.env_valid
    x_out, theta_out, ambiguous = past_thresholds(stored.next_obs)
    expected = (x_out | theta_out).astype(np.float32)
    judged = valid & ~ambiguous
    np.testing.assert_array_equal(stored.done[judged], expected[judged],
                                  err_msg="done must be 1 exactly past the termination thresholds")
    # Truncation: the 500th step of an episode that is still inside the thresholds.
    ended = stored.env_terminated | stored.env_truncated
    length = episode_lengths_at(valid, ended)
    truncated = valid & (length == MAX_STEPS) & ~(x_out | theta_out)
    np.testing.assert_array_equal(truncated, valid & stored.env_truncated)
    assert truncated.sum() >= NUM_ENVS
    np.testing.assert_array_equal(stored.done[truncated], 0.0,
                                  err_msg="a truncated step was stored as done")
    # Autoreset rows are not transitions; they must not claim a termination either.
    np.testing.assert_array_equal(stored.done[~valid], 0.0)


def test_stored_reward_is_the_shaped_reward_of_next_obs(stored: Stored):
    x_out, theta_out, _ = past_thresholds(stored.next_obs)
    terminated = stored.env_valid & (x_out | theta_out)
    want = shaped_reward(tf.constant(stored.next_obs.reshape(-1, 4)),
                         tf.constant(terminated.reshape(-1))).numpy().reshape(terminated.shape)
    valid = stored.env_valid
    np.testing.assert_allclose(stored.reward[valid], want[valid], rtol=1e-6, atol=1e-7)
    # The check can tell next_obs from obs: their shaped rewards differ on many rows.
    of_obs = shaped_reward(tf.constant(stored.obs.reshape(-1, 4)),
                           tf.constant(terminated.reshape(-1))).numpy().reshape(terminated.shape)
    assert np.mean(np.abs(of_obs[valid] - want[valid]) > 1e-5) > 0.5


# --------------------------------------------------------------------------------------------
# One fused learning step against NumPy
# --------------------------------------------------------------------------------------------
CAPACITY, BATCH, OBS = 16, 4, 4
GAMMA, TAU, LR, DELTA, CLIP, ALPHA, EPS, BETA = 0.998, 0.06, 5e-3, 0.5, 10.0, 0.7, 1e-6, 0.5
# Adam's constants as Keras documents them (the optimizer is built with the defaults).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7

# Priorities before the learning call: slot 1 -> 2, slot 4 -> 1, and slot 10, added by the
# learning call itself, gets the max priority 1; slot 2 gets 1e-9 (a real transition always has
# a priority above 0, only autoreset rows have 0, and the n-step case follows slot 1 into slot
# 2); everything else 0. The total is 4 (+1e-9) = BATCH, so each stratum [j, j+1) of the
# stratified draw lies inside one leaf (but for a 1e-9 sliver) and the batch is [1, 1, 4, 10],
# while P(i) still differs between rows (weights (P / P_min)^-beta = 1/sqrt 2, 1/sqrt 2, 1, 1).
PRIOR = {1: 2.0, 2: 1e-9, 4: 1.0}
SAMPLED = np.array([1, 1, 4, 10])


def relu_mlp(weights: list[np.ndarray], obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 forward pass of a one-hidden-layer ReLU MLP: (pre-activation, hidden, Q)."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    pre = obs @ w1 + b1
    hidden = np.maximum(pre, 0.0)
    return pre, hidden, hidden @ w2 + b2


def reference_step(online, target, obs, action, reward, next_obs, done, weights, discount=GAMMA):
    """NumPy Double-DQN step: (|td|, loss, mean q, gradients in the model's variable order)."""
    _, _, q_next_online = relu_mlp(online, next_obs)
    _, _, q_next_target = relu_mlp(target, next_obs)
    best = q_next_online.argmax(axis=1)
    y = reward + discount * (1.0 - done) * q_next_target[np.arange(len(best)), best]
    y = np.minimum(y, 1.0 / (1.0 - GAMMA))
    pre, hidden, q_all = relu_mlp(online, obs)
    q = q_all[np.arange(len(action)), action]
    td = y - q
    abs_td = np.abs(td)
    huber = np.where(abs_td <= DELTA, 0.5 * td**2, DELTA * (abs_td - 0.5 * DELTA))
    loss = np.mean(weights * huber)
    # Backward pass by hand: dL/dq_i = -w_i * clip(td_i, -delta, delta) / B.
    d_q = np.zeros_like(q_all)
    d_q[np.arange(len(action)), action] = -weights * np.clip(td, -DELTA, DELTA) / len(action)
    w2 = np.asarray(online[2], np.float64)
    d_pre = (d_q @ w2.T) * (pre > 0)
    grads = [obs.T @ d_pre, d_pre.sum(axis=0), hidden.T @ d_q, d_q.sum(axis=0)]
    return abs_td, loss, q.mean(), grads


def first_adam_step(variables, grads):
    """Keras Adam's first update after global-norm clipping: (new variables, m, v)."""
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    grads = [g * CLIP / max(norm, CLIP) for g in grads]
    ms = [(1 - ADAM_B1) * g for g in grads]
    vs = [(1 - ADAM_B2) * g * g for g in grads]
    step = LR * np.sqrt(1 - ADAM_B2) / (1 - ADAM_B1)
    new = [np.asarray(w, np.float64) - step * m / (np.sqrt(v) + ADAM_EPS)
           for w, m, v in zip(variables, ms, vs)]
    return new, ms, vs


def transitions(rng: np.random.Generator, n: int, layout: ChunkLayout) -> np.ndarray:
    """n packed rows with states spread over the track, so rewards and Q-values differ."""
    chunk = np.zeros((n, layout.width), np.float32)
    scale = np.float32([1.5, 1.0, 0.15, 1.0])
    chunk[:, layout.obs] = rng.uniform(-1, 1, (n, OBS)) * scale
    chunk[:, layout.next_obs] = rng.uniform(-1, 1, (n, OBS)) * scale
    chunk[:, layout.action] = rng.integers(0, 2, n)
    chunk[:, layout.valid] = 1.0
    return chunk


@pytest.mark.parametrize("xla", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("n_step", [1, 2])
def test_fused_learning_step_matches_numpy_reference(xla, n_step):
    """With n_step 2 (one env, so the next step is the next slot): slot 1 sums its reward and
    slot 2's and bootstraps from slot 2's next state with gamma^2; slot 4 terminates and slot
    10 is followed by an autoreset row, so both stay one-step."""
    keras.utils.set_random_seed(4)
    agent = DoubleDQNAgent(OBS, 2, hidden=(3,), gamma=GAMMA, tau=TAU, lr=LR, huber_delta=DELTA,
                           clip_norm=CLIP)
    # Target = online with its two outputs swapped: Double DQN's Q_target(s', argmax Q_online)
    # is then min Q_online(s', .), while vanilla DQN or an argmax over the target network would
    # give the max, so the reference below tells them apart.
    online0 = [np.asarray(w) for w in agent.online.get_weights()]
    online0[1] = np.full_like(online0[1], 0.3)  # hidden units alive for these small states
    agent.online.set_weights(online0)
    agent.target.set_weights(online0[:2] + [online0[2][:, ::-1].copy(), online0[3][::-1].copy()])
    target0 = [np.asarray(w) for w in agent.target.get_weights()]
    buffer = PrioritizedReplayBuffer(CAPACITY, OBS, alpha=ALPHA, eps=EPS, seed=0)
    fused = make_store_and_learn(agent, buffer, shaped_reward, BATCH, jit_compile=xla,
                                 n_step=n_step, num_envs=1)
    layout = ChunkLayout(OBS)
    rng = np.random.default_rng(7)

    stored = transitions(rng, 10, layout)
    stored[4, layout.terminated] = 1.0  # a sampled terminal row: its bootstrap must be cut
    stored[[1, 4], layout.action] = [1, 0]  # both actions in the batch
    fused(tf.constant(stored), tf.constant(0), tf.constant(BETA))
    leaves = np.zeros(CAPACITY)
    for slot, p in PRIOR.items():
        leaves[slot] = p
    buffer.tree.rebuild_from_numpy(leaves)

    # The learning call stores two more rows first: slot 10 (valid, so max priority 1) is
    # sampled in this very call; slot 11 is an autoreset row (priority 0, never sampled).
    added = transitions(rng, 2, layout)
    added[0, layout.action] = 1
    added[1, layout.valid] = 0.0
    stats = fused(tf.constant(added), tf.constant(1), tf.constant(BETA))

    every = np.concatenate([stored, added]).astype(np.float64)
    rows = every[SAMPLED]
    obs, next_obs = rows[:, layout.obs], rows[:, layout.next_obs]
    action = rows[:, layout.action].astype(int)
    done = rows[:, layout.terminated]
    reward = shaped_reward(tf.constant(next_obs, tf.float32), tf.constant(done > 0.5)).numpy()
    discount = np.full(len(SAMPLED), GAMMA)
    if n_step == 2:
        two = [0, 1]  # the rows of slot 1; slot 2 follows it
        nxt = every[2]
        r2 = shaped_reward(tf.constant(nxt[None, layout.next_obs], tf.float32),
                           tf.constant([nxt[layout.terminated] > 0.5])).numpy()[0]
        reward[two] = reward[two] + GAMMA * r2
        next_obs[two], done[two], discount[two] = nxt[layout.next_obs], nxt[layout.terminated], GAMMA ** 2
    leaves[10] = 1.0
    prob = leaves[SAMPLED] / leaves.sum()
    n_filled = 12
    is_weights = (n_filled * prob) ** -BETA
    is_weights /= is_weights.max()
    abs_td, loss, mean_q, grads = reference_step(online0, target0, obs, action, reward,
                                                 next_obs, done, is_weights, discount)
    # Guards: the weights differ, every row reaches the hidden layer (so its weight shows in
    # every layer's gradient), the TD errors fall in both Huber regimes, and the bootstrapped
    # rows' two Q-values differ (else Double and vanilla DQN would agree on them).
    assert not np.allclose(is_weights, 1.0)
    assert np.all(relu_mlp(online0, obs)[1].any(axis=1))
    assert abs_td.min() < DELTA < abs_td.max()
    q_next = relu_mlp(online0, next_obs[done == 0])[2]
    assert np.all(np.abs(q_next[:, 0] - q_next[:, 1]) > 1e-3)

    np.testing.assert_allclose(float(stats.loss), loss, rtol=1e-5, err_msg="loss")
    np.testing.assert_allclose(float(stats.mean_q), mean_q, rtol=1e-5, atol=1e-7, err_msg="mean Q")

    # The optimizer's first moments are (1 - beta_1) * gradient: the gradient of the weighted loss.
    online1, ms, _ = first_adam_step(online0, grads)
    moments = [np.asarray(v) for v in agent.optimizer.variables if "momentum" in v.path]
    for got, want in zip(moments, ms, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9, err_msg="Adam first moment")
    for got, want in zip(stats.weights, online1, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=LR * 1e-3,
                                   err_msg="online weights after the Adam step")
    for got, t0, o1 in zip(agent.target.get_weights(), target0, online1, strict=True):
        np.testing.assert_allclose(got, (1 - TAU) * t0 + TAU * o1, rtol=0, atol=1e-6,
                                   err_msg="soft target update")
    assert int(agent.learn_steps.numpy()) == 1

    # New priorities: (|td| + eps)^alpha at the sampled slots, every other leaf untouched.
    got_leaves = buffer.tree.nodes.numpy()[buffer.tree.num_leaf_slots:][:CAPACITY]
    want_leaves = leaves.copy()
    want_leaves[SAMPLED] = (abs_td + EPS) ** ALPHA
    np.testing.assert_allclose(got_leaves, want_leaves, rtol=1e-5, atol=0,
                               err_msg="sum-tree priorities after the learning step")
    assert float(buffer.max_priority.numpy()) == pytest.approx(max(1.0, want_leaves.max()), rel=1e-5)
