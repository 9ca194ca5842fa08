"""Properties of the reward functions in rewards.py.

The shaped reward is checked against its contract (range, continuity, symmetry,
monotonicity, exact values at the origin and at the limits), not against a copy of its
formula, so a different formula with the same contract would still pass.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import rewards
from rewards import REWARDS, THETA_LIMIT, X_LIMIT, get_reward_fn, shaped_reward, standard_reward

# Eager TF calls are slow (~tens of µs each); keep example counts moderate.
FAST = settings(max_examples=60, deadline=None)



def f32_floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite float32 values in [lo, hi] (bounds rounded to float32 first, as hypothesis
    requires for width=32; the states are float32 in the env anyway)."""
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), allow_nan=False, allow_infinity=False, width=32)


xs = f32_floats(-3 * X_LIMIT, 3 * X_LIMIT)
thetas = f32_floats(-3 * THETA_LIMIT, 3 * THETA_LIMIT)
inside_x = f32_floats(-X_LIMIT, X_LIMIT)
inside_theta = f32_floats(-THETA_LIMIT, THETA_LIMIT)
small_steps = f32_floats(-1e-3, 1e-3)


def reward_of(x, theta, terminated=False, x_dot=0.0, theta_dot=0.0) -> np.ndarray:
    """Shaped reward for a batch of scalar states given as arrays or scalars."""
    x, theta, x_dot, theta_dot, terminated = np.broadcast_arrays(
        np.asarray(x, np.float32),
        np.asarray(theta, np.float32),
        np.asarray(x_dot, np.float32),
        np.asarray(theta_dot, np.float32),
        np.asarray(terminated, bool),
    )
    obs = np.stack([x, x_dot, theta, theta_dot], axis=-1).reshape(-1, 4)
    out = shaped_reward(tf.constant(obs), tf.constant(terminated.reshape(-1)))
    return out.numpy()


def test_constants_match_gymnasium():
    import gymnasium as gym

    env = gym.make("CartPole-v1").unwrapped
    assert X_LIMIT == env.x_threshold
    assert THETA_LIMIT == env.theta_threshold_radians


def test_output_shape_and_dtype():
    obs = tf.zeros([7, 4], tf.float32)
    term = tf.zeros([7], tf.bool)
    for fn in (shaped_reward, standard_reward):
        r = fn(obs, term)
        assert r.dtype == tf.float32 and r.shape == (7,)


def test_exactly_one_at_origin_even_with_velocities():
    # Velocities are not part of the shaping: only position and angle are.
    assert reward_of(0.0, 0.0).tolist() == [1.0]
    assert reward_of(0.0, 0.0, x_dot=3.0, theta_dot=-2.0).tolist() == [1.0]
    assert reward_of(-0.0, -0.0).tolist() == [1.0]


def test_exactly_zero_at_and_beyond_limits():
    f32 = np.float32
    edge_x = [X_LIMIT, -X_LIMIT, np.nextafter(f32(X_LIMIT), f32(10)), 5.0, -100.0]
    edge_t = [THETA_LIMIT, -THETA_LIMIT, np.nextafter(f32(THETA_LIMIT), f32(10)), 1.0, -3.0]
    assert np.all(reward_of(edge_x, 0.0) == 0.0)
    assert np.all(reward_of(0.0, edge_t) == 0.0)
    # Just inside the limit the reward is small but positive (no plateau of zeros inside).
    assert np.all(reward_of(np.nextafter(f32(X_LIMIT), f32(0)), 0.0) > 0.0)
    assert np.all(reward_of(0.0, np.nextafter(f32(THETA_LIMIT), f32(0))) > 0.0)


@FAST
@given(xs, thetas)
def test_zero_on_termination(x, theta):
    assert reward_of(x, theta, terminated=True).tolist() == [0.0]


def test_termination_accepts_numeric_flags():
    obs = tf.zeros([3, 4])
    r = shaped_reward(obs, tf.constant([0.0, 1.0, 0.0]))
    assert r.numpy().tolist() == [1.0, 0.0, 1.0]


@FAST
@given(xs, thetas)
def test_range_is_unit_interval(x, theta):
    r = reward_of(x, theta)
    assert np.all((r >= 0.0) & (r <= 1.0))


@FAST
@given(xs, thetas)
def test_symmetric_in_signs(x, theta):
    signs = np.array([1.0, -1.0], np.float32)
    sx, st_ = np.meshgrid(signs, signs)
    r = reward_of(x * sx.ravel(), theta * st_.ravel())
    assert np.all(r == r[0])


@FAST
@given(xs, xs, inside_theta)
def test_monotone_non_increasing_in_abs_x(x1, x2, theta):
    lo, hi = sorted([abs(x1), abs(x2)])
    r_lo, r_hi = reward_of([lo, hi], theta)
    assert r_hi <= r_lo


