"""The champion/challenger test after the solve (Trainer.challenge), with the episodes faked:
which model plays which episodes, and what it takes to replace best.keras."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from acting import evaluation
from common import seeds
from common.config import TrainConfig
from training import trainer as trainer_mod
from training.trainer import CERTIFY_ENVS, Progress, Timer, Trainer


class Policy:
    """A stand-in network: `fails` maps an episode seed block (the first seed of a call) to how
    many of the call's episodes it loses."""

    def __init__(self, name: str, fails: dict[int, int]):
        self.name, self.fails = name, fails

    def greedy(self, obs):  # never called: `evaluate` is faked
        raise AssertionError


def make(challenge_episodes: int, challenger_fails: dict[int, int], champion_fails: dict[int, int],
         monkeypatch):
    """A Trainer with just what `challenge` uses, and the list of evaluate calls it makes."""
    calls = []
    challenger, champion = Policy("challenger", challenger_fails), Policy("champion", champion_fails)

    def fake_evaluate(act, episodes, seed, num_envs=64, **_):
        policy = act.__self__
        calls.append((policy.name, episodes, seed, num_envs))
        returns = np.full(episodes, 500.0)
        returns[:policy.fails.get(seed, 0)] = 120.0
        return evaluation.EvalResult(returns, episodes)

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluation, "NumpyQNetwork", lambda weights: challenger)
    t = Trainer.__new__(Trainer)
    t.cfg = TrainConfig(seed=4, challenge_episodes=challenge_episodes)
    t.prog, t.timer, t.said, exported = Progress(), Timer(), [], []
    t.say = t.said.append
    t._champion = champion
    t.export_best = exported.append
    return t, calls, exported


CERT0 = seeds.episode_seed(4, seeds.CERTIFICATES, 0)
CHAL0 = seeds.episode_seed(4, seeds.CHALLENGES, 0)


def snapshot():
    return SimpleNamespace(weights=None, env_steps=300_000, certificate=None)


def test_a_challenger_wins_only_by_passing_the_wider_set_where_the_champion_fails(monkeypatch):
    t, calls, exported = make(10_000, {}, {CHAL0: 1}, monkeypatch)
    snap = snapshot()
    t.challenge(snap)
    assert calls == [("challenger", 1000, CERT0, CERTIFY_ENVS),
                     ("challenger", 10_000, CHAL0, CERTIFY_ENVS),
                     ("champion", 10_000, CHAL0, CERTIFY_ENVS)]
    assert exported == [snap] and t.prog.promotions == 1 and t.prog.challenges == 1
    assert "10000/10000 at 500 where the previous one had 9999" in t.said[-1]


@pytest.mark.parametrize("challenger_fails, champion_fails, played", [
    ({CERT0: 1}, {CHAL0: 5}, 1),     # its certificate failed: no wider set is played
    ({CHAL0: 1}, {CHAL0: 5}, 2),     # passed the certificate, lost one of the 10,000
    ({}, {}, 3),                     # a tie keeps the model already delivered
])
def test_best_keras_stays_unless_the_challenger_wins(challenger_fails, champion_fails, played,
                                                      monkeypatch):
    t, calls, exported = make(10_000, challenger_fails, champion_fails, monkeypatch)
    t.prog.solved_at_round = 3
    t.challenge(snapshot())
    assert len(calls) == played and exported == [] and t.prog.promotions == 0
    assert len(t.said) == 1 and t.said[0].endswith("best.keras stays" if played > 1
                                                    else "best.keras stays (a challenger)")


def test_no_challenge_with_challenge_episodes_0(monkeypatch):
    t, calls, exported = make(0, {}, {CERT0: 3, CHAL0: 3}, monkeypatch)
    t.challenge(snapshot())
    assert calls == [] and exported == []


def test_each_challenge_plays_its_own_episodes(monkeypatch):
    t, calls, _ = make(10_000, {}, {}, monkeypatch)
    for _ in range(3):
        t.challenge(snapshot())
    wide = [seed for who, n, seed, _ in calls if n == 10_000 and who == "challenger"]
    assert wide == [trainer_mod.challenge_seed(4, i) for i in range(3)] and len(set(wide)) == 3
