"""Early warnings of DQN's collapse after solving, computed in NumPy from the acting network.

Public analysis of DQN collapsing on CartPole after it first reaches 500 (ARENA_3.0 PR #399)
found that the TD loss shows nothing while two quantities drift long before the return drops:
- the **action gap**, mean |Q(s,a1) - Q(s,a2)| on visited states, shrinks: the network stops
  telling the actions apart once the buffer holds only near-optimal play;
- the **max Q on doomed states**, states one step before termination whose true value is close
  to 0 (the episode ends next step whatever is done), drifts up toward the bound 1/(1-gamma):
  the network forgets what failing looks like.

Both are logged per learning call in metrics.csv. They use the NumPy copy of the online network
the trainer already keeps for acting, so they cost ~0.1 ms a call and never touch the graph.
"""
from __future__ import annotations

import numpy as np

from acting.evaluation import NumpyQNetwork


def action_gap(qnet: NumpyQNetwork, obs: np.ndarray) -> float:
    """Mean over `obs` of the gap between the best and the second-best action's Q-value."""
    q = qnet.q_values(obs)
    top2 = np.sort(q, axis=1)[:, -2:]
    return float(np.mean(top2[:, 1] - top2[:, 0]))


class DoomedStates:
    """A fixed set of states seen one step before termination, gathered from the first chunks.

    The set is filled once (first come, up to `capacity`) and then frozen, so the curve of
    `max_q` follows one network on the same states through the whole run.
    """

    def __init__(self, obs_size: int, capacity: int = 256):
        self.states = np.zeros((0, obs_size), np.float32)
        self.capacity = capacity

    @property
    def full(self) -> bool:
        return len(self.states) >= self.capacity

    def add(self, obs: np.ndarray, terminated: np.ndarray) -> None:
        """Keep the states whose next step terminated (obs [n, d], terminated [n])."""
        if self.full:
            return
        doomed = obs[terminated > 0.5]
        room = self.capacity - len(self.states)
        self.states = np.concatenate([self.states, doomed[:room].astype(np.float32)])

    def max_q(self, qnet: NumpyQNetwork) -> float | None:
        """Mean over the doomed states of max_a Q(s, a); None until a state was seen."""
        if not len(self.states):
            return None
        return float(np.mean(np.max(qnet.q_values(self.states), axis=1)))
