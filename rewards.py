"""Reward functions for CartPole computed from the transition's next observation.

``shaped_reward`` formula
-------------------------
With ``u = |x| / X_LIMIT`` and ``v = |theta| / THETA_LIMIT``::

    r = max(0, 1 - u**2) * max(0, 1 - v**2)      and r = 0 where terminated

Why this form:

* Each factor is 1 at the centre/upright and reaches exactly 0 at gymnasium's termination
  threshold, so the reward fades out continuously as the state approaches failure instead
  of jumping from +1 to an episode end. The clamp keeps it at 0 beyond the limits.
* The exponent 2 makes each factor flat at the origin (zero slope), so small wobbles near
  upright are barely penalised while states near the limits get a steep gradient; an
  exponent of 1 would give a kink at 0 and punish every tiny deviation linearly.
* A product (rather than a sum) means either quantity alone being at its limit drives the
  reward to 0, matching "either condition terminates the episode".
* The result stays in [0, 1] (both factors are in [0, 1]) so value scales are comparable
  with the standard +1 reward, and only pure element-wise ops are used: it is vectorized,
  differentiable almost everywhere, and compiles under ``tf.function(jit_compile=True)``.

``standard_reward`` reproduces CartPole's own +1 per step (gymnasium pays it on the
terminating step too) for comparison runs.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import Callable

from common.tf_import import import_tensorflow

tf = import_tensorflow()

# gymnasium's CartPole termination thresholds (cart position in metres, pole angle in rad).
X_LIMIT: float = 2.4
THETA_LIMIT: float = 12 * 2 * math.pi / 360

# Observation columns: x, x_dot, theta, theta_dot.
_X_COLUMN = 0
_THETA_COLUMN = 2

RewardFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _falloff(value: tf.Tensor, limit: float) -> tf.Tensor:
    """1 - (|value| / limit)**2 inside the limit, exactly 0 at and beyond it."""
    magnitude = tf.abs(value)
    u = magnitude / limit
    # Compare against the limit instead of relying on |value| / limit rounding to exactly
    # 1: a compiler may rewrite the division as a multiplication by 1 / limit.
    return tf.where(magnitude >= limit, tf.zeros_like(u), 1.0 - u * u)


def shaped_reward(next_obs: tf.Tensor, terminated: tf.Tensor) -> tf.Tensor:
    """Shaped reward in [0, 1], shape [N] float32 (formula in the module docstring).

    Args:
        next_obs: [N, 4] observations after the step (x, x_dot, theta, theta_dot).
        terminated: [N] termination flags (bool or numeric, non-zero = terminated).
    """
    next_obs = tf.cast(next_obs, tf.float32)
    reward = _falloff(next_obs[:, _X_COLUMN], X_LIMIT) * _falloff(next_obs[:, _THETA_COLUMN], THETA_LIMIT)
    # tf.where, not multiplication by (1 - terminated), so a NaN state cannot leak through.
    return tf.where(tf.cast(terminated, tf.bool), tf.zeros_like(reward), reward)


def standard_reward(next_obs: tf.Tensor, terminated: tf.Tensor) -> tf.Tensor:
    """CartPole's own reward: +1 for every step, shape [N] float32.

    ``terminated`` is accepted only for a signature shared with ``shaped_reward``.
    """
    del terminated
    return tf.ones_like(next_obs[:, _X_COLUMN], dtype=tf.float32)


REWARDS: dict[str, RewardFn] = {"shaped": shaped_reward, "standard": standard_reward}


def get_reward_fn(name: str) -> RewardFn:
    """Look a reward function up by name; ValueError lists the valid names."""
    try:
        return REWARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reward {name!r}; valid names: {', '.join(sorted(REWARDS))}") from None
