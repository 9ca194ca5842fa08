"""Tests of vec_env_tf.TFWrappedVecEnv against CartPole's physics.

One recorded rollout (64 envs x 600 steps) drives most checks. A third of the envs run a
balancing controller so episodes reach the 500-step truncation; a quarter hold the pole
at a lean so the cart drifts out of bounds (|x| > 2.4 terminations); the rest act at
random (pole-angle terminations). Every transition marked valid is re-derived here from
the cart-pole equations of motion, written out from the documented constants in float64,
so a transition that pairs a final observation with a reset state, or an observation with
the wrong action, cannot pass.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym
import numpy as np
import pytest

from vec_env_tf import TFWrappedVecEnv

# --- cart-pole physics from the documented constants ---------------------------------
GRAVITY = 9.8
CART_MASS = 1.0
POLE_MASS = 0.1
HALF_POLE_LENGTH = 0.5
FORCE = 10.0
DT = 0.02
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * math.pi / 360
MAX_STEPS = 500
RESET_BOUND = 0.05  # initial states are uniform in [-0.05, 0.05]^4


def cartpole_next(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Explicit-Euler step of the cart-pole for states [..., 4] and actions {0, 1}."""
    s = np.asarray(state, np.float64)
    x, x_dot, theta, theta_dot = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    force = np.where(np.asarray(action) == 1, FORCE, -FORCE)
    total = CART_MASS + POLE_MASS
    sin, cos = np.sin(theta), np.cos(theta)
    # Standard cart-pole equations (Barto, Sutton & Anderson 1983, frictionless form).
    temp = (force + POLE_MASS * HALF_POLE_LENGTH * theta_dot**2 * sin) / total
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_POLE_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / total)
    )
    x_acc = temp - POLE_MASS * HALF_POLE_LENGTH * theta_acc * cos / total
    return np.stack(
        [x + DT * x_dot, x_dot + DT * x_acc, theta + DT * theta_dot, theta_dot + DT * theta_acc],
        axis=-1,
    )


# The env integrates in float64 but reports float32, and we restart from the float32
# observation, so agreement is at float32 rounding level (~1e-7 relative). A wrong action
# changes x_dot by ~0.35 and a reset jumps by ~0.1 or more, far outside this.
ATOL = 2e-6
RTOL = 2e-6


