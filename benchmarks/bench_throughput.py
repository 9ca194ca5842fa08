"""Environment steps per second with the policy in the loop, per number of environments.

    benchmarks/run.sh bench_throughput [--envs 64,256,1024] [--seconds 3]

Measures the trainer's own collection code (`collection.collect_chunk`: epsilon-greedy acting
with the NumPy copy of the default Q-network, `config.TrainConfig().hidden`, the vectorized
CartPole step, packing into the transition array), with epsilon at its final value so nearly
every action comes from the network. Two figures per env count, both measured in this run:
- collect: acting + env step + packing, as in training;
- collect + store: the same plus the chunk's one TensorFlow call storing it into the
  prioritized replay buffer (no learning steps), i.e. the whole data path.
The baseline printed beside them is random actions straight into the gymnasium vector env, with
no policy at all: the ratio says what the policy and the data path cost on top of the env.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as cartpole.py does, before NumPy loads
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

from acting.collection import ChunkLayout, EpsilonSchedule, collect_chunk  # noqa: E402
from common.config import TrainConfig  # noqa: E402
from acting.evaluation import NumpyQNetwork  # noqa: E402
from vec_env_tf import TFWrappedVecEnv  # noqa: E402


def timed(fn, seconds: float) -> float:
    """Calls per second of fn over about `seconds` (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", default="64,256,1024")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--train-every", type=int, default=16)
    a = p.parse_args(argv)
    from common.tf_import import import_tensorflow
    tf = import_tensorflow()
    import keras
    from agent import DoubleDQNAgent, make_store_and_learn
    from rewards import get_reward_fn
    from sumtree_tf import PrioritizedReplayBuffer
    keras.utils.set_random_seed(0)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    print(f"{'envs':>6} {'random, no policy':>18} {'collect':>14} {'collect+store':>14} "
          f"{'collect/random':>15}")
    for n in [int(x) for x in a.envs.split(",")]:
        env = TFWrappedVecEnv(num_envs=n, seed=0)
        agent = DoubleDQNAgent(env.observation_size, env.num_actions, TrainConfig().hidden)
        qnet = NumpyQNetwork(agent.numpy_weights())
        layout = ChunkLayout(env.observation_size)
        chunk = np.zeros((a.train_every, n, layout.width), np.float32)
        eps = EpsilonSchedule(0.01, 0.01, 1)
        rng = np.random.default_rng(0)
        state = {"obs": env.reset_numpy(seed=0)}

        def collect() -> None:
            state["obs"], _, _ = collect_chunk(env, qnet, rng, state["obs"], chunk, layout, eps, 0)

        buffer = PrioritizedReplayBuffer(1 << 17, env.observation_size, seed=0)
        store = make_store_and_learn(agent, buffer, get_reward_fn("shaped"), 1024, jit_compile=True)
        zero, beta = tf.constant(0), tf.constant(0.5)

        def collect_and_store() -> None:
            collect()
            store(tf.convert_to_tensor(chunk.reshape(-1, layout.width)), zero, beta)

        raw = env._env  # the gymnasium vector env underneath, for the no-policy baseline
        raw_actions = rng.integers(0, 2, n)

        def random_steps() -> None:
            for _ in range(a.train_every):
                raw.step(raw_actions)

        steps = a.train_every * n
        base = timed(random_steps, a.seconds) * steps
        col = timed(collect, a.seconds) * steps
        both = timed(collect_and_store, a.seconds) * steps
        print(f"{n:>6} {base:>14,.0f} /s {col:>12,.0f} /s {both:>12,.0f} /s {col / base:>14.2f}x")
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
