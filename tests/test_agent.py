"""DoubleDQNAgent: target arithmetic, soft update, schedules, mixed precision, export."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from agent import DoubleDQNAgent, make_sampler, make_store_and_learn  # noqa: E402
from acting.collection import ChunkLayout as TransitionLayout  # noqa: E402
from common.config import linear_schedule  # noqa: E402
from acting.evaluation import NumpyQNetwork  # noqa: E402
from rewards import get_reward_fn  # noqa: E402
from sumtree_tf import PrioritizedReplayBuffer  # noqa: E402


def small_agent(**kw) -> DoubleDQNAgent:
    keras.utils.set_random_seed(0)
    return DoubleDQNAgent(4, 2, hidden=(8, 8), **kw)


def test_double_dqn_target_matches_numpy():
    agent = small_agent(gamma=0.9)
    # Make target differ from online so Double DQN differs from vanilla DQN.
    wrng = np.random.default_rng(5)
    agent.target.set_weights([wrng.normal(0, 0.5, w.shape).astype(np.float32)
                              for w in agent.online.get_weights()])
    rng = np.random.default_rng(1)
    next_obs = rng.normal(size=(32, 4)).astype(np.float32)
    reward = rng.random(32).astype(np.float32)
    done = (rng.random(32) < 0.3).astype(np.float32)
    got = agent.td_targets(tf.constant(reward), tf.constant(next_obs), tf.constant(done)).numpy()

    q_online = NumpyQNetwork(agent.online.get_weights()).q_values(next_obs)
    q_target = NumpyQNetwork(agent.target.get_weights()).q_values(next_obs)
    a_star = q_online.argmax(axis=1)
    want = reward + 0.9 * (1 - done) * q_target[np.arange(32), a_star]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Vanilla DQN (max over the target network) must give a different answer here, or this
    # test could not tell the two apart.
    vanilla = reward + 0.9 * (1 - done) * q_target.max(axis=1)
    assert not np.allclose(got, vanilla)


def test_terminated_cuts_bootstrap_truncation_does_not():
    agent = small_agent(gamma=0.5)
    next_obs = np.ones([2, 4], np.float32)
    y = agent.td_targets(tf.constant([1.0, 1.0]), tf.constant(next_obs), tf.constant([1.0, 0.0])).numpy()
    # A truncated step (done 0) bootstraps from the same next state a terminated one ignores.
    a_star = NumpyQNetwork(agent.online.get_weights()).greedy(next_obs[1:])[0]
    bootstrap = NumpyQNetwork(agent.target.get_weights()).q_values(next_obs[1:])[0, a_star]
    assert abs(bootstrap) > 1e-2, "the next state's value must be visible in the target"
    assert y[0] == pytest.approx(1.0, abs=1e-7)
    assert y[1] == pytest.approx(1.0 + 0.5 * bootstrap, rel=1e-5)


def test_soft_update_moves_target_by_tau():
    agent = small_agent(tau=0.25)
    online = [w + 1.0 for w in agent.online.get_weights()]
    agent.online.set_weights(online)
    before = agent.target.get_weights()
    agent.soft_update()
    for t_old, o, t_new in zip(before, online, agent.target.get_weights()):
        np.testing.assert_allclose(t_new, 0.75 * t_old + 0.25 * o, rtol=1e-6, atol=1e-6)


def test_huber_matches_definition():
    agent = small_agent(huber_delta=2.0)
    td = np.array([-5.0, -2.0, -0.5, 0.0, 1.0, 3.0], np.float32)
    want = np.where(np.abs(td) <= 2.0, 0.5 * td**2, 2.0 * (np.abs(td) - 1.0))
    np.testing.assert_allclose(agent.huber(tf.constant(td)).numpy(), want, rtol=1e-6)


def test_linear_schedules():
    assert linear_schedule(1.0, 0.01, 300, 0) == 1.0
    assert linear_schedule(1.0, 0.01, 300, 150) == pytest.approx(0.505)
    assert linear_schedule(1.0, 0.01, 300, 300) == pytest.approx(0.01)
    assert linear_schedule(1.0, 0.01, 300, 10_000) == pytest.approx(0.01)


def test_learning_rate_schedule_decays_then_drops_when_solved():
    from common.config import TrainConfig
    cfg = TrainConfig(lr=1e-2, lr_final=1e-3, lr_decay_steps=100, lr_solved=1e-4)
    assert cfg.learning_rate(0, solved=False) == pytest.approx(1e-2)
    assert cfg.learning_rate(50, solved=False) == pytest.approx(5.5e-3)
    assert cfg.learning_rate(1000, solved=False) == pytest.approx(1e-3)
    assert cfg.learning_rate(50, solved=True) == pytest.approx(1e-4)
    # Not given: half of --lr-final once solved.
    assert TrainConfig(lr_final=2e-3).learning_rate(10, solved=True) == pytest.approx(1e-3)


@pytest.mark.parametrize("mixed", [False, True])
def test_set_learning_rate_reaches_the_optimizer(mixed):
    agent = small_agent(mixed_precision=mixed, lr=1e-2)
    agent.set_learning_rate(2.5e-4)
    assert agent.learning_rate() == pytest.approx(2.5e-4)
    inner = agent.optimizer.inner_optimizer if mixed else agent.optimizer
    assert float(np.asarray(inner.learning_rate)) == pytest.approx(2.5e-4)


def _fill_chunk(n: int, rng: np.random.Generator) -> np.ndarray:
    layout = TransitionLayout(4)
    chunk = np.zeros((n, layout.width), np.float32)
    chunk[:, layout.obs] = rng.normal(0, 0.05, (n, 4))
    chunk[:, layout.action] = rng.integers(0, 2, n)
    chunk[:, layout.next_obs] = rng.normal(0, 0.05, (n, 4))
    chunk[:, layout.valid] = 1.0
    return chunk


@functools.lru_cache(maxsize=None)
def fused_run(mixed: bool) -> dict:
    """Three fused store-and-learn calls (4 learning steps each) from the same seeds."""
    agent = small_agent(mixed_precision=mixed, lr=1e-3)
    buffer = PrioritizedReplayBuffer(2048, 4, alpha=0.7, seed=3)
    fn = make_store_and_learn(agent, buffer, get_reward_fn("shaped"), 64, jit_compile=True)
    rng = np.random.default_rng(0)
    before = [w.copy() for w in agent.numpy_weights()]
    losses = []
    for beta in (0.4, 0.5, 0.6):
        stats = fn(tf.constant(_fill_chunk(256, rng)), tf.constant(4), tf.constant(beta))
        losses.append(float(stats.loss))
    delta = np.concatenate([(np.asarray(a) - b).ravel() for a, b in zip(stats.weights, before)])
    return {"agent": agent, "losses": np.array(losses), "delta": delta,
            "traces": fn.experimental_get_tracing_count()}


@pytest.mark.parametrize("mixed", [False, True])
def test_store_and_learn_traces_once_and_counts_its_steps(mixed):
    """A short fused run, including mixed_float16 with loss scaling on the CPU."""
    run = fused_run(mixed)
    assert run["traces"] == 1, "changing beta or chunk values must not retrace"
    assert int(run["agent"].learn_steps.numpy()) == 12
    assert np.all(np.isfinite(run["losses"]))
    if mixed:
        agent = run["agent"]
        assert agent.online.layers[0].compute_dtype == "float16"
        assert agent.online.layers[-1].compute_dtype == "float32"
        assert isinstance(agent.optimizer, keras.optimizers.LossScaleOptimizer)


def test_mixed_precision_learns_like_float32():
    """Same seeds, same data: mixed_float16 with loss scaling must take (nearly) the float32
    steps. A skipped or wrongly scaled update, or float16 Q-values and priorities, would not."""
    ref, mixed = fused_run(False), fused_run(True)
    np.testing.assert_allclose(mixed["losses"], ref["losses"], rtol=1e-3)
    assert np.abs(ref["delta"]).max() > 1e-3, "the float32 run must actually learn"
    cosine = ref["delta"] @ mixed["delta"] / (np.linalg.norm(ref["delta"]) * np.linalg.norm(mixed["delta"]))
    assert cosine > 0.99
    np.testing.assert_allclose(mixed["delta"], ref["delta"], rtol=0, atol=0.05 * np.abs(ref["delta"]).max())


def test_export_loads_in_plain_keras_without_project_imports(tmp_path):
    agent = small_agent()
    path = tmp_path / "q.keras"
    agent.export(str(path))
    obs = np.array([[0.01, -0.02, 0.03, 0.04]], np.float32)
    want = agent.online(obs).numpy()
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        import keras, numpy as np
        m = keras.models.load_model({str(path)!r})
        q = m(np.array({obs.tolist()}, np.float32)).numpy()
        assert q.shape == (1, 2) and q.dtype == np.float32, (q.shape, q.dtype)
        print(repr(q.tolist()))
        assert not any(k in sys.modules for k in ("agent", "cartpole", "sumtree_tf")), "project imported"
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = np.array(eval(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_target_capped_at_the_largest_possible_return():
    """Rewards are in [0, 1], so Q can never truly exceed 1/(1-gamma); a diverging target
    network must not drag the targets past it, while targets below it are untouched."""
    agent = small_agent(gamma=0.9)  # bound 10
    agent.target.set_weights([w * 0 for w in agent.target.get_weights()[:-1]] +
                             [np.full(2, 1e6, np.float32)])  # target net outputs 1e6 everywhere
    y = agent.td_targets(tf.constant([1.0, 1.0]), tf.ones([2, 4]), tf.constant([0.0, 1.0])).numpy()
    assert y[0] == pytest.approx(10.0) and y[1] == pytest.approx(1.0)
    agent.target.set_weights([w * 0 for w in agent.target.get_weights()])  # outputs 0
    y = agent.td_targets(tf.constant([0.5]), tf.ones([1, 4]), tf.constant([0.0])).numpy()
    assert y[0] == pytest.approx(0.5)


def test_weight_decay_shrinks_kernels_only():
    """--weight-decay: AdamW decays each kernel by lr * wd per step; biases (and LayerNorm's
    gamma/beta) are left alone. With zero gradients only the decay moves anything."""
    agent = small_agent(lr=1e-2, weight_decay=0.5, layer_norm=True)
    assert isinstance(agent.optimizer, keras.optimizers.AdamW)
    variables = agent.online.trainable_variables
    before = [v.numpy().copy() for v in variables]
    agent.optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    for v, b in zip(variables, before):
        if v.name == "kernel":
            np.testing.assert_allclose(v.numpy(), b * (1 - 1e-2 * 0.5), rtol=1e-6)
        else:
            assert v.name in ("bias", "gamma", "beta")
            np.testing.assert_array_equal(v.numpy(), b)
    assert isinstance(small_agent().optimizer, keras.optimizers.Adam)
    assert not isinstance(small_agent().optimizer, keras.optimizers.AdamW)


def test_uniform_solved_stops_priority_updates_only_once_solved():
    """--uniform-solved: before the solve (flag 0) the fused call updates priorities as usual;
    once solved (flag 1) the tree is left as it is and learning still goes on."""
    agent = small_agent(lr=1e-3)
    buffer = PrioritizedReplayBuffer(2048, 4, alpha=0.7, seed=3)
    fn = make_store_and_learn(agent, buffer, get_reward_fn("shaped"), 64, jit_compile=True,
                              uniform_solved=True)
    rng = np.random.default_rng(0)
    fn(tf.constant(_fill_chunk(256, rng)), tf.constant(0), tf.constant(0.5), tf.constant(0.0))
    fresh = buffer.tree.nodes.numpy().copy()
    fn(tf.constant(_fill_chunk(0, rng)), tf.constant(4), tf.constant(0.5), tf.constant(0.0))
    assert not np.array_equal(buffer.tree.nodes.numpy(), fresh), "priorities must move before the solve"
    tree = buffer.tree.nodes.numpy().copy()
    weights = agent.numpy_weights()
    fn(tf.constant(_fill_chunk(0, rng)), tf.constant(4), tf.constant(0.5), tf.constant(1.0))
    np.testing.assert_array_equal(buffer.tree.nodes.numpy(), tree)
    assert any(not np.array_equal(a, b) for a, b in zip(agent.numpy_weights(), weights))
    assert fn.experimental_get_tracing_count() == 1


def test_uniform_solved_sampler_switches_to_uniform_at_the_solve():
    """With one slot holding nearly all the priority mass, prioritized replay draws only it;
    the uniform draw once solved spreads over every slot with weight 1. Without
    --uniform-solved the flag changes nothing."""
    buffer = PrioritizedReplayBuffer(256, 4, alpha=1.0, seed=5)
    buffer.add(tf.zeros([256, 4]), tf.zeros(256, tf.int32), tf.zeros(256), tf.zeros([256, 4]), tf.zeros(256))
    buffer.update_priorities(tf.range(256), tf.concat([[1e12], tf.zeros(255)], 0))
    draws = {}
    for uniform in (False, True):
        sample = tf.function(make_sampler(buffer, 128, uniform), jit_compile=True)
        for solved in (False, True):
            b = sample(tf.constant(1.0), tf.constant(solved))
            draws[uniform, solved] = (set(b.indices.numpy().tolist()), b.weights.numpy())
    assert draws[False, False][0] == draws[False, True][0] == draws[True, False][0] == {0}
    idx, w = draws[True, True]
    assert len(idx) == 128 and np.all(w == 1.0)


def test_n_step_solved_shortens_the_sampled_returns_once_solved():
    """One env, a long episode of rewards 1, 2, 4, ...: with --n-step 3 --n-step-solved 2 the
    same drawn slot sums three rewards before the solve and two after (discount gamma^3 and
    gamma^2); with both at 3 the flag changes nothing."""
    buffer = PrioritizedReplayBuffer(64, 4, seed=3)
    reward = 2.0 ** tf.range(64, dtype=tf.float32)
    obs = tf.tile(tf.range(64, dtype=tf.float32)[:, None], [1, 4])
    buffer.add(obs, tf.zeros(64, tf.int32), reward, obs, tf.zeros(64))
    gamma = 0.5
    for n_solved, want in ((2, {False: 3, True: 2}), (3, {False: 3, True: 3})):
        sample = tf.function(make_sampler(buffer, 32, False, 3, 1, gamma, n_solved),
                             jit_compile=True)
        for solved in (False, True):
            b = sample(tf.constant(1.0), tf.constant(solved))
            i = b.indices.numpy()
            k = np.minimum(want[solved], 64 - i)  # the newest rows have fewer steps after them
            expect = np.array([sum(gamma ** j * 2.0 ** (s + j) for j in range(m))
                               for s, m in zip(i, k)])
            np.testing.assert_allclose(b.reward.numpy(), expect, rtol=1e-6)
            np.testing.assert_allclose(b.discount.numpy(), gamma ** k, rtol=1e-6)
            np.testing.assert_array_equal(b.next_obs.numpy()[:, 0], i + k - 1)


def random_batch(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """(obs, action, reward, next_obs, done) of n random transitions, none terminal."""
    rng = np.random.default_rng(seed)
    obs, next_obs = (rng.normal(size=(n, 4)).astype(np.float32) for _ in range(2))
    action = rng.integers(0, 2, n).astype(np.int32)
    return obs, action, rng.uniform(size=n).astype(np.float32), next_obs, np.zeros(n, np.float32)


def random_weights(agent: DoubleDQNAgent, seed: int) -> list[np.ndarray]:
    """Random weights in the shape of the agent's network (a network unlike the online one)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in agent.online.get_weights()]