@FAST
@given(thetas, thetas, inside_x)
def test_monotone_non_increasing_in_abs_theta(t1, t2, x):
    lo, hi = sorted([abs(t1), abs(t2)])
    r_lo, r_hi = reward_of(x, [lo, hi])
    assert r_hi <= r_lo


def test_strictly_decreasing_on_a_grid_inside_the_limits():
    # Non-increasing could be satisfied by a constant; the shaping must actually fall.
    grid = np.linspace(0.0, 0.999, 200)
    assert np.all(np.diff(reward_of(grid * X_LIMIT, 0.0)) < 0)
    assert np.all(np.diff(reward_of(0.0, grid * THETA_LIMIT)) < 0)


# A generous Lipschitz bound in (x, theta): the gradient of a smooth [0, 1] fall-off over
# a distance of 0.21 rad cannot be much above 1 / 0.21 ~ 5 without being jumpy.
LIPSCHITZ = 20.0


@FAST
@given(xs, thetas, small_steps, small_steps)
def test_continuity_small_change_small_effect(x, theta, dx, dtheta):
    r0, r1 = reward_of([x, x + dx], [theta, theta + dtheta])
    assert abs(float(r1) - float(r0)) <= LIPSCHITZ * (abs(dx) + abs(dtheta)) + 1e-6


def test_continuity_across_the_limits():
    # Approach each limit from both sides: the reward must go to 0 smoothly, not jump.
    eps = np.float32(1e-4)
    near_x = reward_of([X_LIMIT - eps, X_LIMIT, X_LIMIT + eps], 0.0)
    near_t = reward_of(0.0, [THETA_LIMIT - eps, THETA_LIMIT, THETA_LIMIT + eps])
    assert np.all(near_x <= LIPSCHITZ * eps) and np.all(near_t <= LIPSCHITZ * eps)
    # The combined limit corner too.
    assert reward_of(X_LIMIT - eps, THETA_LIMIT - eps).item() <= LIPSCHITZ * eps


def test_standard_reward_is_plus_one_always():
    obs = tf.constant([[0.0, 0, 0, 0], [3.0, 0, 1.0, 0], [-1.0, 2, 0.1, -1]], tf.float32)
    term = tf.constant([False, True, False])
    r = standard_reward(obs, term)
    assert r.dtype == tf.float32 and r.numpy().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_works_under_xla_and_matches_eager(name):
    fn = get_reward_fn(name)
    compiled = tf.function(fn, jit_compile=True)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(256, 4)).astype(np.float32) * np.float32([3, 1, 0.3, 1])
    # Include the exact limits and the origin so XLA's exact values are checked too.
    obs[:4] = [[X_LIMIT, 0, 0, 0], [0, 0, THETA_LIMIT, 0], [0, 0, 0, 0], [-X_LIMIT, 0, -THETA_LIMIT, 0]]
    term = rng.uniform(size=256) < 0.2
    term[:4] = False
    got = compiled(tf.constant(obs), tf.constant(term)).numpy()
    want = fn(tf.constant(obs), tf.constant(term)).numpy()
    assert got.dtype == np.float32 and got.shape == (256,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    if name == "shaped":
        assert got[:4].tolist() == [0.0, 0.0, 1.0, 0.0]
        assert np.all(got[4:][term[4:]] == 0.0)


def test_get_reward_fn_known_names():
    assert get_reward_fn("shaped") is shaped_reward
    assert get_reward_fn("standard") is standard_reward
    for name, fn in rewards.REWARDS.items():
        assert get_reward_fn(name) is fn


def test_every_registered_reward_is_accepted_by_the_config_and_nothing_else():
    # config.py validates --reward with its own list; the two must not drift apart.
    from common.config import ConfigError, TrainConfig
    for name in rewards.REWARDS:
        assert TrainConfig(reward=name).validate().reward == name
    for name in ("Shaped", "sparse", ""):
        assert name not in rewards.REWARDS
        with pytest.raises(ConfigError, match="--reward"):
            TrainConfig(reward=name).validate()


@pytest.mark.parametrize("bad", ["Shaped", "sparse", "", None])
def test_get_reward_fn_unknown_name_lists_valid_ones(bad):
    with pytest.raises(ValueError) as info:
        get_reward_fn(bad)
    message = str(info.value)
    assert "shaped" in message and "standard" in message


def test_documented_shape_is_flat_at_the_origin():
    # The docstring promises a zero slope at the centre (exponent 2): a 1% deviation of
    # either quantity costs about 0.01% of the reward, not 1%.
    r = reward_of([0.01 * X_LIMIT, 0.0], [0.0, 0.01 * THETA_LIMIT])
    assert np.all(r > 0.9995) and np.all(r < 1.0)
