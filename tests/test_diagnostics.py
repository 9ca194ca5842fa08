"""Collapse diagnostics (diagnostics.py) on a tiny network with known weights."""
from __future__ import annotations

import numpy as np
import pytest

from acting.diagnostics import DoomedStates, action_gap
from acting.evaluation import NumpyQNetwork

# 2 inputs -> 2 hidden (ReLU, identity on the positive quadrant) -> 2 Q-values:
# Q(s) = [s0 + 2*s1, 3*s0] for s >= 0.
NET = NumpyQNetwork([np.eye(2, dtype=np.float32), np.zeros(2, np.float32),
                     np.array([[1, 3], [2, 0]], np.float32), np.zeros(2, np.float32)])


def test_action_gap_by_hand():
    obs = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    # Q = [1, 3], [2, 0], [3, 3] -> gaps 2, 2, 0
    assert action_gap(NET, obs) == pytest.approx(4 / 3)


def test_action_gap_is_sign_free_and_zero_for_equal_q():
    assert action_gap(NET, np.array([[1, 1]], np.float32)) == 0.0
    assert action_gap(NET, np.array([[0, 2]], np.float32)) == pytest.approx(4.0)


def test_doomed_states_keep_only_terminating_steps_and_freeze_when_full():
    d = DoomedStates(obs_size=2, capacity=3)
    assert d.max_q(NET) is None
    obs = np.array([[1, 0], [5, 5], [0, 1], [2, 0]], np.float32)
    d.add(obs, np.array([1, 0, 1, 0], np.float32))
    assert d.states.tolist() == [[1, 0], [0, 1]]
    # max Q of [1, 0] is 3, of [0, 1] is 2
    assert d.max_q(NET) == pytest.approx(2.5)
    d.add(np.array([[2, 0], [3, 0]], np.float32), np.array([1, 1], np.float32))
    assert d.full and d.states.tolist() == [[1, 0], [0, 1], [2, 0]]
    d.add(np.array([[9, 9]], np.float32), np.array([1], np.float32))
    assert len(d.states) == 3, "the set must stay fixed once full"