def test_gap_solved_lowers_targets_by_the_target_networks_action_gap_once_solved():
    """--gap-solved (advantage learning once solved): each target is lowered by alpha times the
    target network's gap max_b Q'(s, b) - Q'(s, a); the greedy action's target is unchanged.
    Before the solve the step is the plain Double-DQN step."""
    obs, action, reward, next_obs, done = random_batch(32, seed=2)
    agent = small_agent(gap_solved=0.5)
    agent.target.set_weights(random_weights(agent, seed=5))
    q = agent.target(obs).numpy()
    expected = -0.5 * (q.max(axis=1) - q[np.arange(32), action])
    got = agent.gap_term(tf.constant(obs), tf.constant(action), tf.constant(True)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got <= 0).all() and (got[action == q.argmax(axis=1)] == 0).all()
    off = agent.gap_term(tf.constant(obs), tf.constant(action), tf.constant(False)).numpy()
    np.testing.assert_array_equal(off, np.zeros(32, np.float32))
    # Not yet solved: the same step as an agent without the option.
    plain = small_agent()
    plain.target.set_weights(agent.target.get_weights())
    args = [tf.constant(a) for a in (obs, action, reward, next_obs, done, np.ones(32, np.float32))]
    before = agent.train_step(*args, solved=tf.constant(False))[0].numpy()
    np.testing.assert_array_equal(before, plain.train_step(*args)[0].numpy())


