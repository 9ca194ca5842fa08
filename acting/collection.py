"""Collecting experience: epsilon-greedy acting with the NumPy Q-network, packed for TensorFlow.

No TensorFlow here. The trainer calls `collect_chunk` once per store-and-learn call; the
throughput benchmark calls the very same function, so what it measures is what training runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from common.config import linear_schedule

if TYPE_CHECKING:  # the env wrapper imports TensorFlow; only its type is needed here
    from acting.evaluation import NumpyQNetwork
    from vec_env_tf import TFWrappedVecEnv


@dataclass
class ChunkLayout:
    """Columns of the packed float32 transition array: obs | action | next_obs | terminated |
    valid. One array per chunk means one NumPy->TensorFlow conversion per learning call."""
    obs_size: int

    @property
    def width(self) -> int:
        return 2 * self.obs_size + 3

    @property
    def obs(self) -> slice:
        return slice(0, self.obs_size)

    @property
    def action(self) -> int:
        return self.obs_size

    @property
    def next_obs(self) -> slice:
        return slice(self.obs_size + 1, 2 * self.obs_size + 1)

    @property
    def terminated(self) -> int:
        return 2 * self.obs_size + 1

    @property
    def valid(self) -> int:
        return 2 * self.obs_size + 2


@dataclass
class EpsilonSchedule:
    start: float
    final: float
    decay_steps: int

    def __call__(self, vector_step: int) -> float:
        return linear_schedule(self.start, self.final, self.decay_steps, vector_step)


def collect_chunk(env: TFWrappedVecEnv, qnet: NumpyQNetwork, rng: np.random.Generator,
                  obs: np.ndarray, chunk: np.ndarray, layout: ChunkLayout,
                  epsilon: EpsilonSchedule, vector_step: int) -> tuple[np.ndarray, float, float]:
    """Fill `chunk` [K, N, width] with K vector steps; return (next obs, last epsilon, env seconds).

    Both random arrays are drawn every step so the RNG stream never depends on the policy's
    choices, which keeps runs reproducible across small numeric differences in Q-values.
    """
    n = env.num_envs
    t_env, eps = 0.0, epsilon(vector_step)
    for k in range(chunk.shape[0]):
        eps = epsilon(vector_step + k)
        explore = rng.random(n) < eps
        random_actions = rng.integers(0, env.num_actions, n)
        actions = random_actions if eps >= 1.0 else np.where(explore, random_actions, qnet.greedy(obs))
        t = time.perf_counter()
        step = env.step_numpy(actions)
        t_env += time.perf_counter() - t
        row = chunk[k]
        row[:, layout.obs] = obs
        row[:, layout.action] = actions
        row[:, layout.next_obs] = step.next_obs
        row[:, layout.terminated] = step.terminated
        row[:, layout.valid] = step.valid
        obs = step.obs
    return obs, eps, t_env