def follows_dynamics(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Per transition: does next_obs equal one physics step from obs under action?"""
    predicted = cartpole_next(obs, action)
    return np.all(np.abs(predicted - next_obs) <= ATOL + RTOL * np.abs(predicted), axis=-1)


# --- one recorded rollout ------------------------------------------------------------
NUM_ENVS = 64
NUM_STEPS = 600
SEED = 2024


class Rollout(NamedTuple):
    obs: np.ndarray  # [T, N, 4] observation acted upon at each step
    actions: np.ndarray  # [T, N]
    next_obs: np.ndarray  # [T, N, 4]
    step_obs: np.ndarray  # [T, N, 4] the `obs` field returned by the step
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    finished_returns: np.ndarray
    finished_lengths: np.ndarray


def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, x_dot, theta, theta_dot = obs.T
    n = len(obs)
    balanced = 10 * theta + 2 * theta_dot + 0.3 * x + 0.8 * x_dot > 0  # keeps |x| small
    # Holding the pole at a 0.04 rad lean needs a steady push, so the cart accelerates
    # until it leaves the track (left or right, alternating by env).
    lean = np.where(np.arange(n) % 2 == 0, 0.04, -0.04)
    drifting = 10 * (theta - lean) + 2 * theta_dot > 0
    random = rng.integers(0, 2, size=n).astype(bool)
    group = np.arange(n) * 12 // n  # 0..11
    action = np.where(group < 4, balanced, np.where(group < 7, drifting, random))
    return action.astype(np.int64)


@pytest.fixture(scope="module")
def rollout() -> Rollout:
    rng = np.random.default_rng(0)
    rec: dict[str, list[np.ndarray]] = {k: [] for k in Rollout._fields[:8]}
    with TFWrappedVecEnv(NUM_ENVS, seed=SEED) as env:
        obs = env.reset_numpy()
        for _ in range(NUM_STEPS):
            action = policy(obs, rng)
            s = env.step_numpy(action)
            rec["obs"].append(obs)
            rec["actions"].append(action)
            rec["next_obs"].append(s.next_obs)
            rec["step_obs"].append(s.obs)
            for field in ("reward", "terminated", "truncated", "valid"):
                rec[field].append(getattr(s, field))
            obs = s.obs
        returns, lengths = env.pop_finished_episodes()
        again = env.pop_finished_episodes()
        assert again[0].size == 0 and again[1].size == 0, "pop must clear the list"
    arrays = {k: np.stack(v) for k, v in rec.items()}
    return Rollout(**arrays, finished_returns=returns, finished_lengths=lengths)


def test_step_types_and_shapes(rollout: Rollout):
    T, N = NUM_STEPS, NUM_ENVS
    assert rollout.next_obs.shape == (T, N, 4) and rollout.next_obs.dtype == np.float32
    assert rollout.reward.shape == (T, N) and rollout.reward.dtype == np.float32
    for flag in (rollout.terminated, rollout.truncated, rollout.valid):
        assert flag.shape == (T, N) and flag.dtype == np.bool_
    # With next-step autoreset the observation to act on is the transition's next state.
    np.testing.assert_array_equal(rollout.step_obs, rollout.next_obs)


def test_rollout_covers_every_case(rollout: Rollout):
    # Guards the other tests against silently testing nothing.
    v = rollout.valid
    x_out = v & rollout.terminated & (np.abs(rollout.next_obs[..., 0]) > X_LIMIT)
    theta_out = v & rollout.terminated & (np.abs(rollout.next_obs[..., 2]) > THETA_LIMIT)
    assert x_out.sum() >= 20 and theta_out.sum() >= 50
    assert rollout.truncated.sum() >= 10
    assert (~v).sum() >= 100


def test_valid_transitions_follow_cartpole_dynamics(rollout: Rollout):
    v = rollout.valid
    ok = follows_dynamics(rollout.obs[v], rollout.actions[v], rollout.next_obs[v])
    bad = np.flatnonzero(~ok)
    assert ok.all(), f"{bad.size} valid transitions break the dynamics, first at {bad[:5]}"


def test_dynamics_check_rejects_wrong_transitions(rollout: Rollout):
    # The check must be able to fail: the opposite action, or a next state from another
    # time step, must not pass as a transition.
    v = rollout.valid
    obs, act, nxt = rollout.obs[v], rollout.actions[v], rollout.next_obs[v]
    assert not follows_dynamics(obs, 1 - act, nxt).any()
    assert not follows_dynamics(obs, act, np.roll(nxt, 1, axis=0)).any()
    nudged = nxt.copy()
    nudged[:, 2] += 1e-4  # a tiny angle error is already caught
    assert not follows_dynamics(obs, act, nudged).any()


def test_invalid_step_is_exactly_the_one_after_each_done(rollout: Rollout):
    done = rollout.terminated | rollout.truncated
    assert rollout.valid[0].all()
    np.testing.assert_array_equal(rollout.valid[1:], ~done[:-1])
    invalid = ~rollout.valid
    # gymnasium's autoreset step: reward 0, no flags, a fresh initial state ...
    assert np.all(rollout.reward[invalid] == 0.0)
    assert not rollout.terminated[invalid].any() and not rollout.truncated[invalid].any()
    assert np.all(np.abs(rollout.next_obs[invalid]) <= RESET_BOUND)
    # ... which is not reachable from the final observation, so pairing them as a
    # transition would be wrong (and would be caught by the dynamics check).
    assert not follows_dynamics(rollout.obs[invalid], rollout.actions[invalid], rollout.next_obs[invalid]).any()
    # CartPole pays +1 on every real transition, including the terminating one.
    assert np.all(rollout.reward[rollout.valid] == 1.0)


def test_terminated_matches_thresholds(rollout: Rollout):
    v = rollout.valid
    nxt = rollout.next_obs[v].astype(np.float64)
    x, theta = np.abs(nxt[:, 0]), np.abs(nxt[:, 2])
    expected = (x > X_LIMIT) | (theta > THETA_LIMIT)
    # The env decides on its float64 state; only a value within float32 rounding of a
    # threshold could legitimately disagree with the float32 observation.
    ambiguous = (np.abs(x - X_LIMIT) < 1e-6) | (np.abs(theta - THETA_LIMIT) < 1e-7)
    np.testing.assert_array_equal(rollout.terminated[v][~ambiguous], expected[~ambiguous])


def episode_table(rollout: Rollout) -> list[tuple[int, int, float, int, bool]]:
    """Walk each env's record one step at a time: (end step, env, return, length, truncated)."""
    episodes = []
    for i in range(NUM_ENVS):
        ret, length = 0.0, 0
        for t in range(NUM_STEPS):
            if not rollout.valid[t, i]:
                continue
            ret += float(rollout.reward[t, i])
            length += 1
            if rollout.terminated[t, i] or rollout.truncated[t, i]:
                episodes.append((t, i, ret, length, bool(rollout.truncated[t, i])))
                ret, length = 0.0, 0
    return sorted(episodes)


def test_truncation_exactly_at_500_steps(rollout: Rollout):
    episodes = episode_table(rollout)
    truncated_lengths = [length for *_, length, trunc in episodes if trunc]
    assert truncated_lengths and set(truncated_lengths) == {MAX_STEPS}
    assert max(length for *_, length, _ in episodes) <= MAX_STEPS
    # And every env that survived 500 steps was truncated right then, never later: no
    # env has 500+ consecutive valid, not-done steps.
    done = rollout.terminated | rollout.truncated
    run = np.zeros(NUM_ENVS, int)
    for t in range(NUM_STEPS):
        run = np.where(rollout.valid[t], run + 1, 0)
        assert np.all(run[~done[t]] < MAX_STEPS)
        run[done[t]] = 0


def test_episode_counters_match_manual_count(rollout: Rollout):
    episodes = episode_table(rollout)
    assert len(episodes) == rollout.finished_lengths.size >= 50
    np.testing.assert_array_equal(rollout.finished_lengths, [e[3] for e in episodes])
    np.testing.assert_array_equal(rollout.finished_returns, [e[2] for e in episodes])
    # CartPole's +1 reward: an episode's return is its length.
    np.testing.assert_array_equal(rollout.finished_returns, rollout.finished_lengths)


def random_actions_run(env: TFWrappedVecEnv, steps: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = [env.reset_numpy()]
    for _ in range(steps):
        out.append(env.step_numpy(rng.integers(0, 2, size=env.num_envs)).obs)
    return np.stack(out)


def test_same_seed_same_observations():
    with TFWrappedVecEnv(8, seed=123) as a, TFWrappedVecEnv(8, seed=123) as b, TFWrappedVecEnv(8, seed=124) as c:
        run_a = random_actions_run(a, 300)
        run_b = random_actions_run(b, 300)
        run_c = random_actions_run(c, 300)
        # 300 random steps span several episodes, so autoreset states are compared too.
        assert a.pop_finished_episodes()[0].size >= 8
        np.testing.assert_array_equal(run_a, run_b)
        # The seed reaches gymnasium: the first observations are gymnasium's own for that seed
        # (and the two seeds' differ, so this could tell them apart).
        for seed, run in ((123, run_a), (124, run_c)):
            ref = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")
            np.testing.assert_array_equal(run[0], ref.reset(seed=seed)[0])
            ref.close()
        assert not np.allclose(run_a[0], run_c[0])
        # An explicit reset seed restarts the same sequence on an existing instance.
        first = a.reset_numpy(seed=123)
        np.testing.assert_array_equal(first, run_b[0])


def test_action_is_ignored_on_the_autoreset_step():
    with TFWrappedVecEnv(4, seed=9) as a, TFWrappedVecEnv(4, seed=9) as b:
        a.reset_numpy()
        b.reset_numpy()
        ones = np.ones(4, np.int64)
        for _ in range(200):
            s = a.step_numpy(ones)
            b.step_numpy(ones)
            if (s.terminated | s.truncated).any():
                break
        else:
            pytest.fail("no episode ended")
        done = s.terminated | s.truncated
        # Same actions for running envs, opposite ones for the envs being reset.
        sa = a.step_numpy(ones)
        sb = b.step_numpy(np.where(done, 0, 1))
        assert not sa.valid[done].any()
        np.testing.assert_array_equal(sa.obs, sb.obs)


def test_fallback_to_sync_for_env_without_vector_entry_point():
    # Only meaningful while MountainCar really lacks one; fail loudly if that changes.
    assert gym.spec("MountainCar-v0").vector_entry_point is None
    n = 3
    with TFWrappedVecEnv(n, seed=0, env_id="MountainCar-v0") as env:
        assert env.vectorization_mode == "sync"
        assert (env.observation_size, env.num_actions, env.env_id) == (2, 3, "MountainCar-v0")
        env.reset_numpy()
        rng = np.random.default_rng(0)
        steps = []
        for t in range(205):
            steps.append(env.step_numpy(rng.integers(0, 3, size=n)))
        # A random policy does not reach the goal: every env truncates at MountainCar's
        # 200-step limit, and the next step is the (invalid) autoreset step.
        field = lambda t, name: getattr(steps[t], name)  # noqa: E731
        assert field(199, "truncated").all() and field(199, "valid").all()
        assert not field(200, "valid").any()
        assert np.all(field(200, "reward") == 0.0)
        assert field(201, "valid").all()
        assert field(10, "reward").dtype == np.float32
        returns, lengths = env.pop_finished_episodes()
        np.testing.assert_array_equal(lengths, [200] * n)
        np.testing.assert_array_equal(returns, [-200.0] * n)


def test_cartpole_uses_the_vectorized_entry_point():
    with TFWrappedVecEnv(2) as env:
        assert env.vectorization_mode == "vector_entry_point"
        assert (env.observation_size, env.num_actions, env.env_id) == (4, 2, "CartPole-v1")


def test_unknown_env_id_is_not_swallowed_by_the_fallback():
    with pytest.raises(gym.error.Error):
        TFWrappedVecEnv(2, env_id="NoSuchEnv-v0")


def test_other_vector_entry_point_errors_are_not_swallowed():
    # gymnasium raises its generic Error both for "no vector entry point" and for real
    # failures; only the former may fall back to sync.
    def broken_vector_env(**kwargs):
        raise gym.error.Error("broken vector env")

    env_id = "TestBrokenVectorCartPole-v0"
    gym.register(
        env_id,
        entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
        vector_entry_point=broken_vector_env,
    )
    try:
        with pytest.raises(gym.error.Error, match="broken vector env"):
            TFWrappedVecEnv(2, env_id=env_id)
    finally:
        del gym.registry[env_id]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_num_envs_raises(bad):
    with pytest.raises(ValueError, match="num_envs"):
        TFWrappedVecEnv(bad)


def test_step_before_reset_raises():
    with TFWrappedVecEnv(2) as env, pytest.raises(RuntimeError, match="reset"):
        env.step_numpy(np.zeros(2, np.int64))


def test_close_is_idempotent():
    env = TFWrappedVecEnv(2)
    env.close()
    env.close()
