"""The batched gymnasium environment the TensorFlow trainer steps, stepped in NumPy.

Design choices
--------------
* Backend. ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` gives
  CartPole's ``CartPoleVectorEnv``, which steps all environments with a handful of NumPy
  operations (tens of µs for 64 envs). Env ids without a vector entry point (Acrobot,
  MountainCar, ...) make gymnasium raise ``gymnasium.error.Error``; for those we fall back
  to ``SyncVectorEnv`` so the class stays usable, only slower.

* Autoreset. Both backends are used in gymnasium 1.x's default NEXT_STEP mode. When an
  episode ends at step t, the observation returned at t is the true final observation;
  at step t+1 that env is reset, the action is ignored, and the reset observation comes
  back with reward 0 and both flags False. Step t+1 is therefore not a transition and is
  reported with ``valid=False``; the replay buffer must drop or zero-weight it.
  ``CartPoleVectorEnv`` refuses SAME_STEP. ``SyncVectorEnv`` would accept it, but it
  reports final observations through a per-env object array in ``info``; keeping
  NEXT_STEP everywhere gives one rule for ``valid`` and no per-env Python gathering.

* ``obs`` vs ``next_obs``. With NEXT_STEP autoreset, the observation returned by a step
  is both the next state of that step's transition (when valid) and the state to act on
  next, so the two fields hold the same array. Both names are kept so callers
  state their intent, and so a same-step backend could be added without changing them.

* NumPy only. The trainer acts with a NumPy policy and packs each chunk itself
  (``acting.collection``); the chunk crosses into TensorFlow once, in the fused learning call
  (``agent.py``). An eager TensorFlow op per step would cost more than the environment step
  itself, so this wrapper hands out NumPy arrays and imports no TensorFlow; its name is the
  design card's (the env the TensorFlow trainer steps). The ``_numpy`` in
  ``reset_numpy``/``step_numpy`` says what they return.

* Episode statistics are kept per env in NumPy arrays and updated with array arithmetic;
  finished episodes are appended per step (one slice per step, not one per env).
"""

from __future__ import annotations

from types import TracebackType
from typing import NamedTuple

import gymnasium as gym
import numpy as np


class NumpyStep(NamedTuple):
    """One vector step as NumPy arrays (leading dimension = num_envs).

    ``obs`` and ``next_obs`` are the same array (see the module docstring); treat it as
    read-only.
    """

    obs: np.ndarray  # [N, O] float32, state to act on next
    next_obs: np.ndarray  # [N, O] float32, next state of the transition (final obs at a done)
    reward: np.ndarray  # [N] float32, gymnasium's unshaped reward (0 on invalid steps)
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    valid: np.ndarray  # [N] bool, False on the autoreset step after a done


def _make_backend(env_id: str, num_envs: int) -> tuple[gym.vector.VectorEnv, str]:
    """Create the fastest available vector env for ``env_id``; return it and its mode."""
    try:
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        return env, "vector_entry_point"
    except gym.error.Error:
        # gymnasium uses its generic Error for "no vector entry point" as well as for
        # other misconfigurations, so only fall back when that is really the cause.
        if gym.spec(env_id).vector_entry_point is not None:
            raise
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    return env, "sync"


class TFWrappedVecEnv:
    """``num_envs`` copies of a discrete-action gymnasium env, stepped as one batch.

    A ``seed`` given here is used by the first reset that does not pass its own seed, so
    the same seed and the same actions reproduce the same observations (including the
    states drawn at autoresets, which come from the env's seeded generator).
    """

    def __init__(self, num_envs: int = 64, seed: int | None = None, env_id: str = "CartPole-v1"):
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs: int = int(num_envs)
        self.env_id: str = env_id
        self._seed = seed
        self._env, self.vectorization_mode = _make_backend(env_id, self.num_envs)

        action_space = self._env.single_action_space
        if not isinstance(action_space, gym.spaces.Discrete):
            self._env.close()
            raise ValueError(f"{env_id} has a {type(action_space).__name__} action space; only Discrete is supported")
        self.num_actions: int = int(action_space.n)
        self.observation_size: int = int(np.prod(self._env.single_observation_space.shape))

        # None until the first reset, so stepping an un-reset env fails clearly.
        self._prev_done: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._finished_returns: list[np.ndarray] = []
        self._finished_lengths: list[np.ndarray] = []
        self._closed = False

    # ------------------------------------------------------------------ NumPy level
    def reset_numpy(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; return observations [N, O] float32.

        Partial episodes are discarded; already finished ones stay available to
        ``pop_finished_episodes``.
        """
        if seed is None and self._prev_done is None:
            seed = self._seed
        obs, _ = self._env.reset(seed=seed)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self._as_obs(obs)

    def step_numpy(self, actions: np.ndarray) -> NumpyStep:
        """Step every env with integer ``actions`` [N]; no TensorFlow involved."""
        prev_done = self._prev_done
        if prev_done is None:
            raise RuntimeError("call reset_numpy() before stepping")
        obs, reward, terminated, truncated, _ = self._env.step(np.asarray(actions))
        obs = self._as_obs(obs)
        # SyncVectorEnv returns float64 rewards; CartPoleVectorEnv already float32 (no copy).
        reward = np.asarray(reward, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        # The env resets on the step after a done, so that step is not a transition.
        valid = ~prev_done
        done = terminated | truncated

        # Invalid steps carry reward 0 and add no length, so no masking of the return is
        # needed beyond what gymnasium already does; the length uses `valid` explicitly.
        self._ep_return += reward
        self._ep_length += valid
        if done.any():
            self._finished_returns.append(self._ep_return[done])
            self._finished_lengths.append(self._ep_length[done])
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0
        self._prev_done = done
        return NumpyStep(obs, obs, reward, terminated, truncated, valid)

    def pop_finished_episodes(self) -> tuple[np.ndarray, np.ndarray]:
        """(returns float64, lengths int64) of episodes finished since the last call.

        Ordered by finishing step, then env index. The internal list is cleared.
        """
        if not self._finished_returns:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        returns = np.concatenate(self._finished_returns)
        lengths = np.concatenate(self._finished_lengths)
        self._finished_returns.clear()
        self._finished_lengths.clear()
        return returns, lengths

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the underlying gymnasium env; safe to call twice."""
        if not self._closed:
            self._env.close()
            self._closed = True

    def __enter__(self) -> "TFWrappedVecEnv":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _as_obs(self, obs: np.ndarray) -> np.ndarray:
        # Flatten non-vector observations so every backend yields [N, O] float32.
        return np.asarray(obs, dtype=np.float32).reshape(self.num_envs, self.observation_size)