def test_anchor_solved_penalises_advantage_drift_from_the_delivered_model_once_solved():
    """--anchor-solved: once solved, weight * mean_rows sum_a (A - A*)^2 with A = Q - mean_a Q
    (the learner's) and A* the delivered model's. A shift of Q's level costs nothing; before the
    solve the step is the plain one; after it the learner's advantages move towards A*."""
    obs, action, reward, next_obs, done = random_batch(64, seed=3)
    agent = small_agent(anchor_solved=2.0)
    anchor_w = random_weights(agent, seed=6)
    agent.set_anchor(anchor_w)
    q, ref = agent.online(obs).numpy(), agent.anchor(obs).numpy()
    adv = lambda v: v - v.mean(axis=1, keepdims=True)  # noqa: E731
    expected = 2.0 * np.mean(np.sum((adv(q) - adv(ref)) ** 2, axis=1))
    got = agent.anchor_term(tf.constant(obs), tf.constant(q), tf.constant(True)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    shifted = agent.anchor_term(tf.constant(obs), tf.constant(q + 7.0), tf.constant(True)).numpy()
    np.testing.assert_allclose(shifted, expected, rtol=1e-5)
    assert agent.anchor_term(tf.constant(obs), tf.constant(q), tf.constant(False)).numpy() == 0.0
    args = [tf.constant(a) for a in (obs, action, reward, next_obs, done, np.ones(64, np.float32))]
    # Not yet solved: the same step as an agent without the option.
    plain = small_agent()
    before = agent.train_step(*args, solved=tf.constant(False))[0].numpy()
    np.testing.assert_array_equal(before, plain.train_step(*args)[0].numpy())
    # Solved: with a heavy weight the advantages move towards the anchor's.
    far = lambda a: np.mean(np.sum((adv(a.online(obs).numpy()) - adv(ref)) ** 2, axis=1))  # noqa: E731
    start = far(agent)
    heavy = small_agent(anchor_solved=100.0)
    heavy.set_anchor(anchor_w)
    heavy.online.set_weights(agent.online.get_weights())
    heavy.target.set_weights(agent.target.get_weights())
    assert far(heavy) == pytest.approx(start, rel=1e-6)
    for _ in range(20):
        heavy.train_step(*args, solved=tf.constant(True))
    assert far(heavy) < 0.5 * start


def test_margin_solved_pushes_the_learner_to_the_delivered_models_greedy_actions():
    """--margin-solved M (DQfD's large-margin loss, the delivered model as the expert): mean over
    rows of max_a [Q(s, a) + M (a != a*)] - Q(s, a*); zero where the learner prefers a* by at
    least M. Before the solve the step is the plain one; after it the learner comes to agree
    with the expert's greedy actions."""
    agent = small_agent(margin_solved=1.0)
    q = tf.constant([[5.0, 4.5], [3.0, 6.0], [9.0, 2.0]])
    got = agent.margin_term(q, tf.constant([0, 0, 0])).numpy()
    assert got == pytest.approx((0.5 + 4.0 + 0.0) / 3)
    obs, action, reward, next_obs, done = random_batch(64, seed=4)
    # The expert: the learner itself with its two outputs swapped, so it disagrees everywhere.
    expert_w = [w.copy() for w in agent.online.get_weights()]
    expert_w[-2], expert_w[-1] = expert_w[-2][:, ::-1].copy(), expert_w[-1][::-1].copy()
    agent.set_anchor(expert_w)
    expert = agent.anchor(obs).numpy().argmax(axis=1)
    args = [tf.constant(a) for a in (obs, action, reward, next_obs, done, np.ones(64, np.float32))]
    plain = small_agent()
    before = agent.train_step(*args, solved=tf.constant(False))[0].numpy()
    np.testing.assert_array_equal(before, plain.train_step(*args)[0].numpy())
    agree = lambda a: np.mean(a.online(obs).numpy().argmax(axis=1) == expert)  # noqa: E731
    assert agree(agent) == 0.0
    for _ in range(50):
        agent.train_step(*args, solved=tf.constant(True))
    assert agree(agent) > 0.95


def test_dueling_head_folds_into_the_plain_network_everywhere(tmp_path):
    """--dueling learns V and one advantage per action; NumPy acting, the fused call's output
    weights and best.keras get the plain output layer it folds into, with the same Q-values."""
    agent = small_agent(dueling=True, anchor_solved=1.5)
    head = agent.online.layers[-2]
    assert head.units == 3, "the dueling head has a value and two advantages"
    rng = np.random.default_rng(4)
    # A head whose value and advantages all differ, so a wrong fold shows.
    head.set_weights([rng.normal(0, 1, w.shape).astype(np.float32) for w in head.get_weights()])
    obs = rng.normal(0, 0.5, (16, 4)).astype(np.float32)
    q = agent.online(obs).numpy()
    np.testing.assert_allclose(NumpyQNetwork(agent.numpy_weights()).q_values(obs), q,
                               rtol=1e-5, atol=1e-5)
    assert [w.shape for w in agent.numpy_weights()][-2:] == [(8, 2), (2,)]
    fn = make_store_and_learn(agent, PrioritizedReplayBuffer(512, 4, alpha=0.7, seed=3),
                              get_reward_fn("shaped"), 32, jit_compile=True)
    stats = fn(tf.constant(_fill_chunk(64, rng)), tf.constant(2), tf.constant(0.4))
    for got, want in zip(stats.weights, agent.numpy_weights()):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    path = tmp_path / "q.keras"
    agent.export(str(path))
    np.testing.assert_allclose(keras.models.load_model(path)(obs).numpy(), agent.online(obs).numpy(),
                               rtol=1e-5, atol=1e-5)
